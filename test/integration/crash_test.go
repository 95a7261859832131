package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/test/testenv"
	"github.com/procon-cdc/procon/txid"
)

// versionWriter commits numbered versions of rows: each committed UPDATE sets v to the next
// number of its key. It remembers only what committed.
type versionWriter struct {
	pool *pgxpool.Pool
	keys int
	rnd  *rand.Rand

	mu        sync.Mutex
	committed map[int]int // key -> highest committed version
}

func newVersionWriter(t *testing.T, s *setup, keys int) *versionWriter {
	s.db.Exec(t, `CREATE TABLE versions (id int PRIMARY KEY, v int NOT NULL, pad text)`)
	s.db.Exec(t, `INSERT INTO versions SELECT g, 0, repeat('x', 100) FROM generate_series(1, $1) g`, keys)
	return &versionWriter{pool: s.db.Pool, keys: keys, rnd: testenv.Rand(t, 1), committed: map[int]int{}}
}

// run commits until stop ends: mostly single-row transactions, some with several rows, some
// rolled back. Errors while PostgreSQL restarts are retried. stop only says when to stop,
// between transactions: cancelling a COMMIT in flight would leave its outcome unknown, and the
// table (the final check's truth) could show it only after the check has read it.
func (w *versionWriter) run(stop context.Context) {
	ctx := context.Background()
	pace := time.NewTicker(2 * time.Millisecond) // a steady load, not a flood
	defer pace.Stop()
	for stop.Err() == nil {
		<-pace.C
		n := 1
		if w.rnd.IntN(4) == 0 {
			n = 2 + w.rnd.IntN(5)
		}
		ids := map[int]bool{}
		for len(ids) < n {
			ids[1+w.rnd.IntN(w.keys)] = true
		}
		rollback := w.rnd.IntN(10) == 0
		tx, err := w.pool.Begin(ctx)
		if err != nil {
			time.Sleep(50 * time.Millisecond) // PostgreSQL may be restarting
			continue
		}
		got := map[int]int{}
		ok := true
		for id := range ids {
			var v int
			if err := tx.QueryRow(ctx, `UPDATE versions SET v = v + 1 WHERE id = $1 RETURNING v`, id).Scan(&v); err != nil {
				ok = false
				break
			}
			got[id] = v
		}
		if !ok || rollback {
			_ = tx.Rollback(context.Background())
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			continue // unknown outcome only if the connection broke mid-commit; the final check reads the table
		}
		w.mu.Lock()
		for id, v := range got {
			w.committed[id] = v
		}
		w.mu.Unlock()
	}
}

// start runs the writer until the returned function is called, which returns once it stopped.
func (w *versionWriter) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()
	return func() { cancel(); <-done }
}

// finalVersions reads the committed state from the table itself, the ground truth.
func (w *versionWriter) finalVersions(t *testing.T) map[int]int {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT id, v FROM versions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var id, v int
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		out[id] = v
	}
	return out
}

// checkVersions reads the topic until every key reached its final version, then checks that
// every version 1..final of every key is there, in increasing order per key.
func checkVersions(t *testing.T, s *setup, final map[int]int, allowRepeats bool) {
	t.Helper()
	checkVersionsIn(t, s, s.topic("versions"), func(*kgo.Record) bool { return true }, final, allowRepeats)
}

