package compat

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/procon-cdc/procon/test/testenv"
)

// The consuming side on topics Debezium 3.6.1 wrote: a source database → the Debezium runner →
// Kafka → procon-cdc consume (SIGKILLed at random while it applies) → a target database with
// the same tables, which must end equal to the source, row for row and column for column.

// consumeTypesDDL is a table of every common type; prec is the precision of its time and
// timestamp columns ("" for PostgreSQL's default, microseconds).
func consumeTypesDDL(name, prec string) string {
	return fmt.Sprintf(`CREATE TABLE %s (
  id int PRIMARY KEY, v int NOT NULL,
  b bool, i2 int2, i8 int8, f4 float4, f8 float8, n_p numeric(12,3), n_v numeric,
  t text, vc varchar(20), j json, jb jsonb, u uuid, ba bytea,
  d date, tm time%[2]s, ts timestamp%[2]s, tstz timestamptz, iv interval,
  ta text[], ia int4[], na numeric[], ua uuid[], da date[]);
`, name, prec)
}

// consumeSchema is created alike in the source and every target.
var consumeSchema = consumeTypesDDL("dc_types", "") +
	// Connect's time.precision.mode keeps milliseconds: its pipeline captures this twin of
	// dc_types instead, whose time columns PostgreSQL itself rounds to milliseconds.
	consumeTypesDDL("dc_types_ms", "(3)") + `
CREATE TABLE dc_special (id int PRIMARY KEY, n_p numeric(12,3), n_v numeric, f8 float8);
CREATE TABLE dc_toast (id int PRIMARY KEY, n int NOT NULL, t text, jb jsonb, ba bytea, ta text[], ia int4[]);
CREATE TABLE dc_pk (id int PRIMARY KEY, v text);
CREATE TABLE dc_comp (tenant int, code text, v int NOT NULL, note text, PRIMARY KEY (tenant, code));
`

// consumeSourceSetup makes dc_toast's columns TOASTed out of line, so that an update leaving
// them alone sends Debezium's unavailable-value placeholder.
const consumeSourceSetup = `
ALTER TABLE dc_toast ALTER COLUMN t SET STORAGE EXTERNAL, ALTER COLUMN jb SET STORAGE EXTERNAL,
  ALTER COLUMN ba SET STORAGE EXTERNAL, ALTER COLUMN ta SET STORAGE EXTERNAL, ALTER COLUMN ia SET STORAGE EXTERNAL;
CREATE FUNCTION big(n int, seed text) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT string_agg(md5(seed || i::text), '') FROM generate_series(1, n) i $$;
`

// consumeKeyOf is each table's key, for ORDER BY and master_key.
var consumeKeyOf = map[string][]string{
	"dc_types": {"id"}, "dc_types_ms": {"id"}, "dc_special": {"id"}, "dc_toast": {"id"}, "dc_pk": {"id"},
	"dc_comp": {"tenant", "code"},
}

