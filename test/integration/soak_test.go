package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestSoak is `make soak`: for SOAK_DURATION, a mixed workload runs through two procon-cdc
// (at-least-once and exactly-once, behind fault proxies) while a fault is injected every 20-60
// s; then the ledger check of both pipelines, the realtime and snapshot checks, and the rule
// that no procon-cdc grows in memory or goroutines (docs/soak.md). It writes its report and
// plot to SOAK_OUT. It runs only when SOAK_DURATION is set: the ordinary suite stays fast.
func TestSoak(t *testing.T) {
	dur := os.Getenv("SOAK_DURATION")
	if dur == "" {
		t.Skip("SOAK_DURATION is not set: the soak runs with make soak")
	}
	d, err := time.ParseDuration(dur)
	if err != nil || d < time.Minute {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least 1m (e.g. 30m)", dur)
	}
	seed := rand.Uint64()
	if v := os.Getenv("SOAK_SEED"); v != "" {
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SOAK_SEED=%q is not an unsigned integer", v)
		}
	}
	// Every random stream of the run (the writers' too) derives from the one seed.
	t.Setenv("PROCON_TEST_SEED", strconv.FormatUint(seed, 10))
	t.Logf("soak: %s, seed %d (replay with SOAK_SEED=%d)", d, seed, seed)
	fmt.Printf("soak: %s, seed %d (replay with SOAK_SEED=%d)\n", d, seed, seed)

	sk := newSoak(t, d, seed, soakOut(t))
	t.Cleanup(func() { sk.writeReport(t) }) // also when a check fails: the report says which
	sk.start(t)
	sk.injectFaults(t)
	sk.finish(t)
}

// soakOut is SOAK_OUT (relative paths from the repository's root), or docs/soak.
func soakOut(t *testing.T) string {
	out := os.Getenv("SOAK_OUT")
	if out == "" {
		out = "docs/soak"
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join("..", "..", out) // go test runs in test/integration
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatalf("SOAK_OUT: %v", err)
	}
	return out
}

// soak is one soak run: the fault run's two pipelines, each with its workload and its
// procon-cdc's lifetimes, the faults injected and the samples taken.
type soak struct {
	run      *faultRun
	dur      time.Duration
	seed     uint64
	out      string
	rnd      *rand.Rand // faults: which, when, how long
	began    time.Time
	loads    []*soakLoad
	procs    []*soakProc
	stopLoad func()

	mu       sync.Mutex
	faults   []soakFault
	samples  []soakSample
	findings []string // procon-cdc exits nobody asked for, failed checks
	phase    string   // what the run was doing, for a report written after a failed check
	results  []string // the final checks' outcomes
}

// soakProc is one pipeline's procon-cdc across its lifetimes: a kill -9 (or an exit by
// itself) starts a new incarnation.
type soakProc struct {
	fp          *faultPipeline
	metrics     string // metrics.listen
	incarnation int
	started     time.Time
	said        []string // WARN and ERROR lines of the previous incarnations
}

// soakFault is one fault injected: its kind, when it began and ended (since the run's start)
// and what exactly was done.
type soakFault struct {
	kind       string
	start, end time.Duration
	detail     string
}

const bigRows = 3000 // rows of the table the large transactions and the snapshot work on

