package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/test/testenv"
)

// faultPipeline is a procon-cdc that reaches PostgreSQL, Kafka and the registry through fault
// proxies, with a writer of numbered versions over two tables.
type faultPipeline struct {
	s       *setup
	w       *multiWriter
	exactly bool
	p       *process
}

// faultRun is one pipeline in each delivery mode, at-least-once and exactly-once, behind the
// same proxies, so that one fault is proved against both.
type faultRun struct {
	faults    *testenv.Faults
	pipelines []*faultPipeline
	stop      []func()
}

var faultTables = []string{"a", "b"}

// newFaultRun sets up both pipelines; extra is added to each configuration (registry settings
// name the registry through the proxy: see faults.RegistryURL).
func newFaultRun(t *testing.T, extra func(f *testenv.Faults) string) *faultRun {
	t.Helper()
	r := &faultRun{faults: testenv.Get(t).FaultProxies(t)}
	for _, exactly := range []bool{false, true} {
		var ex string
		if extra != nil {
			ex = extra(r.faults)
		}
		s := newSetup(t, "public.a: {}\npublic.b: {}", ex)
		if exactly {
			s.withExactlyOnce()
		}
		s.config = strings.Replace(s.config, "dsn: "+s.db.DSN, "dsn: "+r.faults.DSN(s.db.DSN), 1)
		s.config = strings.Replace(s.config, "brokers: "+strings.Join(s.env.Brokers, ","), "brokers: "+r.faults.Brokers(), 1)
		r.pipelines = append(r.pipelines, &faultPipeline{s: s, w: newMultiWriter(t, s, faultTables, 20), exactly: exactly})
	}
	return r
}

// start runs both procon-cdc and their writers, and waits until changes flow.
func (r *faultRun) start(t *testing.T) {
	t.Helper()
	for _, fp := range r.pipelines {
		fp.p = fp.s.startProcess(t)
	}
	for _, fp := range r.pipelines {
		fp.s.waitSlot(t)
		r.stop = append(r.stop, fp.w.start())
	}
	r.flowing(t, time.Minute, "changes to flow")
}

// records is how many records each pipeline's topics hold.
func (r *faultRun) records(t *testing.T) []int64 {
	out := make([]int64, len(r.pipelines))
	for i, fp := range r.pipelines {
		for _, tb := range faultTables {
			out[i] += fp.s.countIfExists(t, fp.s.topic(tb))
		}
	}
	return out
}

// flowing waits until each pipeline has written more than 50 records from now on.
func (r *faultRun) flowing(t *testing.T, timeout time.Duration, what string) {
	t.Helper()
	before := r.records(t)
	testenv.WaitFor(t, timeout, what, func() (bool, error) {
		for i, n := range r.records(t) {
			if n < before[i]+50 {
				return false, nil
			}
		}
		return true, nil
	})
}

// heldDuring checks, for d, that no slot confirms a transaction that committed after this
// call: while nothing new can reach Kafka, nothing new may be confirmed. The bound of each
// slot is the server's WAL position read once its writer has committed a transaction after
// the call: that transaction ends before it. (The WAL position at the call itself is no
// bound: the slot rightly confirms past WAL of other databases, or of DDL, while none of its
// own transactions is open.)
func (r *faultRun) heldDuring(t *testing.T, d time.Duration) {
	t.Helper()
	limits := make([]pglogrepl.LSN, len(r.pipelines))
	for i, fp := range r.pipelines {
		n := fp.w.committed()
		testenv.WaitFor(t, 30*time.Second, "the writer to commit during the fault", func() (bool, error) { return fp.w.committed() > n, nil })
		limits[i] = fp.s.currentLSN(t)
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for i, fp := range r.pipelines {
			if got := fp.s.confirmedLSN(t); got > limits[i] {
				t.Fatalf("pipeline %d (exactly-once %v) confirmed %s during the fault: past %s, after a transaction that committed during it", i, fp.exactly, got, limits[i])
			}
		}
		time.Sleep(500 * time.Millisecond) // a sampling period over a fixed window, not a wait for a condition
	}
}

// finish stops the writers and checks both pipelines: every committed version of every key
// once, in order, none rolled back; in exactly-once mode also every transaction whole and no
// (procon.tx, procon.seq) twice, read as read_committed.
func (r *faultRun) finish(t *testing.T) {
	t.Helper()
	for _, stop := range r.stop {
		stop()
	}
	for _, fp := range r.pipelines {
		if fp.exactly {
			checkExactlyOnce(t, fp.s, fp.w)
			continue
		}
		final := fp.w.final(t)
		for _, tb := range faultTables {
			checkVersionsIn(t, fp.s, fp.s.topic(tb), func(*kgo.Record) bool { return true }, final[tb], false)
		}
	}
	for i, fp := range r.pipelines {
		logNotable(t, fmt.Sprintf("pipeline %d (exactly-once %v)", i, fp.exactly), fp.p.output())
		select {
		case <-fp.p.exited:
			t.Fatalf("pipeline %d (exactly-once %v) exited: %v\n%s", i, fp.exactly, fp.p.waitErr, fp.p.output())
		default:
		}
	}
}