// typeValues are the SQL literals the writer picks from, per column of dc_types. Each survives
// every pipeline's encoding; where Debezium's is lossy by design the values are chosen so, as
// said at the column.
var typeValues = map[string][]string{
	"b":  {"true", "false", "NULL"},
	"i2": {"-32768", "32767", "0", "NULL"},
	"i8": {"-9223372036854775808", "9223372036854775807", "42", "NULL"},
	"f4": {"1.5", "'NaN'", "'Infinity'", "'-Infinity'", "-0.25", "3.4028235e38", "1e-45", "NULL"},
	"f8": {"'NaN'", "'Infinity'", "'-Infinity'", "1.7976931348623157e308", "2.25", "'-0'", "4.9e-324", "NULL"},
	// NaN and infinities of numeric: Debezium's precise mode has no encoding for them (nor
	// does procon-cdc's); dc_special has them, for the string mode.
	"n_p": {"12345.678", "-999999999.999", "0.5", "0", "NULL"},
	// Debezium's VariableScaleDecimal drops trailing zeros ('1.50' comes back as 1.5, equal
	// as PostgreSQL compares numerics but not as text): none here.
	"n_v": {"3.14159", "-0.000000001", "12345678901234567890.5", "100", "0", "('1' || repeat('0', 100) || '.' || repeat('5', 50))::numeric", "NULL"},
	"t":   {`E'unicode ☃ 𝄞 "quoted" \\ back\\slash \n newline \t tab \''`, "''", "'plain'", "NULL"},
	"vc":  {"'héllo wörld ☃'", "''", "'NULL'", "NULL"},
	"j":   {`'{"b":1,  "a": [1, 2.50]}'`, "'[]'", "'null'", `'"s"'`, "NULL"},
	"jb":  {`'{"b": [1, 2], "a": 1}'`, `E'{"k": "\\u00e9 ☃ \\n", "n": 1.0e10}'`, "'null'", "'{}'", "NULL"},
	"u":   {"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'", "NULL"},
	"ba":  {`'\xdeadbeef'`, `'\x'`, `'\x00ff7f80'`, "NULL"},
	"d":   {"'2020-02-29'", "'1970-01-01'", "'1900-03-01'", "'0001-01-01'", "'infinity'", "'-infinity'", "NULL"},
	"tm":  {"'13:14:15.123456'", "'00:00:00'", "'23:59:59.5'", "'12:00:00.000001'", "NULL"},
	"ts": {"'2020-02-29 13:14:15.123456'", "'1969-12-31 23:59:59.5'", "'0001-01-01 00:00:00'", "'2262-04-11 23:47:16.854'",
		"'infinity'", "'-infinity'", "NULL"},
	"tstz": {"'2020-02-29 13:14:15.123456+02'", "'1969-12-31 23:59:59.5+00'", "'9999-12-31 23:59:59.999+00'",
		"'infinity'", "'-infinity'", "NULL"},
	// Debezium's default interval encoding (MicroDuration) is a length in microseconds, a
	// month counted as 30.4375 days: it keeps an interval's length but not its split into
	// months, days and time ('1 day -1.5s' comes back as '23:59:58.5'). These values come back
	// whole: months, then fewer than 30 days, then less than a day, all of one sign.
	"iv": {"'1 year 2 mons 3 days 04:05:06.789'", "'00:00:00.000001'", "'3 days'", "'-5 days -00:00:01'", "'11 mons 29 days 23:59:59'", "NULL"},
	"ta": {`'{"a b","c,d","e\"f","g\\h",NULL,"NULL","","☃"}'`, "'{}'", "'{x}'", "NULL"},
	"ia": {"'{1,2,NULL}'", "'{}'", "'{-2147483648,2147483647}'", "NULL"},
	"na": {"'{1.5,-0.25,100}'", "'{}'", "'{0.000001,NULL}'", "NULL"},
	"ua": {"'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'", "'{}'", "NULL"},
	"da": {"'{2020-02-29,1970-01-01,NULL}'", "'{}'", "NULL"},
}

var typeColumns = []string{"b", "i2", "i8", "f4", "f8", "n_p", "n_v", "t", "vc", "j", "jb", "u", "ba",
	"d", "tm", "ts", "tstz", "iv", "ta", "ia", "na", "ua", "da"}

// consumeWriter commits random changes to the source: upserts of dc_types (and, alike, of its
// milliseconds twin) with values picked from typeValues, updates of some of their columns,
// deletes; dc_special's NaN and infinities; dc_toast's updates that leave the TOASTed
// columns unchanged; primary-key changes in dc_pk; dc_comp's composite keys.
type consumeWriter struct {
	pool *pgxpool.Pool
	rnd  *rand.Rand
	keys int
}

func (w *consumeWriter) pick(col string) string {
	vs := typeValues[col]
	return vs[w.rnd.IntN(len(vs))]
}