func newSoak(t *testing.T, d time.Duration, seed uint64, out string) *soak {
	sk := &soak{dur: d, seed: seed, out: out, rnd: testenv.Rand(t, 100), phase: "setting up"}
	sk.run = newFaultRun(t, nil)
	for i, fp := range sk.run.pipelines {
		s := fp.s
		addr := testenv.FreeAddr(t)
		s.config = strings.Replace(s.config, "status_interval: 200ms", "status_interval: 200ms\n  receive_timeout: 10s", 1)
		s.config = strings.Replace(s.config, "level: debug", "level: info", 1) // 30 minutes of debug would fill memory
		s.config = strings.Replace(s.config, "  public.b: {}\n", "  public.b: {}\n  public.big: {}\n", 1)
		s.config += "\nmetrics:\n  listen: " + addr + "\nsnapshot:\n  signal_table: public.procon_signal\n  chunk_size: 500\n"
		initSQL(t, s)
		withRealtime(s, "enabled: true", "rt_threshold: 100")
		s.db.Exec(t, `CREATE TABLE public.big (id int PRIMARY KEY, v int NOT NULL, pad text)`)
		s.db.Exec(t, `INSERT INTO public.big SELECT g, 0, repeat('y', 100) FROM generate_series(1, $1) g`, bigRows)
		fp.w.tables = append(fp.w.tables, "big") // small transactions touch its first keys too
		fp.w.pace = 25 * time.Millisecond        // about 40 small transactions a second
		s.release = os.Getenv("SOAK_RACE") == "" // RSS as users run it; SOAK_RACE=1 hunts data races instead
		sk.procs = append(sk.procs, &soakProc{fp: fp, metrics: addr})
		sk.loads = append(sk.loads, newSoakLoad(t, fp, uint64(20+i)))
	}
	return sk
}

// initSQL runs procon-cdc init-sql's migration (the realtime table among others) on a
// connection of its own: it sets search_path, which would stay on a pooled connection the
// writers use with unqualified names.
func initSQL(t *testing.T, s *setup) {
	t.Helper()
	out, err := exec.Command(testenv.ProconBinary(t), "init-sql").Output()
	if err != nil {
		t.Fatalf("procon-cdc init-sql: %v", err)
	}
	if _, err := s.db.Conn(t).Exec(context.Background(), string(out)); err != nil {
		t.Fatalf("procon-cdc init-sql's migration: %v", err)
	}
}

// since is the time from the run's start.
func (sk *soak) since() time.Duration { return time.Since(sk.began).Truncate(time.Second) }

func (sk *soak) setPhase(p string) {
	sk.mu.Lock()
	sk.phase = p
	sk.mu.Unlock()
}

func (sk *soak) finding(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.Errorf("soak: %s", msg)
	sk.mu.Lock()
	sk.findings = append(sk.findings, msg)
	sk.mu.Unlock()
}

