package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
)

// The apply scenario: the same source changes applied to a target database by PostgreSQL's own
// logical replication (a subscription), by procon-cdc consume and by the Debezium JDBC sink in
// a Kafka Connect standalone worker. Each contender gets its own target database in the bench
// cluster, seeded like the source was before the changes; done is when the changes' last
// transaction (a sentinel row in every table) is visible in the target, and every run ends with
// a comparison of the whole target against the source.

// applyTable is one source table of the apply scenario and everything the harness needs to write
// and compare it.
type applyTable struct {
	name   string // in schema public, the same name in the source and every target
	ddl    string // the columns
	key    string // the primary key's columns, the order of the comparison
	ins    int64  // inserts per transaction; updates are 4/5 of that and deletes 1/5
	insert string // $1, $2: the id range
	update string // $1, $2: the id range
	delete string // $1, $2: the id range
	master string // procon-cdc consume's master_key
}

// applyTxSize is the changes of one workload transaction over all tables.
const applyTxSize = 1000

// applyTables: three tables of the common types (int, bigint, text, numeric, timestamptz, jsonb,
// bool), the third with a composite key. Every value is a function of the id, so a seed written
// by the same statement in the source and in a target is identical.
var applyTables = []applyTable{
	{
		name: "pbench_t1",
		ddl: `id bigint PRIMARY KEY, n int NOT NULL, name text NOT NULL, amount numeric(12,2) NOT NULL,
			at timestamptz NOT NULL, doc jsonb NOT NULL, flag boolean NOT NULL`,
		key: "id", ins: 250, master: "id",
		insert: `INSERT INTO public.pbench_t1 SELECT g, (g % 100000)::int, 'name-' || lpad(g::text, 12, '0') || '-' || md5(g::text),
			((g % 1000000) / 100.0)::numeric(12,2), timestamptz '2026-01-01 00:00:00+00' + g * interval '1001 microseconds',
			jsonb_build_object('n', g, 'tags', jsonb_build_array('alpha', 'beta'), 'note', 'apply'), g % 2 = 0
			FROM generate_series($1::bigint, $2::bigint) g`,
		update: `UPDATE public.pbench_t1 SET n = n + 1, name = name || '+', amount = amount + 1, at = at + interval '1 second',
			doc = doc || '{"u": 1}', flag = NOT flag WHERE id BETWEEN $1 AND $2`,
		delete: `DELETE FROM public.pbench_t1 WHERE id BETWEEN $1 AND $2`,
	},
	{
		name: "pbench_t2",
		ddl: `id int PRIMARY KEY, big bigint NOT NULL, note text NOT NULL, price numeric(14,4) NOT NULL,
			at timestamptz NOT NULL, flag boolean NOT NULL, doc jsonb NOT NULL`,
		key: "id", ins: 150, master: "id",
		insert: `INSERT INTO public.pbench_t2 SELECT g::int, g * 3000000007, md5(g::text) || md5((g * 7)::text),
			((g % 1000000) / 10000.0)::numeric(14,4), timestamptz '2026-02-01 00:00:00+00' + g * interval '7 milliseconds',
			g % 3 = 0, jsonb_build_object('k', g % 97, 'v', md5(g::text), 'nested', jsonb_build_object('a', g % 5))
			FROM generate_series($1::bigint, $2::bigint) g`,
		update: `UPDATE public.pbench_t2 SET big = big - 1, note = md5(note), price = price * 2, at = at - interval '1 minute',
			flag = NOT flag, doc = jsonb_set(doc, '{k}', to_jsonb(id % 89)) WHERE id BETWEEN $1 AND $2`,
		delete: `DELETE FROM public.pbench_t2 WHERE id BETWEEN $1 AND $2`,
	},
	{
		name: "pbench_t3",
		ddl: `tenant int NOT NULL, id bigint NOT NULL, label text NOT NULL, qty int NOT NULL, amount numeric(12,2) NOT NULL,
			at timestamptz NOT NULL, attrs jsonb NOT NULL, active boolean NOT NULL, PRIMARY KEY (tenant, id)`,
		key: "tenant, id", ins: 100, master: "[[tenant, tenant], [id, id]]",
		insert: `INSERT INTO public.pbench_t3 SELECT (g % 5)::int, g, 'label ' || g, (g % 1000)::int, ((g % 100000) / 100.0)::numeric(12,2),
			timestamptz '2026-03-01 00:00:00+00' + g * interval '1 second', jsonb_build_object('color', 'c' || (g % 11), 'size', g % 3), g % 2 = 1
			FROM generate_series($1::bigint, $2::bigint) g`,
		// tenant = ANY of every tenant: one index range scan per tenant instead of a scan of
		// every key between (0, lo) and (4, hi).
		update: `UPDATE public.pbench_t3 SET label = label || '+', qty = qty + 1, amount = amount - 1, at = at + interval '1 day',
			attrs = attrs || '{"updated": true}', active = NOT active WHERE tenant = ANY('{0,1,2,3,4}') AND id BETWEEN $1 AND $2`,
		delete: `DELETE FROM public.pbench_t3 WHERE tenant = ANY('{0,1,2,3,4}') AND id BETWEEN $1 AND $2`,
	},
}

