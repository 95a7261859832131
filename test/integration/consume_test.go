package integration

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/consumer"
	"github.com/procon-cdc/procon/test/testenv"
	"github.com/procon-cdc/procon/txid"
)

// The consuming side end to end: a source database → procon-cdc → Kafka → procon-cdc consume →
// a target database with the same tables.

// consumeTables are created alike in the source and the target: every common type, a
// composite key, a TOASTed column that most updates leave unchanged (its events then carry
// the unavailable-value placeholder).
var consumeTables = []string{
	`CREATE TABLE ce_accounts (
		id int PRIMARY KEY, v int NOT NULL, name text, amount numeric(14,3), ratio double precision,
		created timestamptz, day date, at time, tags text[], meta jsonb, uid uuid, blob bytea,
		active boolean, dur interval, big text)`,
	`CREATE TABLE ce_orders (tenant int, id int, v int NOT NULL, note varchar(40), total numeric,
		PRIMARY KEY (tenant, id))`,
	`CREATE TABLE ce_items (id bigint PRIMARY KEY, v int NOT NULL, payload text)`,
}

var consumeKeys = map[string]string{"ce_accounts": "id", "ce_orders": "tenant, id", "ce_items": "id"}

// consumeSetup is a source (with procon-cdc's setup) and a target database.
type consumeSetup struct {
	*setup
	target *testenv.DB
	group  string
	// notifications: every entity inserts a realtime notification per applied event, on a
	// channel named after its table: a count of effects that repeating an event would change.
	notifications bool
}

func (cs *consumeSetup) notify(table string) string {
	if !cs.notifications {
		return ""
	}
	return ", realtime: {channel: " + table + "}"
}

// checkOneEffectPerEvent checks that each event was applied exactly once: as many
// notifications (inserted in the transactions that applied them) as distinct events.
func (cs *consumeSetup) checkOneEffectPerEvent(t *testing.T) {
	t.Helper()
	for table := range consumeKeys {
		want := cs.changeEvents(t, table)
		var got int
		if err := cs.target.Pool.QueryRow(context.Background(), `SELECT count(*) FROM procon_realtimes WHERE channel = $1`, table).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: %d notifications, want one per distinct event: %d", table, got, want)
		}
	}
}

// changeEvents counts the distinct change events (by procon.tx and procon.seq) in a table's
// topic: what exactly-once effects apply once each.
func (cs *consumeSetup) changeEvents(t *testing.T, table string) int {
	t.Helper()
	topic := cs.topic(table)
	recs := cs.env.ReadN(t, topic, int(cs.count(t, topic)), time.Minute)
	seen := map[txid.Key]bool{}
	for _, r := range recs {
		if r.Value == nil {
			continue // a tombstone
		}
		k, err := txid.FromRecordHeaders(r.Headers)
		if err != nil {
			t.Fatalf("%s offset %d: %v", topic, r.Offset, err)
		}
		seen[k] = true
	}
	return len(seen)
}

func newConsumeSetup(t *testing.T) *consumeSetup {
	t.Helper()
	return newConsumeSetupWith(t, "")
}

// newConsumeSetupWith adds extra to procon-cdc's configuration.
func newConsumeSetupWith(t *testing.T, extra string) *consumeSetup {
	t.Helper()
	// Intervals as ISO 8601: Debezium's default (microseconds) keeps an interval's length but
	// not its split into months, days and time, so '1 day -1.5s' would come back as 23:59:58.5
	// (equal as PostgreSQL compares intervals, but not as text).
	s := newSetup(t, "public.ce_accounts: {}\npublic.ce_orders: {}\npublic.ce_items: {}", "debezium:\n  interval.handling.mode: string\n"+extra)
	cs := &consumeSetup{setup: s, target: s.env.Database(t), group: s.name + "-consume"}
	for _, ddl := range consumeTables {
		s.db.Exec(t, ddl)
		cs.target.Exec(t, ddl)
	}
	return cs
}

