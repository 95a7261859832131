package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/test/testenv"
)

// pgPair is a PostgreSQL 17 primary and its physical standby, made from a cold copy of the
// primary, set up for failover slots: the standby streams through the physical slot
// "standby1", which the primary's synchronized_standby_slots names (no logical change is
// sent before the standby has flushed it). Replication is asynchronous: a commit returns
// before the standby has it, so a crash loses the commits the standby had not received, as
// it does in most installations. The standby starts with sync_replication_slots off: a test
// turns it on once its slot exists (TestFailover says why).
type pgPair struct {
	primary, standby *testenv.PGServer
}

// common is every server's configuration; fsync is off (the test never crashes the machine,
// only the server).
const pgPairConf = `wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
fsync = off
full_page_writes = off
wal_sender_timeout = 10s
wal_receiver_status_interval = 1s
log_min_messages = info
log_line_prefix = '%m [%p] '`

// startPGPair starts the pair. standbyConf, given the primary's port, is appended to the
// standby's configuration (a test of check's findings breaks it there).
func startPGPair(t *testing.T, standbyConf func(primaryPort int) string) *pgPair {
	return startPGPairWith(t, standbyConf, true)
}

// startPGPairWith is startPGPair, without synchronized_standby_slots unless standbySlots.
func startPGPairWith(t *testing.T, standbyConf func(primaryPort int) string, standbySlots bool) *pgPair {
	t.Helper()
	bin := testenv.PGBin(t, 17)
	root := testenv.PGRoot(t)
	p := &pgPair{primary: testenv.InitPG(t, bin, root, "primary", pgPairConf)}
	p.primary.Start(t)
	conn := p.primary.Conn(t, "postgres")
	ctx := testenv.Context(t, time.Minute)
	if _, err := conn.Exec(ctx, `SELECT pg_create_physical_replication_slot('standby1', true)`); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	p.primary.Stop(t, "fast")

	p.standby = p.primary.CopyTo(t, "standby")
	// The copy carries the primary's physical slot: it is the primary's alone.
	if err := os.RemoveAll(p.standby.Dir + "/pg_replslot/standby1"); err != nil {
		t.Fatal(err)
	}
	p.standby.WriteFile(t, "standby.signal", "", false)
	p.standby.AppendConf(t, fmt.Sprintf(`primary_conninfo = 'host=127.0.0.1 port=%d user=procon dbname=postgres application_name=standby1'
primary_slot_name = 'standby1'
hot_standby_feedback = on
sync_replication_slots = off
`, p.primary.Port))
	if standbyConf != nil {
		p.standby.AppendConf(t, standbyConf(p.primary.Port))
	}
	// Only the primary waits for the standby; a promoted standby has no standby of its own.
	if standbySlots {
		p.primary.AppendConf(t, `synchronized_standby_slots = 'standby1'`)
	}
	p.primary.Start(t)
	p.standby.Start(t)
	conn = p.primary.Conn(t, "postgres")
	testenv.WaitFor(t, time.Minute, "the standby to stream", func() (bool, error) {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby1' AND state = 'streaming'`).Scan(&n)
		return n == 1, err
	})
	return p
}

// DSN names both servers; procon-cdc and the writer connect to whichever accepts writes.
func (p *pgPair) DSN() string { return p.dsn(true) }

// dsn names both servers, the primary first; with readWrite, a connection takes only the
// one that accepts writes, without it the first that answers.
func (p *pgPair) dsn(readWrite bool) string {
	dsn := fmt.Sprintf("postgres://procon@%s,%s/postgres?sslmode=disable&connect_timeout=2", p.primary.Addr(), p.standby.Addr())
	if readWrite {
		dsn += "&target_session_attrs=read-write"
	}
	return dsn
}

// TestFailover runs procon-cdc on a PostgreSQL 17 primary with postgres.failover while a
// writer inserts rows, cuts the standby off (its primary_conninfo pointed elsewhere) so that
// the primary commits rows the standby never gets, crashes the primary (immediate stop), promotes the standby and
// lets the writer go on there. procon-cdc, never restarted, must follow to the new primary
// through its multi-host DSN, and Kafka must then hold exactly the rows of the new primary's
// table: every one (nothing lost, however the synced slot lags) and none that the new primary
// lacks (the rows lost with the old primary never reached Kafka: synchronized_standby_slots
// held them back). Repeats of rows are allowed (at-least-once) and counted.
func TestFailover(t *testing.T) { testFailover(t, true, true) }

