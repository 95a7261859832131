package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/snapshot"
	"github.com/procon-cdc/procon/test/testenv"
)

// The tests of this file treat the signal table (and the progress table) as written by a role
// that may not be trusted: whatever it writes, procon-cdc runs no SQL of its own choosing, reads
// nothing but the named table's rows, and keeps streaming.

// logBuffer keeps an engine's log lines for a test to search, and copies them to the test's log.
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startEngineLogged is startEngine keeping the log.
func (s *setup) startEngineLogged(t *testing.T) (*engineRun, *logBuffer) {
	t.Helper()
	logs := &logBuffer{t: t}
	s.requireMessages(t)
	ctx, cancel := context.WithCancel(context.Background())
	e, err := engine.New(ctx, s.cfg(t), slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		cancel()
		t.Fatalf("engine.New: %v", err)
	}
	r := &engineRun{e: e, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r, logs
}

// insertSignal writes an execute-snapshot signal straight into the signal table, as any role
// allowed to write it could, and returns the id of the snapshot it asks for.
func (s *setup) insertSignal(t *testing.T, id string, tables []string, filters map[string]string) string {
	t.Helper()
	type cond struct {
		DataCollection string `json:"data-collection"`
		Filter         string `json:"filter"`
	}
	req := struct {
		DataCollections []string `json:"data-collections"`
		Type            string   `json:"type"`
		Conditions      []cond   `json:"additional-conditions,omitempty"`
	}{DataCollections: tables, Type: "incremental"}
	for _, table := range tables {
		if f, ok := filters[table]; ok {
			req.Conditions = append(req.Conditions, cond{table, f})
		}
	}
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	s.db.Exec(t, `INSERT INTO public.procon_signal (id, type, data) VALUES ($1, 'execute-snapshot', $2)`, id, string(data))
	return "signal:" + id
}

// outcome is what the progress table says of a snapshot (relation "") or of one of its tables.
type outcome struct{ status, reason string }

func (s *setup) outcome(t *testing.T, id, relation string) outcome {
	t.Helper()
	var o outcome
	var reason *string
	err := s.db.Pool.QueryRow(context.Background(), `SELECT status, to_jsonb(p) ->> 'error' FROM procon.procon_snapshot_progress p
		WHERE slot = $1 AND snapshot = $2 AND relation = $3 ORDER BY part LIMIT 1`, s.slot, id, relation).Scan(&o.status, &reason)
	if err != nil {
		return outcome{}
	}
	if reason != nil {
		o.reason = *reason
	}
	return o
}

// waitEnded waits until a snapshot is recorded with a status other than running.
func (s *setup) waitEnded(t *testing.T, id string, timeout time.Duration) outcome {
	t.Helper()
	var o outcome
	testenv.WaitFor(t, timeout, "snapshot "+id+" to end", func() (bool, error) {
		o = s.outcome(t, id, "")
		return o.status != "" && o.status != "running", nil
	})
	return o
}

// topicValues returns the values of every record of a table's topic.
func (s *setup) topicValues(t *testing.T, table string) []string {
	t.Helper()
	n, _ := s.endOffsets(t, s.topic(table))
	var out []string
	for _, r := range s.env.ReadN(t, s.topic(table), int(n), time.Minute) {
		out = append(out, string(r.Value))
	}
	return out
}

// TestSnapshotFilterRefused sends execute-snapshot signals whose filters try to read other
// relations, run functions that are not built in, sleep, escape the parentheses around the
// filter or end the statement. Each is refused before anything of it runs: the snapshot is
// recorded as refused with the reason naming the table and what was refused, nothing is
// emitted, the other tables of the same signal are read, and streaming goes on.
func TestSnapshotFilterRefused(t *testing.T) {
	s := newSetup(t, `
		public.items: {}
		public.others: {}
		public.nokey: {keyless: true}`, `
snapshot:
  chunk_size: 5
  signal_table: public.procon_signal`)
	createItems(t, s, "items", 20)
	createItems(t, s, "others", 20)
	s.db.Exec(t, `CREATE TABLE nokey (id int, v int)`)
	// A role that can write the signal table may own functions, operators and domains.
	s.db.Exec(t, `CREATE FUNCTION public.procon_test_definer() RETURNS boolean LANGUAGE sql SECURITY DEFINER AS 'SELECT true'`)
	s.db.Exec(t, `CREATE FUNCTION public.procon_test_eq(int, int) RETURNS boolean LANGUAGE sql AS 'SELECT $1 = $2'`)
	s.db.Exec(t, `CREATE OPERATOR public.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = public.procon_test_eq)`)
	s.db.Exec(t, `CREATE DOMAIN public.procon_test_domain AS int CHECK (public.procon_test_definer())`)
	s.runEngine(t)
	s.waitSnapshot(t, "initial", "done", time.Minute)

	attacks := []struct{ name, filter, reason string }{
		{"issue", `false) UNION ALL SELECT 1, rolname||':'||rolpassword FROM pg_authid --`, "--"},
		{"union", `false) UNION ALL SELECT 1, 0, rolname||':'||rolpassword FROM pg_authid WHERE (true`, "UNION"},
		{"exists", `EXISTS (SELECT 1 FROM pg_authid WHERE rolpassword IS NOT NULL)`, "subquery"},
		{"exists-no-relation", `EXISTS (SELECT 1)`, "subquery"},
		{"scalar-subquery", `(SELECT true)`, "subquery"},
		{"cte", `id IN (WITH x AS (SELECT 1) SELECT * FROM x)`, "subquery"},
		{"sleep", `pg_sleep(1000) IS NOT NULL`, "pg_sleep"},
		{"definer", `public.procon_test_definer()`, "procon_test_definer"},
		{"operator", `v OPERATOR(public.===) 0`, "==="},
		{"domain", `v = 0::public.procon_test_domain`, "domain"},
		{"srf", `generate_series(1, 2) > 0`, "set-returning"},
		{"aggregate", `count(*) > 0`, "aggregate"},
		{"window", `row_number() OVER () > 0`, "window"},
		{"table-to-xml", `length(table_to_xml('pg_authid', true, false, '')::text) > 0`, "table_to_xml"},
		{"setting", `current_setting('server_version') <> ''`, "current_setting"},
		{"parameter", `id = $1`, "$1"},
		{"semicolon", `true; SELECT 1`, ";"},
		{"block-comment", `/* x */ true`, "/*"},
		{"order-by", `true) ORDER BY (1`, "ORDER BY"},
		{"limit", `true) LIMIT (1`, "LIMIT"},
	}
	ids := map[string]string{}
	for _, a := range attacks {
		ids[a.name] = s.insertSignal(t, "attack-"+a.name, []string{"public.items"}, map[string]string{"public.items": a.filter})
	}
	// One signal for two tables: the refused filter stops only its own table.
	both := s.insertSignal(t, "attack-both", []string{"public.items", "public.others"},
		map[string]string{"public.items": `EXISTS (SELECT 1 FROM pg_authid)`, "public.others": `id <= 5`})
	// A filter that closes the parentheses around it only ever filters the table's rows: the
	// key bounds of each chunk still hold, so each row is read once.
	escape := s.insertSignal(t, "escape", []string{"public.others"}, map[string]string{"public.others": `true) OR (true`})
	// A table without a key cannot be read between watermarks.
	nokey := s.insertSignal(t, "nokey", []string{"public.nokey"}, nil)
	// A filter that fails while it is read ends its table; the signal's other tables are read.
	divide := s.insertSignal(t, "divide", []string{"public.items", "public.others"},
		map[string]string{"public.items": `1 / (id - 7) > 0`, "public.others": `id <= 5`})

	for _, a := range attacks {
		o := s.waitEnded(t, ids[a.name], time.Minute)
		if o.status != "refused" || !strings.Contains(o.reason, "public.items") || !strings.Contains(o.reason, a.reason) {
			t.Errorf("%s (%s): outcome %+v, want refused naming public.items and %q", a.name, a.filter, o, a.reason)
		}
		if tbl := s.outcome(t, ids[a.name], "public.items"); tbl.status != "refused" || !strings.Contains(tbl.reason, a.reason) {
			t.Errorf("%s: the table's outcome is %+v, want refused with %q", a.name, tbl, a.reason)
		}
	}
	if o := s.waitEnded(t, both, time.Minute); o.status != "failed" || !strings.Contains(o.reason, "public.items") {
		t.Errorf("two tables, one filter refused: outcome %+v, want failed naming public.items", o)
	}
	if tbl := s.outcome(t, both, "public.items"); tbl.status != "refused" {
		t.Errorf("two tables: public.items is %+v, want refused", tbl)
	}
	if tbl := s.outcome(t, both, "public.others"); tbl.status != "done" {
		t.Errorf("two tables: public.others is %+v, want done", tbl)
	}
	if o := s.waitEnded(t, escape, time.Minute); o.status != "done" {
		t.Errorf("true) OR (true: outcome %+v, want done", o)
	}
	if o := s.waitEnded(t, divide, time.Minute); o.status != "failed" || !strings.Contains(o.reason, "public.items") || !strings.Contains(o.reason, "division by zero") {
		t.Errorf("division by zero: outcome %+v, want failed naming public.items and the error", o)
	}
	if tbl := s.outcome(t, divide, "public.others"); tbl.status != "done" {
		t.Errorf("division by zero: public.others is %+v, want done", tbl)
	}
	if o := s.waitEnded(t, nokey, time.Minute); o.status != "refused" || !strings.Contains(o.reason, "public.nokey has no key") {
		t.Errorf("a table without a key: outcome %+v, want refused", o)
	}
	// procon-cdc status says why.
	if out := s.proconCmd(t, "status"); !strings.Contains(out, "signal:attack-exists refused: the filter of public.items is refused: it has a subquery") {
		t.Errorf("procon-cdc status does not say why a snapshot was refused:\n%s", out)
	}

	// Streaming goes on.
	s.db.Exec(t, `INSERT INTO items VALUES (1000, 0, 'after')`)
	testenv.WaitFor(t, time.Minute, "the insert after the signals to be streamed", func() (bool, error) {
		for _, v := range s.topicValues(t, "items") {
			if strings.Contains(v, `"pad":"after"`) {
				return true, nil
			}
		}
		return false, nil
	})
	for _, v := range s.topicValues(t, "items") {
		if strings.Contains(v, "SCRAM-SHA-256") || strings.Contains(v, "md5") || strings.Contains(v, "procon:") {
			t.Fatalf("a record carries pg_authid's data: %s", v)
		}
	}
	// items: nothing (no row before id 7, where the division fails, matches that filter).
	if inc := incrementalRows(t, s, "items"); len(inc) != 0 {
		t.Errorf("%d rows of items were emitted by refused or failed snapshots: %v", len(inc), inc)
	}
	// others: ids 1-5 from the two two-table signals, ids 1-20 once each from the escaping one.
	inc := incrementalRows(t, s, "others")
	for id := int64(1); id <= 20; id++ {
		want := 1
		if id <= 5 {
			want = 3
		}
		if inc[id] != want {
			t.Errorf("others: key %d has %d incremental rows, want %d (all: %v)", id, inc[id], want, inc)
		}
	}
	if len(inc) != 20 {
		t.Errorf("others: %d keys have incremental rows, want 20: %v", len(inc), inc)
	}
}

// TestSnapshotFilterExact runs an incremental snapshot with a filter that uses columns,
// operators, built-in functions, IN and OR over several chunks, and checks that exactly the
// matching rows are emitted, once each.
func TestSnapshotFilterExact(t *testing.T) {
	s := newSetup(t, `public.items: {}`, `
snapshot:
  chunk_size: 7
  signal_table: public.procon_signal`)
	createItems(t, s, "items", 100)
	s.runEngine(t)
	s.waitSnapshot(t, "initial", "done", time.Minute)
	filter := `id % 3 = 0 AND length(pad) = 32 AND upper(pad) <> '' AND v >= 0 OR id IN (1, 2) OR id BETWEEN 98 AND 99 AND now() > '2000-01-01'::timestamptz`
	id := s.insertSignal(t, "exact", []string{"public.items"}, map[string]string{"public.items": filter})
	if o := s.waitEnded(t, id, time.Minute); o.status != "done" {
		t.Fatalf("outcome %+v, want done", o)
	}
	want := map[int64]int{1: 1, 2: 1, 98: 1, 99: 1}
	for k := int64(3); k <= 100; k += 3 {
		want[k] = 1
	}
	got := incrementalRows(t, s, "items")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("incremental rows per key:\n got %v\nwant %v", got, want)
	}
}