// consumeConfig is the consumer's configuration; instance names a static member ("" for none).
func (cs *consumeSetup) consumeConfig(instance, extra string) string {
	cfg := fmt.Sprintf(`name: %s
postgres: {dsn: "%s"}
kafka:
  brokers: %s
  group: %s
  session_timeout: 6s
`, cs.group, cs.target.DSN, strings.Join(cs.env.Brokers, ","), cs.group)
	if instance != "" {
		cfg += "  instance_id: " + instance + "\n"
	}
	cfg += fmt.Sprintf(`batch: {max_records: 300, linger: 5ms}
log: {level: debug}
entities:
  - {topic: %s, table: public.ce_accounts, master_key: id%s}
  - {topic: %s, table: public.ce_orders, master_key: [[tenant, tenant], [id, id]]%s}
  - {topic: %s, table: public.ce_items, master_key: id%s}
`, cs.topic("ce_accounts"), cs.notify("ce_accounts"), cs.topic("ce_orders"), cs.notify("ce_orders"), cs.topic("ce_items"), cs.notify("ce_items"))
	return cfg + extra
}

// startConsume runs procon-cdc consume as a child process.
func (cs *consumeSetup) startConsume(t *testing.T, config string) *process {
	t.Helper()
	return startProcon(t, "consume", writeConfig(t, config))
}

// appliedOffsets is the sum of the group's stored offsets: it grows with every committed batch.
func (cs *consumeSetup) appliedOffsets(t *testing.T) int64 {
	return testenv.AppliedOffsets(cs.target.Pool, cs.group)
}

// diffTables compares every table of the target with the source, row for row and column for
// column, and describes the first difference ("" when equal).
func (cs *consumeSetup) diffTables(t *testing.T) string {
	t.Helper()
	for table, key := range consumeKeys {
		if d := testenv.DiffRows(table, testenv.TableText(t, cs.db.Pool, table, "", key),
			testenv.TableText(t, cs.target.Pool, table, "", key)); d != "" {
			return d
		}
	}
	return ""
}

// waitTablesEqual waits until the target equals the source.
func (cs *consumeSetup) waitTablesEqual(t *testing.T, timeout time.Duration) {
	t.Helper()
	var diff string
	deadline := time.Now().Add(timeout)
	for {
		if diff = cs.diffTables(t); diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the target does not equal the source after %s: %s", timeout, diff)
		}
		time.Sleep(200 * time.Millisecond) // polling two databases; nothing to wait on
	}
}

// changeWriter commits random changes to the source tables: inserts, updates of numbered
// versions (v) and other columns, deletes and re-inserts, some transactions rolled back.
type changeWriter struct {
	pool *pgxpool.Pool
	rnd  *rand.Rand
	keys int
}

const bigValue = `(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 120))`

