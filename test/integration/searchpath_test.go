package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/test/testenv"
)

// Roles other than procon-cdc's are untrusted: what they create must not run with
// procon-cdc's role. These tests play such a role ("mallory": no superuser, CREATE on public as
// every role had before PostgreSQL 15, owner of the tables it made).

// createRole creates a role for the test (roles belong to the cluster: it gets a name of its
// own) and drops it, with what it owns and was granted in the test's database, at cleanup.
func createRole(t *testing.T, db *testenv.DB, prefix, attrs string) string {
	t.Helper()
	name := testenv.Name(t, prefix)
	db.Exec(t, "CREATE ROLE "+pgx.Identifier{name}.Sanitize()+" "+attrs)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, q := range []string{"DROP OWNED BY %s CASCADE", "DROP ROLE %s"} {
			if _, err := db.Pool.Exec(ctx, fmt.Sprintf(q, pgx.Identifier{name}.Sanitize())); err != nil {
				t.Logf("drop role %s: %v", name, err)
			}
		}
	})
	return name
}

// mallory creates an untrusted role that may create in public, and a table public.pwned where
// the code it plants records who ran it.
func mallory(t *testing.T, db *testenv.DB) string {
	t.Helper()
	m := createRole(t, db, "mallory", "NOLOGIN")
	q := pgx.Identifier{m}.Sanitize()
	db.Exec(t, "GRANT CREATE ON SCHEMA public TO "+q)
	asRole(t, db, m, `CREATE TABLE public.pwned (who text, what text)`, `GRANT INSERT ON public.pwned TO PUBLIC`)
	return m
}

// asRole runs statements as role (SET ROLE), as that role would run them itself.
func asRole(t *testing.T, db *testenv.DB, role string, sql ...string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	conn, err := pgx.Connect(ctx, db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	for _, q := range sql {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("as %s: %s: %v", role, q, err)
		}
	}
}

