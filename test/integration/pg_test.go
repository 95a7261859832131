package integration

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/test/testenv"
)

// hostileDatabase returns a test database whose defaults differ from every pinned output
// setting, and a DSN to it that sets some of them again under other spellings: pg's
// connections must render values as pgoutput does whatever the server, database or DSN say.
func hostileDatabase(t *testing.T) (*testenv.DB, string) {
	env := testenv.Get(t)
	db := env.Database(t)
	name := pgx.Identifier{db.Name}.Sanitize()
	for _, set := range []string{
		"DateStyle = 'SQL, DMY'", "TimeZone = 'Asia/Tokyo'", "IntervalStyle = 'iso_8601'",
		"extra_float_digits = 0", "bytea_output = 'escape'", "lc_monetary = 'C.UTF-8'",
	} {
		db.Exec(t, "ALTER DATABASE "+name+" SET "+set)
	}
	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("timezone", "America/New_York")
	q.Set("datestyle", "German")
	u.RawQuery = q.Encode()
	return db, u.String()
}

// TestPGConnectPinsOutputSettings: both connections pg opens show every pinned setting, the
// realtime cleanup's lc_monetary included, and read a value of each affected type as the
// text pgoutput sends for it, which is what the snapshot emits and the cleanup casts back.
func TestPGConnectPinsOutputSettings(t *testing.T) {
	db, dsn := hostileDatabase(t)
	ctx := testenv.Context(t, time.Minute)
	db.Exec(t, `CREATE TABLE vals (id int PRIMARY KEY, ts timestamptz, iv interval, f float8, b bytea, m money)`)
	db.Exec(t, `CREATE PUBLICATION vals_pub FOR TABLE vals`)

	conn, err := pg.Connect(ctx, dsn, "procon-cdc pg test")
	if err != nil {
		t.Fatalf("pg.Connect: %v", err)
	}
	defer conn.Close(context.Background())
	repl, err := pg.ConnectReplication(ctx, dsn, "procon-cdc pg test")
	if err != nil {
		t.Fatalf("pg.ConnectReplication: %v", err)
	}
	defer repl.Close(context.Background())

	// Written out rather than taken from pg.OutputSettings, so that a setting dropped there
	// fails here. The realtime cleanup's connection once lacked lc_monetary.
	pinned := map[string]string{
		"DateStyle": "ISO, MDY", "TimeZone": "UTC", "IntervalStyle": "postgres",
		"extra_float_digits": "3", "bytea_output": "hex", "lc_monetary": "C",
	}
	for setting, want := range pinned {
		var got string
		if err := conn.QueryRow(ctx, "SHOW "+setting).Scan(&got); err != nil {
			t.Fatalf("SHOW %s: %v", setting, err)
		}
		if got != want {
			t.Errorf("pg.Connect: %s = %q, want %q", setting, got, want)
		}
		res, err := repl.Exec(ctx, "SHOW "+setting).ReadAll()
		if err != nil {
			t.Fatalf("replication SHOW %s: %v", setting, err)
		}
		if got := string(res[0].Rows[0][0]); got != want {
			t.Errorf("pg.ConnectReplication: %s = %q, want %q", setting, got, want)
		}
	}
	var app string
	if err := conn.QueryRow(ctx, "SHOW application_name").Scan(&app); err != nil || app != "procon-cdc pg test" {
		t.Errorf("application_name = %q (%v), want the one given", app, err)
	}

	slot := testenv.Name(t, "slot")
	if _, err := pglogrepl.CreateReplicationSlot(ctx, repl, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		t.Fatalf("create slot: %v", err)
	}
	db.Exec(t, `INSERT INTO vals VALUES (1, '2024-03-05 06:07:08.123456+00', '1 year 2 mons 3 days 04:05:06',
		1.0/3, '\x00ff', 1234.56)`)
	if err := pglogrepl.StartReplication(ctx, repl, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'vals_pub'"},
	}); err != nil {
		t.Fatalf("start replication: %v", err)
	}
	streamed := insertedTuple(ctx, t, repl)

	// Text format, as the snapshot reads rows.
	res := conn.PgConn().ExecParams(ctx, `SELECT ts, iv, f, b, m FROM public.vals`, nil, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 1 {
		t.Fatalf("read vals: %v (%d rows)", res.Err, len(res.Rows))
	}
	want := []string{"2024-03-05 06:07:08.123456+00", "1 year 2 mons 3 days 04:05:06", "0.3333333333333333", `\x00ff`, "$1,234.56"}
	for i, col := range []string{"timestamptz", "interval", "float8", "bytea", "money"} {
		read, sent := string(res.Rows[0][i]), streamed[i+1]
		if read != sent || read != want[i] {
			t.Errorf("%s: pg.Connect reads %q, pgoutput sends %q, want %q", col, read, sent, want[i])
		}
	}
}

// insertedTuple reads the replication stream up to the first Insert and returns its columns
// as text.
func insertedTuple(ctx context.Context, t *testing.T, repl *pgconn.PgConn) []string {
	t.Helper()
	for {
		if ins, ok := nextWALMessage(ctx, t, repl).(*pglogrepl.InsertMessage); ok {
			var cols []string
			for _, c := range ins.Tuple.Columns {
				cols = append(cols, string(c.Data))
			}
			return cols
		}
	}
}

// TestPGErrorsOfARealServer: what the server and pgconn really return is classified as the
// retry loops need, and a refused password is not shown.
func TestPGErrorsOfARealServer(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	ctx := testenv.Context(t, time.Minute)

	u, err := url.Parse(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	user := u.User.Username()
	const wrong = "Wr0ng-Passw0rd"
	u.User = url.UserPassword(user, wrong)
	_, err = pg.Connect(ctx, u.String(), "procon-cdc pg test")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("the error shows the password: %v", err)
	}
	if pg.Transient(err) {
		t.Errorf("a wrong password is transient: %v", err)
	}

	conn, err := pg.Connect(ctx, db.DSN, "procon-cdc pg test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT * FROM missing"); pg.Transient(err) || err == nil {
		t.Errorf("a missing table: Transient(%v) = true", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := conn.Exec(cctx, "SELECT 1"); pg.Transient(err) || err == nil {
		t.Errorf("a cancelled context: Transient(%v) = true", err)
	}

	// The session ends under the connection, as on a restart or failover.
	conn, err = pg.Connect(ctx, db.DSN, "procon-cdc pg test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	db.Exec(t, "SELECT pg_terminate_backend($1)", conn.PgConn().PID())
	_, err = conn.Exec(ctx, "SELECT 1")
	t.Logf("terminated session: %v", err)
	if err == nil || !pg.Transient(err) {
		t.Errorf("a terminated session: Transient(%v) = false", err)
	}
	_, err = conn.Exec(ctx, "SELECT 1")
	t.Logf("closed connection: %v", err)
	if err == nil || !pg.Transient(err) {
		t.Errorf("the closed connection after it: Transient(%v) = false", err)
	}
}