// logNotable logs what a procon-cdc said at warning level and above: how it met the faults.
func logNotable(t *testing.T, who, output string) {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(output, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 40 {
		lines = append(lines[:20], append([]string{fmt.Sprintf("... %d more ...", len(lines)-40)}, lines[len(lines)-20:]...)...)
	}
	t.Logf("%s said:\n%s", who, strings.Join(lines, "\n"))
}

// TestBlackholePostgres cuts every link to PostgreSQL without telling anyone: procon-cdc must
// notice the silence (postgres.receive_timeout), connect again once the path is back, and lose
// nothing.
func TestBlackholePostgres(t *testing.T) {
	r := newFaultRun(t, nil)
	for _, fp := range r.pipelines {
		fp.s.config = strings.Replace(fp.s.config, "status_interval: 200ms", "status_interval: 200ms\n  receive_timeout: 5s", 1)
	}
	r.start(t)
	r.faults.Postgres.Blackhole()
	time.Sleep(faultWindow(t)) // the fault's duration is the test's subject
	r.faults.Postgres.Heal()
	r.flowing(t, 3*time.Minute, "changes to flow after the blackhole")
	r.finish(t)
	for _, fp := range r.pipelines {
		if out := fp.p.output(); !strings.Contains(out, "postgres.receive_timeout") {
			t.Errorf("procon-cdc did not notice PostgreSQL's silence:\n%s", out)
		}
	}
}

// faultWindow is how long a fault lasts: PROCON_FAULT_WINDOW, or 30 s (longer than every
// timeout it is meant to trip, well within kafka.transactions.timeout).
func faultWindow(t *testing.T) time.Duration {
	if v := os.Getenv("PROCON_FAULT_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("PROCON_FAULT_WINDOW: %v", err)
		}
		return d
	}
	return 30 * time.Second
}

// TestBlackholeKafka cuts every link to Kafka without telling anyone: procon-cdc keeps reading
// until its buffer is full (backpressure), confirms nothing committed after the cut, and once
// the path is back writes everything, once.
func TestBlackholeKafka(t *testing.T) {
	r := newFaultRun(t, nil)
	r.start(t)
	r.faults.Kafka.Blackhole()
	r.heldDuring(t, faultWindow(t))
	r.faults.Kafka.Heal()
	r.flowing(t, 3*time.Minute, "changes to flow after the blackhole")
	r.finish(t)
	for _, fp := range r.pipelines {
		if out := fp.p.output(); !strings.Contains(out, "Kafka has acknowledged nothing") || !strings.Contains(out, "Kafka acknowledges records again") {
			t.Errorf("procon-cdc did not say that Kafka stopped acknowledging, and when it did again:\n%s", out)
		}
	}
}

// TestRepeatedResets resets every connection to every service, every second or two, for
// half a minute: each reset is a reconnection somewhere, in the middle of whatever it was
// doing.
func TestRepeatedResets(t *testing.T) {
	r := newFaultRun(t, nil)
	r.start(t)
	rnd := testenv.Rand(t, 21)
	for deadline := time.Now().Add(faultWindow(t)); time.Now().Before(deadline); {
		links := r.faults.All()
		links[rnd.IntN(len(links))].Reset()
		time.Sleep(time.Duration(500+rnd.IntN(1500)) * time.Millisecond) // random moments, not a wait for a condition
	}
	r.flowing(t, 3*time.Minute, "changes to flow after the resets")
	r.finish(t)
}

// TestSlowLinks puts 500 ms (±100 ms) of latency on every link, each way, while changes
// flow: slower, nothing lost, nothing out of order.
func TestSlowLinks(t *testing.T) {
	r := newFaultRun(t, nil)
	r.start(t)
	for _, p := range r.faults.All() {
		p.SetLatency(500*time.Millisecond, 100*time.Millisecond)
	}
	r.flowing(t, 2*time.Minute, "changes to flow over slow links")
	time.Sleep(faultWindow(t) / 2) // the fault's duration is the test's subject
	for _, p := range r.faults.All() {
		p.SetLatency(0, 0)
	}
	r.finish(t)
}