// pwned returns what mallory's planted code recorded.
func pwned(t *testing.T, db *testenv.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT who || ': ' || what FROM public.pwned`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPGConnectPinsSearchPath: every kind of connection procon-cdc opens searches only
// pg_catalog and pg_temp, with row_security off, whatever the database's defaults and the
// DSN say, in its own parameters or in options (which the server applies first).
func TestPGConnectPinsSearchPath(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	ctx := testenv.Context(t, time.Minute)
	name := pgx.Identifier{db.Name}.Sanitize()
	db.Exec(t, "ALTER DATABASE "+name+" SET search_path = public")
	db.Exec(t, "ALTER DATABASE "+name+" SET row_security = on")
	// Spaces as %20: pgx, like libpq, reads '+' in a URL as itself.
	withOptions := db.DSN + "&options=" + strings.ReplaceAll(url.QueryEscape("-c search_path=public,pg_catalog -crow_security=on"), "+", "%20")
	withParams := db.DSN + "&search_path=public&Row_Security=on"

	for _, dsn := range []string{db.DSN, withOptions, withParams} {
		shown := map[string]func(setting string) string{}
		conn, err := pg.Connect(ctx, dsn, "procon-cdc search_path test")
		if err != nil {
			t.Fatalf("pg.Connect: %v", err)
		}
		defer conn.Close(context.Background())
		shown["pg.Connect"] = func(setting string) (v string) {
			if err := conn.QueryRow(ctx, "SHOW "+setting).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		pool, err := pg.NewPool(ctx, dsn, "procon-cdc search_path test", 1)
		if err != nil {
			t.Fatalf("pg.NewPool: %v", err)
		}
		defer pool.Close()
		shown["pg.NewPool"] = func(setting string) (v string) {
			if err := pool.QueryRow(ctx, "SHOW "+setting).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		repl, err := pg.ConnectReplication(ctx, dsn, "procon-cdc search_path test")
		if err != nil {
			t.Fatalf("pg.ConnectReplication: %v", err)
		}
		defer repl.Close(context.Background())
		shown["pg.ConnectReplication"] = func(setting string) string {
			res, err := repl.Exec(ctx, "SHOW "+setting).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			return string(res[0].Rows[0][0])
		}
		for kind, show := range shown {
			if got := show("search_path"); got != "pg_catalog, pg_temp" {
				t.Errorf("%s with DSN %s: search_path = %q, want pg_catalog, pg_temp", kind, strings.TrimPrefix(dsn, db.DSN), got)
			}
			if got := show("row_security"); got != "off" {
				t.Errorf("%s with DSN %s: row_security = %q, want off", kind, strings.TrimPrefix(dsn, db.DSN), got)
			}
		}
	}
}

// TestCatalogFunctionsCannotBeShadowed: functions another role plants in public, each a
// closer match than the catalog function procon-cdc calls (unnest(bigint[]) in the realtime
// cleanup, unnest(int2vector) in the primary key lookup), are never called: the cleanup still
// deletes the published rows, the key is still the primary key, and the planted code never
// ran.
func TestCatalogFunctionsCannotBeShadowed(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (v text, id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 0")
	m := mallory(t, s.db)
	asRole(t, s.db, m,
		`CREATE FUNCTION public.unnest(a bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.pwned VALUES (current_user, 'unnest(bigint[])');
			RETURN QUERY SELECT pg_catalog.unnest(a);
		END $$`,
		`CREATE FUNCTION public.unnest(a int2vector) RETURNS SETOF smallint LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.pwned VALUES (current_user, 'unnest(int2vector)');
			RETURN QUERY SELECT 1::smallint;
		END $$`)
	// Both would win over the catalog's unnest(anyarray) under the default search_path.
	var shadowed string
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT 'x' FROM unnest('{1}'::bigint[]) LIMIT 1`).Scan(&shadowed); err != nil {
		t.Fatal(err)
	}
	if got := pwned(t, s.db); len(got) != 1 {
		t.Fatalf("the planted unnest does not shadow the catalog's under the default search_path (%v): the test shows nothing", got)
	}
	s.db.Exec(t, `DELETE FROM public.pwned`)

	s.runEngine(t)
	s.waitSlot(t)
	conn := s.db.Conn(t)
	commit(t, conn, `INSERT INTO accounts VALUES ('a', 7)`, `INSERT INTO procon_realtimes (channel) VALUES ('c1')`)
	testenv.WaitFor(t, time.Minute, "the published row to be deleted, or the planted code to run", func() (bool, error) {
		return realtimeRows(t, s) == 0 || len(pwned(t, s.db)) > 0, nil
	})
	if got := pwned(t, s.db); len(got) > 0 {
		t.Fatalf("code another role planted in public ran: %v", got)
	}
	readRealtime(t, s, time.Minute, hasChannel("c1"))
	evs := decode(t, s.env.ReadN(t, s.topic("accounts"), 1, time.Minute))
	if fmt.Sprint(evs[0].Key) != "map[id:7]" {
		t.Errorf("the record key is %v, want the primary key {id: 7}", evs[0].Key)
	}
}

