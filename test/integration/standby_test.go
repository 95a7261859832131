package integration

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/test/testenv"
)

// standbyConfig is the setup's configuration at log level info (the instances' outputs are
// read again and again) and, when listen is set, with metrics.
func standbyConfig(s *setup, listen string) string {
	c := strings.Replace(s.config, "  level: debug\n", "  level: info\n", 1)
	if listen != "" {
		c += "\nmetrics: {listen: " + listen + "}\n"
	}
	return c
}

var streamingLine = regexp.MustCompile(`(?m)^time=(\S+) level=INFO msg=streaming slot=`)

// streamedAt returns the times of the instance's "streaming" log lines (one per connection
// that started streaming).
func (p *process) streamedAt(t *testing.T) []time.Time {
	t.Helper()
	var out []time.Time
	for _, m := range streamingLine.FindAllStringSubmatch(p.output(), -1) {
		at, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			t.Fatalf("log time %q: %v", m[1], err)
		}
		out = append(out, at)
	}
	return out
}

// waitingLogged reports whether the instance logged that it waits for another's lock.
func (p *process) waitingLogged() bool {
	return strings.Contains(p.output(), `msg="waiting: another procon-cdc holds slot `)
}

// exitedNow reports whether the process has exited.
func (p *process) exitedNow() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// activeOf waits until exactly one of ps streams and every other one logged that it waits,
// and returns the streaming one. An instance that exits fails the test.
func activeOf(t *testing.T, ps []*process, timeout time.Duration) *process {
	t.Helper()
	var active *process
	testenv.WaitFor(t, timeout, "one instance to stream and the others to wait", func() (bool, error) {
		active = nil
		waiting := 0
		for i, p := range ps {
			if p.exitedNow() {
				t.Fatalf("instance %d exited (%v):\n%s", i, p.waitErr, p.output())
			}
			if len(p.streamedAt(t)) > 0 {
				if active != nil {
					t.Fatalf("two instances stream at once:\n%s\n---\n%s", active.output(), p.output())
				}
				active = p
			} else if p.waitingLogged() {
				waiting++
			}
		}
		return active != nil && waiting == len(ps)-1, nil
	})
	return active
}

// checkCleanStop checks that a process stopped by SIGTERM exited 0, said "stopped", and
// reported no cancelled context.
func checkCleanStop(t *testing.T, name string, p *process, err error) {
	t.Helper()
	out := p.output()
	if err != nil || !strings.Contains(out, "msg=stopped") || strings.Contains(out, "context canceled") {
		t.Fatalf("%s: SIGTERM: exit %v, want 0 with a \"stopped\" line and no cancelled context:\n%s", name, err, out)
	}
}