// statements returns one random change (for both dc_types tables when it touches them).
func (w *consumeWriter) statements() []string {
	id := 1 + w.rnd.IntN(w.keys)
	both := func(q string) []string {
		return []string{fmt.Sprintf(q, "dc_types"), fmt.Sprintf(q, "dc_types_ms")}
	}
	switch w.rnd.IntN(14) {
	case 0, 1, 2:
		vals := make([]string, len(typeColumns))
		sets := make([]string, len(typeColumns))
		for i, c := range typeColumns {
			vals[i] = w.pick(c)
			sets[i] = c + " = excluded." + c
		}
		return both(fmt.Sprintf(`INSERT INTO %%[1]s (id, v, %s) VALUES (%d, 1, %s)
			ON CONFLICT (id) DO UPDATE SET v = %%[1]s.v + 1, %s`,
			strings.Join(typeColumns, ", "), id, strings.Join(vals, ", "), strings.Join(sets, ", ")))
	case 3, 4:
		var sets []string
		for n := 1 + w.rnd.IntN(3); n > 0; n-- {
			c := typeColumns[w.rnd.IntN(len(typeColumns))]
			sets = append(sets, c+" = "+w.pick(c))
		}
		return both(fmt.Sprintf(`UPDATE %%[1]s SET v = v + 1, %s WHERE id = %d`, strings.Join(dedupSets(sets), ", "), id))
	case 5:
		return both(fmt.Sprintf(`DELETE FROM %%[1]s WHERE id = %d`, id))
	case 6:
		special := []string{"'NaN'", "'Infinity'", "'-Infinity'", "1.5", "NULL"}
		s := func() string { return special[w.rnd.IntN(len(special))] }
		n := []string{"'NaN'", "999999999.999", "NULL"}[w.rnd.IntN(3)] // numeric(p,s) has no infinities
		return []string{fmt.Sprintf(`INSERT INTO dc_special VALUES (%d, %s, %s, %s)
			ON CONFLICT (id) DO UPDATE SET n_p = excluded.n_p, n_v = excluded.n_v, f8 = excluded.f8`, id, n, s(), s())}
	case 7:
		return []string{fmt.Sprintf(`INSERT INTO dc_toast VALUES (%[1]d, 0, big(200, 't%[2]d'),
			jsonb_build_object('k', big(150, 'jb%[2]d')), convert_to(big(150, 'ba%[2]d'), 'UTF8'),
			ARRAY[big(80, 'ta%[2]d'), NULL], (SELECT array_agg(i * %[2]d) FROM generate_series(1, 1200) i))
			ON CONFLICT (id) DO UPDATE SET n = dc_toast.n + 1, t = excluded.t`, id, w.rnd.IntN(1000))}
	case 8, 9:
		// Leaves every TOASTed column alone, or changes one: the others stay unchanged.
		set := []string{"", ", t = 'short now'", ", ia = '{1,2}'", ", jb = '{\"small\": true}'", ", ba = '\\x00'"}[w.rnd.IntN(5)]
		return []string{fmt.Sprintf(`UPDATE dc_toast SET n = n + 1%s WHERE id = %d`, set, id)}
	case 10:
		return []string{fmt.Sprintf(`DELETE FROM dc_toast WHERE id = %d`, id)}
	case 11:
		// A primary-key change: Debezium writes a delete of the old key, a tombstone and a
		// create of the new one.
		return []string{fmt.Sprintf(`INSERT INTO dc_pk VALUES (%d, 'v') ON CONFLICT (id) DO UPDATE SET v = dc_pk.v || '+'`, id),
			fmt.Sprintf(`UPDATE dc_pk SET id = id + 1000 WHERE id = %d AND NOT EXISTS (SELECT FROM dc_pk WHERE id = %d)`, id, id+1000),
			fmt.Sprintf(`DELETE FROM dc_pk WHERE id = %d`, id+1000-w.rnd.IntN(2)*1000)}
	case 12:
		return []string{fmt.Sprintf(`INSERT INTO dc_comp VALUES (%d, 'c%d', 1, 'n') ON CONFLICT (tenant, code) DO UPDATE
			SET v = dc_comp.v + 1, note = CASE WHEN dc_comp.note IS NULL THEN 'back' END`, id%3, id)}
	default:
		return []string{fmt.Sprintf(`DELETE FROM dc_comp WHERE tenant = %d AND code = 'c%d'`, id%3, id)}
	}
}

// dedupSets keeps the first assignment of each column (an UPDATE may set a column once).
func dedupSets(sets []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range sets {
		col := s[:strings.IndexByte(s, ' ')]
		if !seen[col] {
			seen[col] = true
			out = append(out, s)
		}
	}
	return out
}

