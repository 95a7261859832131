package integration

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/test/testenv"
	"github.com/procon-cdc/procon/txid"
)

// exactlyOnce is the configuration of kafka.delivery: exactly_once, short intervals so that
// kills land between and inside Kafka transactions.
const exactlyOnce = `  delivery: exactly_once
  transactions:
    commit_interval: 50ms
`

// withExactlyOnce adds kafka.delivery: exactly_once to a setup's configuration.
func (s *setup) withExactlyOnce() *setup {
	s.config = strings.Replace(s.config, "kafka:\n", "kafka:\n"+exactlyOnce, 1)
	return s
}

// readCommitted is how a consumer of exactly-once topics reads.
var readCommitted = kgo.FetchIsolationLevel(kgo.ReadCommitted())

// multiWriter commits numbered versions of rows of several tables: each transaction updates
// one to six random rows, some are rolled back. It remembers each committed transaction's xid
// and row count, to check that every one arrives whole.
type multiWriter struct {
	pool   *pgxpool.Pool
	tables []string
	keys   int
	rnd    *rand.Rand
	pace   time.Duration // between transactions; 2 ms when zero

	mu  sync.Mutex
	txs map[int64]int // xid -> rows updated, of committed transactions
}

// committed is how many transactions the writer has committed so far.
func (w *multiWriter) committed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.txs)
}

func newMultiWriter(t *testing.T, s *setup, tables []string, keys int) *multiWriter {
	for _, tb := range tables {
		s.db.Exec(t, `CREATE TABLE `+tb+` (id int PRIMARY KEY, v int NOT NULL, pad text)`)
		s.db.Exec(t, `INSERT INTO `+tb+` SELECT g, 0, repeat('x', 100) FROM generate_series(1, $1) g`, keys)
	}
	return &multiWriter{pool: s.db.Pool, tables: tables, keys: keys, rnd: testenv.Rand(t, 11), txs: map[int64]int{}}
}

func (w *multiWriter) run(stop context.Context) {
	ctx := context.Background()
	every := w.pace
	if every == 0 {
		every = 2 * time.Millisecond
	}
	pace := time.NewTicker(every)
	defer pace.Stop()
	for stop.Err() == nil {
		<-pace.C
		type row struct {
			table string
			id    int
		}
		rows := map[row]bool{}
		for n := 1 + w.rnd.IntN(6); len(rows) < n; {
			rows[row{w.tables[w.rnd.IntN(len(w.tables))], 1 + w.rnd.IntN(w.keys)}] = true
		}
		rollback := w.rnd.IntN(10) == 0
		tx, err := w.pool.Begin(ctx)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // PostgreSQL may be restarting
			continue
		}
		var xid int64
		ok := tx.QueryRow(ctx, `SELECT pg_catalog.txid_current()`).Scan(&xid) == nil
		for r := range rows {
			if !ok {
				break
			}
			_, err := tx.Exec(ctx, `UPDATE `+r.table+` SET v = v + 1 WHERE id = $1`, r.id)
			ok = err == nil
		}
		if !ok || rollback {
			_ = tx.Rollback(context.Background())
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			continue
		}
		w.mu.Lock()
		w.txs[xid&0xFFFFFFFF] = len(rows)
		w.mu.Unlock()
	}
}

// start runs the writer until the returned function is called, which returns once it stopped.
func (w *multiWriter) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()
	return func() { cancel(); <-done }
}

// final reads each table's committed versions.
func (w *multiWriter) final(t *testing.T) map[string]map[int]int {
	out := map[string]map[int]int{}
	for _, tb := range w.tables {
		rows, err := w.pool.Query(context.Background(), `SELECT id, v FROM `+tb)
		if err != nil {
			t.Fatal(err)
		}
		out[tb] = map[int]int{}
		for rows.Next() {
			var id, v int
			if err := rows.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			out[tb][id] = v
		}
		rows.Close()
	}
	return out
}