// TestSnapshotChunkTimeout runs an incremental snapshot whose filter makes a chunk read take
// longer than snapshot.statement_timeout: the snapshot fails with a reason naming the table,
// the chunk and the setting, streaming goes on, and the next snapshot runs.
func TestSnapshotChunkTimeout(t *testing.T) {
	s := newSetup(t, `public.items: {}`, `
snapshot:
  chunk_size: 1000
  statement_timeout: 1s
  signal_table: public.procon_signal`)
	createItems(t, s, "items", 3000)
	s.runEngine(t)
	s.waitSnapshot(t, "initial", "done", time.Minute)
	// About 20 ms of hashing per row: 20 s per chunk.
	slow := s.insertSignal(t, "slow", []string{"public.items"}, map[string]string{"public.items": `md5(repeat(pad, 300000)) <> ''`})
	o := s.waitEnded(t, slow, time.Minute)
	if o.status != "failed" || !strings.Contains(o.reason, "public.items") || !strings.Contains(o.reason, "statement_timeout") {
		t.Errorf("outcome %+v, want failed naming public.items and statement_timeout", o)
	}
	if tbl := s.outcome(t, slow, "public.items"); tbl.status != "failed" || !strings.Contains(tbl.reason, "chunk") {
		t.Errorf("the table's outcome is %+v, want failed naming the chunk", tbl)
	}
	s.db.Exec(t, `INSERT INTO items VALUES (5000, 0, 'after')`)
	fast := s.insertSignal(t, "fast", []string{"public.items"}, map[string]string{"public.items": `id <= 10`})
	if o := s.waitEnded(t, fast, time.Minute); o.status != "done" {
		t.Fatalf("the snapshot after the timeout: outcome %+v, want done", o)
	}
	streamed := false
	for _, v := range s.topicValues(t, "items") {
		streamed = streamed || strings.Contains(v, `"pad":"after"`)
	}
	if !streamed {
		t.Errorf("the insert after the timeout was not streamed")
	}
	if inc := incrementalRows(t, s, "items"); len(inc) != 10 {
		t.Errorf("%d keys have incremental rows, want the 10 of the second snapshot: %v", len(inc), inc)
	}
}