func (w *changeWriter) step(ctx context.Context) error {
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	for n := 1 + w.rnd.IntN(4); n > 0; n-- {
		id := 1 + w.rnd.IntN(w.keys)
		var q string
		var args []any
		switch w.rnd.IntN(10) {
		case 0, 1, 2:
			q = `INSERT INTO ce_accounts (id, v, name, amount, ratio, created, day, at, tags, meta, uid, blob, active, dur, big)
				VALUES ($1, 1, 'n' || $1, $1 * 1.125, $1 / 3.0, now(), current_date - $1, localtime(3), ARRAY['a', NULL, 'q"uote'],
				jsonb_build_object('plan', 'p' || $1, 'n', $1), gen_random_uuid(), '\x00ff'::bytea, $1 % 2 = 0,
				make_interval(days => $1, secs => -1.5), ` + bigValue + `)
				ON CONFLICT (id) DO UPDATE SET v = ce_accounts.v + 1, ratio = 'NaN', tags = '{}', active = NULL`
		case 3, 4:
			q = `UPDATE ce_accounts SET v = v + 1, amount = amount + 0.001, created = created + interval '1 microsecond',
				meta = meta || jsonb_build_object('v', v + 1), name = CASE WHEN v % 3 = 0 THEN NULL ELSE name END WHERE id = $1`
		case 5:
			q = `UPDATE ce_accounts SET v = v + 1, big = ` + bigValue + ` WHERE id = $1`
		case 6:
			q = `DELETE FROM ce_accounts WHERE id = $1`
		case 7:
			q = `INSERT INTO ce_orders (tenant, id, v, note, total) VALUES ($1 % 3, $1, 1, 'o' || $1, $1 * 10.5)
				ON CONFLICT (tenant, id) DO UPDATE SET v = ce_orders.v + 1, total = ce_orders.total * 2, note = NULL`
		case 8:
			q = `DELETE FROM ce_orders WHERE tenant = $1 % 3 AND id = $1`
		case 9:
			if w.rnd.IntN(2) == 0 {
				q = `INSERT INTO ce_items (id, v, payload) VALUES ($1, 1, repeat('i', $1)) ON CONFLICT (id) DO UPDATE SET v = ce_items.v + 1`
			} else {
				q = `DELETE FROM ce_items WHERE id = $1`
			}
		}
		args = append(args, id)
		if _, err := tx.Exec(ctx, strings.ReplaceAll(q, "$1", "$1::int"), args...); err != nil {
			return err
		}
	}
	if w.rnd.IntN(10) == 0 {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// start runs the writer until the returned function is called.
func (w *changeWriter) start(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pace := time.NewTicker(2 * time.Millisecond)
		defer pace.Stop()
		for ctx.Err() == nil {
			<-pace.C
			if err := w.step(ctx); err != nil && ctx.Err() == nil {
				t.Logf("writer: %v", err) // e.g. a deadlock between two random transactions; the next step goes on
			}
		}
	}()
	return func() { cancel(); <-done }
}

// TestConsumeKill9EndToEnd writes random changes into three source tables while procon-cdc
// and two consume instances (static members of one group) are each SIGKILLed at random 20
// times and the broker restarts twice: at the end every target table equals its source, row
// for row and column for column.
func TestConsumeKill9EndToEnd(t *testing.T) {
	cs := newConsumeSetup(t)
	cs.notifications = true
	createRealtimeTable(t, &setup{db: cs.target})
	w := &changeWriter{pool: cs.db.Pool, rnd: testenv.Rand(t, 21), keys: 60}
	rnd := testenv.Rand(t, 22) // when to kill
	configs := []string{cs.consumeConfig("c1", ""), cs.consumeConfig("c2", "")}

	var procs [3]*process // procon-cdc, consume c1, consume c2
	start := func(i int) *process {
		if i == 0 {
			return cs.startProcess(t)
		}
		return cs.startConsume(t, configs[i-1])
	}
	procs[0] = start(0)
	cs.waitSlot(t)
	stopWriter := w.start(t)
	procs[1], procs[2] = start(1), start(2)

	confirmed, applied := cs.confirmedLSN(t), cs.appliedOffsets(t)
	const rounds = 20
	for round := range rounds {
		testenv.WaitFor(t, 2*time.Minute, "procon-cdc and the consumers to make progress", func() (bool, error) {
			return cs.confirmedLSN(t) > confirmed && cs.appliedOffsets(t) > applied, nil
		})
		if round == 6 || round == 13 { // the broker restarts under all three
			cs.env.StopService(t, "kafka")
			cs.env.StartService(t, "kafka")
			applied = cs.appliedOffsets(t)
			testenv.WaitFor(t, 2*time.Minute, "the consumers to make progress after Kafka's restart", func() (bool, error) {
				return cs.appliedOffsets(t) > applied, nil
			})
		}
		// Each process dies at its own random moment, not at a condition.
		var kills sync.WaitGroup
		for _, p := range procs {
			delay := time.Duration(rnd.IntN(500)) * time.Millisecond
			kills.Add(1)
			go func() {
				defer kills.Done()
				time.Sleep(delay)
				p.kill9(t)
			}()
		}
		kills.Wait()
		cs.waitSlotReleased(t)
		confirmed, applied = cs.confirmedLSN(t), cs.appliedOffsets(t)
		t.Logf("round %d: slot confirmed %s, stored offsets sum %d", round+1, confirmed, applied)
		for i := range procs {
			procs[i] = start(i)
		}
	}
	stopWriter()
	cs.waitTablesEqual(t, 3*time.Minute)
	// Records were sent again after procon-cdc's kills and batches were cut short by the
	// consumers'.
	cs.checkOneEffectPerEvent(t)
	for _, p := range procs[1:] {
		out := p.output()
		if strings.Contains(out, "panic") || strings.Contains(out, "DATA RACE") {
			t.Fatalf("a consumer panicked or raced:\n%s", testenv.LastLines(out, 80))
		}
	}
}

// poisonSetup streams ce_items into a target whose payload column is too short for some
// rows, and adds a record that is no event at all: two records that can never apply.
func poisonSetup(t *testing.T) (*consumeSetup, string) {
	t.Helper()
	cs := newConsumeSetup(t)
	cs.target.Exec(t, `ALTER TABLE ce_items ALTER COLUMN payload TYPE varchar(5)`)
	p := cs.startProcess(t)
	cs.waitSlot(t)
	cs.db.Exec(t, `INSERT INTO ce_items SELECT g, 1, repeat('i', 3) FROM generate_series(1, 50) g`)
	cs.db.Exec(t, `INSERT INTO ce_items VALUES (51, 1, 'far too long for the target')`)
	cs.db.Exec(t, `INSERT INTO ce_items SELECT g, 1, 'ok' FROM generate_series(52, 60) g`)
	topic := cs.topic("ce_items")
	testenv.WaitFor(t, time.Minute, "the 60 events", func() (bool, error) { return cs.countIfExists(t, topic) >= 60, nil })
	p.stop(t)
	produceIDs(t, cs.env.Kafka(t), &kgo.Record{Topic: topic, Partition: 0, Key: []byte(`{"id": 99}`), Value: []byte(`not an event`)})
	cs.db.Exec(t, `INSERT INTO ce_items VALUES (61, 1, 'last')`)
	p = cs.startProcess(t)
	testenv.WaitFor(t, time.Minute, "the last event", func() (bool, error) { return cs.countIfExists(t, topic) >= 62, nil })
	p.stop(t)
	return cs, topic
}

// TestConsumeDeadLetter: with on_error: dlq, each record that can never apply lands in the
// dead-letter topic with its reason and origin, and everything else applies.
func TestConsumeDeadLetter(t *testing.T) {
	cs, topic := poisonSetup(t)
	cfg := strings.Replace(cs.consumeConfig("", ""), "batch:", "on_error: dlq\nbatch:", 1)
	c := cs.startConsume(t, cfg)
	dlq := cs.group + ".dlq"
	cs.env.DeleteTopicsAtCleanup(t, dlq)
	recs := cs.env.ReadN(t, dlq, 2, time.Minute)
	reasons := map[string]string{}
	for _, r := range recs {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["procon.dlq.topic"] != topic || h["procon.dlq.partition"] != "0" || h["procon.dlq.group"] != cs.group {
			t.Errorf("dead-letter record without its origin: %v", h)
		}
		reasons[h["procon.dlq.offset"]] = h["procon.dlq.reason"]
	}
	if r := reasons["50"]; !strings.Contains(r, "22001") && !strings.Contains(r, "too long") {
		t.Errorf("offset 50 (the long payload): reason %q, want PostgreSQL's value too long", r)
	}
	if r := reasons["60"]; r == "" {
		t.Errorf("offset 60 (not an event): no dead-letter record; reasons %v", reasons)
	}
	testenv.WaitFor(t, time.Minute, "the rest to apply", func() (bool, error) {
		var n int
		err := cs.target.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ce_items`).Scan(&n)
		return n == 60, err
	})
	var has51 bool
	if err := cs.target.Pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT FROM ce_items WHERE id = 51)`).Scan(&has51); err != nil || has51 {
		t.Fatalf("row 51 applied: %v %v", has51, err)
	}
	testenv.WaitFor(t, time.Minute, "the offset past the last record", func() (bool, error) { return cs.appliedOffsets(t) == 62, nil })

	// An error no record causes (here the target table is gone) stops the consumer: sending
	// every record to the dead-letter topic would not cure it.
	cs.target.Exec(t, `DROP TABLE ce_items`)
	p := cs.startProcess(t)
	cs.db.Exec(t, `INSERT INTO ce_items VALUES (62, 1, 'after the drop')`)
	if err := c.waitExit(t, time.Minute); err == nil || !strings.Contains(c.output(), "does not exist") {
		t.Fatalf("consume: %v, want an exit for the missing table:\n%s", err, testenv.LastLines(c.output(), 20))
	}
	p.stop(t)
	if n := cs.count(t, dlq); n != 2 {
		t.Fatalf("%d dead-letter records, want still 2", n)
	}
	if n := cs.appliedOffsets(t); n != 62 {
		t.Fatalf("stored offset %d, want 62: nothing past the unapplied record", n)
	}
}

// TestConsumeStopsAtPoison: with the default on_error: stop, the consumer applies what comes
// before the record that can never apply, stores the offset of that record, and exits with
// an error naming it; a restart stops there again.
func TestConsumeStopsAtPoison(t *testing.T) {
	cs, topic := poisonSetup(t)
	for range 2 {
		c := cs.startConsume(t, cs.consumeConfig("", ""))
		err := c.waitExit(t, time.Minute)
		out := c.output()
		if err == nil || !strings.Contains(out, topic+"[0] offset 50 can never apply") {
			t.Fatalf("consume: %v, want an exit naming offset 50:\n%s", err, testenv.LastLines(out, 30))
		}
		if n := cs.appliedOffsets(t); n != 50 {
			t.Fatalf("stored offset %d, want 50 (the poison record's)", n)
		}
		var n int
		if err := cs.target.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ce_items`).Scan(&n); err != nil || n != 50 {
			t.Fatalf("target has %d rows (%v), want the 50 before the poison record", n, err)
		}
	}
}

// stop ends a process with SIGTERM and waits for it.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("%v:\n%s", err, testenv.LastLines(p.output(), 30))
	}
}

// TestConsumeHooksAndRealtime uses the Go API: BeforeApply and AfterApply run inside the
// batch's transaction (their writes commit with it), AfterCommit after it, and an entity's
// realtime configuration inserts a notification per applied event into procon_realtimes in the
// same transaction.
func TestConsumeHooksAndRealtime(t *testing.T) {
	cs := newConsumeSetup(t)
	createRealtimeTable(t, &setup{db: cs.target}) // with the SQL of procon-cdc init-sql, the consumer's table too
	cs.target.Exec(t, `CREATE TABLE public.audit (batch_topic text, records int, phase text)`)
	p := cs.startProcess(t)
	cs.waitSlot(t)
	cs.db.Exec(t, `INSERT INTO ce_items SELECT g, 1, 'p' || g FROM generate_series(1, 20) g`)
	cs.db.Exec(t, `DELETE FROM ce_items WHERE id <= 5`)
	topic := cs.topic("ce_items")
	testenv.WaitFor(t, time.Minute, "the events", func() (bool, error) { return cs.countIfExists(t, topic) >= 30, nil })
	p.stop(t)

	yaml := strings.Replace(cs.consumeConfig("", ""), "table: public.ce_items, master_key: id}",
		"table: public.ce_items, master_key: id, realtime: {channel: items, session_id: payload, metadata: {item: id, version: v}, operations: [create]}}", 1)
	cfg, err := config.ParseConsume(strings.NewReader(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	var committed atomic.Int64
	hooks := consumer.Hooks{
		BeforeApply: func(ctx context.Context, tx pgx.Tx, b *consumer.Batch) error {
			_, err := tx.Exec(ctx, `INSERT INTO public.audit VALUES ($1, $2, 'before')`, b.Topic, len(b.Records))
			return err
		},
		AfterApply: func(ctx context.Context, tx pgx.Tx, b *consumer.Batch) error {
			// The batch's effects are visible inside its transaction. Like every session of
			// Procon's, it searches only pg_catalog: names are qualified.
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM public.ce_items`).Scan(&n); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO public.audit VALUES ($1, $2, 'after')`, b.Topic, n)
			return err
		},
		AfterCommit: func(_ context.Context, b *consumer.Batch) { committed.Add(int64(len(b.Records))) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := consumer.Open(ctx, cfg, consumer.Options{Hooks: hooks, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testenv.WaitFor(t, time.Minute, "the batches to commit", func() (bool, error) {
		select {
		case err := <-done:
			t.Fatalf("the consumer stopped: %v", err)
		default:
		}
		return committed.Load() == 30, nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var before, after, notes, matching int
	err = cs.target.Pool.QueryRow(context.Background(), `SELECT
		(SELECT coalesce(sum(records), 0) FROM public.audit WHERE phase = 'before'),
		(SELECT max(records) FROM public.audit WHERE phase = 'after'),
		(SELECT count(*) FROM procon_realtimes WHERE channel = 'items'),
		(SELECT count(*) FROM procon_realtimes WHERE session_id = 'p' || (metadata->>'item') AND metadata->>'version' = '1')`).Scan(&before, &after, &notes, &matching)
	if err != nil {
		t.Fatal(err)
	}
	if before != 30 || after != 15 || notes != 20 || matching != 20 {
		t.Fatalf("audit before %d (want 30 records), after %d (want the 15 rows left), %d notifications (want 20 creates), %d with session and metadata from the row",
			before, after, notes, matching)
	}
}

// TestConsumeAvro: topics procon-cdc writes as Avro through the schema registry apply as JSON
// ones do, every column of every type equal to its source.
func TestConsumeAvro(t *testing.T) {
	env := testenv.Get(t)
	cs := newConsumeSetupWith(t, "  schema.name.adjustment.mode: avro\nserialization: avro\nschema_registry:\n  url: "+env.RegistryURL+"\n")
	registryClient(t, env, cs.name) // deletes the test's subjects at cleanup
	p := cs.startProcess(t)
	cs.waitSlot(t)
	w := &changeWriter{pool: cs.db.Pool, rnd: testenv.Rand(t, 23), keys: 40}
	stop := w.start(t)
	c := cs.startConsume(t, cs.consumeConfig("", "schema_registry: {url: \""+env.RegistryURL+"\"}\n"))
	testenv.WaitFor(t, time.Minute, "the consumer to apply records", func() (bool, error) { return cs.appliedOffsets(t) > 500, nil })
	stop()
	cs.waitTablesEqual(t, 2*time.Minute)
	c.stop(t)
	p.stop(t)
}

// TestConsumeRebalance: three dynamic members of one group share nine partitions while
// changes flow; members join, PostgreSQL restarts, one leaves gracefully in the middle of its batches, one is
// SIGKILLed (its partitions move after the session timeout) and one rejoins: no event is lost
// or applied twice.
func TestConsumeRebalance(t *testing.T) {
	cs := newConsumeSetup(t)
	for table := range consumeKeys {
		cs.config = strings.Replace(cs.config, "public."+table+": {}", "public."+table+": {partitions: 3}", 1)
	}
	cs.notifications = true
	createRealtimeTable(t, &setup{db: cs.target})
	p := cs.startProcess(t)
	cs.waitSlot(t)
	stop := (&changeWriter{pool: cs.db.Pool, rnd: testenv.Rand(t, 24), keys: 60}).start(t)
	cfg := cs.consumeConfig("", "")
	progress := func(what string) {
		from := cs.appliedOffsets(t)
		testenv.WaitFor(t, 2*time.Minute, what, func() (bool, error) { return cs.appliedOffsets(t) > from+200, nil })
	}
	assigned := func(name string, c *process) {
		testenv.WaitFor(t, time.Minute, name+" to be assigned partitions", func() (bool, error) {
			return strings.Contains(c.output(), "partition assigned"), nil
		})
	}
	c1 := cs.startConsume(t, cfg)
	progress("c1 alone to apply")
	c2 := cs.startConsume(t, cfg)
	assigned("c2", c2) // taken from c1, which revokes them first
	progress("c1 and c2 to apply")
	c3 := cs.startConsume(t, cfg)
	assigned("c3", c3)
	progress("three members to apply")
	// The target database restarts under them (it is the source's server too): batches fail
	// and are retried, nothing is skipped.
	cs.env.StopService(t, "postgres")
	cs.env.StartService(t, "postgres")
	progress("the members to apply after PostgreSQL's restart")
	c1.stop(t) // leaves the group: its partitions are revoked with batches in flight
	if out := c1.output(); !strings.Contains(out, "partition revoked") {
		t.Errorf("c1 gave no partition up to c2 and c3:\n%s", testenv.LastLines(out, 40))
	}
	progress("c2 and c3 to apply")
	c2.kill9(t) // its partitions wait for the session timeout, then move to c3
	progress("c3 to apply alone")
	c1 = cs.startConsume(t, cfg)
	progress("c1 and c3 to apply")
	stop()
	cs.waitTablesEqual(t, 2*time.Minute)
	cs.checkOneEffectPerEvent(t)
	c1.stop(t)
	c3.stop(t)
	p.stop(t)
}

// waitExit waits for the process to exit on its own and returns how it ended; the test fails
// if it is still running after timeout.
func (p *process) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.waitErr
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("still running after %s:\n%s", timeout, testenv.LastLines(p.output(), 30))
		return nil
	}
}
