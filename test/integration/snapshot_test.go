package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/test/testenv"
)

// itemWriter changes rows of "items"-shaped tables (id bigint PRIMARY KEY, v int NOT NULL, pad
// text) while a snapshot runs: every committed update sets v = v + 1, deletes remove rows,
// inserts add new ids. The checks below rely on that: after a row's snapshot event, its next
// update must carry exactly v + 1, so a gap or a duplicate at the seam shows.
type itemWriter struct {
	pool   *pgxpool.Pool
	rnd    *rand.Rand // used by run only
	tables []string
	maxID  map[string]*atomic.Int64
	ops    atomic.Int64
}

func createItems(t *testing.T, s *setup, table string, rows int) {
	t.Helper()
	s.db.Exec(t, fmt.Sprintf(`CREATE TABLE %s (id bigint PRIMARY KEY, v int NOT NULL, pad text)`, table))
	if rows > 0 {
		s.db.Exec(t, fmt.Sprintf(`INSERT INTO %s SELECT g, 0, md5(g::text) FROM generate_series(1, %d) g`, table, rows))
	}
	s.db.Exec(t, "ANALYZE "+table)
}

func newItemWriter(t *testing.T, s *setup, rows map[string]int) *itemWriter {
	w := &itemWriter{pool: s.db.Pool, rnd: testenv.Rand(t, 1), maxID: map[string]*atomic.Int64{}}
	for table, n := range rows {
		w.tables = append(w.tables, table)
		w.maxID[table] = &atomic.Int64{}
		w.maxID[table].Store(int64(n))
	}
	return w
}

// run commits small transactions until ctx ends: mostly updates, some deletes and inserts,
// some rolled back. ctx only says when to stop, between transactions: cancelling a COMMIT in
// flight would leave its outcome unknown to the test, which reads the table as the truth.
func (w *itemWriter) run(stop context.Context) {
	ctx := context.Background()
	for stop.Err() == nil {
		table := w.tables[w.rnd.IntN(len(w.tables))]
		maxID := w.maxID[table]
		tx, err := w.pool.Begin(ctx)
		if err != nil {
			continue
		}
		for range 1 + w.rnd.IntN(3) {
			id := 1 + w.rnd.Int64N(maxID.Load())
			switch r := w.rnd.IntN(20); {
			case r == 0:
				_, err = tx.Exec(ctx, "DELETE FROM "+table+" WHERE id = $1", id)
			case r == 1:
				_, err = tx.Exec(ctx, "INSERT INTO "+table+" VALUES ($1, 0, 'new')", maxID.Add(1))
			default:
				_, err = tx.Exec(ctx, "UPDATE "+table+" SET v = v + 1 WHERE id = $1", id)
			}
			if err != nil {
				break
			}
		}
		if err != nil || w.rnd.IntN(10) == 0 {
			_ = tx.Rollback(context.Background())
			continue
		}
		if tx.Commit(ctx) == nil {
			w.ops.Add(1)
		}
	}
}

// itemEvent is the part of a change event the checks read.
type itemEvent struct {
	Op     string
	After  *struct{ ID, V int64 }
	Before *struct{ ID, V int64 }
	Source struct {
		Snapshot string
		Table    string
		TxID     *int64
		LSN      *int64
	}
}

// itemState is what the events of one key say so far.
type itemState struct {
	hist    []string // the key's last events, for failure messages
	v       int64
	exists  bool
	seen    bool
	reads   int
	lastOp  string
	lastSeq int
}

// checkItems reads a table's topic until every row of the table (the ground truth, read at
// the end) is matched by its key's last event, and every key absent from the table ends with
// a delete and its tombstone. Along the way it checks each key's history: an update must
// carry exactly the previous version + 1 (no gap, no duplicate), a snapshot row must never
// be older than what the key's events said before it, and (unless repeats are allowed, after
// a crash) a key gets at most one snapshot row. It returns the markers seen, in order.
func checkItems(t *testing.T, s *setup, table string, allowRepeats bool) (markers map[string]int) {
	t.Helper()
	return checkItemEvents(t, s, table, checkOpts{repeats: allowRepeats})
}

// checkItemsAfterStream is checkItems for a pipeline without an initial snapshot: a key's
// history may start with a streamed update or delete.
func checkItemsAfterStream(t *testing.T, s *setup, table string) {
	t.Helper()
	checkItemEvents(t, s, table, checkOpts{repeats: true, unseen: true})
}