// startRefused runs engine.New on the test's configuration and returns its error; a start
// that succeeds fails the test.
func (s *setup) startRefused(t *testing.T) error {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	e, err := engine.New(ctx, s.cfg(t), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err == nil {
		stopped, cancel := context.WithCancel(ctx)
		cancel()
		_ = e.Run(stopped) // closes what New opened
		t.Fatal("procon-cdc started")
	}
	return err
}

// check runs procon-cdc check and returns its output and exit code.
func (s *setup) check(t *testing.T) (string, int) {
	t.Helper()
	out, err := exec.Command(testenv.ProconBinary(t), "check", "--config", writeConfig(t, s.config)).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("procon-cdc check: %v", err)
	return "", 0
}

// TestWrittenTablesWithForeignCodeRefused: a trigger or rule that would fire on what
// procon-cdc writes (the realtime table's deletes, the signal table's inserts, its own
// progress table), and an own table or schema another role could change, make check report
// and run refuse, naming it. A trigger on what procon-cdc does not do (the realtime table's
// inserts) is no reason to refuse.
func TestWrittenTablesWithForeignCodeRefused(t *testing.T) {
	const logIt = `CREATE FUNCTION public.log_it() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO public.pwned VALUES (current_user, TG_NAME); RETURN NULL; END $$`
	for _, tc := range []struct {
		name  string
		extra string                  // configuration
		as    func(m string) []string // what mallory does
		admin []string                // what a superuser does
		want  []string                // in check's output and run's error
	}{{
		name: "realtime table trigger",
		as: func(string) []string {
			return []string{logIt,
				`CREATE TRIGGER on_insert AFTER INSERT ON public.procon_realtimes FOR EACH ROW EXECUTE FUNCTION public.log_it()`,
				`CREATE TRIGGER sneaky BEFORE DELETE ON public.procon_realtimes FOR EACH STATEMENT EXECUTE FUNCTION public.log_it()`}
		},
		want: []string{`trigger "sneaky"`, "public.log_it()", "public.procon_realtimes", "deletes from"},
	}, {
		name: "realtime table rule",
		as: func(string) []string {
			return []string{`CREATE RULE keep AS ON DELETE TO public.procon_realtimes DO INSTEAD NOTHING`}
		},
		want: []string{`rule "keep"`, "public.procon_realtimes"},
	}, {
		name: "realtime table foreign key action",
		as: func(string) []string {
			return []string{logIt, `CREATE TABLE public.seen (rt bigint REFERENCES public.procon_realtimes ON DELETE CASCADE)`,
				`CREATE TRIGGER relay AFTER DELETE ON public.seen FOR EACH ROW EXECUTE FUNCTION public.log_it()`}
		},
		want: []string{`foreign key "seen_rt_fkey" of public.seen`, "public.procon_realtimes"},
	}, {
		name:  "signal table trigger",
		extra: "snapshot:\n  signal_table: public.procon_signal\n",
		as: func(string) []string {
			return []string{logIt, `CREATE TABLE public.procon_signal (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048))`,
				`CREATE TRIGGER relay AFTER INSERT ON public.procon_signal FOR EACH ROW EXECUTE FUNCTION public.log_it()`}
		},
		want: []string{`trigger "relay"`, "public.procon_signal", "inserts into"},
	}, {
		name: "progress table trigger",
		admin: []string{
			`CREATE FUNCTION public.log_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`,
			// On the progress table wherever this version keeps it (earlier ones: public).
			`DO $$ BEGIN EXECUTE format('CREATE TRIGGER watch AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION public.log_it()',
				coalesce(to_regclass('procon.procon_snapshot_progress'), to_regclass('public.procon_snapshot_progress'))); END $$`},
		want: []string{`trigger "watch"`, "procon_snapshot_progress"},
	}, {
		name:  "progress table made by another role",
		admin: []string{`DROP TABLE procon.procon_snapshot_progress`, `GRANT CREATE ON SCHEMA procon TO PUBLIC`},
		as: func(string) []string {
			return []string{`CREATE TABLE procon.procon_snapshot_progress (LIKE public.procon_realtimes)`}
		},
		want: []string{"procon.procon_snapshot_progress", "owns it", "REVOKE CREATE ON SCHEMA \"procon\" FROM PUBLIC"},
	}, {
		name:  "progress schema owned by another role",
		admin: []string{`DROP SCHEMA procon CASCADE`},
		as: func(m string) []string {
			return []string{`CREATE SCHEMA procon`}
		},
		want: []string{`schema procon`, "owns it"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, `public.accounts: {}`, tc.extra)
			if tc.extra != "" {
				s.env.RequireServer(t, engine.MessagesSince, "the signal table serves in-stream snapshots, whose watermarks are logical decoding messages")
			}
			s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
			createRealtimeTable(t, s) // and procon's own schema and progress table
			// Without realtime messages, which servers before 14 do not decode: the table's
			// cleanup is what writes.
			withRealtime(s, "enabled: true", "messages: false")
			m := mallory(t, s.db)
			s.db.Exec(t, "ALTER TABLE public.procon_realtimes OWNER TO "+pgx.Identifier{m}.Sanitize()) // the application's table
			for _, q := range tc.admin {
				s.db.Exec(t, q)
			}
			if tc.as != nil {
				if strings.Contains(tc.name, "schema owned") {
					s.db.Exec(t, "GRANT CREATE ON DATABASE "+pgx.Identifier{s.db.Name}.Sanitize()+" TO "+pgx.Identifier{m}.Sanitize())
				}
				asRole(t, s.db, m, tc.as(m)...)
			}
			out, code := s.check(t)
			if code != 1 {
				t.Errorf("check exited %d, want 1:\n%s", code, out)
			}
			err := s.startRefused(t)
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("check's output lacks %q:\n%s", want, out)
				}
				if !strings.Contains(err.Error(), want) {
					t.Errorf("run's error lacks %q: %v", want, err)
				}
			}
			if strings.Contains(out, "on_insert") || strings.Contains(err.Error(), "on_insert") {
				t.Errorf("a trigger on inserts into the realtime table, which procon-cdc does not do, is refused:\n%s\n%v", out, err)
			}
			if got := pwned(t, s.db); len(got) > 0 {
				t.Errorf("planted code ran: %v", got)
			}
		})
	}
}