// TestSnapshotSignalFlood inserts thousands of signals in one transaction: signals are handled
// off the stream, beyond a bound they are dropped (and logged), and a change committed right
// after them is streamed at once. A signal sent once the flood is over still runs.
func TestSnapshotSignalFlood(t *testing.T) {
	s := newSetup(t, `public.items: {}`, `
snapshot:
  signal_table: public.procon_signal`)
	createItems(t, s, "items", 10)
	_, logs := s.startEngineLogged(t)
	s.waitSnapshot(t, "initial", "done", time.Minute)
	s.db.Exec(t, `INSERT INTO public.procon_signal SELECT 'flood-' || g, 'execute-snapshot',
		'{"data-collections": ["public.items"], "additional-conditions": [{"data-collection": "public.items", "filter": "id < 0"}]}'
		FROM generate_series(1, 3000) g`)
	start := time.Now()
	s.db.Exec(t, `INSERT INTO items VALUES (1000, 0, 'after-flood')`)
	testenv.WaitFor(t, 15*time.Second, "the insert after the flood to be streamed", func() (bool, error) {
		for _, v := range s.topicValues(t, "items") {
			if strings.Contains(v, `"pad":"after-flood"`) {
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("the insert after 3000 signals was streamed after %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(logs.String(), "signal dropped") {
		t.Errorf("no signal was dropped: the signal queue is not bounded")
	}
	// Once the queued signals are handled, a new one is taken.
	testenv.WaitFor(t, 2*time.Minute, "a signal after the flood to be done", func() (bool, error) {
		id := s.insertSignal(t, fmt.Sprintf("after-%d", time.Now().UnixNano()), []string{"public.items"}, nil)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			switch s.outcome(t, id, "").status {
			case "done":
				return true, nil
			case "", "running":
				time.Sleep(100 * time.Millisecond)
			default: // refused: the snapshots of the flood are still queued
				return false, nil
			}
		}
		return false, nil // dropped
	})
	// Only what the bounded queues took was recorded: at most maxQueuedSnapshots waiting
	// snapshots at any time, the rest refused.
	counts := map[string]int{}
	rows, err := s.db.Pool.Query(context.Background(), `SELECT status, count(*) FROM procon.procon_snapshot_progress
		WHERE slot = $1 AND snapshot LIKE 'signal:flood-%' AND relation = '' GROUP BY status`, s.slot)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			t.Fatal(err)
		}
		counts[status] = n
		total += n
	}
	rows.Close()
	t.Logf("the 3000 signals: %d recorded %v, the rest dropped", total, counts)
	if total > 1000 || counts["done"] > 100 {
		t.Errorf("%d signals of the flood recorded, %d snapshots run: the queues are not bounded", total, counts["done"])
	}
}

// TestSnapshotResumeRefusesRecordedFilter writes a running snapshot with a hostile filter into
// the progress table, as a role allowed to write that table could: at the next start the
// snapshot is resumed, its filter refused before it runs, and nothing is emitted.
func TestSnapshotResumeRefusesRecordedFilter(t *testing.T) {
	s := newSetup(t, `public.items: {}`, `
snapshot:
  signal_table: public.procon_signal`)
	createItems(t, s, "items", 10)
	r := s.startEngine(t)
	s.waitSnapshot(t, "initial", "done", time.Minute)
	r.stop(t)
	s.db.Exec(t, `INSERT INTO procon.procon_snapshot_progress (slot, snapshot, relation, part, kind, status)
		VALUES ($1, 'signal:planted', '', 0, 'incremental', 'running')`, s.slot)
	s.db.Exec(t, `INSERT INTO procon.procon_snapshot_progress (slot, snapshot, relation, part, kind, status, filter)
		VALUES ($1, 'signal:planted', 'public.items', 0, 'incremental', 'running', 'EXISTS (SELECT 1 FROM pg_authid)')`, s.slot)
	s.runEngine(t)
	o := s.waitEnded(t, "signal:planted", time.Minute)
	if o.status != "refused" || !strings.Contains(o.reason, "subquery") {
		t.Errorf("outcome %+v, want refused: its filter is a subquery", o)
	}
	if tbl := s.outcome(t, "signal:planted", "public.items"); tbl.status != "refused" {
		t.Errorf("the table's outcome is %+v, want refused", tbl)
	}
	if inc := incrementalRows(t, s, "items"); len(inc) != 0 {
		t.Errorf("%d rows were emitted by the planted snapshot", len(inc))
	}
}

// TestSnapshotProgressTableUpgrade opens a progress table made before the error column
// existed: the column is added, and procon-cdc status reads tables either way.
func TestSnapshotProgressTableUpgrade(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	old := strings.Replace(snapshot.InitSQL, "    error      text,\n", "", 1)
	if old == snapshot.InitSQL {
		t.Fatal("InitSQL has no error column to leave out")
	}
	db.Exec(t, old)
	db.Exec(t, `INSERT INTO procon.procon_snapshot_progress (slot, snapshot, relation, part, kind, status) VALUES ('s', 'x', '', 0, 'incremental', 'done')`)
	conn := db.Conn(t)
	if snaps, err := snapshot.ReadSnapshots(context.Background(), conn, "s"); err != nil || len(snaps) != 1 || snaps[0].Status != "done" {
		t.Fatalf("reading the old table: %v %v", snaps, err)
	}
	store, err := snapshot.OpenStore(context.Background(), db.DSN, "s", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.SetOutcome(context.Background(), "x", snapshot.StatusFailed, "why"); err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.ReadSnapshots(context.Background(), conn, "s")
	if err != nil || len(snaps) != 1 || snaps[0].Status != "failed" || snaps[0].Error != "why" {
		t.Fatalf("after the upgrade: %+v %v", snaps, err)
	}
}