func (t applyTable) upd() int64 { return t.ins * 4 / 5 }
func (t applyTable) del() int64 { return t.ins - t.upd() }

// applySeedBase is where writer w's seed ids start: far above the ids of the workload's inserts
// and within int (pbench_t2's key).
func applySeedBase(w int) int64 { return 1_500_000_000 + int64(w)*1000 }

// sentinelID is the key of the row the workload's last transaction inserts into every table
// (pbench_t3: tenant -1 too).
const sentinelID = -1

// applyPlan is the apply scenario's workload: txs transactions of applyTxSize changes over the
// writers; transaction k of a writer inserts ids k*ins+1 .. k*ins+ins into every table, updates
// the first 80% and deletes the last 20% of the rows its previous transaction inserted (the
// first: of its seed rows); then one transaction inserts the sentinel rows.
type applyPlan struct {
	txs, writers int
}

func (p applyPlan) events() int64  { return int64(p.txs)*applyTxSize + int64(len(applyTables)) }
func (p applyPlan) deletes() int64 { return int64(p.txs) * applyTxSize / 10 }

func (b *bench) applyScenario() *scenario {
	n := b.o.applyChanges
	if n == 0 {
		n = scaled(1e6, b.o.scale, applyTxSize) / applyTxSize * applyTxSize
	}
	p := applyPlan{txs: int(n / applyTxSize), writers: b.o.writers}
	var tables []string
	for _, t := range applyTables {
		tables = append(tables, fmt.Sprintf("%s (%d inserts, %d updates, %d deletes)", t.name, t.ins, t.upd(), t.del()))
	}
	return &scenario{Name: "apply", Code: "ap", Kind: apply, Events: p.events(), Records: p.events() + p.deletes(),
		Describe: fmt.Sprintf("%d source changes in %d transactions of %d over 3 tables, each transaction: %s; then one transaction of 3 sentinel inserts; "+
			"applied to a target database (rows/s = changes / time until the target holds the last transaction; the target is then compared with the source)",
			n, p.txs, applyTxSize, strings.Join(tables, ", ")),
		Sizes: map[string]any{"transactions": p.txs, "changes": n, "sentinel_inserts": len(applyTables), "deletes": p.deletes(), "writers": p.writers},
		plan:  &p}
}

// dbDSN is the bench's DSN with another database.
func (b *bench) dbDSN(db string) string {
	u, err := url.Parse(b.env.DSN)
	if err != nil {
		return b.env.DSN
	}
	u.Path = "/" + db
	return u.String()
}

func (b *bench) dbPool(ctx context.Context, db string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(b.dbDSN(db))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "procon-bench"
	return pgxpool.NewWithConfig(ctx, cfg)
}