type checkOpts struct {
	repeats bool // records may repeat (after a crash)
	unseen  bool // a key's first event may be a streamed update or delete (no initial snapshot)
}

func checkItemEvents(t *testing.T, s *setup, table string, o checkOpts) (markers map[string]int) {
	t.Helper()
	allowRepeats := o.repeats
	truth := map[int64]int64{}
	rows, err := s.db.Pool.Query(context.Background(), "SELECT id, v FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, v int64
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		truth[id] = v
	}
	rows.Close()
	state := map[int64]*itemState{}
	markers = map[string]int{}
	var problem error
	var failKey int64
	fail := func(format string, args ...any) {
		if problem == nil {
			problem = fmt.Errorf(format, args...)
			failKey = args[0].(int64)
		}
	}
	// good counts the keys whose events end as the table says (their row, or a delete and
	// its tombstone); every key of the table and every key seen must be good.
	good, extra := 0, 0
	isGood := func(id int64, st *itemState) bool {
		if v, ok := truth[id]; ok {
			return st.exists && st.v == v
		}
		return !st.exists && st.lastOp == "tombstone"
	}
	topic := s.topic(table)
	nrecs, err := s.consume(topic, 5*time.Minute, func(recs []*kgo.Record) bool {
		for _, r := range recs {
			var key struct{ ID int64 }
			if err := json.Unmarshal(r.Key, &key); err != nil {
				fail("key %d: %v (%q)", int64(-1), err, r.Key)
				continue
			}
			st := state[key.ID]
			if st == nil {
				st = &itemState{}
				state[key.ID] = st
				if _, ok := truth[key.ID]; !ok {
					extra++
				}
			} else if isGood(key.ID, st) {
				good--
			}
			// Counted again once the event is applied (the loop's continue statements skip
			// that only for records the check rejects or ignores).
			wasCounted := false
			recount := func() {
				if !wasCounted && isGood(key.ID, st) {
					good++
				}
				wasCounted = true
			}
			note := func(what string) {
				if len(st.hist) == 12 {
					st.hist = st.hist[1:]
				}
				st.hist = append(st.hist, fmt.Sprintf("%s@%d", what, r.Offset))
			}
			if r.Value == nil {
				note("tombstone")
				if st.lastOp != "d" {
					fail("key %d: tombstone after %s", key.ID, st.lastOp)
				}
				st.lastOp = "tombstone"
				recount()
				continue
			}
			var ev itemEvent
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				fail("key %d: value %q: %v", key.ID, r.Value, err)
				recount()
				continue
			}
			v := int64(-1)
			if ev.After != nil {
				v = ev.After.V
			}
			note(fmt.Sprintf("%s(v=%d,%s)", ev.Op, v, ev.Source.Snapshot))
			switch ev.Op {
			case "r":
				markers[ev.Source.Snapshot]++
				st.reads++
				switch {
				case st.exists && ev.After.V < st.v:
					fail("key %d: snapshot row at v=%d after v=%d (a snapshot row older than the stream)", key.ID, ev.After.V, st.v)
				case !allowRepeats && st.reads > 1:
					fail("key %d: %d snapshot rows", key.ID, st.reads)
				case !allowRepeats && st.seen && st.lastOp != "r":
					fail("key %d: snapshot row after a streamed %s", key.ID, st.lastOp)
				}
				st.v, st.exists = ev.After.V, true
			case "c":
				if st.exists && !allowRepeats {
					fail("key %d: insert of an existing row", key.ID)
				}
				st.v, st.exists = ev.After.V, true
			case "u":
				switch {
				case o.unseen && !st.seen:
				case !st.exists:
					fail("key %d: update of a row never seen (snapshot missing it?)", key.ID)
				case ev.After.V == st.v+1:
				case allowRepeats && ev.After.V <= st.v:
					recount()
					continue // a replay after a crash
				default:
					fail("key %d: update to v=%d after v=%d (a lost or repeated change at the seam)", key.ID, ev.After.V, st.v)
				}
				st.v, st.exists = ev.After.V, true
			case "d":
				if !st.exists && !allowRepeats && !(o.unseen && !st.seen) {
					fail("key %d: delete of a row never seen", key.ID)
				}
				st.exists = false
			}
			st.seen, st.lastOp = true, ev.Op
			recount()
		}
		return problem != nil || good == len(truth)+extra
	})
	if problem != nil {
		t.Fatalf("%s: %v; the key's last events: %v", topic, problem, state[failKey].hist)
	}
	if err != nil {
		missing := 0
		for id, v := range truth {
			if st := state[id]; st == nil || !st.exists || st.v != v {
				if missing < 5 {
					t.Logf("key %d: table v=%d, events say %+v", id, v, st)
				}
				missing++
			}
		}
		t.Fatalf("%s: %v after %d records: %d keys do not match the table", topic, err, nrecs, missing)
	}
	t.Logf("%s: %d records, %d keys in the table, every key's last event matches it; markers %v", topic, nrecs, len(truth), markers)
	return markers
}