// checkExactlyOnce reads every table's topic as a read_committed consumer and checks that
// each committed version arrived exactly once and in order per key, that no (procon.tx,
// procon.seq) repeats, and that every committed transaction arrived whole: as many records as
// it updated rows, at consecutive positions of each partition.
func checkExactlyOnce(t *testing.T, s *setup, w *multiWriter) {
	t.Helper()
	final := w.final(t)
	type txRec struct {
		topic     string
		partition int32
		offset    int64
	}
	seen := map[string]bool{}    // procon.tx/procon.seq
	byXID := map[int64][]txRec{} // records of each source transaction
	total := 0
	for _, tb := range w.tables {
		want := final[tb]
		last, scanned := map[int]int{}, 0
		recs, err := s.env.ReadUntil(s.topic(tb), 3*time.Minute, func(recs []*kgo.Record) bool {
			for _, r := range recs[scanned:] { // only the new ones: a soak's topics hold hundreds of thousands
				var ev struct{ After struct{ ID, V int } }
				if json.Unmarshal(s.valueJSON(t, r.Value), &ev) == nil && ev.After.V > last[ev.After.ID] {
					last[ev.After.ID] = ev.After.V
				}
			}
			scanned = len(recs)
			for id, v := range want {
				if last[id] < v {
					return false
				}
			}
			return true
		}, readCommitted)
		if err != nil {
			t.Fatalf("reading %s: %v (%d records)", s.topic(tb), err, len(recs))
		}
		next := map[int]int{}
		for _, r := range recs {
			var ev struct {
				Op     string
				After  struct{ ID, V int }
				Source struct {
					TxID int64 `json:"txId"`
				}
			}
			if err := json.Unmarshal(s.valueJSON(t, r.Value), &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Op == "r" {
				continue // the initial snapshot of the table's rows at version 0
			}
			total++
			if ev.Op != "u" || ev.After.V != next[ev.After.ID]+1 {
				t.Fatalf("%s key %d: got version %d (op %s) after %d: each committed version once, in order", tb, ev.After.ID, ev.After.V, ev.Op, next[ev.After.ID])
			}
			next[ev.After.ID] = ev.After.V
			id, err := txid.FromRecordHeaders(r.Headers)
			if err != nil {
				t.Fatalf("%s offset %d: %v", tb, r.Offset, err)
			}
			k := id.Tx.String() + "/" + strconv.Itoa(id.Seq)
			if seen[k] {
				t.Fatalf("(procon.tx, procon.seq) %s written twice", k)
			}
			seen[k] = true
			byXID[ev.Source.TxID&0xFFFFFFFF] = append(byXID[ev.Source.TxID&0xFFFFFFFF], txRec{tb, r.Partition, r.Offset})
		}
		for id, v := range want {
			if next[id] != v {
				t.Fatalf("%s key %d: got versions up to %d, want %d", tb, id, next[id], v)
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for xid, n := range w.txs {
		recs := byXID[xid]
		if len(recs) != n {
			t.Fatalf("transaction %d updated %d rows; a read_committed consumer sees %d records of it", xid, n, len(recs))
		}
		lastOffset := map[string]int64{}
		for _, r := range recs {
			tp := r.topic + "/" + strconv.Itoa(int(r.partition))
			if prev, ok := lastOffset[tp]; ok && r.offset != prev+1 {
				t.Fatalf("transaction %d: its records in %s are not contiguous (offset %d after %d)", xid, tp, r.offset, prev)
			}
			lastOffset[tp] = r.offset
		}
	}
	t.Logf("%d transactions, %d change records: each exactly once, every transaction whole", len(w.txs), total)
}

// TestExactlyOnceKill9 SIGKILLs procon-cdc at random moments, 50 times, and restarts Kafka
// three times and PostgreSQL once, while a writer commits numbered versions across three
// tables: a read_committed consumer sees every committed change exactly once.
func TestExactlyOnceKill9(t *testing.T) {
	tables := []string{"eo_a", "eo_b", "eo_c"}
	s := newSetup(t, "public.eo_a: {}\npublic.eo_b: {}\npublic.eo_c: {}", "").withExactlyOnce()
	w := newMultiWriter(t, s, tables, 30)
	rnd := testenv.Rand(t, 12) // when to kill
	stop := func() {}
	count := func() (n int64) {
		for _, tb := range tables {
			n += s.countIfExists(t, s.topic(tb))
		}
		return n
	}
	// Progress is the slot's confirmed position moving: with exactly-once delivery it moves
	// only once a Kafka transaction of this run has committed.
	var confirmed pglogrepl.LSN
	progressed := func(what string, timeout time.Duration) {
		from := confirmed
		testenv.WaitFor(t, timeout, what, func() (bool, error) {
			confirmed = s.confirmedLSN(t)
			return confirmed > from, nil
		})
	}
	const kills = 50
	for i := range kills {
		p := s.startProcess(t)
		if i == 0 {
			s.waitSlot(t)
			confirmed = s.confirmedLSN(t)
			stop = w.start()
		}
		progressed("the engine to make progress", time.Minute)
		switch i {
		case 10, 25, 40: // Kafka restarts under this run; it rides the outage out
			s.env.StopService(t, "kafka")
			s.env.StartService(t, "kafka")
			progressed("progress after Kafka's restart", 2*time.Minute)
		case 30:
			s.env.StopService(t, "postgres")
			s.env.StartService(t, "postgres")
			progressed("progress after PostgreSQL's restart", 2*time.Minute)
		}
		time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond) // a random moment, not a wait for a condition
		p.kill9(t)
		// The baseline of the next run's progress: what the killed one had confirmed.
		s.waitSlotReleased(t)
		confirmed = s.confirmedLSN(t)
		t.Logf("kill %d: confirmed %s, %d offsets in the topics (records, markers, aborted)", i+1, confirmed, count())
	}
	stop()
	s.startProcess(t)
	checkExactlyOnce(t, s, w)
}

// TestExactlyOnceSnapshotKill9 SIGKILLs procon-cdc twice during the initial snapshot of a
// large table (the second time, typically while the rest of it is read in the stream): a
// read_committed consumer sees every row exactly once.
func TestExactlyOnceSnapshotKill9(t *testing.T) {
	const rows = 150_000
	s := newSetup(t, `public.big: {}`, "snapshot:\n  chunk_size: 2000\n").withExactlyOnce()
	s.db.Exec(t, `CREATE TABLE big (id int PRIMARY KEY, pad text)`)
	s.db.Exec(t, `INSERT INTO big SELECT g, repeat('y', 200) FROM generate_series(1, $1) g`, rows)
	for i, at := range []int64{rows / 3, 2 * rows / 3} {
		p := s.startProcess(t)
		testenv.WaitFor(t, 2*time.Minute, "the snapshot to get far enough", func() (bool, error) {
			return s.countIfExists(t, s.topic("big")) >= at, nil
		})
		p.kill9(t)
		t.Logf("kill %d: %d records in the topic (committed or not)", i+1, s.countIfExists(t, s.topic("big")))
	}
	s.startProcess(t)
	s.waitSnapshot(t, "initial", "done", 3*time.Minute)
	// Every record of the snapshot is committed now: a record written after them is read
	// after all of them.
	sentinel := s.env.Kafka(t)
	if err := sentinel.ProduceSync(context.Background(), &kgo.Record{Topic: s.topic("big"), Value: []byte(`{"end":true}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	recs, err := s.env.ReadUntil(s.topic("big"), 3*time.Minute, func(recs []*kgo.Record) bool {
		return len(recs) > 0 && string(recs[len(recs)-1].Value) == `{"end":true}`
	}, readCommitted)
	if err != nil {
		t.Fatalf("reading: %v (%d records)", err, len(recs))
	}
	ids := map[int]int{}
	for _, r := range recs[:len(recs)-1] {
		var ev struct{ After struct{ ID int } }
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		ids[ev.After.ID]++
	}
	dups, missing := 0, 0
	for id := 1; id <= rows; id++ {
		switch ids[id] {
		case 0:
			missing++
		case 1:
		default:
			dups += ids[id] - 1
		}
	}
	if dups != 0 || missing != 0 {
		t.Fatalf("%d rows: %d duplicates, %d missing", rows, dups, missing)
	}
}

// TestExactlyOnceFencing starts a second procon-cdc on the configuration of a running one:
// it waits for the slot's lock as a standby and fences nothing. Then the first one's lock
// session is ended (as a broken connection would): the first stops producing and waits, the
// second takes the lock, fences the transactional id (anything the first still had open is
// aborted) and streams on; nothing is written twice.
func TestExactlyOnceFencing(t *testing.T) {
	s := newSetup(t, "public.eo_a: {}\npublic.eo_b: {}", "").withExactlyOnce()
	w := newMultiWriter(t, s, []string{"eo_a", "eo_b"}, 20)
	first := s.startProcess(t)
	s.waitSlot(t)
	stop := w.start()
	testenv.WaitFor(t, time.Minute, "events to flow", func() (bool, error) { return s.countIfExists(t, s.topic("eo_a")) > 50, nil })
	second := s.startProcess(t)
	testenv.WaitFor(t, time.Minute, "the second procon-cdc to wait as a standby", func() (bool, error) { return second.waitingLogged(), nil })
	b := s.countIfExists(t, s.topic("eo_a"))
	testenv.WaitFor(t, time.Minute, "the first procon-cdc to stream on beside the standby", func() (bool, error) { return s.countIfExists(t, s.topic("eo_a")) > b+50, nil })
	if first.exitedNow() || strings.Contains(first.output(), "was fenced") {
		t.Fatalf("a standby fenced the active procon-cdc:\n%s", first.output())
	}
	var n int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'procon-cdc lock ' || $1 || '@%'`, strconv.Itoa(first.cmd.Process.Pid)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("end the first procon-cdc's lock session: %d sessions (%v)", n, err)
	}
	testenv.WaitFor(t, time.Minute, "the second procon-cdc to take over", func() (bool, error) { return len(second.streamedAt(t)) > 0, nil })
	if out := first.output(); !strings.Contains(out, "lost the slot's lock") {
		t.Fatalf("the first procon-cdc's output does not say it lost the lock:\n%s", out)
	}
	b = s.countIfExists(t, s.topic("eo_a"))
	testenv.WaitFor(t, time.Minute, "the second procon-cdc to stream", func() (bool, error) { return s.countIfExists(t, s.topic("eo_a")) > b+50, nil })
	stop()
	checkExactlyOnce(t, s, w)
	second.kill9(t)
}

// TestExactlyOnceTransactionTimeout takes Kafka away for longer than the transaction timeout
// while a Kafka transaction is open: Kafka may abort it. Whether procon-cdc's commit wins or
// Kafka's abort does, nothing is confirmed that is not committed: if procon-cdc stops, its
// error says why, and a restart writes every change exactly once.
func TestExactlyOnceTransactionTimeout(t *testing.T) {
	s := newSetup(t, "public.eo_a: {}", "").withExactlyOnce()
	s.config = strings.Replace(s.config, "    commit_interval: 50ms\n", "    commit_interval: 50ms\n    timeout: 2s\n", 1)
	w := newMultiWriter(t, s, []string{"eo_a"}, 20)
	p := s.startProcess(t)
	s.waitSlot(t)
	stop := w.start()
	testenv.WaitFor(t, time.Minute, "events to flow", func() (bool, error) { return s.countIfExists(t, s.topic("eo_a")) > 50, nil })
	s.env.StopService(t, "kafka")
	time.Sleep(4 * time.Second) // the condition is time itself: the open transaction's timeout must pass
	s.env.StartService(t, "kafka")
	// Either the commit won (procon-cdc streams on: the slot's position moves) or Kafka's
	// abort did (procon-cdc stops and says so).
	from := s.confirmedLSN(t)
	var exitErr error
	stopped := false
	testenv.WaitFor(t, time.Minute, "procon-cdc to stream on or to stop", func() (bool, error) {
		select {
		case <-p.exited:
			exitErr, stopped = p.waitErr, true
			return true, nil
		default:
		}
		return s.confirmedLSN(t) > from, nil
	})
	if stopped {
		if out := p.output(); exitErr == nil || !strings.Contains(out, "outliving kafka.transactions.timeout") {
			t.Fatalf("procon-cdc exited (%v) without saying that Kafka aborted its transaction:\n%s", exitErr, out)
		}
		t.Logf("procon-cdc stopped: Kafka aborted its transaction; restarting it")
		s.startProcess(t)
		from = s.confirmedLSN(t)
		testenv.WaitFor(t, time.Minute, "progress after the restart", func() (bool, error) { return s.confirmedLSN(t) > from, nil })
	} else {
		t.Logf("procon-cdc committed before Kafka could abort its transaction, and streams on")
	}
	stop()
	checkExactlyOnce(t, s, w)
}