// checkVersionsIn is checkVersions for the records of topic that mine selects; it returns how
// many records repeated a version already seen.
func checkVersionsIn(t *testing.T, s *setup, topic string, mine func(*kgo.Record) bool, final map[int]int, allowRepeats bool) int {
	t.Helper()
	last, scanned := map[int]int{}, 0
	recs, err := s.env.ReadUntil(topic, 3*time.Minute, func(recs []*kgo.Record) bool {
		for _, r := range recs[scanned:] {
			var ev struct{ After struct{ ID, V int } }
			if mine(r) && r.Value != nil && json.Unmarshal(s.valueJSON(t, r.Value), &ev) == nil && ev.After.V > last[ev.After.ID] {
				last[ev.After.ID] = ev.After.V
			}
		}
		scanned = len(recs)
		for id, v := range final {
			if last[id] < v {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("reading %s: %v (%d records)", topic, err, len(recs))
	}
	perKey := map[int][]int{}
	for _, r := range recs {
		if r.Value == nil || !mine(r) {
			continue
		}
		var ev struct {
			Op    string
			After struct{ ID, V int }
		}
		if err := json.Unmarshal(s.valueJSON(t, r.Value), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Op == "u" {
			perKey[ev.After.ID] = append(perKey[ev.After.ID], ev.After.V)
		}
	}
	dups := 0
	for id, want := range final {
		vs := perKey[id]
		next := 1
		for i, v := range vs {
			switch {
			case v == next:
				next++
			case v < next && allowRepeats:
				dups++
			default:
				t.Fatalf("key %d: versions %v: at %d got %d, want %d (each committed version once, in order)", id, vs, i, v, next)
			}
		}
		if next-1 != want {
			t.Fatalf("key %d: got versions up to %d, want %d: %v", id, next-1, want, vs)
		}
	}
	t.Logf("%d keys, %d records, %d repeated", len(final), len(recs), dups)
	return dups
}

// TestKill9 SIGKILLs procon-cdc at random moments while a writer commits numbered versions,
// restarts it each time, and checks that every committed version reached Kafka, once and in
// order per key.
func TestKill9(t *testing.T) {
	s := newSetup(t, `public.versions: {}`, "")
	w := newVersionWriter(t, s, 20)
	rnd := testenv.Rand(t, 2) // when to kill
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var before int64
	for i := range 12 {
		p := s.startProcess(t)
		if i == 0 {
			s.waitSlot(t) // the slot exists before the first write
			wg.Add(1)
			go func() { defer wg.Done(); w.run(ctx) }()
		}
		// Crash mid-stream: once this run has written something, at a random moment after.
		testenv.WaitFor(t, time.Minute, "the engine to make progress", func() (bool, error) {
			return s.countIfExists(t, s.topic("versions")) > before, nil
		})
		time.Sleep(time.Duration(rnd.IntN(700)) * time.Millisecond) // a random moment, not a wait for a condition
		p.kill9(t)
		before = s.countIfExists(t, s.topic("versions"))
		t.Logf("kill %d: %d records in Kafka", i+1, before)
	}
	stop()
	wg.Wait()
	final := w.finalVersions(t)
	s.startProcess(t)
	checkVersions(t, s, final, false)
}

// TestResumeIgnoresForeignTail puts a record that claims the greatest position at the tail of
// the topic before procon-cdc first writes it: once from another pipeline (another database
// writing the same topic, any producer setting Procon's headers), once with this pipeline's
// own procon.source but a position ahead of the server's WAL. The resume check must not take
// either as where a previous run stopped: every change is written, none skipped.
func TestResumeIgnoresForeignTail(t *testing.T) {
	for _, tc := range []struct{ name, source string }{
		{"another pipeline", "7400000000000000002/elsewhere/procon_elsewhere"},
		{"own source ahead of the WAL", ""}, // filled in with this pipeline's source
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, `public.items: {}`, "")
			s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, note text)`)
			source := tc.source
			if source == "" {
				var sysid string
				if err := s.db.Pool.QueryRow(context.Background(), `SELECT system_identifier::text FROM pg_control_system()`).Scan(&sysid); err != nil {
					t.Fatal(err)
				}
				source = sysid + "/" + s.db.Name + "/" + s.slot
			}
			topic := s.topic("items")
			cl := s.env.Kafka(t)
			ctx := context.Background()
			if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
				t.Fatal(err)
			}
			tx := txid.New(time.Now(), 1234, 1<<64-1).AppendText(nil) // instance_num's default
			forged := &kgo.Record{Topic: topic, Key: []byte(`{"id":1}`), Value: []byte(`{}`),
				Headers: txid.AppendHeaders([]kgo.RecordHeader(nil), []byte(source), tx, 1<<31-1)}
			if err := cl.ProduceSync(ctx, forged).FirstErr(); err != nil {
				t.Fatal(err)
			}

			s.startEngine(t)
			s.db.Exec(t, `INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 50) g`)
			s.db.Exec(t, `UPDATE items SET note = 'changed' WHERE id <= 10`)
			recs := s.env.ReadN(t, topic, 61, time.Minute) // the forged record, 50 inserts, 10 updates
			ids := map[string]int{}
			for _, e := range decode(t, recs[1:]) {
				ids[fmt.Sprint(e.after()["id"])]++
			}
			for id := 1; id <= 50; id++ {
				want := 1
				if id <= 10 {
					want = 2
				}
				if got := ids[strconv.Itoa(id)]; got != want {
					t.Fatalf("row %d has %d events, want %d: the forged tail made the engine skip changes", id, got, want)
				}
			}
		})
	}
}

// TestKill9TwoPipelinesOneTopic runs two procon-cdc, each on its own database, writing the same
// one-partition topic, so that the last record of the partition is often the other one's. Both
// are killed with kill -9 at random moments and restarted; neither may lose a committed
// version (repeats are allowed: a foreign tail gives nothing to resume from).
func TestKill9TwoPipelinesOneTopic(t *testing.T) {
	a := newSetup(t, `public.versions: {}`, "")
	shared := a.name + ".shared"
	a.config = strings.Replace(a.config, "public.versions: {}", "public.versions: {topic: "+shared+"}", 1)
	b := newSetup(t, "public.versions: {topic: "+shared+"}", "")
	setups := []*setup{a, b}
	writers := []*versionWriter{newVersionWriter(t, a, 10), newVersionWriter(t, b, 10)}
	procs := []*process{a.startProcess(t), b.startProcess(t)}
	a.waitSlot(t)
	b.waitSlot(t)
	// The kills start once both stream: a kill during a pipeline's initial snapshot makes the
	// next run recreate its slot and snapshot again, whose rows carry each key's state but not
	// the versions committed since the first slot was made (TestKill9 waits for its own
	// records; here the other pipeline's records can fill the topic first).
	for _, s := range setups {
		testenv.WaitFor(t, time.Minute, "slot "+s.slot+" to stream", func() (bool, error) {
			var active bool
			err := s.db.Pool.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&active)
			return active, err
		})
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}
	rnd := testenv.Rand(t, 3) // which one to kill, and when
	var before int64
	for i := range 8 {
		testenv.WaitFor(t, time.Minute, "both engines to make progress", func() (bool, error) {
			return a.countIfExists(t, shared) > before+20, nil
		})
		time.Sleep(time.Duration(rnd.IntN(500)) * time.Millisecond) // a random moment, not a wait for a condition
		victim := rnd.IntN(2)
		procs[victim].kill9(t)
		procs[victim] = setups[victim].startProcess(t)
		before = a.countIfExists(t, shared)
		t.Logf("kill %d: pipeline %d; %d records in Kafka", i+1, victim, before)
	}
	stop()
	wg.Wait()
	for i, s := range setups {
		source := "/" + s.db.Name + "/" + s.slot
		mine := func(r *kgo.Record) bool {
			v, _ := txid.HeaderValue(r.Headers, txid.HeaderSource)
			return strings.HasSuffix(string(v), source)
		}
		t.Logf("pipeline %d", i)
		checkVersionsIn(t, s, shared, mine, writers[i].finalVersions(t), true)
	}
}