// consume reads topic from the beginning, handing each fetched batch to fn (and keeping
// none), until fn reports done or timeout. It returns the number of records read.
func (s *setup) consume(topic string, timeout time.Duration, fn func([]*kgo.Record) bool) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.env.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n := 0
	if fn(nil) {
		return 0, nil
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return n, errors.New("timed out")
		}
		for _, fe := range fs.Errors() {
			return n, fe.Err
		}
		recs := fs.Records()
		n += len(recs)
		if fn(recs) {
			return n, nil
		}
	}
}

// checkpointUntilSlot runs CHECKPOINT every half second until the slot exists. Creating a
// slot while transactions run waits for the server to log the running transactions, which
// it does every 15 s and at each checkpoint; this keeps that wait short.
func (s *setup) checkpointUntilSlot(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_, _ = s.db.Pool.Exec(ctx, "CHECKPOINT")
			}
		}
	}()
	return func() { cancel(); <-done }
}

// snapshotStatus reads a snapshot's status from the progress table.
func (s *setup) snapshotStatus(t *testing.T, id string) string {
	t.Helper()
	var status string
	err := s.db.Pool.QueryRow(context.Background(), `SELECT status FROM procon.procon_snapshot_progress
		WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, id).Scan(&status)
	if err != nil {
		return ""
	}
	return status
}

func (s *setup) waitSnapshot(t *testing.T, id, status string, timeout time.Duration) {
	t.Helper()
	testenv.WaitFor(t, timeout, "snapshot "+id+" to be "+status, func() (bool, error) {
		return s.snapshotStatus(t, id) == status, nil
	})
}

// TestSnapshotInitial takes the initial snapshot of several tables (one large, one small, one
// empty) while a writer updates, deletes and inserts rows of those same tables, then checks
// that every key's last event equals its row, that the seam between snapshot and stream has
// neither a gap nor a duplicate, and Debezium's markers.
func TestSnapshotInitial(t *testing.T) {
	big := 2_000_000
	s := newSetup(t, `
		public.big: {}
		public.small: {}
		public.empty: {}`, `
snapshot:
  chunk_size: 5000
  parallelism: 4`)
	t0 := time.Now()
	createItems(t, s, "big", big)
	createItems(t, s, "small", 300)
	createItems(t, s, "empty", 0)
	t.Logf("tables filled in %s", time.Since(t0))
	w := newItemWriter(t, s, map[string]int{"big": big, "small": 300})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(ctx) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	start := time.Now()
	stopCheckpoints := s.checkpointUntilSlot(t)
	s.runEngine(t)
	stopCheckpoints()
	t.Logf("slot created in %s while the writer ran", time.Since(start))
	s.waitSnapshot(t, "initial", "done", 5*time.Minute)
	t.Logf("initial snapshot of %d rows done in %s, %d writer transactions so far", big+300, time.Since(start), w.ops.Load())
	// Keep writing a moment into streaming, then stop.
	before := w.ops.Load()
	testenv.WaitFor(t, time.Minute, "the writer to commit while streaming", func() (bool, error) { return w.ops.Load() > before+200, nil })
	stop()
	wg.Wait()

	// Every snapshot row is in Kafka before the first streamed one, so the check, which reads
	// past them to match every key, counts every marker.
	t0 = time.Now()
	defer func() { t.Logf("checked in %s", time.Since(t0)) }()
	mb := checkItems(t, s, "big", false)
	ms := checkItems(t, s, "small", false)
	if got := s.countIfExists(t, s.topic("empty")); got != 0 {
		t.Errorf("empty: %d records, want 0", got)
	}
	if mb["first"] != 1 || mb["first_in_data_collection"] != 0 || mb["last_in_data_collection"] != 1 || mb["last"] != 0 {
		t.Errorf("big markers %v: want first=1, last_in_data_collection=1", mb)
	}
	if ms["first"] != 0 || ms["first_in_data_collection"] != 1 || ms["last"] != 1 || ms["last_in_data_collection"] != 0 {
		t.Errorf("small markers %v: want first_in_data_collection=1, last=1", ms)
	}
}

// proconCmd runs a procon-cdc subcommand with the test's configuration and returns its output.
func (s *setup) proconCmd(t *testing.T, cmd string, args ...string) string {
	t.Helper()
	path := writeConfig(t, s.config)
	out, err := exec.Command(testenv.ProconBinary(t), append([]string{cmd, "--config", path}, args...)...).Output()
	if err != nil {
		t.Fatalf("procon-cdc %s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// requestSnapshot runs procon-cdc snapshot and returns the snapshot's id.
func (s *setup) requestSnapshot(t *testing.T, args ...string) string {
	t.Helper()
	out := s.proconCmd(t, "snapshot", args...)
	f := strings.Fields(out)
	if len(f) < 2 || f[0] != "signal" {
		t.Fatalf("procon-cdc snapshot printed %q", out)
	}
	return "signal:" + f[1]
}

// incrementalRows counts the incremental snapshot rows of a table's topic per key.
func incrementalRows(t *testing.T, s *setup, table string) map[int64]int {
	t.Helper()
	n, _ := s.endOffsets(t, s.topic(table))
	recs := s.env.ReadN(t, s.topic(table), int(n), time.Minute)
	out := map[int64]int{}
	for _, r := range recs {
		if r.Value == nil {
			continue
		}
		var ev itemEvent
		var key struct{ ID int64 }
		if json.Unmarshal(r.Value, &ev) != nil || json.Unmarshal(r.Key, &key) != nil {
			t.Fatalf("record %q", r.Value)
		}
		if ev.Op == "r" && ev.Source.Snapshot == "incremental" {
			if ev.Source.TxID != nil || ev.Source.LSN != nil {
				t.Fatalf("incremental row with txId/lsn: %s", r.Value)
			}
			out[key.ID]++
		}
	}
	return out
}

// TestSnapshotIncremental requests incremental snapshots with procon-cdc snapshot while a
// writer changes the table and the stream goes on: the whole table, then only the rows a
// WHERE condition selects. Every key's last event still equals its row, no update is lost
// or repeated around the snapshot rows, and no snapshot row is older than the stream.
func TestSnapshotIncremental(t *testing.T) {
	rows := 50_000
	s := newSetup(t, `public.items: {}`, `
snapshot:
  chunk_size: 1000
  signal_table: public.procon_signal`)
	createItems(t, s, "items", rows)
	s.runEngine(t)
	s.waitSnapshot(t, "initial", "done", 2*time.Minute)
	w := newItemWriter(t, s, map[string]int{"items": rows})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(ctx) }()
	t.Cleanup(func() { stop(); wg.Wait() })

	id := s.requestSnapshot(t, "--table", "public.items")
	s.waitSnapshot(t, id, "done", 3*time.Minute)
	t.Logf("incremental snapshot of %d rows done, %d writer transactions so far", rows, w.ops.Load())
	// procon-cdc status shows both snapshots, done, with their rows.
	var out struct {
		Postgres struct {
			Slot      struct{ Exists bool }
			Snapshots []struct {
				ID, Kind, Status string
				Tables           []struct {
					Relation string
					Rows     int64
					Done     bool
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(s.proconCmd(t, "status", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	st := out.Postgres
	if !st.Slot.Exists || len(st.Snapshots) != 2 || st.Snapshots[0].ID != "initial" || st.Snapshots[1].ID != id ||
		st.Snapshots[1].Status != "done" || st.Snapshots[1].Tables[0].Rows < int64(rows)*9/10 || !st.Snapshots[1].Tables[0].Done {
		t.Fatalf("status: %+v", st)
	}
	if text := s.proconCmd(t, "status"); !strings.Contains(text, id) || !strings.Contains(text, "public.items") {
		t.Fatalf("status:\n%s", text)
	}
	where := s.requestSnapshot(t, "--table", "public.items", "--where", "id % 7 = 0")
	s.waitSnapshot(t, where, "done", 3*time.Minute)
	stop()
	wg.Wait()

	checkItems(t, s, "items", true)
	inc := incrementalRows(t, s, "items")
	total, multiple, outside := 0, 0, 0
	for id, n := range inc {
		total += n
		if id%7 != 0 && n > 1 {
			outside++
		}
		if n > 2 {
			multiple++
		}
	}
	// Each key gets at most one row per snapshot (none when a streamed change superseded it):
	// keys outside the condition at most one, keys inside it at most two.
	if outside > 0 || multiple > 0 {
		t.Fatalf("incremental rows: %d keys outside the condition have two, %d keys more than two", outside, multiple)
	}
	if total < rows/2 {
		t.Fatalf("only %d incremental rows for %d rows", total, rows)
	}
	t.Logf("%d incremental rows over %d keys", total, len(inc))
}

// snapshotRows reads a snapshot's acknowledged rows from the progress table.
func (s *setup) snapshotRows(t *testing.T, id string) int64 {
	t.Helper()
	var n int64
	_ = s.db.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(rows_done), 0) FROM procon.procon_snapshot_progress
		WHERE slot = $1 AND snapshot = $2 AND relation <> ''`, s.slot, id).Scan(&n)
	return n
}