// start runs both procon-cdc, the writers and the sampler.
func (sk *soak) start(t *testing.T) {
	sk.setPhase("starting")
	sk.run.start(t) // the multiWriters, and waits for changes to flow
	sk.began = time.Now()
	for _, p := range sk.procs {
		p.started = sk.began
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, l := range sk.loads {
		wg.Add(1)
		go func() { defer wg.Done(); l.run(ctx, sk.dur) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); sk.sample(ctx, t) }()
	sk.stopLoad = func() { cancel(); wg.Wait() }
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// injectFaults injects a fault every 20-60 s until the run's time is up, checking in between
// that every procon-cdc still runs.
func (sk *soak) injectFaults(t *testing.T) {
	sk.setPhase("injecting faults")
	kinds := sk.faultKinds(t)
	if only := os.Getenv("SOAK_FAULTS"); only != "" { // e.g. SOAK_FAULTS="postgres crash,kill -9"
		kinds = slices.DeleteFunc(kinds, func(k faultKind) bool { return !slices.Contains(strings.Split(only, ","), k.name) })
		if len(kinds) == 0 {
			t.Fatalf("SOAK_FAULTS=%q names none of the faults", only)
		}
	}
	deadline := sk.began.Add(sk.dur)
	next := time.Now().Add(time.Duration(20+sk.rnd.IntN(41)) * time.Second)
	for {
		sk.watch(t, next)
		// A fault lasts up to about a minute: none begins in the run's last 40 s, whose
		// recovery the final check waits for anyway.
		if time.Until(deadline) < 40*time.Second {
			break
		}
		k := kinds[sk.rnd.IntN(len(kinds))]
		f := soakFault{kind: k.name, start: sk.since()}
		t.Logf("soak %s: fault %s", f.start, k.name)
		f.detail = k.do()
		f.end = sk.since()
		t.Logf("soak %s: fault %s over (%s)", f.end, k.name, f.detail)
		sk.mu.Lock()
		sk.faults = append(sk.faults, f)
		sk.mu.Unlock()
		next = time.Now().Add(time.Duration(20+sk.rnd.IntN(41)) * time.Second)
		if next.After(deadline) {
			next = deadline
		}
	}
	sk.watch(t, deadline)
}

// watch waits until the time at, restarting (and reporting) a procon-cdc that exited.
func (sk *soak) watch(t *testing.T, at time.Time) {
	for time.Now().Before(at) {
		for i, p := range sk.procs {
			select {
			case <-p.fp.p.exited:
				sk.finding(t, "%s: procon-cdc of pipeline %d (%s) exited by itself: %v; last lines:\n%s",
					sk.since(), i, p.fp.mode(), p.fp.p.waitErr, tail(p.fp.p.output(), 30))
				sk.restart(t, p)
			default:
			}
		}
		time.Sleep(time.Second) // a polling period for exits, not a wait for one condition
	}
}

// restart starts a procon-cdc again after its process ended, keeping what it said.
func (sk *soak) restart(t *testing.T, p *soakProc) {
	out := p.fp.p.output()
	sk.mu.Lock()
	p.said = append(p.said, notable(out)...)
	sk.mu.Unlock()
	np := p.fp.s.startProcess(t)
	sk.mu.Lock()
	p.fp.p = np
	p.incarnation++
	p.started = time.Now()
	sk.mu.Unlock()
}

type faultKind struct {
	name string
	do   func() string // injects the fault, waits it out, heals it; says what it did
}

func (sk *soak) faultKinds(t *testing.T) []faultKind {
	f := sk.run.faults
	env := testenv.Get(t)
	between := func(lo, hi int) time.Duration { return time.Duration(lo+sk.rnd.IntN(hi-lo+1)) * time.Second }
	blackhole := func(name string, p interface {
		Blackhole()
		Heal()
	}) faultKind {
		return faultKind{name, func() string {
			d := between(10, 30)
			p.Blackhole()
			time.Sleep(d) // the fault's duration is the subject
			p.Heal()
			return d.String()
		}}
	}
	return []faultKind{
		blackhole("postgres blackhole", f.Postgres),
		blackhole("kafka blackhole", f.Kafka),
		{"connection resets", func() string {
			n := 2 + sk.rnd.IntN(4)
			for i := range n {
				for _, p := range f.All() {
					p.Reset()
				}
				if i < n-1 {
					time.Sleep(between(1, 5)) // resets spread over a while
				}
			}
			return fmt.Sprintf("%d resets of every link", n)
		}},
		{"latency 500ms", func() string {
			d := between(20, 40)
			for _, p := range f.All() {
				p.SetLatency(500*time.Millisecond, 50*time.Millisecond)
			}
			time.Sleep(d)
			for _, p := range f.All() {
				p.SetLatency(0, 0)
			}
			return d.String() + " on every link"
		}},
		{"kafka restart", func() string {
			how := "stop"
			if sk.rnd.IntN(2) == 0 {
				how = "crash"
				env.CrashService(t, "kafka")
			} else {
				env.StopService(t, "kafka")
			}
			env.StartService(t, "kafka")
			return how + " and start"
		}},
		{"postgres crash", func() string {
			env.CrashService(t, "postgres")
			env.StartService(t, "postgres")
			return "immediate shutdown and start"
		}},
		{"kill -9", func() string {
			i := sk.rnd.IntN(len(sk.procs))
			p := sk.procs[i]
			p.fp.p.kill9(t)
			sk.restart(t, p)
			return fmt.Sprintf("pipeline %d (%s)", i, p.fp.mode())
		}},
	}
}

// finish stops the workload once every link is healed and changes flow again, then checks
// everything: the ledger of each pipeline, the realtime notifications, the incremental
// snapshot, and the growth rule.
func (sk *soak) finish(t *testing.T) {
	sk.setPhase("waiting for changes to flow after the last fault")
	sk.run.flowing(t, 5*time.Minute, "changes to flow at the end of the soak")
	sk.stopLoad()
	for _, stop := range sk.run.stop {
		stop()
	}
	sk.run.stop = nil
	for i, fp := range sk.run.pipelines {
		who := fmt.Sprintf("pipeline %d (%s)", i, fp.mode())
		sk.setPhase("ledger check of " + who)
		if fp.exactly {
			checkExactlyOnce(t, fp.s, fp.w)
			sk.result(who + ": every committed version of " + strings.Join(fp.w.tables, ", ") + " exactly once and in order, every transaction whole, final state equal to the database")
		} else {
			final := fp.w.final(t)
			repeats := 0
			for _, tb := range fp.w.tables {
				repeats += checkVersionsIn(t, fp.s, fp.s.topic(tb), func(*kgo.Record) bool { return true }, final[tb], true)
			}
			sk.result(fmt.Sprintf("%s: every committed version of %s present and in order per key, final state equal to the database (%d repeated records, allowed at least once)", who, strings.Join(fp.w.tables, ", "), repeats))
		}
	}
	// Realtime and snapshot after both ledgers: a failure here is reported and the rest checked.
	for i, fp := range sk.run.pipelines {
		who := fmt.Sprintf("pipeline %d (%s)", i, fp.mode())
		for _, c := range []struct {
			what  string
			check func(*testing.T) (string, error)
		}{{"realtime", sk.loads[i].checkRealtime}, {"snapshot", sk.loads[i].checkSnapshot}} {
			sk.setPhase(c.what + " check of " + who)
			r, err := c.check(t)
			if err != nil {
				sk.finding(t, "%s: %s check: %v", who, c.what, err)
				continue
			}
			sk.result(who + ": " + r)
		}
	}
	for i, p := range sk.procs {
		select {
		case <-p.fp.p.exited:
			sk.finding(t, "procon-cdc of pipeline %d (%s) exited by itself during the checks: %v; last lines:\n%s", i, p.fp.mode(), p.fp.p.waitErr, tail(p.fp.p.output(), 30))
		default:
		}
	}
	sk.setPhase("growth check")
	for _, g := range sk.growth() {
		if g.failed {
			sk.finding(t, "%s", g.text)
		}
	}
	for i, p := range sk.procs {
		logNotable(t, fmt.Sprintf("pipeline %d (%s)", i, p.fp.mode()), strings.Join(p.said, "\n")+"\n"+p.fp.p.output())
	}
	sk.setPhase("done")
}

func (sk *soak) result(r string) {
	sk.mu.Lock()
	sk.results = append(sk.results, r)
	sk.mu.Unlock()
}

// mode names a pipeline's delivery mode.
func (fp *faultPipeline) mode() string {
	if fp.exactly {
		return "exactly-once"
	}
	return "at-least-once"
}

// notable is the WARN and ERROR lines of a procon-cdc's output.
func notable(output string) []string {
	var out []string
	for _, l := range strings.Split(output, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// soakLoad is the workload beside a pipeline's multiWriter: large transactions on big, schema
// changes, realtime notifications and one incremental snapshot.
type soakLoad struct {
	fp  *faultPipeline
	rnd *rand.Rand

	mu         sync.Mutex
	bigTxs     int
	bigRowsOut int
	alters     []string
	notified   map[int]bool // realtime notifications committed, by number
	snapshotID string
	signalAt   time.Time // just before the signal was inserted
}

func newSoakLoad(t *testing.T, fp *faultPipeline, stream uint64) *soakLoad {
	return &soakLoad{fp: fp, rnd: testenv.Rand(t, stream), notified: map[int]bool{}}
}

// run drives the workload until ctx ends: a notification every 100-300 ms, a large
// transaction every 10-30 s, a column added every 1-3 minutes, the snapshot signal at a third
// of the run.
func (l *soakLoad) run(ctx context.Context, d time.Duration) {
	now := time.Now()
	nextBig := now.Add(time.Duration(10+l.rnd.IntN(21)) * time.Second)
	nextAlter := now.Add(time.Duration(60+l.rnd.IntN(121)) * time.Second)
	snapshotAt := now.Add(d / 3)
	n := 0
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(100+l.rnd.IntN(201)) * time.Millisecond): // the notifications' pace
		}
		n++
		l.notify(ctx, n)
		if now := time.Now(); now.After(nextBig) {
			l.bigTx(ctx)
			nextBig = now.Add(time.Duration(10+l.rnd.IntN(21)) * time.Second)
		}
		if now := time.Now(); now.After(nextAlter) {
			l.alter(ctx)
			nextAlter = now.Add(time.Duration(60+l.rnd.IntN(121)) * time.Second)
		}
		if !snapshotAt.IsZero() && time.Now().After(snapshotAt) && l.signal(ctx) {
			snapshotAt = time.Time{}
		}
	}
}

// notify commits realtime notification n through a logical decoding message, on one of five
// channels.
func (l *soakLoad) notify(ctx context.Context, n int) {
	msg := fmt.Sprintf(`{"channel": "soak:%d", "session_id": null, "metadata": {"n": %d}}`, n%5, n)
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.fp.s.db.Pool.Exec(c, `SELECT pg_catalog.pg_logical_emit_message(true, 'procon-realtime', $1)`, msg); err != nil {
		return // PostgreSQL may be restarting: not committed, or not known to be
	}
	l.mu.Lock()
	l.notified[n] = true
	l.mu.Unlock()
}

// bigTx updates 1000-3000 consecutive rows of big in one transaction, recorded with the
// multiWriter's transactions so that exactly-once checks it arrives whole.
func (l *soakLoad) bigTx(ctx context.Context) {
	rows := 1000 + l.rnd.IntN(2001)
	from := 1 + l.rnd.IntN(bigRows-rows+1)
	c, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tx, err := l.fp.s.db.Pool.Begin(c)
	if err != nil {
		return
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // a no-op once committed
	var xid int64
	if err := tx.QueryRow(c, `SELECT pg_catalog.txid_current()`).Scan(&xid); err != nil {
		return
	}
	tag, err := tx.Exec(c, `UPDATE public.big SET v = v + 1 WHERE id BETWEEN $1 AND $2`, from, from+rows-1)
	if err != nil {
		return // a deadlock with a small transaction, or PostgreSQL went away
	}
	if err := tx.Commit(c); err != nil {
		return
	}
	w := l.fp.w
	w.mu.Lock()
	w.txs[xid&0xFFFFFFFF] = int(tag.RowsAffected())
	w.mu.Unlock()
	l.mu.Lock()
	l.bigTxs++
	l.bigRowsOut += int(tag.RowsAffected())
	l.mu.Unlock()
}

// alter adds a column to one of the tables, which the following changes carry.
func (l *soakLoad) alter(ctx context.Context) {
	l.mu.Lock()
	n := len(l.alters) + 1
	l.mu.Unlock()
	tb := l.fp.w.tables[l.rnd.IntN(len(l.fp.w.tables))]
	stmt := fmt.Sprintf(`ALTER TABLE public.%s ADD COLUMN IF NOT EXISTS soak_c%d int DEFAULT %d`, tb, n, n)
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := l.fp.s.db.Pool.Exec(c, stmt); err != nil {
		return
	}
	l.mu.Lock()
	l.alters = append(l.alters, stmt)
	l.mu.Unlock()
}

// signal asks for an incremental snapshot of big and a; false if it could not be inserted.
func (l *soakLoad) signal(ctx context.Context) bool {
	at := time.Now()
	id := fmt.Sprintf("soak-%d", at.UnixNano())
	data := `{"data-collections": ["public.big", "public.a"], "type": "incremental"}`
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := l.fp.s.db.Pool.Exec(c, `INSERT INTO public.procon_signal (id, type, data) VALUES ($1, 'execute-snapshot', $2)`, id, data); err != nil {
		return false
	}
	l.mu.Lock()
	l.snapshotID, l.signalAt = "signal:"+id, at
	l.mu.Unlock()
	return true
}

// checkRealtime reads the realtime topic until every committed notification is there (at
// least once: notifications may repeat after a crash, in both delivery modes).
func (l *soakLoad) checkRealtime(t *testing.T) (string, error) {
	t.Helper()
	l.mu.Lock()
	want := len(l.notified)
	l.mu.Unlock()
	seen, scanned := map[int]bool{}, 0
	var opts []kgo.Opt
	if l.fp.exactly {
		opts = append(opts, readCommitted)
	}
	recs, err := l.fp.s.env.ReadUntil(realtimeTopic(l.fp.s), 3*time.Minute, func(recs []*kgo.Record) bool {
		for _, r := range recs[scanned:] {
			var rt rtRecord
			var md struct{ N int }
			if json.Unmarshal(r.Value, &rt) == nil && json.Unmarshal([]byte(rt.Metadata), &md) == nil && l.notified[md.N] {
				seen[md.N] = true
			}
		}
		scanned = len(recs)
		return len(seen) == want
	}, opts...)
	if err != nil {
		missing := []int{}
		for n := range l.notified {
			if !seen[n] && len(missing) < 20 {
				missing = append(missing, n)
			}
		}
		return "", fmt.Errorf("realtime topic %s: %w: %d of %d committed notifications arrived; missing (first 20): %v", realtimeTopic(l.fp.s), err, len(seen), want, missing)
	}
	return fmt.Sprintf("all %d committed realtime notifications arrived (%d records)", want, len(recs)), nil
}

// checkSnapshot waits for the incremental snapshot to end done, and reads big's topic until
// every row of big has its state from the snapshot's time on: an incremental snapshot record,
// or, for a row changed while its chunk was read (the snapshot drops that row: the streamed
// change is newer), a change record produced after the signal.
func (l *soakLoad) checkSnapshot(t *testing.T) (string, error) {
	t.Helper()
	l.mu.Lock()
	id, at := l.snapshotID, l.signalAt
	l.mu.Unlock()
	if id == "" {
		return "", fmt.Errorf("the incremental snapshot's signal was never inserted")
	}
	s := l.fp.s
	if o := s.waitEnded(t, id, 5*time.Minute); o.status != "done" {
		return "", fmt.Errorf("incremental snapshot %s: outcome %+v, want done", id, o)
	}
	var opts []kgo.Opt
	if l.fp.exactly {
		opts = append(opts, readCommitted)
	}
	read, changed, scanned := map[int]bool{}, map[int]bool{}, 0
	covered := func() int {
		n := len(read)
		for id := range changed {
			if !read[id] {
				n++
			}
		}
		return n
	}
	_, err := s.env.ReadUntil(s.topic("big"), 3*time.Minute, func(recs []*kgo.Record) bool {
		for _, r := range recs[scanned:] {
			var ev struct {
				Op     string
				After  struct{ ID int }
				Source struct{ Snapshot string }
			}
			switch {
			case json.Unmarshal(r.Value, &ev) != nil:
			case ev.Op == "r" && ev.Source.Snapshot == "incremental":
				read[ev.After.ID] = true
			case ev.Op == "u" && !r.Timestamp.Before(at):
				changed[ev.After.ID] = true
			}
		}
		scanned = len(recs)
		return covered() == bigRows
	}, opts...)
	if err != nil {
		return "", fmt.Errorf("incremental snapshot %s: %w: %d of %d rows of big have a snapshot record or a later change", id, err, covered(), bigRows)
	}
	return fmt.Sprintf("incremental snapshot of public.big and public.a done: %d of big's %d rows read by it, the other %d changed while it ran", len(read), bigRows, bigRows-len(read)), nil
}