// TestFailoverStandbyGuard is TestFailover with a DSN that lacks target_session_attrs, so
// that while the old primary is down a connection lands on the standby (a DNS name moved
// before the promotion does the same): procon-cdc must not read the synchronized slot there,
// which a standby refuses for good, but keep trying until the standby is promoted.
func TestFailoverStandbyGuard(t *testing.T) { testFailover(t, false, true) }

// TestFailoverWithoutStandbySlots is TestFailover on a primary without
// synchronized_standby_slots: procon-cdc receives rows the standby never gets, and the
// promoted standby's new timeline reuses their WAL positions. Reading on would skip its
// transactions up to where procon-cdc was (and Kafka holds rows the database lost):
// procon-cdc must stop instead, saying why, and confirm nothing more.
func TestFailoverWithoutStandbySlots(t *testing.T) { testFailover(t, true, false) }

func testFailover(t *testing.T, readWrite, standbySlots bool) {
	start := time.Now()
	env := testenv.Get(t)
	p := startPGPairWith(t, nil, standbySlots)
	ctx := testenv.Context(t, 3*time.Minute)
	primary := p.primary.Conn(t, "postgres")
	if _, err := primary.Exec(ctx, `CREATE TABLE public.t (id bigint PRIMARY KEY, pad text)`); err != nil {
		t.Fatal(err)
	}

	name := strings.ReplaceAll(testenv.Name(t, "p"), "_", "-")
	slot := strings.ReplaceAll(name, "-", "_")
	env.DeleteTopicsAtCleanup(t, name)
	configPath := writeConfig(t, fmt.Sprintf(`name: %s
postgres:
  dsn: %s
  slot: %s
  publication: %s
  status_interval: 200ms
  failover: true
kafka:
  brokers: %s
log:
  level: info
relation_configs:
  public.t: {}
`, name, p.dsn(readWrite), slot, slot, strings.Join(env.Brokers, ",")))
	proc := startProcon(t, "run", configPath)
	topic := name + ".public.t"

	w := &failoverWriter{dsn: p.dsn(readWrite)}
	stopWriter := make(chan struct{})
	var stopOnce sync.Once
	defer stopOnce.Do(func() { close(stopWriter) })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); w.run(ctx, stopWriter) }()

	kafka := newIDCollector(t, env, topic)
	testenv.WaitFor(t, time.Minute, "rows in Kafka", func() (bool, error) { return kafka.poll(t) > 200, nil })
	t.Logf("%s: the pair set up, rows in Kafka", time.Since(start).Round(time.Millisecond))
	standby := p.standby.Conn(t, "postgres")
	// Only now: the slot sync worker doubles its sleep while it finds nothing to do, up to 30
	// s, and a worker started with the standby would take that long to see the new slot.
	for _, sql := range []string{`ALTER SYSTEM SET sync_replication_slots = on`, `SELECT pg_reload_conf()`} {
		if _, err := standby.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, time.Minute, "the slot to be synchronized to the standby", func() (bool, error) {
		// The standby takes the slot only once its catalog_xmin is one the standby still
		// has; a logged snapshot of running transactions lets the primary's slot advance
		// it now rather than at the next one the server logs by itself (every 15 s).
		if _, err := primary.Exec(ctx, `SELECT pg_log_standby_snapshot()`); err != nil {
			return false, err
		}
		var ready bool
		err := standby.QueryRow(ctx, `SELECT synced AND NOT temporary AND invalidation_reason IS NULL
			FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&ready)
		if err == pgx.ErrNoRows {
			return false, nil
		}
		return ready, err
	})
	_ = standby.Close(ctx)
	_ = primary.Close(ctx)
	check := startProcon(t, "check", configPath)
	// Without target_session_attrs the DSN itself is an error; without
	// synchronized_standby_slots, the setting and the standby's slot that it does not name.
	wantErrors := 0
	if !readWrite {
		wantErrors++
	}
	if !standbySlots {
		wantErrors += 2
	}
	if err := check.wait(); (err == nil) != (wantErrors == 0) || strings.Count("\n"+check.output(), "\nerror") != wantErrors {
		t.Fatalf("check of a pair set up for failover (target_session_attrs=read-write: %v): %v\n%s", readWrite, err, check.output())
	}
	wants := []string{"error synchronized_standby_slots is empty on the primary"}
	if standbySlots {
		wants = []string{"slot standby1 is physical and in use (standby1 at 127.0.0.1)"}
	}
	for _, want := range append(wants,
		"slot "+slot+" is a failover slot",
		"standby "+p.standby.Addr()+" slot "+slot+" is synchronized here",
		"primary "+p.primary.Addr(),
	) {
		if !strings.Contains(strings.Join(strings.Fields(check.output()), " "), want) {
			t.Errorf("check's output lacks %q:\n%s", want, check.output())
		}
	}

	t.Logf("%s: streaming, the slot synchronized and checked", time.Since(start).Round(time.Millisecond))

	// The standby stops receiving; the primary goes on committing, and must send procon-cdc
	// none of it: its walsender waits for the standby's confirmation.
	cutStandby(t, p.standby)
	frozenAt := w.committed()
	primary = p.primary.Conn(t, "postgres")
	testenv.WaitFor(t, 30*time.Second, "the primary to commit rows the standby lacks, and hold them back from procon-cdc", func() (bool, error) {
		var waiting bool
		err := primary.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_stat_replication r JOIN pg_stat_activity a USING (pid)
			WHERE r.application_name = 'procon-cdc' AND a.wait_event = 'WaitForStandbyConfirmation'`).Scan(&waiting)
		return (waiting || !standbySlots) && w.committed() > frozenAt+200, err
	})
	if !standbySlots {
		// Give procon-cdc the rows the standby lacks, as a primary without the setting does.
		lsn := walLSN(t, primary)
		testenv.WaitFor(t, 30*time.Second, "procon-cdc to confirm rows the standby lacks", func() (bool, error) {
			var confirmed bool
			err := primary.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2`, lsn, slot).Scan(&confirmed)
			return confirmed, err
		})
	}
	_ = primary.Close(ctx)
	before := w.committed()
	crash := time.Now()
	p.primary.Stop(t, "immediate")
	// Promoted only once procon-cdc has found no primary (the old one gone, the standby
	// read-only): it must keep trying until there is one.
	testenv.WaitFor(t, 30*time.Second, "procon-cdc to find no primary", func() (bool, error) {
		// The primary's end ends the slot's lock session too, so procon-cdc starts again (a new
		// engine) as it does after any lost lock: it must not take a read-only server for one.
		want := "cannot start again; retrying"
		if !readWrite {
			want = "the server is a standby (in recovery); waiting for a primary"
		}
		return strings.Contains(proc.output(), want), nil
	})
	p.standby.Promote(t)
	t.Logf("primary crashed after %d committed rows; standby promoted %s later", before, time.Since(crash).Round(time.Millisecond))
	if !standbySlots {
		select {
		case <-proc.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("procon-cdc goes on reading a promoted standby that lacks what it received")
		}
		want := "the server's WAL does not continue what procon-cdc read: the server is a promoted standby whose timeline 2 branched off at"
		if err := proc.wait(); err == nil || !strings.Contains(proc.output(), want) {
			t.Fatalf("procon-cdc exited (%v) without saying %q", err, want)
		}
		return
	}
	testenv.WaitFor(t, time.Minute, "the writer to commit on the new primary", func() (bool, error) { return w.committed() > before+300, nil })
	stopOnce.Do(func() { close(stopWriter) })
	wg.Wait()

	promoted := p.standby.Conn(t, "postgres")
	rows, err := promoted.Query(ctx, `SELECT id FROM public.t`)
	if err != nil {
		t.Fatal(err)
	}
	table, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	inTable := make(map[int64]bool, len(table))
	for _, id := range table {
		inTable[id] = true
	}
	lost := 0
	for _, id := range w.acknowledged() {
		if !inTable[id] {
			lost++
		}
	}
	if lost == 0 {
		t.Fatalf("no row committed on the old primary is missing from the new one: the test did not make the standby lag")
	}
	testenv.WaitFor(t, time.Minute, "every row of the new primary in Kafka", func() (bool, error) {
		kafka.poll(t)
		return kafka.hasAll(table), nil
	})
	select {
	case <-proc.exited:
		t.Fatalf("procon-cdc exited: %v", proc.wait())
	default:
	}
	var extra []int64
	for id := range kafka.seen {
		if !inTable[id] {
			extra = append(extra, id)
		}
	}
	if len(extra) > 0 {
		t.Errorf("%d rows in Kafka are not in the new primary (sent before the standby had them): %v", len(extra), first(extra, 20))
	}
	t.Logf("procon-cdc's log of the failover:\n%s", testenv.LastLines(proc.output(), 12))
	t.Logf("%d rows in the new primary, %d committed on the old one lost with it, %d records in Kafka (%d repeats), writer errors %d; %s in all",
		len(table), lost, kafka.records, kafka.records-len(kafka.seen), w.errors(), time.Since(start).Round(time.Millisecond))
}

func first(ids []int64, n int) []int64 { return ids[:min(n, len(ids))] }

// failoverWriter inserts rows with increasing ids, one per transaction, reconnecting through
// the multi-host DSN after any error. A row whose commit returned is acknowledged; one whose
// commit failed may or may not exist.
type failoverWriter struct {
	dsn string

	mu    sync.Mutex
	acked []int64
	errs  int
}

// run writes until stop is closed. Stopping does not cancel a statement: a cancelled
// INSERT can still commit on the server after the writer has returned, after the test has
// read the table.
func (w *failoverWriter) run(ctx context.Context, stop <-chan struct{}) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return ctx.Err() != nil
		}
	}
	for id := int64(1); !stopped(); id++ {
		if conn == nil {
			c, err := pgx.Connect(ctx, w.dsn)
			if err != nil {
				w.failed()
				time.Sleep(50 * time.Millisecond)
				id--
				continue
			}
			conn = c
		}
		if _, err := conn.Exec(ctx, `INSERT INTO public.t VALUES ($1, repeat('x', 100))`, id); err != nil {
			// Its outcome is unknown: the id is not used again, so the row is either there or not.
			w.failed()
			_ = conn.Close(context.Background())
			conn = nil
			continue
		}
		w.mu.Lock()
		w.acked = append(w.acked, id)
		w.mu.Unlock()
	}
}

func (w *failoverWriter) failed() {
	w.mu.Lock()
	w.errs++
	w.mu.Unlock()
}

func (w *failoverWriter) committed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *failoverWriter) errors() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errs
}

func (w *failoverWriter) acknowledged() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int64(nil), w.acked...)
}

// idCollector reads a topic of public.t's events from the start and keeps the ids of the rows
// it has seen.
type idCollector struct {
	cl      *kgo.Client
	seen    map[int64]bool
	records int
}

func newIDCollector(t *testing.T, env *testenv.Env, topic string) *idCollector {
	cl := env.Kafka(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AllowAutoTopicCreation())
	return &idCollector{cl: cl, seen: map[int64]bool{}}
}

// poll reads what is there within a moment and returns the number of distinct ids seen.
func (c *idCollector) poll(t *testing.T) int {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	fs := c.cl.PollFetches(ctx)
	fs.EachRecord(func(r *kgo.Record) {
		c.records++
		var ev struct {
			Op    string
			After struct{ ID int64 }
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("record at offset %d: %v", r.Offset, err)
		}
		if ev.Op != "c" && ev.Op != "r" {
			t.Fatalf("record at offset %d is %q, want an insert or a snapshot read: %s", r.Offset, ev.Op, r.Value)
		}
		c.seen[ev.After.ID] = true
	})
	return len(c.seen)
}

func (c *idCollector) hasAll(ids []int64) bool {
	for _, id := range ids {
		if !c.seen[id] {
			return false
		}
	}
	return true
}

// TestFailoverCheck runs procon-cdc check against a pair whose standby lacks every setting a
// failover slot needs, and a DSN that lists both servers without target_session_attrs: check
// must fail and name each setting, with where to set it.
func TestFailoverCheck(t *testing.T) {
	env := testenv.Get(t)
	p := startPGPair(t, func(primaryPort int) string {
		return fmt.Sprintf(`hot_standby_feedback = off
primary_slot_name = ''
primary_conninfo = 'host=127.0.0.1 port=%d user=procon application_name=standby1'`, primaryPort)
	})
	ctx := testenv.Context(t, time.Minute)
	if _, err := p.primary.Conn(t, "postgres").Exec(ctx, `CREATE TABLE public.t (id bigint PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(testenv.Name(t, "p"), "_", "-")
	slot := strings.ReplaceAll(name, "-", "_")
	dsn := fmt.Sprintf("postgres://procon@%s,%s/postgres?sslmode=disable", p.primary.Addr(), p.standby.Addr())
	check := startProcon(t, "check", writeConfig(t, fmt.Sprintf(`name: %s
postgres:
  dsn: %s
  slot: %s
  failover: true
kafka:
  brokers: %s
relation_configs:
  public.t: {}
`, name, dsn, slot, strings.Join(env.Brokers, ","))))
	if err := check.wait(); err == nil {
		t.Fatalf("check passed a misconfigured standby:\n%s", check.output())
	}
	out := strings.Join(strings.Fields(check.output()), " ")
	standby := "error standby " + p.standby.Addr() + " "
	for _, want := range []string{
		"error failover postgres.dsn names 2 hosts without target_session_attrs=read-write",
		"warn synchronized_standby_slots slot standby1 is not in use",
		standby + "sync_replication_slots is off: the standby does not copy failover slots; set sync_replication_slots = on in its postgresql.conf",
		standby + "hot_standby_feedback is off",
		standby + "primary_slot_name is not set",
		standby + "primary_conninfo names no dbname: slot synchronization connects to a database of the primary; add dbname=postgres to primary_conninfo",
		"ok failover slot " + slot + " does not exist yet; run creates it with FAILOVER",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check's output lacks %q:\n%s", want, check.output())
		}
	}
}

// TestFailoverExistingSlot starts procon-cdc with postgres.failover on a slot made without
// it: the start makes it a failover slot (ALTER_REPLICATION_SLOT) and says so.
func TestFailoverExistingSlot(t *testing.T) {
	env := testenv.Get(t)
	p := startPGPair(t, nil)
	ctx := testenv.Context(t, time.Minute)
	conn := p.primary.Conn(t, "postgres")
	name := strings.ReplaceAll(testenv.Name(t, "p"), "_", "-")
	slot := strings.ReplaceAll(name, "-", "_")
	env.DeleteTopicsAtCleanup(t, name)
	for _, sql := range []string{
		`CREATE TABLE public.t (id bigint PRIMARY KEY)`,
		fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, slot),
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	proc := startProcon(t, "run", writeConfig(t, fmt.Sprintf(`name: %s
postgres:
  dsn: %s
  slot: %s
  failover: true
kafka:
  brokers: %s
relation_configs:
  public.t: {}
`, name, p.DSN(), slot, strings.Join(env.Brokers, ","))))
	testenv.WaitFor(t, 30*time.Second, "the slot to become a failover slot", func() (bool, error) {
		var failover bool
		err := conn.QueryRow(ctx, `SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&failover)
		return failover, err
	})
	testenv.WaitFor(t, 10*time.Second, "the log line", func() (bool, error) {
		return strings.Contains(proc.output(), "slot was not a failover slot; set FAILOVER true"), nil
	})
}

// TestFailoverBefore17 runs procon-cdc with postgres.failover against the services' server
// when it is older than PostgreSQL 17: the start is refused, naming the key and the version,
// and no slot is made.
func TestFailoverBefore17(t *testing.T) {
	s := newSetup(t, `public.t: {}`, "")
	var version int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int / 10000`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version >= 17 {
		t.Skipf("the services' PostgreSQL is %d: it has failover slots", version)
	}
	s.db.Exec(t, `CREATE TABLE public.t (id int PRIMARY KEY)`)
	s.config = strings.Replace(s.config, "status_interval: 200ms", "status_interval: 200ms\n  failover: true", 1)
	proc := s.startProcess(t)
	if err := proc.wait(); err == nil {
		t.Fatalf("procon-cdc ran with postgres.failover on PostgreSQL %d:\n%s", version, proc.output())
	}
	want := fmt.Sprintf("postgres.failover: true needs PostgreSQL 17 or later, and the server is PostgreSQL %d", version)
	if !strings.Contains(proc.output(), want) {
		t.Fatalf("output lacks %q:\n%s", want, proc.output())
	}
	var slots int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&slots); err != nil || slots != 0 {
		t.Fatalf("slots named %s: %d (%v), want none", s.slot, slots, err)
	}
}

// cutStandby makes the standby stop receiving WAL: its primary_conninfo names a port nothing
// listens on (the WAL receiver restarts with it at the reload). A stopped WAL receiver
// would not do: what the primary had already written into the socket would reach the
// standby when it went on.
func cutStandby(t *testing.T, standby *testenv.PGServer) {
	t.Helper()
	conn := standby.Conn(t, "postgres")
	ctx := testenv.Context(t, 30*time.Second)
	for _, sql := range []string{
		`ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1 user=procon dbname=postgres application_name=standby1'`,
		`SELECT pg_reload_conf()`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "the standby's WAL receiver to stop", func() (bool, error) {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'`).Scan(&n)
		return n == 0, err
	})
	_ = conn.Close(ctx)
}

func walLSN(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var lsn string
	if err := conn.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}