// readCount counts the snapshot rows (op r) of a table's topic.
func readCount(t *testing.T, s *setup, table string) int {
	t.Helper()
	reads := 0
	for _, n := range snapshotMarkers(t, s, table) {
		reads += n
	}
	return reads
}

// snapshotMarkers counts the snapshot rows of a table's topic by source.snapshot.
func snapshotMarkers(t *testing.T, s *setup, table string) map[string]int {
	t.Helper()
	n, _ := s.endOffsets(t, s.topic(table))
	recs := s.env.ReadN(t, s.topic(table), int(n), 2*time.Minute)
	out := map[string]int{}
	for _, r := range recs {
		if r.Value == nil || !strings.Contains(string(r.Value), `"op":"r"`) {
			continue
		}
		var ev itemEvent
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		out[ev.Source.Snapshot]++
	}
	return out
}

// noRace fails the test if the race detector of the procon-cdc binary reported a race.
func noRace(t *testing.T, p *process) {
	t.Helper()
	if strings.Contains(p.output(), "WARNING: DATA RACE") {
		t.Errorf("procon-cdc reported a data race:\n%s", p.output())
	}
}

// TestSnapshotInitialKill9 SIGKILLs procon-cdc in the middle of its initial snapshot while a
// writer changes the table, restarts it, and checks that the snapshot resumed after the last
// acknowledged chunk (its rest read between watermarks while streaming) and that the final
// state is exact, with no snapshot row older than the stream.
func TestSnapshotInitialKill9(t *testing.T) {
	rows := 300_000
	s := newSetup(t, `public.items: {}`, `
snapshot:
  chunk_size: 2000
  parallelism: 2`)
	s.env.RequireServer(t, engine.MessagesSince, "the interrupted initial snapshot resumes between watermarks, which are logical decoding messages")
	createItems(t, s, "items", rows)
	w := newItemWriter(t, s, map[string]int{"items": rows})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })

	s.config = strings.Replace(s.config, "kafka:\n", "kafka:\n  max_buffered_records: 4000\n", 1)
	p := s.startProcess(t)
	s.waitSlot(t)
	wg.Add(1)
	go func() { defer wg.Done(); w.run(ctx) }()
	testenv.WaitFor(t, 3*time.Minute, "a third of the snapshot to be acknowledged", func() (bool, error) {
		return s.snapshotRows(t, "initial") > int64(rows/3), nil
	})
	p.kill9(t)
	if st := s.snapshotStatus(t, "initial"); st != "running" {
		t.Fatalf("the snapshot is %q after the kill, want running (it finished too soon to test a crash)", st)
	}
	acked := s.snapshotRows(t, "initial")
	t.Logf("killed with %d of %d rows acknowledged", acked, rows)
	noRace(t, p)

	p = s.startProcess(t)
	s.waitSnapshot(t, "initial", "done", 5*time.Minute)
	if !strings.Contains(p.output(), "remaining ranges are read while streaming") {
		t.Errorf("the restart did not resume the interrupted snapshot in the stream:\n%s", p.output())
	}
	noRace(t, p)
	stop()
	wg.Wait()
	// Keys of the ranges read after the restart may see streamed changes (from the consistent
	// point on) before their snapshot row, which is never older than them.
	checkItemsAfterStream(t, s, "items")
	// Resumed, not restarted: rows read again are the chunks in flight at the kill.
	if reads := readCount(t, s, "items"); reads > rows+rows/5 {
		t.Errorf("%d snapshot rows for %d rows: the snapshot started over instead of resuming", reads, rows)
	} else {
		t.Logf("%d snapshot rows for %d rows", reads, rows)
	}
}