// TestStandbyStartTogether starts three procon-cdc on one configuration at once, on a slot
// that does not exist yet: exactly one creates the slot and streams, the other two wait for
// its lock (standby: /readyz 503, phase standby) without an error. A waiting standby stops
// cleanly on SIGTERM; when the active one stops, a standby takes over.
func TestStandbyStartTogether(t *testing.T) {
	s := newSetup(t, `public.items: {}`, "")
	s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, note text)`)
	addrs := make([]string, 3)
	ps := make([]*process, 3)
	paths := make([]string, 3)
	for i := range ps {
		addrs[i] = testenv.FreeAddr(t)
		paths[i] = writeConfig(t, standbyConfig(s, addrs[i]))
	}
	var wg sync.WaitGroup
	for i := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); ps[i] = startProcon(t, "run", paths[i]) }()
	}
	wg.Wait()
	active := activeOf(t, ps, time.Minute)
	created := 0
	for _, p := range ps {
		created += strings.Count(p.output(), "msg=\"created replication slot\"")
	}
	if created != 1 {
		t.Fatalf("the slot was created %d times, want once", created)
	}
	s.db.Exec(t, `INSERT INTO items SELECT g, 'a' FROM generate_series(1, 10) g`)
	s.env.ReadN(t, s.topic("items"), 10, time.Minute)

	var standbys []*process
	for i, p := range ps {
		url := "http://" + addrs[i]
		if p == active {
			testenv.WaitFor(t, 30*time.Second, "the active instance to be ready", func() (bool, error) {
				code, _, err := testenv.TryHTTPGet(url + "/readyz")
				return code == http.StatusOK, err
			})
			continue
		}
		standbys = append(standbys, p)
		if code, body := testenv.HTTPGet(t, url+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "standby") {
			t.Fatalf("a standby's /readyz: %d %q, want 503 saying standby", code, body)
		}
		if code, _ := testenv.HTTPGet(t, url+"/healthz"); code != http.StatusOK {
			t.Fatalf("a standby's /healthz: %d, want 200", code)
		}
		if v := testenv.MustMetric(t, testenv.Metrics(t, url+"/metrics"), "procon_phase", "phase=standby"); v != 1 {
			t.Fatalf("a standby's procon_phase{phase=standby} = %v, want 1", v)
		}
	}

	// procon-cdc status (with a standby's configuration) names the active one's lock session
	// and counts the standbys.
	out := runStatus(t, paths[slices.Index(ps, standbys[0])])
	holder := "lock held by procon-cdc lock " + strconv.Itoa(active.cmd.Process.Pid) + "@"
	if !strings.Contains(out, holder) || !strings.Contains(out, "2 standbys waiting") {
		t.Fatalf("procon-cdc status does not name the lock's holder and 2 standbys:\n%s", out)
	}

	// A waiting standby stops at once and cleanly.
	start := time.Now()
	checkCleanStop(t, "a waiting standby", standbys[0], standbys[0].signal(t, syscall.SIGTERM))
	t.Logf("a waiting standby stopped in %s", time.Since(start).Round(time.Millisecond))

	// The active one stops cleanly; the last standby takes over and streams what follows.
	checkCleanStop(t, "the active instance", active, active.signal(t, syscall.SIGTERM))
	last := standbys[1]
	testenv.WaitFor(t, time.Minute, "the last standby to take over", func() (bool, error) {
		return len(last.streamedAt(t)) > 0, nil
	})
	s.db.Exec(t, `INSERT INTO items SELECT g, 'b' FROM generate_series(11, 20) g`)
	recs := s.env.ReadN(t, s.topic("items"), 20, time.Minute)
	seen := map[string]bool{}
	for _, e := range decode(t, recs) {
		seen[string(e.Record.Key)] = true
	}
	if len(seen) != 20 {
		t.Fatalf("%d distinct keys in Kafka, want 20", len(seen))
	}
	checkCleanStop(t, "the new active instance", last, last.signal(t, syscall.SIGTERM))
}

// TestStandbyTakeover runs three procon-cdc on one configuration while a writer commits
// numbered versions, and SIGKILLs the active one ten times, starting it again each time as a
// new standby: every committed version reaches Kafka, in order per key (repeats allowed:
// at-least-once). It logs the time from each SIGKILL to the next instance streaming (its log
// line) and to the first new record in Kafka.
func TestStandbyTakeover(t *testing.T) {
	s := newSetup(t, `public.versions: {}`, "")
	w := newVersionWriter(t, s, 20)
	path := writeConfig(t, standbyConfig(s, ""))
	rnd := testenv.Rand(t, 3) // when to kill
	ps := []*process{startProcon(t, "run", path), startProcon(t, "run", path), startProcon(t, "run", path)}
	active := activeOf(t, ps, time.Minute)
	s.waitSlot(t)
	stop := w.start()

	adm := kadm.NewClient(s.env.Kafka(t))
	topic := s.topic("versions")
	ends := func() map[int32]int64 {
		listed, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int32]int64{}
		listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return out
	}
	total := func(m map[int32]int64) (n int64) {
		for _, o := range m {
			n += o
		}
		return n
	}
	var toStream, toKafka []time.Duration
	for i := range 10 {
		before := total(ends())
		testenv.WaitFor(t, time.Minute, "the active instance to make progress", func() (bool, error) { return total(ends()) > before, nil })
		time.Sleep(time.Duration(50+rnd.IntN(400)) * time.Millisecond) // a random moment, not a wait for a condition
		killedAt := time.Now()
		active.kill9(t)
		atKill := ends()
		var next *process
		testenv.WaitFor(t, time.Minute, "a standby to take over", func() (bool, error) {
			for _, p := range ps {
				if p != active && len(p.streamedAt(t)) > 0 {
					next = p
				}
			}
			return next != nil, nil
		})
		streamed := next.streamedAt(t)[0]
		// Records the killed one had sent may still land after the kill: the new one's are
		// those produced after it.
		produced := firstProducedAfter(t, s, topic, atKill, killedAt)
		toStream = append(toStream, streamed.Sub(killedAt))
		toKafka = append(toKafka, produced.Sub(killedAt))
		t.Logf("kill %d: streaming %s after the SIGKILL, first new record produced %s after", i+1,
			streamed.Sub(killedAt).Round(time.Millisecond), produced.Sub(killedAt).Round(time.Millisecond))
		// The killed one comes back as a standby; the others keep waiting.
		ps[slices.Index(ps, active)] = startProcon(t, "run", path)
		active = next
		activeOf(t, ps, time.Minute)
	}
	stop()
	checkVersions(t, s, w.finalVersions(t), true)
	t.Logf("take-over, SIGKILL to streaming: %s; to the first new record produced (its Kafka timestamp): %s", spread(toStream), spread(toKafka))
	for _, p := range ps {
		if err := p.signal(t, syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM: %v\n%s", err, p.output())
		}
	}
}

// firstProducedAfter waits for the first record of topic, past the offsets from, whose
// timestamp (set when it was produced) is after at, and returns that timestamp.
func firstProducedAfter(t *testing.T, s *setup, topic string, from map[int32]int64, at time.Time) time.Time {
	t.Helper()
	offsets := map[int32]kgo.Offset{}
	for p, o := range from {
		offsets[p] = kgo.NewOffset().At(o)
	}
	cl := s.env.Kafka(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no record of %s produced after %s within a minute", topic, at.Format(time.RFC3339Nano))
		}
		var first time.Time
		fs.EachRecord(func(r *kgo.Record) {
			if r.Timestamp.After(at) && (first.IsZero() || r.Timestamp.Before(first)) {
				first = r.Timestamp
			}
		})
		if !first.IsZero() {
			return first
		}
	}
}

// spread is "min ... median ... max" of ds.
func spread(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return "min " + r(s[0]) + ", median " + r(s[len(s)/2]) + ", max " + r(s[len(s)-1])
}

// TestStandbyLockLost ends the active instance's lock session (as a PostgreSQL restart or a
// broken connection would): it stops producing, and waits for the lock again; the standby
// takes over, and nothing committed is lost.
func TestStandbyLockLost(t *testing.T) {
	s := newSetup(t, `public.versions: {}`, "")
	w := newVersionWriter(t, s, 10)
	path := writeConfig(t, standbyConfig(s, ""))
	ps := []*process{startProcon(t, "run", path), startProcon(t, "run", path)}
	active := activeOf(t, ps, time.Minute)
	s.waitSlot(t)
	stop := w.start()
	testenv.WaitFor(t, time.Minute, "events to flow", func() (bool, error) { return s.countIfExists(t, s.topic("versions")) > 100, nil })
	var standby *process
	for _, p := range ps {
		if p != active {
			standby = p
		}
	}
	pid := active.cmd.Process.Pid
	var n int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'procon-cdc lock ' || $1 || '@%'`, strconv.Itoa(pid)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminate the active instance's lock session: %d sessions (%v)", n, err)
	}
	testenv.WaitFor(t, time.Minute, "the standby to take over", func() (bool, error) { return len(standby.streamedAt(t)) > 0, nil })
	testenv.WaitFor(t, time.Minute, "the former active one to wait as a standby", func() (bool, error) {
		out := active.output()
		return strings.Contains(out, "lost the slot's lock; waiting to take it again") && active.waitingLogged(), nil
	})
	before := s.countIfExists(t, s.topic("versions"))
	testenv.WaitFor(t, time.Minute, "events after the take-over", func() (bool, error) { return s.countIfExists(t, s.topic("versions")) > before+100, nil })
	stop()
	checkVersions(t, s, w.finalVersions(t), true)
	checkCleanStop(t, "the standby", active, active.signal(t, syscall.SIGTERM))
}