func (w *consumeWriter) step(ctx context.Context) error {
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	for n := 1 + w.rnd.IntN(3); n > 0; n-- {
		for _, q := range w.statements() {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%w\n%s", err, q)
			}
		}
	}
	if w.rnd.IntN(10) == 0 {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// start runs the writer until the returned function is called.
func (w *consumeWriter) start(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pace := time.NewTicker(10 * time.Millisecond)
		defer pace.Stop()
		for ctx.Err() == nil {
			<-pace.C
			if err := w.step(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("writer: %v", err)
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// consumePipeline is one Debezium configuration and the consumer that applies its topics
// into a target database of its own.
type consumePipeline struct {
	*pipeline
	// decoding is the consumer's decoding: section (what schemaless JSON does not say).
	decoding string
	// compared is the row expression compared per table, when not the whole row r.
	compared map[string]string
	target   *testenv.DB
	group    string
	proc     *consumeProcess
}

// consumePipelines: JSON with schemas in Debezium's default modes, with schemas in other
// handling modes, and without schemas (the consumer told the producer's modes).
func consumePipelines() []*consumePipeline {
	common := []string{"dc_toast", "dc_pk", "dc_comp"}
	return []*consumePipeline{
		{pipeline: &pipeline{name: "defaults", schemas: true, partitions: 1, tables: append([]string{"dc_types"}, common...)}},
		{pipeline: &pipeline{name: "modes", schemas: true, partitions: 2,
			tables: append([]string{"dc_types_ms", "dc_special"}, common...), debezium: map[string]string{
				"decimal.handling.mode":  "string",
				"time.precision.mode":    "connect",
				"binary.handling.mode":   "base64",
				"interval.handling.mode": "string",
			}},
			decoding: "decoding: {binary_handling_mode: base64}\n",
			// Debezium's base64 binary modes write an unchanged TOASTed bytea as null (its
			// converter takes the placeholder for an unexpected value; procon-cdc does the same):
			// indistinguishable from a real NULL, it cannot survive. dc_types_ms.ba has bytea in
			// base64, dc_toast's in the other pipelines has it unchanged.
			compared: map[string]string{"dc_toast": "(r.id, r.n, r.t, r.jb, r.ta, r.ia)"}},
		{pipeline: &pipeline{name: "schemaless", schemas: false, partitions: 1,
			tables: append([]string{"dc_types"}, common...), debezium: map[string]string{
				"time.precision.mode":    "adaptive_time_microseconds",
				"binary.handling.mode":   "hex",
				"interval.handling.mode": "string",
			}},
			decoding: "decoding: {time_precision_mode: adaptive_time_microseconds, binary_handling_mode: hex}\n"},
	}
}

// TestConsumeDebeziumTopics runs Debezium 3.6.1 in three configurations over one source
// database under a random writer, and procon-cdc consume for each into a target database of
// its own, each consumer SIGKILLed at random moments while it applies: at the end every target
// table equals its source, row for row and column for column.
func TestConsumeDebeziumTopics(t *testing.T) {
	env := testenv.Get(t)
	env.HoldServices(t) // the Debezium runners cannot ride out a broker restart
	ctx := testenv.Context(t, 10*time.Minute)
	src := env.Database(t)
	src.Exec(t, consumeSchema+consumeSourceSetup)
	bin := testenv.ProconBinary(t) // built while nothing else runs

	pls := consumePipelines()
	base := strings.TrimPrefix(testenv.Name(t, "x"), "x_")
	suffix := base[len(base)-8:]
	adm := kadm.NewClient(env.Kafka(t))
	for i, p := range pls {
		p.dbzPrefix = fmt.Sprintf("dbzc%d_%s", i, suffix)
		p.dbzSlot = p.dbzPrefix
		p.group = p.dbzPrefix + "_consume"
		env.DeleteTopicsAtCleanup(t, p.dbzPrefix)
		env.DeleteTopicsAtCleanup(t, p.group)
		p.target = env.Database(t)
		p.target.Exec(t, consumeSchema)
		tables := make([]string, len(p.tables))
		var topics []string
		for j, tb := range p.tables {
			tables[j] = "public." + tb
			topics = append(topics, p.dbzPrefix+".public."+tb)
		}
		// The topics exist before the consumer subscribes (the runner tolerates them).
		if _, err := adm.CreateTopics(ctx, int32(p.partitions), 1, nil, topics...); err != nil {
			t.Fatal(err)
		}
		// As in TestDebeziumCompat: the publication first, then the slot (a copy of the first,
		// which is instant).
		src.Exec(t, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", p.dbzSlot, strings.Join(tables, ", ")))
		if i == 0 {
			src.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", p.dbzSlot)
		} else {
			src.Exec(t, "SELECT pg_copy_logical_replication_slot($1, $2)", pls[0].dbzSlot, p.dbzSlot)
		}
	}

	start := time.Now()
	for _, p := range pls {
		p.runner = startDebezium(t, src.DSN, p.pipeline, env.Brokers)
	}
	for _, p := range pls {
		p.runner.waitReady(t, p.name, 3*time.Minute)
	}
	t.Logf("%d Debezium runners streaming after %s", len(pls), time.Since(start).Round(time.Millisecond))

	w := &consumeWriter{pool: src.Pool, rnd: testenv.Rand(t, 31), keys: 40}
	rnd := testenv.Rand(t, 32) // when to kill
	stopWriter := w.start(t)
	for _, p := range pls {
		p.proc = startConsumeProcess(t, bin, p.consumeConfig(env.Brokers))
	}
	applied := make([]int64, len(pls))
	const rounds = 6
	for round := range rounds {
		testenv.WaitFor(t, time.Minute, "every consumer to apply a batch", func() (bool, error) {
			for i, p := range pls {
				if testenv.AppliedOffsets(p.target.Pool, p.group) <= applied[i] {
					return false, nil
				}
			}
			return true, nil
		})
		// Each consumer dies at its own random moment, not at a condition.
		var kills sync.WaitGroup
		for _, p := range pls {
			delay := time.Duration(rnd.IntN(300)) * time.Millisecond
			kills.Add(1)
			go func() {
				defer kills.Done()
				time.Sleep(delay)
				p.proc.kill9(t)
			}()
		}
		kills.Wait()
		var summary []string
		for i, p := range pls {
			applied[i] = testenv.AppliedOffsets(p.target.Pool, p.group)
			summary = append(summary, fmt.Sprintf("%s %d", p.name, applied[i]))
			p.proc = startConsumeProcess(t, bin, p.consumeConfig(env.Brokers))
		}
		t.Logf("round %d at %s: stored offsets %s", round+1, time.Since(start).Round(time.Millisecond), strings.Join(summary, ", "))
	}
	stopWriter()
	if t.Failed() {
		t.FailNow()
	}
	for _, p := range pls {
		p.waitTablesEqual(t, src.Pool, 2*time.Minute)
	}
	for _, p := range pls {
		if out := p.proc.output(); strings.Contains(out, "panic") || strings.Contains(out, "DATA RACE") {
			t.Errorf("consumer of %s panicked or raced:\n%s", p.name, testenv.LastLines(out, 80))
		}
	}
	t.Logf("every table equal after %s", time.Since(start).Round(time.Millisecond))
}

// consumeConfig is the pipeline's consumer configuration: one entity per captured table.
func (p *consumePipeline) consumeConfig(brokers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\npostgres: {dsn: %q}\n", p.group, p.target.DSN)
	fmt.Fprintf(&b, "kafka: {brokers: %q, group: %s, instance_id: %s-1, session_timeout: 6s}\n", strings.Join(brokers, ","), p.group, p.group)
	b.WriteString("batch: {max_records: 200, linger: 5ms}\nlog: {level: debug}\n")
	b.WriteString(p.decoding)
	b.WriteString("entities:\n")
	for _, tb := range p.tables {
		fmt.Fprintf(&b, "  - {topic: %s.public.%s, table: public.%s, master_key: [%s]}\n",
			p.dbzPrefix, tb, tb, strings.Join(consumeKeyOf[tb], ", "))
	}
	return b.String()
}

// diffTables compares every table of the pipeline's target with the source and describes the
// first difference ("" when equal).
func (p *consumePipeline) diffTables(t *testing.T, src *pgxpool.Pool) string {
	t.Helper()
	for _, table := range p.tables {
		key := strings.Join(consumeKeyOf[table], ", ")
		if d := testenv.DiffRows(table, testenv.TableText(t, src, table, p.compared[table], key),
			testenv.TableText(t, p.target.Pool, table, p.compared[table], key)); d != "" {
			return d
		}
	}
	return ""
}

// waitTablesEqual waits until the target equals the source.
func (p *consumePipeline) waitTablesEqual(t *testing.T, src *pgxpool.Pool, timeout time.Duration) {
	t.Helper()
	var diff string
	deadline := time.Now().Add(timeout)
	for {
		if diff = p.diffTables(t, src); diff == "" {
			return
		}
		exited := false
		select {
		case <-p.proc.exited:
			exited = true
		default:
		}
		if exited || time.Now().After(deadline) {
			t.Fatalf("%s: the target does not equal the source after %s (consume exited: %v): %s\nDebezium log tail:\n%s\nconsumer output tail:\n%s",
				p.name, timeout, exited, diff, tail(p.runner.log, 10), testenv.LastLines(p.proc.output(), 30))
		}
		time.Sleep(200 * time.Millisecond) // polling two databases; nothing to wait on
	}
}

// consumeProcess is one procon-cdc consume child process.
type consumeProcess struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has exited
	mu     sync.Mutex
	out    bytes.Buffer
}

func (p *consumeProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *consumeProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startConsumeProcess(t *testing.T, bin, config string) *consumeProcess {
	t.Helper()
	path := filepath.Join(t.TempDir(), "consume.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &consumeProcess{exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "consume", "--config", path)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// kill9 SIGKILLs the process; it must still be running (consume only exits on its own for a
// record that can never apply).
func (p *consumeProcess) kill9(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Errorf("consume exited before it was killed (%v):\n%s", p.cmd.ProcessState, testenv.LastLines(p.output(), 40))
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}