// TestSnapshotIncrementalKill9 SIGKILLs procon-cdc in the middle of an incremental snapshot
// while a writer changes the table, restarts it, and checks that the snapshot went on from
// its last acknowledged chunk and that the final state is exact.
func TestSnapshotIncrementalKill9(t *testing.T) {
	rows := 100_000
	s := newSetup(t, `public.items: {}`, `
snapshot:
  mode: no_data
  chunk_size: 500
  signal_table: public.procon_signal`)
	createItems(t, s, "items", rows)
	p := s.startProcess(t)
	s.waitSlot(t)
	w := newItemWriter(t, s, map[string]int{"items": rows})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	wg.Add(1)
	go func() { defer wg.Done(); w.run(ctx) }()

	id := s.requestSnapshot(t, "--table", "public.items")
	testenv.WaitFor(t, 3*time.Minute, "a third of the incremental snapshot to be acknowledged", func() (bool, error) {
		return s.snapshotRows(t, id) > int64(rows/3), nil
	})
	p.kill9(t)
	if st := s.snapshotStatus(t, id); st != "running" {
		t.Fatalf("the snapshot is %q after the kill, want running", st)
	}
	t.Logf("killed with %d of %d rows acknowledged", s.snapshotRows(t, id), rows)
	noRace(t, p)
	p = s.startProcess(t)
	s.waitSnapshot(t, id, "done", 5*time.Minute)
	noRace(t, p)
	stop()
	wg.Wait()
	checkItemsAfterStream(t, s, "items")
	inc := incrementalRows(t, s, "items")
	total, twice := 0, 0
	for _, n := range inc {
		total += n
		if n > 1 {
			twice++
		}
	}
	// At most the chunks in flight at the kill are read twice.
	if twice > 5000 {
		t.Errorf("%d keys have two incremental rows: the snapshot started over instead of resuming", twice)
	}
	t.Logf("%d incremental rows, %d keys twice", total, twice)
}