// TestCleanupRefusesTriggerAddedWhileRunning: the realtime table's owner adds a trigger on
// delete while procon-cdc runs. The cleanup takes the delete's lock before looking, so it
// sees the trigger before any delete fires it: procon-cdc stops with an error naming it, the
// row stays, and the trigger never ran.
func TestCleanupRefusesTriggerAddedWhileRunning(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 0")
	m := mallory(t, s.db)
	s.db.Exec(t, "ALTER TABLE public.procon_realtimes OWNER TO "+pgx.Identifier{m}.Sanitize())
	r := s.startEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO procon_realtimes (channel) VALUES ('before')`)
	testenv.WaitFor(t, time.Minute, "the first row to be published and deleted", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})

	asRole(t, s.db, m, `CREATE FUNCTION public.log_it() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO public.pwned VALUES (current_user, TG_NAME); RETURN OLD; END $$`,
		`CREATE TRIGGER late BEFORE DELETE ON public.procon_realtimes FOR EACH ROW EXECUTE FUNCTION public.log_it()`)
	s.db.Exec(t, `INSERT INTO procon_realtimes (channel) VALUES ('after')`)
	var err error
	testenv.WaitFor(t, time.Minute, "procon-cdc to stop, or the trigger to run", func() (bool, error) {
		select {
		case err = <-r.done:
			r.once.Do(func() {})
			return true, nil
		default:
			return len(pwned(t, s.db)) > 0, nil
		}
	})
	if got := pwned(t, s.db); len(got) > 0 {
		t.Fatalf("the trigger ran with procon-cdc's role: %v", got)
	}
	if err == nil || !strings.Contains(err.Error(), `trigger "late"`) {
		t.Fatalf("engine.Run: %v, want an error naming the trigger", err)
	}
	if n := realtimeRows(t, s); n != 1 {
		t.Fatalf("%d realtime rows left, want the unpublished one", n)
	}
}

// keyCounts reads every record of topic and counts the snapshot rows (op r) of each key.
func (s *setup) keyCounts(t *testing.T, topic string) map[string]int {
	t.Helper()
	n, err := s.endOffsets(t, topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range decode(t, s.env.ReadN(t, topic, int(n), time.Minute)) {
		if ev.op() == "r" {
			out[fmt.Sprint(ev.Key)]++
		}
	}
	return out
}

// TestSnapshotKeysOfExtensionTypes: keys of an extension type whose order is not text's
// (citext, installed in public, compares without case) are read chunk after chunk in the
// order ORDER BY reads them, alone and beside a built-in type: every row exactly once, in the
// initial snapshot and in an incremental one. Compared with text's operators, which are all
// that procon-cdc's search_path finds, chunks would skip and repeat rows.
func TestSnapshotKeysOfExtensionTypes(t *testing.T) {
	s := newSetup(t, `
		public.names: {}
		public.pairs: {}`, `
snapshot:
  chunk_size: 2
  parallelism: 1
  signal_table: public.procon_signal`)
	s.db.Exec(t, `CREATE EXTENSION citext SCHEMA public`)
	s.db.Exec(t, `CREATE TABLE names (name citext PRIMARY KEY)`)
	s.db.Exec(t, `CREATE TABLE pairs (tenant int, name citext, PRIMARY KEY (tenant, name))`)
	names := []string{"a", "B", "c", "D", "e", "F", "g", "H", "i"}
	for _, n := range names {
		s.db.Exec(t, `INSERT INTO names VALUES ($1)`, n)
		s.db.Exec(t, `INSERT INTO pairs VALUES (1, $1), (2, $1)`, n)
	}
	s.runEngine(t)
	s.waitSnapshot(t, "initial", "done", time.Minute)
	want := func(tenants ...int) map[string]int {
		m := map[string]int{}
		for _, n := range names {
			if len(tenants) == 0 {
				m[fmt.Sprint(map[string]any{"name": n})] = 1
			}
			for _, tn := range tenants {
				m[fmt.Sprint(map[string]any{"tenant": tn, "name": n})] = 1
			}
		}
		return m
	}
	check := func(when string, factor int) {
		for table, w := range map[string]map[string]int{"names": want(), "pairs": want(1, 2)} {
			for k := range w {
				w[k] *= factor
			}
			if got := s.keyCounts(t, s.topic(table)); fmt.Sprint(got) != fmt.Sprint(w) {
				t.Errorf("%s, %s: snapshot rows per key\n%v\nwant\n%v", when, table, got, w)
			}
		}
	}
	check("initial snapshot", 1)
	id := s.requestSnapshot(t, "--table", "public.names", "--table", "public.pairs")
	s.waitSnapshot(t, id, "done", time.Minute)
	check("after an incremental snapshot", 2)
}

// TestSnapshotRefusesRowSecurity: procon-cdc's role is subject to a row security policy on a
// captured table. The stream would carry every row, but a snapshot would see only those the
// policy lets through; the snapshot fails, naming the table, rather than miss rows, and check
// says so beforehand.
func TestSnapshotRefusesRowSecurity(t *testing.T) {
	s := newSetup(t, `public.secrets: {}`, "")
	s.db.Exec(t, `CREATE TABLE secrets (id int PRIMARY KEY, v text)`)
	s.db.Exec(t, `INSERT INTO secrets SELECT g, 'v' FROM generate_series(1, 10) g`)
	s.db.Exec(t, `ALTER TABLE secrets ENABLE ROW LEVEL SECURITY`)
	s.db.Exec(t, `CREATE POLICY even ON secrets USING (id % 2 = 0)`)
	s.db.Exec(t, `CREATE PUBLICATION `+s.slot+` FOR TABLE secrets`)
	role := createRole(t, s.db, "procon", "LOGIN REPLICATION PASSWORD 'procon-test-pw'")
	q := pgx.Identifier{role}.Sanitize()
	s.db.Exec(t, `GRANT SELECT ON secrets TO `+q)
	s.db.Exec(t, `GRANT CREATE ON DATABASE `+pgx.Identifier{s.db.Name}.Sanitize()+` TO `+q)
	s.db.Exec(t, `GRANT CREATE ON SCHEMA public TO `+q) // where earlier versions kept snapshot progress
	u, err := url.Parse(s.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, "procon-test-pw")
	s.config = strings.Replace(s.config, "  dsn: "+s.db.DSN, "  dsn: "+u.String()+"\n  publication_autocreate: disabled", 1)

	out, _ := s.check(t)
	if !strings.Contains(out, "row level security applies to procon-cdc's role") {
		t.Errorf("check does not warn of the policy:\n%s", out)
	}
	ctx := testenv.Context(t, 2*time.Minute)
	e, err := engine.New(ctx, s.cfg(t), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err == nil {
		done := make(chan error, 1)
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { done <- e.Run(runCtx) }()
		var sent int64
		testenv.WaitFor(t, time.Minute, "procon-cdc to stop, or to send snapshot rows", func() (bool, error) {
			select {
			case err = <-done:
				return true, nil
			default:
				sent = s.countIfExists(t, s.topic("secrets"))
				return sent > 0, nil
			}
		})
		if sent > 0 {
			cancel()
			<-done
			t.Fatalf("procon-cdc runs, and its snapshot sent %d of the 10 rows", s.countIfExists(t, s.topic("secrets")))
		}
	}
	if err == nil || !strings.Contains(err.Error(), "row-level security") || !strings.Contains(err.Error(), "secrets") {
		t.Fatalf("got %v, want the snapshot to fail naming the policy's table", err)
	}
}

// TestLegacyProgressTable: a database where an earlier procon-cdc kept snapshot progress in
// public.procon_snapshot_progress keeps it there (nothing of a running snapshot is forgotten);
// when the new table exists too and the old one still holds this slot's progress, the start
// refuses to choose and says how to move it; once moved, the start goes on from it.
func TestLegacyProgressTable(t *testing.T) {
	s := newSetup(t, `public.items: {}`, "")
	createItems(t, s, "items", 10)
	// As earlier versions made it.
	s.db.Exec(t, `CREATE TABLE public.procon_snapshot_progress (
		slot text NOT NULL, snapshot text NOT NULL, relation text NOT NULL, part int NOT NULL,
		kind text NOT NULL, status text NOT NULL, filter text, lo text[], hi text[], last_key text[],
		rows_done bigint NOT NULL DEFAULT 0, rows_total bigint NOT NULL DEFAULT 0, lsn pg_lsn, txid bigint,
		started_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (slot, snapshot, relation, part))`)
	legacyStatus := func() (status string) {
		_ = s.db.Pool.QueryRow(context.Background(), `SELECT status FROM public.procon_snapshot_progress
			WHERE slot = $1 AND snapshot = 'initial' AND relation = ''`, s.slot).Scan(&status)
		return status
	}
	r := s.startEngine(t)
	testenv.WaitFor(t, time.Minute, "the initial snapshot to be recorded done in the legacy table", func() (bool, error) {
		return legacyStatus() == "done", nil
	})
	var made bool
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT to_regclass('procon.procon_snapshot_progress') IS NOT NULL`).Scan(&made); err != nil || made {
		t.Fatalf("procon.procon_snapshot_progress was made beside the legacy table (%v)", err)
	}
	if out := s.proconCmd(t, "status"); !strings.Contains(out, "done") {
		t.Errorf("status does not show the legacy table's snapshot:\n%s", out)
	}
	r.stop(t)

	s.db.Exec(t, `CREATE SCHEMA procon`)
	s.db.Exec(t, `CREATE TABLE procon.procon_snapshot_progress (LIKE public.procon_snapshot_progress INCLUDING ALL)`)
	err := s.startRefused(t)
	for _, want := range []string{"public.procon_snapshot_progress", "procon.procon_snapshot_progress", "INSERT INTO", s.slot} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the start's error lacks %q: %v", want, err)
		}
	}

	s.db.Exec(t, `INSERT INTO procon.procon_snapshot_progress SELECT * FROM public.procon_snapshot_progress WHERE slot = $1`, s.slot)
	s.db.Exec(t, `DELETE FROM public.procon_snapshot_progress WHERE slot = $1`, s.slot)
	s.startEngine(t)
	s.db.Exec(t, `UPDATE items SET v = 1 WHERE id = 1`)
	recs := s.env.ReadN(t, s.topic("items"), 11, time.Minute)
	reads := 0
	for _, ev := range decode(t, recs) {
		if ev.op() == "r" {
			reads++
		}
	}
	if reads != 10 {
		t.Errorf("%d snapshot rows, want the 10 of the one initial snapshot: the moved progress was not read", reads)
	}
}