// TestBrokerRestarts restarts Kafka five times in a row under load, every other time the hard
// way (SIGKILL), without waiting for procon-cdc in between.
func TestBrokerRestarts(t *testing.T) {
	r := newFaultRun(t, nil)
	r.start(t)
	for i := range 5 {
		if i%2 == 1 {
			r.env().CrashService(t, "kafka")
		} else {
			r.env().StopService(t, "kafka")
		}
		r.env().StartService(t, "kafka")
	}
	r.flowing(t, 3*time.Minute, "changes to flow after the restarts")
	r.finish(t)
}

// TestPostgresImmediateRestart stops PostgreSQL with an immediate shutdown (sessions cut, no
// checkpoint: crash recovery at start) under load, and starts it again.
func TestPostgresImmediateRestart(t *testing.T) {
	r := newFaultRun(t, nil)
	r.start(t)
	r.env().CrashService(t, "postgres")
	r.env().StartService(t, "postgres")
	r.flowing(t, 3*time.Minute, "changes to flow after the restart")
	r.finish(t)
}

func (r *faultRun) env() *testenv.Env { return r.pipelines[0].s.env }

// newAvroFaultRun is newFaultRun for Avro pipelines, whose registry is behind its proxy.
func newAvroFaultRun(t *testing.T) *faultRun {
	t.Helper()
	r := newFaultRun(t, func(f *testenv.Faults) string {
		return "serialization: avro\nschema_registry: {url: " + f.RegistryURL() + "}"
	})
	reg := registryClient(t, r.env())
	for _, fp := range r.pipelines {
		fp.s.avro = newAvroReader(reg)
	}
	return r
}

// TestRegistryBlackholeMidSchemaChange changes the captured tables' schema while the registry
// does not answer: the new schema's registration waits (and with it the events and the
// confirmed position), and everything arrives once the path is back.
func TestRegistryBlackholeMidSchemaChange(t *testing.T) {
	r := newAvroFaultRun(t)
	r.start(t)
	r.faults.Registry.Blackhole()
	for _, fp := range r.pipelines {
		for _, tb := range faultTables {
			fp.s.db.Exec(t, `ALTER TABLE public.`+tb+` ADD COLUMN w int`)
		}
	}
	r.heldDuring(t, faultWindow(t)/2)
	r.faults.Registry.Heal()
	r.flowing(t, 3*time.Minute, "changes to flow after the blackhole")
	r.finish(t)
}

// TestRegistryDownAtStart starts procon-cdc while the registry refuses connections: the start
// waits for it, and goes on once it answers.
func TestRegistryDownAtStart(t *testing.T) {
	r := newAvroFaultRun(t)
	r.faults.Registry.Refuse()
	heal := time.AfterFunc(10*time.Second, r.faults.Registry.Heal)
	defer heal.Stop()
	r.start(t)
	r.flowing(t, time.Minute, "changes to flow")
	r.finish(t)
	for _, fp := range r.pipelines {
		if out := fp.p.output(); !strings.Contains(out, "registry") {
			t.Errorf("procon-cdc did not say the registry was down:\n%s", out)
		}
	}
}

// TestCatalogConnectionLost ends procon-cdc's catalog session (as an idle-session timeout, a
// firewall or an operator would) while the replication connection streams on, then changes the
// table's schema, which makes the next change need the catalog: procon-cdc must connect again,
// not exit (the "read columns of relation N: unexpected EOF").
func TestCatalogConnectionLost(t *testing.T) {
	s := newSetup(t, `public.versions: {}`, "")
	w := newVersionWriter(t, s, 10)
	p := s.startProcess(t)
	s.waitSlot(t)
	stop := w.start()
	testenv.WaitFor(t, time.Minute, "events to flow", func() (bool, error) { return s.countIfExists(t, s.topic("versions")) > 100, nil })
	var ended int
	err := s.db.Pool.QueryRow(context.Background(), `SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity
		WHERE datname = current_database() AND application_name = 'procon-cdc catalog'`).Scan(&ended)
	if err != nil || ended == 0 {
		t.Fatalf("ended %d catalog sessions: %v", ended, err)
	}
	s.db.Exec(t, `ALTER TABLE public.versions ADD COLUMN w int`)
	before := s.countIfExists(t, s.topic("versions"))
	testenv.WaitFor(t, time.Minute, "events after the schema change", func() (bool, error) {
		select {
		case <-p.exited:
			return false, fmt.Errorf("procon-cdc exited: %v", p.waitErr)
		default:
		}
		return s.countIfExists(t, s.topic("versions")) > before+100, nil
	})
	stop()
	checkVersions(t, s, w.finalVersions(t), false)
	logNotable(t, "procon-cdc", p.output())
	if !strings.Contains(p.output(), "reconnecting") {
		t.Fatal("procon-cdc did not reconnect: the test did not reach the lost catalog session")
	}
}