func (s *setup) withMode(mode string) *setup {
	c := *s
	c.config = strings.Replace(s.config, "snapshot:\n  mode: initial\n", "snapshot:\n  mode: "+mode+"\n", 1)
	return &c
}

func (s *setup) waitRecords(t *testing.T, table string, n int64) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, fmt.Sprintf("%d records in %s", n, table), func() (bool, error) {
		return s.countIfExists(t, s.topic(table)) >= n, nil
	})
}

// TestSnapshotModes checks what each snapshot.mode does on a new slot, on a restart (the slot
// exists and its snapshot is done), and for the modes where it matters, on an existing slot.
func TestSnapshotModes(t *testing.T) {
	const rows = 1000
	newModeSetup := func(t *testing.T) *setup {
		s := newSetup(t, `public.items: {}`, "snapshot:\n  mode: initial\n  chunk_size: 300\n")
		createItems(t, s, "items", rows)
		return s
	}
	insert := func(s *setup, id int) { s.db.Exec(t, "INSERT INTO items VALUES ($1, 0, 'x')", id) }

	t.Run("initial", func(t *testing.T) {
		s := newModeSetup(t)
		r := s.startEngine(t)
		s.waitSnapshot(t, "initial", "done", time.Minute)
		insert(s, rows+1)
		s.waitRecords(t, "items", rows+1)
		r.stop(t)
		insert(s, rows+2) // while stopped: streamed at restart, no new snapshot
		s.startEngine(t)
		s.waitRecords(t, "items", rows+2)
		if got := readCount(t, s, "items"); got != rows {
			t.Fatalf("%d snapshot rows after a restart, want %d (one snapshot)", got, rows)
		}
		checkItems(t, s, "items", false)
	})

	for _, mode := range []string{"no_data", "never"} {
		t.Run(mode, func(t *testing.T) {
			s := newModeSetup(t).withMode(mode)
			r := s.startEngine(t)
			s.waitSlot(t)
			insert(s, rows+1)
			s.waitRecords(t, "items", 1)
			r.stop(t)
			insert(s, rows+2)
			s.startEngine(t)
			s.waitRecords(t, "items", 2)
			if got := readCount(t, s, "items"); got != 0 {
				t.Fatalf("%d snapshot rows with snapshot.mode %s, want 0", got, mode)
			}
		})
	}

	t.Run("initial_only", func(t *testing.T) {
		s := newModeSetup(t).withMode("initial_only")
		s.startEngine(t).exited(t, time.Minute) // snapshot, then stop: no streaming
		if st := s.snapshotStatus(t, "initial"); st != "done" {
			t.Fatalf("snapshot %q, want done", st)
		}
		insert(s, rows+1)
		s.startEngine(t).exited(t, time.Minute) // done already: nothing to do
		if n := s.countIfExists(t, s.topic("items")); n != rows {
			t.Fatalf("%d records after initial_only runs, want the %d snapshot rows only", n, rows)
		}
		// The slot stayed at the snapshot's consistent point: switching to initial streams
		// what happened since, with no gap and no new snapshot.
		s = s.withMode("initial")
		s.config = strings.Replace(s.config, "mode: initial_only", "mode: initial", 1)
		s.startEngine(t)
		s.waitRecords(t, "items", rows+1)
		if got := readCount(t, s, "items"); got != rows {
			t.Fatalf("%d snapshot rows, want %d", got, rows)
		}
		checkItems(t, s, "items", false)
	})

	t.Run("when_needed", func(t *testing.T) {
		s := newModeSetup(t).withMode("when_needed")
		r := s.startEngine(t)
		s.waitSnapshot(t, "initial", "done", time.Minute) // a new slot needs one
		insert(s, rows+1)
		s.waitRecords(t, "items", rows+1)
		r.stop(t)
		insert(s, rows+2)
		s.startEngine(t) // the slot's position is valid: no snapshot
		s.waitRecords(t, "items", rows+2)
		if got := readCount(t, s, "items"); got != rows {
			t.Fatalf("%d snapshot rows, want %d", got, rows)
		}
		// A slot whose WAL is gone (wal_status lost) is covered by snapshot.TestDecide:
		// losing it here would need max_slot_wal_keep_size on the shared server.
	})

	t.Run("always", func(t *testing.T) {
		s := newModeSetup(t).withMode("always")
		s.env.RequireServer(t, engine.MessagesSince, "always on an existing slot snapshots between watermarks, which are logical decoding messages")
		r := s.startEngine(t)
		s.waitSnapshot(t, "initial", "done", time.Minute)
		r.stop(t)
		s.db.Exec(t, "UPDATE items SET v = v + 1 WHERE id <= 10")
		s.db.Exec(t, "DELETE FROM items WHERE id = 20")
		s.startEngine(t) // existing slot: a snapshot of every table in the stream
		var id string
		testenv.WaitFor(t, time.Minute, "an always snapshot", func() (bool, error) {
			err := s.db.Pool.QueryRow(context.Background(), `SELECT snapshot FROM procon.procon_snapshot_progress
				WHERE slot = $1 AND kind = 'always' AND relation = ''`, s.slot).Scan(&id)
			return err == nil, nil
		})
		s.waitSnapshot(t, id, "done", time.Minute)
		if got := readCount(t, s, "items"); got != 2*rows-1 {
			t.Fatalf("%d snapshot rows, want %d (two snapshots, one row deleted between)", got, 2*rows-1)
		}
		checkItems(t, s, "items", true)
		if m := snapshotMarkers(t, s, "items"); m["first"] != 2 || m["last"] != 2 {
			t.Fatalf("markers %v: want first and last once per snapshot", m)
		}
	})

	t.Run("slot created, snapshot never started", func(t *testing.T) {
		// A crash between creating the slot and starting the snapshot leaves the slot and a
		// pending record: the slot must not be mistaken for one whose snapshot is done.
		s := newModeSetup(t)
		r := s.startEngine(t)
		s.waitSnapshot(t, "initial", "done", time.Minute)
		r.stop(t)
		s.db.Exec(t, `UPDATE procon.procon_snapshot_progress SET status = 'pending' WHERE slot = $1 AND relation = ''`, s.slot)
		s.db.Exec(t, `DELETE FROM procon.procon_snapshot_progress WHERE slot = $1 AND relation <> ''`, s.slot)
		s.startEngine(t)
		s.waitSnapshot(t, "initial", "done", time.Minute)
		if got := readCount(t, s, "items"); got != 2*rows {
			t.Fatalf("%d snapshot rows, want %d: the slot was recreated and snapshotted again", got, 2*rows)
		}
	})
}