// TestSlotLock takes a slot's lock with the library: a second taker waits (one log line
// naming the holder), gets the lock as soon as the holder releases it, and a waiter whose
// context ends returns that error. A holder whose session is terminated sees Lost closed and
// an error wrapping ErrLockLost.
func TestSlotLock(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	slot := testenv.Name(t, "lock")
	ctx := testenv.Context(t, time.Minute)
	cfg := replication.LockConfig{DSN: db.DSN, Slot: slot}
	first, err := replication.LockSlot(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	logged := lockedWriter{&sync.Mutex{}, &bytes.Buffer{}}
	cfg2 := cfg
	cfg2.Logger = slog.New(slog.NewTextHandler(logged, nil))
	waiting := make(chan replication.Holder, 1)
	cfg2.Waiting = func(h replication.Holder) { waiting <- h }
	got := make(chan error, 1)
	var second *replication.SlotLock
	go func() {
		var err error
		second, err = replication.LockSlot(ctx, cfg2)
		got <- err
	}()
	h := <-waiting
	if h.PID == 0 || !strings.HasPrefix(h.Application, "procon-cdc lock ") {
		t.Fatalf("holder %+v, want the first session's pid and application_name", h)
	}
	released := time.Now()
	first.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	t.Logf("the waiter took the lock %s after its release", time.Since(released).Round(time.Millisecond))
	logged.mu.Lock()
	out := logged.w.String()
	logged.mu.Unlock()
	if n := strings.Count(out, "waiting: another procon-cdc holds slot "+slot); n != 1 {
		t.Fatalf("%d waiting lines, want 1:\n%s", n, out)
	}

	// A waiter whose context ends.
	cctx, cancel := context.WithCancel(ctx)
	cfg3 := cfg
	cfg3.Waiting = func(replication.Holder) { cancel() }
	if _, err := replication.LockSlot(cctx, cfg3); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled wait returned %v, want context.Canceled", err)
	}

	// The holder's session ends.
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name LIKE 'procon-cdc lock %' AND state = 'idle'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminate the holder's session: %d (%v)", n, err)
	}
	select {
	case <-second.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost is not closed 10 s after the lock's session was terminated")
	}
	if err := second.Err(); !errors.Is(err, replication.ErrLockLost) {
		t.Fatalf("Err() = %v, want ErrLockLost", err)
	}
	second.Release()
}