// createApplyTables (re)creates the tables in pool's database and writes every writer's seed
// rows: the state the source had when the changes began. The seeds' statistics are flushed at
// once, so that they are not taken for a contender's first changes (waitSentinels).
func createApplyTables(ctx context.Context, pool *pgxpool.Pool, p applyPlan) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for _, t := range applyTables {
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS public."+t.name); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE TABLE public.%s (%s) WITH (autovacuum_enabled = false)", t.name, t.ddl)); err != nil {
			return fmt.Errorf("create %s: %w", t.name, err)
		}
		for w := range split(int64(p.txs), p.writers) {
			base := applySeedBase(w)
			if _, err := conn.Exec(ctx, t.insert, base+1, base+t.ins); err != nil {
				return fmt.Errorf("seed %s: %w", t.name, err)
			}
		}
	}
	for _, q := range []string{"SELECT pg_stat_force_next_flush()", "SELECT 1"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// writeApply writes the plan's transactions over the writers, then the sentinel transaction,
// checking every statement's row count.
func (b *bench) writeApply(ctx context.Context, p applyPlan) error {
	g, gctx := errgroup.WithContext(ctx)
	for w, r := range split(int64(p.txs), p.writers) {
		g.Go(func() error {
			conn, err := b.pool.Acquire(gctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			for k := r[0]; k < r[1]; k++ {
				err := pgx.BeginFunc(gctx, conn.Conn(), func(tx pgx.Tx) error {
					batch := &pgx.Batch{}
					var want []int64
					for _, t := range applyTables {
						base, prev := k*t.ins, (k-1)*t.ins
						if k == r[0] {
							prev = applySeedBase(w)
						}
						batch.Queue(t.insert, base+1, base+t.ins)
						batch.Queue(t.update, prev+1, prev+t.upd())
						batch.Queue(t.delete, prev+t.upd()+1, prev+t.ins)
						want = append(want, t.ins, t.upd(), t.del())
					}
					br := tx.SendBatch(gctx, batch)
					for i, n := range want {
						tag, err := br.Exec()
						if err != nil {
							br.Close()
							return fmt.Errorf("transaction %d statement %d: %w", k, i, err)
						}
						if tag.RowsAffected() != n {
							br.Close()
							return fmt.Errorf("transaction %d statement %d: %d rows, want %d", k, i, tag.RowsAffected(), n)
						}
					}
					return br.Close()
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		for _, t := range applyTables {
			if _, err := tx.Exec(ctx, t.insert, sentinelID, sentinelID); err != nil {
				return fmt.Errorf("sentinel %s: %w", t.name, err)
			}
		}
		return nil
	})
}

// sentinelsSQL counts the sentinel rows a target holds: len(applyTables) once it has applied
// the last transaction.
var sentinelsSQL = func() string {
	var parts []string
	for _, t := range applyTables {
		cond := fmt.Sprintf("id = %d", sentinelID)
		if strings.Contains(t.key, "tenant") {
			cond = fmt.Sprintf("tenant = (%d %% 5) AND id = %d", sentinelID, sentinelID)
		}
		parts = append(parts, fmt.Sprintf("(SELECT count(*) FROM public.%s WHERE %s)", t.name, cond))
	}
	return "SELECT " + strings.Join(parts, " + ")
}()

// tableDigest is a table's row count and the md5 of its rows' md5s in key order.
type tableDigest struct {
	Rows int64  `json:"rows"`
	MD5  string `json:"md5"`
}

func digests(ctx context.Context, pool *pgxpool.Pool) (map[string]tableDigest, error) {
	out := map[string]tableDigest{}
	for _, t := range applyTables {
		var d tableDigest
		err := pool.QueryRow(ctx, fmt.Sprintf(
			`SELECT count(*), coalesce(md5(string_agg(md5(t::text), '' ORDER BY %s)), '') FROM public.%s t`, t.key, t.name)).Scan(&d.Rows, &d.MD5)
		if err != nil {
			return nil, fmt.Errorf("digest of %s: %w", t.name, err)
		}
		out[t.name] = d
	}
	return out, nil
}

// compareTarget checks that target equals the source, table by table (count and checksum).
func compareTarget(source map[string]tableDigest, target map[string]tableDigest) error {
	var errs []error
	for _, t := range applyTables {
		s, d := source[t.name], target[t.name]
		if s != d {
			errs = append(errs, fmt.Errorf("%s: target has %d rows (md5 %s), source %d (md5 %s)", t.name, d.Rows, d.MD5, s.Rows, s.MD5))
		}
	}
	return errors.Join(errs...)
}

// applyRun is what one apply contender's run needs.
type applyRun struct {
	sc      *scenario
	name    string // slot / connector / group name
	target  string // the target database
	pub     string
	topics  []string // the pre-filled topics, in applyTables' order
	records int64    // records in them
	source  map[string]tableDigest
}

func (b *bench) runApply(ctx context.Context, sc *scenario, res *ScenarioResult, runs map[string][]*Result) error {
	p := *sc.plan
	contenders := b.contendersFor(sc)
	if err := createApplyTables(ctx, b.pool, p); err != nil {
		return fmt.Errorf("source tables: %w", err)
	}
	pub := fmt.Sprintf("%s%s_%s", objectPrefix, b.runID, sc.Code)
	prefill := pub + "_src" // procon-cdc's slot and topic prefix for the Kafka contenders
	var slots, topics, dbs []string
	defer func() { b.cleanupApply(pub, slots, topics, dbs) }()
	var names []string
	for _, t := range applyTables {
		names = append(names, "public."+t.name)
	}
	if err := b.exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", pgx.Identifier{pub}.Sanitize(), strings.Join(names, ", "))); err != nil {
		return err
	}
	needKafka := false
	for rep := 1; rep <= b.o.repeat; rep++ {
		for _, c := range contenders {
			if c == "pg-subscription" {
				name := b.name(sc, c, rep)
				if err := b.createSlot(ctx, name); err != nil {
					return err
				}
				slots = append(slots, name)
			} else {
				needKafka = true
			}
		}
	}
	var kafkaTopics []string
	if needKafka {
		if err := b.createSlot(ctx, prefill); err != nil {
			return err
		}
		slots = append(slots, prefill)
		for _, t := range applyTables {
			topic := prefill + ".public." + t.name
			if err := b.createTopic(ctx, topic); err != nil {
				return err
			}
			topics = append(topics, topic)
			kafkaTopics = append(kafkaTopics, topic)
		}
	}
	b.logf("writing the workload")
	t0 := time.Now()
	if err := b.writeApply(ctx, p); err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	res.WriteSeconds = time.Since(t0).Seconds()
	end, err := b.currentLSN(ctx)
	if err != nil {
		return err
	}
	res.EndLSN = end
	b.logf("wrote %d changes in %.1f s (%.0f/s), WAL end %s; checkpoint", sc.Events, res.WriteSeconds, float64(sc.Events)/res.WriteSeconds, end)
	if err := b.checkpoint(ctx); err != nil {
		return err
	}
	source, err := digests(ctx, b.pool)
	if err != nil {
		return err
	}
	res.Sizes["source_rows"] = source
	if needKafka {
		secs, err := b.prefillTopics(ctx, sc, prefill, pub, kafkaTopics)
		if err != nil {
			return fmt.Errorf("pre-filling the topics with procon-cdc run: %w", err)
		}
		res.Sizes["prefill_seconds"] = secs
		b.dropSlot(ctx, prefill)
	}
	if err := b.checkpoint(ctx); err != nil {
		return err
	}
	var failed error
	err = b.interleave(ctx, contenders, func(c string, rep int) error {
		name := b.name(sc, c, rep)
		db := name
		dbs = append(dbs, db)
		r := &applyRun{sc: sc, name: name, target: db, pub: pub, topics: kafkaTopics, records: sc.Records, source: source}
		out := b.runApplyContender(ctx, r, c, p)
		runs[c] = append(runs[c], out)
		if out.Error != "" {
			failed = errors.Join(failed, fmt.Errorf("%s: %s", c, out.Error))
		}
		if c == "pg-subscription" {
			b.dropSlot(ctx, name)
		}
		if !b.o.keep {
			b.dropDatabase(ctx, db)
		}
		return nil
	})
	return errors.Join(err, failed)
}

// prefillTopics streams the workload into Kafka with procon-cdc run (JSON with schemas, as the
// JDBC sink needs), from a slot created before the workload, and returns how long it took.
func (b *bench) prefillTopics(ctx context.Context, sc *scenario, name, pub string, topics []string) (float64, error) {
	var rel strings.Builder
	for _, t := range applyTables {
		fmt.Fprintf(&rel, "  public.%s: {}\n", t.name)
	}
	cfg := fmt.Sprintf(`name: %s
serialization: json
json:
  schemas: true
postgres:
  dsn: ${PROCON_PG_DSN}
  slot: %s
  publication: %s
  publication_autocreate: disabled
kafka:
  brokers: ${PROCON_KAFKA_BROKERS}
  topic_defaults:
    partitions: 1
    replication_factor: 1
    configs: {message.timestamp.type: LogAppendTime}
snapshot:
  mode: no_data
relation_configs:
%slog:
  level: %s
`, name, name, pub, rel.String(), envString("BENCH_PROCON_LOG_LEVEL", "warn"))
	base := filepath.Join(b.dir, name)
	if err := os.WriteFile(base+".yaml", []byte(cfg), 0o644); err != nil {
		return 0, err
	}
	b.logf("  pre-filling %d topics with procon-cdc run (JSON with schemas): %d records", len(topics), sc.Records)
	p, err := startProc(base+".log", nil, nil, b.o.proconBin, "run", "--config", base+".yaml")
	if err != nil {
		return 0, err
	}
	defer p.kill()
	count := func(ctx context.Context) (int64, error) { return b.topicsCount(ctx, topics) }
	done, _, err := b.waitRecords(ctx, count, sc.Records, p)
	if err != nil {
		return 0, fmt.Errorf("%w (log: %s.log)", err, base)
	}
	p.stop(60 * time.Second)
	time.Sleep(time.Second)
	n, err := count(ctx)
	if err != nil {
		return 0, err
	}
	if n != sc.Records {
		return 0, fmt.Errorf("the topics hold %d records, want %d", n, sc.Records)
	}
	secs := done.Sub(p.started).Seconds()
	b.logf("  pre-filled in %.1f s", secs)
	return secs, nil
}

func (b *bench) topicsCount(ctx context.Context, topics []string) (int64, error) {
	var n int64
	for _, t := range topics {
		c, err := b.recordCount(ctx, t)
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// runApplyContender prepares the contender's target database, runs it until the target holds
// the sentinel rows, and compares the target with the source.
func (b *bench) runApplyContender(ctx context.Context, r *applyRun, c string, p applyPlan) *Result {
	res := &Result{Scenario: r.sc.Name, Contender: c, Events: r.sc.Events}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Notes = append(res.Notes, "load before: "+strings.Join(strings.Fields(string(load))[:3], " "))
	}
	err := b.runApplyContenderErr(ctx, r, c, p, res)
	if err != nil {
		res.Error = err.Error()
		res.Complete = false
	}
	if res.WallSeconds > 0 && res.Complete {
		res.EventsPerSecond = float64(res.Events) / res.WallSeconds
	}
	if res.Events > 0 && res.CPUSeconds > 0 {
		res.CPUPerMillion = res.CPUSeconds / float64(res.Events) * 1e6
	}
	status := "ok, target = source"
	if res.Error == "" && res.WallSeconds == 0 {
		status = strings.Join(res.Notes[1:], "; ")
	} else if !res.Complete {
		status = "FAILED: " + res.Error
	}
	b.logf("  %-15s %s: %.1f s, %.0f rows/s, %.2f CPU s/M changes, peak RSS %.0f MB, %s",
		c, r.sc.Name, res.WallSeconds, res.EventsPerSecond, res.CPUPerMillion, res.PeakRSSMB, status)
	return res
}

func (b *bench) runApplyContenderErr(ctx context.Context, r *applyRun, c string, p applyPlan, res *Result) error {
	if c != "pg-subscription" {
		res.ExpectedRecords = r.records
		res.RecordsInKafka = r.records
	}
	if c == "procon-consume" {
		if why := b.consumeUnsupported(ctx); why != "" {
			res.Notes = append(res.Notes, "not run: "+why)
			return nil
		}
	}
	if c == "debezium-jdbc" && b.o.connectLib == "" {
		res.Notes = append(res.Notes, "not run: no -connect-lib (bench/jdbc-sink/build failed or was not run)")
		return nil
	}
	b.dropDatabase(ctx, r.target)
	if err := b.exec(ctx, "CREATE DATABASE "+pgx.Identifier{r.target}.Sanitize()); err != nil {
		return err
	}
	tpool, err := b.dbPool(ctx, r.target)
	if err != nil {
		return err
	}
	defer tpool.Close()
	if err := createApplyTables(ctx, tpool, p); err != nil {
		return fmt.Errorf("target tables: %w", err)
	}
	if _, err := tpool.Exec(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	switch c {
	case "pg-subscription":
		err = b.runSubscription(ctx, r, tpool, res)
	case "procon-consume", "debezium-jdbc":
		err = b.runKafkaApply(ctx, r, c, tpool, res)
	default:
		err = fmt.Errorf("unknown apply contender %q", c)
	}
	if err != nil {
		return err
	}
	got, err := digests(ctx, tpool)
	if err != nil {
		return err
	}
	if err := compareTarget(r.source, got); err != nil {
		return fmt.Errorf("target differs from the source: %w", err)
	}
	res.Complete = true
	res.Notes = append(res.Notes, "target = source (count and md5 of every table)")
	return nil
}

// consumeUnsupported says why procon-cdc consume cannot run, or "" when the binary has it.
func (b *bench) consumeUnsupported(ctx context.Context) string {
	out, _ := exec.CommandContext(ctx, b.o.proconBin, "consume").CombinedOutput()
	if strings.Contains(string(out), `unknown command "consume"`) {
		return "this procon-cdc has no consume command"
	}
	return ""
}

// appliedSQL is the row changes the target's tables have seen, from the statistics (flushed by
// the writing backends about once a second): progress, not a measure.
const appliedSQL = `SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables WHERE relname LIKE 'pbench\_t%'`

// consumeHasPprof says whether procon-cdc consume takes --pprof ADDR (as run does).
func (b *bench) consumeHasPprof(ctx context.Context) bool {
	out, _ := exec.CommandContext(ctx, b.o.proconBin, "consume", "-h").CombinedOutput()
	return strings.Contains(string(out), "-pprof")
}

// waitSentinels polls the target every 50 ms until it holds every sentinel row, and returns that
// moment and when the target's statistics first showed an applied change. It fails when alive
// reports the contender gone, when no change shows for the stall time (from the start too), or
// on the timeout.
func (b *bench) waitSentinels(ctx context.Context, tpool *pgxpool.Pool, alive func() error) (done, first time.Time, err error) {
	start := time.Now()
	deadline := start.Add(b.o.timeout)
	var base int64
	if err := tpool.QueryRow(ctx, appliedSQL).Scan(&base); err != nil {
		return start, first, fmt.Errorf("target statistics: %w", err)
	}
	last, lastMove := base, start
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		var n, applied int64
		err := tpool.QueryRow(ctx, sentinelsSQL).Scan(&n)
		now := time.Now()
		if err == nil && n == int64(len(applyTables)) {
			return now, first, nil
		}
		if err := tpool.QueryRow(ctx, appliedSQL).Scan(&applied); err == nil && applied != last {
			if first.IsZero() {
				first = now
			}
			last, lastMove = applied, now
		}
		if err := alive(); err != nil {
			return now, first, err
		}
		if now.After(deadline) {
			return now, first, fmt.Errorf("timed out after %s: the target holds %d of %d sentinel rows, %d changes applied", b.o.timeout, n, len(applyTables), last-base)
		}
		// Startup counts as a stall too: JVM and Connect start in well under a minute.
		if now.Sub(lastMove) > b.o.stall {
			return now, first, fmt.Errorf("stalled: %d changes applied, none for %s", last-base, b.o.stall)
		}
		select {
		case <-ctx.Done():
			return now, first, ctx.Err()
		case <-t.C:
		}
	}
}

// backendSampler keeps the CPU of every backend connected to a database, sampled every 250 ms:
// the target database's share of the work of applying.
type backendSampler struct {
	mu   sync.Mutex
	cpu  map[int]float64
	stop context.CancelFunc
	done chan struct{}
}

func (b *bench) sampleBackends(ctx context.Context, db string, exclude func(pid int) bool) *backendSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &backendSampler{cpu: map[int]float64{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			rows, err := b.pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db)
			if err == nil {
				pids, _ := pgx.CollectRows(rows, pgx.RowTo[int32])
				s.mu.Lock()
				for _, pid := range pids {
					if exclude != nil && exclude(int(pid)) {
						continue
					}
					if c := pidCPU(int(pid), b.clkTck); c > 0 {
						s.cpu[int(pid)] = c
					}
				}
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// total stops the sampler and returns the backends' CPU seconds.
func (s *backendSampler) total() float64 {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum float64
	for _, c := range s.cpu {
		sum += c
	}
	return sum
}

// runSubscription creates a disabled subscription of the target to the publication on the
// contender's slot (created before the workload: CREATE SUBSCRIPTION cannot create a slot in its
// own cluster without hanging), enables it and waits for the sentinels.
func (b *bench) runSubscription(ctx context.Context, r *applyRun, tpool *pgxpool.Pool, res *Result) error {
	e := b.env
	conninfo := fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s application_name=%s",
		e.pgHost, e.pgPort, e.pgUser, e.pgPassword, e.pgDB, r.name)
	sub := pgx.Identifier{r.name}.Sanitize()
	_, err := tpool.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION %s
		WITH (create_slot = false, slot_name = '%s', copy_data = false, enabled = false)`,
		sub, strings.ReplaceAll(conninfo, "'", "''"), pgx.Identifier{r.pub}.Sanitize(), r.name))
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	defer b.dropSubscription(context.Background(), tpool, r.name)
	s0 := b.snapMachine()
	start := time.Now()
	if _, err := tpool.Exec(ctx, "ALTER SUBSCRIPTION "+sub+" ENABLE"); err != nil {
		return fmt.Errorf("enable subscription: %w", err)
	}
	// The apply worker starts within a second (the launcher's loop); its CPU is the contender's.
	var worker int
	var wsPID int
	var wsCPU, workerCPU float64
	var workerHWM int64
	sample := func() {
		if worker == 0 {
			var pid *int32
			_ = tpool.QueryRow(ctx, `SELECT pid FROM pg_stat_subscription WHERE subname = $1 AND relid IS NULL`, r.name).Scan(&pid)
			if pid != nil {
				worker = int(*pid)
			}
		}
		if wsPID == 0 {
			wsPID, _, _, _ = b.slotState(ctx, r.name, "")
		}
		if c := pidCPU(worker, b.clkTck); c > 0 {
			workerCPU = c
			if hwm, _ := readMem(worker); hwm > 0 {
				workerHWM = hwm
			}
		}
		if c := pidCPU(wsPID, b.clkTck); c > 0 {
			wsCPU = c
		}
	}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			mu.Lock()
			sample()
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	done, first, err := b.waitSentinels(ctx, tpool, func() error { return nil })
	close(stop)
	wg.Wait()
	sample()
	s1 := b.snapMachine()
	if err != nil {
		return err
	}
	res.WallSeconds = done.Sub(start).Seconds()
	if !first.IsZero() {
		res.FirstRecordSeconds = first.Sub(start).Seconds()
	}
	res.CPUSeconds = workerCPU
	res.PeakRSSMB = float64(workerHWM) * 1024 / 1e6
	res.WalsenderCPU = wsCPU
	res.HarnessCPU = s1.self - s0.self
	res.OtherCPU = max(0, (s1.machine-s0.machine)-res.HarnessCPU-res.CPUSeconds-res.WalsenderCPU)
	res.Notes = append(res.Notes, "wall time from ALTER SUBSCRIPTION ENABLE; CPU and RSS are the apply worker's (a PostgreSQL backend: its RSS counts the shared buffers it touched), the walsender's CPU is apart")
	if _, _, confirmed, err := b.slotState(ctx, r.name, ""); err == nil {
		res.ConfirmedAfterStop = confirmed
	}
	return nil
}

// dropSubscription drops a subscription without its slot (the harness drops that: a drop of a
// slot in its own cluster from within DROP SUBSCRIPTION would be fine, but the slot may be gone).
func (b *bench) dropSubscription(ctx context.Context, pool *pgxpool.Pool, name string) {
	sub := pgx.Identifier{name}.Sanitize()
	for _, q := range []string{"ALTER SUBSCRIPTION " + sub + " DISABLE", "ALTER SUBSCRIPTION " + sub + " SET (slot_name = NONE)", "DROP SUBSCRIPTION " + sub} {
		if _, err := pool.Exec(ctx, q); err != nil {
			b.logf("%s: %v", q, err)
			return
		}
	}
}

func (b *bench) dropDatabase(ctx context.Context, db string) {
	if err := b.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		b.logf("%v", err)
	}
}

// runKafkaApply runs procon-cdc consume or the JDBC sink's Connect worker on the pre-filled
// topics until the target holds the sentinels.
func (b *bench) runKafkaApply(ctx context.Context, r *applyRun, c string, tpool *pgxpool.Pool, res *Result) error {
	base := filepath.Join(b.dir, r.name)
	res.Log = base + ".log"
	var args []string
	var pprofAddr string
	switch c {
	case "procon-consume":
		if err := os.WriteFile(base+".yaml", []byte(b.consumeConfig(r)), 0o644); err != nil {
			return err
		}
		args = []string{b.o.proconBin, "consume", "--config", base + ".yaml"}
		if b.o.pprof {
			if b.consumeHasPprof(ctx) {
				addr, err := freePort()
				if err != nil {
					return err
				}
				pprofAddr = addr
				args = append(args, "--pprof", addr)
			} else {
				res.Notes = append(res.Notes, "not profiled: procon-cdc consume has no --pprof flag")
			}
		}
	case "debezium-jdbc":
		worker, connector, log4j := b.connectConfigs(r)
		for _, f := range []struct{ path, data string }{{base + ".worker.properties", worker}, {base + ".connector.properties", connector}, {base + ".log4j2.properties", log4j}} {
			if err := os.WriteFile(f.path, []byte(f.data), 0o644); err != nil {
				return err
			}
		}
		args = append([]string{"java"}, strings.Fields(b.o.javaOpts)...)
		args = append(args, "-Dlog4j2.configurationFile="+base+".log4j2.properties", "-cp", filepath.Join(b.o.connectLib, "*"),
			"org.apache.kafka.connect.cli.ConnectStandalone", base+".worker.properties", base+".connector.properties")
	}
	pr, err := startProc(res.Log, nil, nil, args...)
	if err != nil {
		return err
	}
	defer pr.kill()
	s0 := b.snapMachine()
	smp := b.startSampler(ctx, pr.pid(), "")
	backends := b.sampleBackends(ctx, r.target, nil)
	var prof *profiler
	if pprofAddr != "" {
		prof = startProfiler(ctx, pprofAddr, base)
		defer func() { res.Profile = prof.finish(b, filepath.Join(b.o.outDir, r.name+".pprof")) }()
	}
	done, first, err := b.waitSentinels(ctx, tpool, func() error {
		if pr.done() {
			return fmt.Errorf("exited with status %d before the target held the last transaction (log: %s)", pr.exitCode(), res.Log)
		}
		return nil
	})
	final := treeUsage(pr.pid(), b.clkTck)
	smp.sample(ctx)
	last, _ := smp.readings()
	smp.stop()
	if final.ReadErr {
		final = last
	}
	targetCPU := backends.total()
	s1 := b.snapMachine()
	if prof != nil {
		prof.stop()
	}
	if err != nil {
		pr.stop(30 * time.Second)
		res.ExitCode = pr.exitCode()
		return fmt.Errorf("%w (log: %s)", err, res.Log)
	}
	res.WallSeconds = done.Sub(pr.started).Seconds()
	if !first.IsZero() {
		res.FirstRecordSeconds = first.Sub(pr.started).Seconds()
	}
	res.CPUSeconds = final.CPU
	res.PeakRSSMB = float64(final.HWMKiB) * 1024 / 1e6
	res.TargetCPU = targetCPU
	if b.kafkaPID > 0 {
		res.KafkaCPU = s1.kafka - s0.kafka
	}
	res.HarnessCPU = s1.self - s0.self
	res.OtherCPU = max(0, (s1.machine-s0.machine)-res.HarnessCPU-res.CPUSeconds-res.KafkaCPU-targetCPU)
	res.Notes = append(res.Notes, fmt.Sprintf("target database backends used %.1f CPU s (not in CPU)", targetCPU))
	pr.stop(60 * time.Second)
	res.ExitCode = pr.exitCode()
	if res.ExitCode != 0 && c != "debezium-jdbc" {
		res.Notes = append(res.Notes, fmt.Sprintf("exit status %d after SIGTERM", res.ExitCode))
	}
	if c == "procon-consume" {
		if note := b.consumeOffsets(ctx, tpool, r); note != "" {
			res.Notes = append(res.Notes, note)
		}
	}
	return nil
}

// consumeConfig is procon-cdc consume's YAML (issue 15's contract).
func (b *bench) consumeConfig(r *applyRun) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %s\npostgres: {dsn: %q}\nkafka: {brokers: %q, group: %s}\nentities:\n",
		r.name, b.dbDSN(r.target), strings.Join(b.env.Brokers, ","), r.name)
	for i, t := range applyTables {
		fmt.Fprintf(&sb, "  - topic: %s\n    table: public.%s\n    master_key: %s\n", r.topics[i], t.name, t.master)
	}
	fmt.Fprintf(&sb, "log:\n  level: %s\n", envString("BENCH_PROCON_LOG_LEVEL", "warn"))
	return sb.String()
}

// consumeOffsets checks that procon-cdc consume's offsets table in the target reached every
// topic's end: a note when it did not (its effects and offsets commit together, so they must).
func (b *bench) consumeOffsets(ctx context.Context, tpool *pgxpool.Pool, r *applyRun) string {
	var stored int64
	err := tpool.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0)::bigint FROM procon.procon_consumer_offsets WHERE consumer_group = $1`, r.name).Scan(&stored)
	if err != nil {
		return "offsets table not read: " + err.Error()
	}
	if stored != r.records {
		return fmt.Sprintf("the offsets table holds next offsets summing to %d, the topics end at %d", stored, r.records)
	}
	return ""
}

// connectConfigs are the Connect standalone worker's properties, the JDBC sink connector's and
// a log4j2 configuration (warnings and errors to the log).
func (b *bench) connectConfigs(r *applyRun) (worker, connector, log4j string) {
	e := b.env
	port, err := freePort()
	if err != nil {
		port = "127.0.0.1:0"
	}
	worker = strings.Join([]string{
		"bootstrap.servers=" + strings.Join(e.Brokers, ","),
		"key.converter=org.apache.kafka.connect.json.JsonConverter",
		"value.converter=org.apache.kafka.connect.json.JsonConverter",
		"key.converter.schemas.enable=true",
		"value.converter.schemas.enable=true",
		"offset.storage.file.filename=" + filepath.Join(b.dir, r.name+".connect-offsets"),
		"offset.flush.interval.ms=1000",
		"listeners=http://" + port,
		"plugin.discovery=only_scan",
	}, "\n") + "\n"
	connector = strings.Join([]string{
		"name=" + r.name,
		"connector.class=io.debezium.connector.jdbc.JdbcSinkConnector",
		fmt.Sprintf("tasks.max=%d", b.o.jdbcTasks),
		"topics=" + strings.Join(r.topics, ","),
		fmt.Sprintf("connection.url=jdbc:postgresql://%s:%s/%s", e.pgHost, e.pgPort, r.target),
		"connection.username=" + e.pgUser,
		"connection.password=" + e.pgPassword,
		"insert.mode=upsert",
		"delete.enabled=true",
		"primary.key.mode=record_key",
		"schema.evolution=none",
		// Topic <prefix>.public.<table> to table <table>. A RegexRouter rather than
		// collection.name.format=${source.table}: that format cannot name a tombstone's table and
		// logs two warnings for each of them.
		"transforms=route",
		"transforms.route.type=org.apache.kafka.connect.transforms.RegexRouter",
		`transforms.route.regex=.*\\.([^.]+)`,
		"transforms.route.replacement=$1",
	}, "\n") + "\n"
	for _, kv := range b.o.jdbcOpts {
		connector += kv + "\n"
	}
	log4j = `status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = STDOUT
`
	return worker, connector, log4j
}

// cleanupApply drops what the apply scenario created, unless -keep.
func (b *bench) cleanupApply(pub string, slots, topics, dbs []string) {
	if b.o.keep {
		b.logf("keeping slots %v, publication %s, topics %v, databases %v and the source tables", slots, pub, topics, dbs)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, db := range dbs {
		b.dropDatabase(ctx, db)
	}
	for _, s := range slots {
		b.dropSlot(ctx, s)
	}
	b.dropPublication(ctx, pub)
	b.deleteTopics(ctx, topics...)
	for _, t := range applyTables {
		_ = b.exec(ctx, "DROP TABLE IF EXISTS public."+t.name)
	}
}

// cleanupApplyLeftovers drops the subscriptions and target databases of interrupted runs.
func (b *bench) cleanupApplyLeftovers(ctx context.Context) {
	rows, err := b.pool.Query(ctx, `SELECT s.subname, d.datname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid WHERE s.subname LIKE 'pbench\_%'`)
	if err == nil {
		type sub struct{ Name, DB string }
		subs, _ := pgx.CollectRows(rows, pgx.RowToStructByPos[sub])
		for _, s := range subs {
			if pool, err := b.dbPool(ctx, s.DB); err == nil {
				b.logf("dropping leftover subscription %s in %s", s.Name, s.DB)
				b.dropSubscription(ctx, pool, s.Name)
				pool.Close()
			}
		}
	}
	rows, err = b.pool.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'pbench\_%'`)
	if err == nil {
		dbs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, db := range dbs {
			b.logf("dropping leftover database %s", db)
			b.dropDatabase(ctx, db)
		}
	}
}