// TestSnapshotTypes checks that a snapshot row renders every type exactly as the stream does:
// the same values are inserted once before the snapshot (read by it) and once after (streamed),
// and both events' after images must be equal but for the key. The database's own defaults for
// the settings that shape value text differ from pgoutput's, so a snapshot connection that did
// not pin them would fail here.
func TestSnapshotTypes(t *testing.T) {
	s := newSetup(t, `public.typed: {}`, "")
	s.db.Exec(t, fmt.Sprintf(`ALTER DATABASE %q SET TimeZone = 'Asia/Kolkata'`, s.db.Name))
	s.db.Exec(t, fmt.Sprintf(`ALTER DATABASE %q SET DateStyle = 'SQL, DMY'`, s.db.Name))
	s.db.Exec(t, fmt.Sprintf(`ALTER DATABASE %q SET IntervalStyle = 'sql_standard'`, s.db.Name))
	s.db.Exec(t, fmt.Sprintf(`ALTER DATABASE %q SET extra_float_digits = 0`, s.db.Name))
	s.db.Exec(t, fmt.Sprintf(`ALTER DATABASE %q SET bytea_output = 'escape'`, s.db.Name))
	s.db.Exec(t, `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`)
	s.db.Exec(t, `CREATE DOMAIN price AS numeric(10,2)`)
	s.db.Exec(t, `CREATE TABLE typed (
		id int PRIMARY KEY, i2 smallint, i8 bigint, f4 real, f8 double precision, n numeric(12,3), nv numeric,
		m money, b boolean, t text, vc varchar(10), c char(5), j json, jb jsonb, u uuid, by bytea,
		d date, tm time, tm3 time(3), ttz timetz, ts timestamp, ts3 timestamp(3), tstz timestamptz,
		iv interval, ip inet, cidr cidr, mac macaddr, r int4range, x xml, e mood, dom price,
		ai int[], at text[], bits bit(3), vb varbit, pt point, nul text)`)
	values := `1.5::smallint, 9007199254740993, 0.1, 0.1, 12.345, 1234.5000, 12.34, true, 'tab	and "quote"', 'v', 'ab',
		'{"b": 1, "a": [1, 2]}', '{"b": 1, "a": [1, 2]}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff5c27'::bytea,
		'2024-02-29', '13:14:15.123456', '13:14:15.123456', '13:14:15.5+05:30', '2024-02-29 13:14:15.123456',
		'2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123456+05:30', '1 year 2 mons 3 days 04:05:06.789',
		'192.168.1.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '[1,10)', '<a>x</a>', 'happy', 12.5,
		'{1,NULL,3}', '{"a b",NULL,"c,d"}', B'101', B'10', '(1.5,-2)', NULL`
	s.db.Exec(t, `INSERT INTO typed VALUES (1, `+values+`)`)
	s.startEngine(t)
	s.waitSnapshot(t, "initial", "done", time.Minute)
	s.db.Exec(t, `INSERT INTO typed VALUES (2, `+values+`)`)
	recs := s.env.ReadN(t, s.topic("typed"), 2, time.Minute)
	var after [2]map[string]json.RawMessage
	var ops [2]string
	for i, r := range recs {
		var ev struct {
			Op    string
			After map[string]json.RawMessage
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		ops[i], after[i] = ev.Op, ev.After
		delete(after[i], "id")
	}
	if ops != [2]string{"r", "c"} {
		t.Fatalf("ops %v, want [r c]", ops)
	}
	for col, v := range after[0] {
		if string(after[1][col]) != string(v) {
			t.Errorf("column %s: snapshot %s, stream %s", col, v, after[1][col])
		}
	}
	if len(after[0]) != len(after[1]) || len(after[0]) < 30 {
		t.Fatalf("columns: snapshot %d, stream %d", len(after[0]), len(after[1]))
	}
}
