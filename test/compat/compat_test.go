// Package compat is the differential test of procon-cdc against Debezium 3.6.1.Final: both
// capture one database with their own slots and topic prefixes, one workload runs through
// both, and every pair of records is compared field by field, in order. See exemptions in
// compare_test.go for what is not compared and why.
package compat

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/test/testenv"
)

// pipelines are the configurations compared. Between them they cover both JsonConverter forms
// and the handling modes users set most; tables that only make sense in some modes are
// captured only there.
func pipelines() []*pipeline {
	common := []string{"sentinel", "scalars", "arrays", "defaults", "toast_default", "toast_full", "pk_change"}
	full := append(append([]string{}, common...), "unmapped", "unmapped_arrays", "ri_default", "ri_full", "ri_index", "ri_nothing",
		"nokey", "uniq_nopk", "pk_change_full", "multi_a", "multi_b", "trunc_a", "trunc_b", "evolve")
	// Where Debezium picks the key on its own (a unique index, or none), procon-cdc is told.
	rel := map[string]string{"nokey": "keyless: true", "uniq_nopk": "pkey: [code]"}
	special := append(append([]string{}, common...), "numeric_special", "multi_a")
	// Outbox tables, routed by Debezium's EventRouter and by relation_configs.*.outbox.
	outboxTables := []string{"outbox", "outbox_text"}
	return []*pipeline{
		// Three partitions: keys must hash as Debezium's do. Records without key (nokey's)
		// land on a partition Kafka's producer picks, so that table is compared elsewhere.
		// With outbox tables too: payloads expanded, nulls kept as optional bytes, the keys
		// hashed as Debezium's are, headers as JsonConverter writes them.
		{name: "json", schemas: false, partitions: 3, tables: append(without(full, "nokey"), outboxTables...), relation: rel,
			outboxTables: outboxTables, jsonHeaders: true, outbox: map[string]string{
				"route.topic.replacement":          "PREFIX.outbox.${routedByValue}",
				"table.expand.json.payload":        "true",
				"table.json.payload.null.behavior": "optional_bytes",
			}},
		{name: "schemas", schemas: true, partitions: 1, tables: full, relation: rel, debezium: map[string]string{
			"skipped.operations":           "none",
			"provide.transaction.metadata": "true",
			"heartbeat.interval.ms":        "1000",
			"message.prefix.exclude.list":  "skip_.*",
			"heartbeat.action.query":       "INSERT INTO hb_action (who) VALUES ('debezium')",
		}, proconDebezium: map[string]string{
			// procon-cdc's sessions search only pg_catalog: its query names the schema.
			"heartbeat.action.query": "INSERT INTO public.hb_action (who) VALUES ('procon')",
		}},
		{name: "modes-a", schemas: true, partitions: 1, tables: special, debezium: map[string]string{
			"decimal.handling.mode":  "double",
			"time.precision.mode":    "adaptive_time_microseconds",
			"binary.handling.mode":   "base64",
			"hstore.handling.mode":   "map",
			"interval.handling.mode": "string",
			"tombstones.on.delete":   "false",
		}},
		{name: "modes-b", schemas: true, partitions: 1, tables: special, debezium: map[string]string{
			"decimal.handling.mode":       "string",
			"time.precision.mode":         "connect",
			"binary.handling.mode":        "base64-url-safe",
			"message.prefix.include.list": "app",
			"skipped.operations":          "u",
		}},
		{name: "modes-c", schemas: true, partitions: 1, tables: append(append([]string{}, common...), "unmapped", "unmapped_arrays"), debezium: map[string]string{
			"include.unknown.datatypes":     "true",
			"time.precision.mode":           "isostring",
			"binary.handling.mode":          "hex",
			"unavailable.value.placeholder": "<toasted>",
			"money.fraction.digits":         "3",
		}},
		{name: "modes-d", schemas: true, partitions: 1, tables: common, debezium: map[string]string{
			"time.precision.mode":           "nanoseconds",
			"unavailable.value.placeholder": "hex:00ff5e",
			"money.fraction.digits":         "0",
			"hstore.handling.mode":          "map",
		}},
		// With outbox tables too: JSON payloads expanded, columns in the envelope and headers, a
		// regex of its own, the event time from a column.
		{name: "modes-e", schemas: true, partitions: 1, tables: append(append([]string{}, common...), outboxTables...), debezium: map[string]string{
			"time.precision.mode":    "microseconds",
			"interval.handling.mode": "string",
			"decimal.handling.mode":  "double",
			"binary.handling.mode":   "base64-url-safe",
		}, outboxTables: outboxTables, jsonHeaders: true, outbox: map[string]string{
			"route.topic.regex":                 "(?<kind>[A-Z])(?<rest>.*)",
			"route.topic.replacement":           "PREFIX.outbox.${kind}.$2",
			"table.expand.json.payload":         "true",
			"table.fields.additional.placement": "type:envelope:eventType,tenant:header,created:envelope,aggregateid:header:aggregate",
			"table.field.event.timestamp":       "created",
		}},
		// The outbox event router: payloads as they are, event type and tenant in headers
		// (Kafka Connect's SimpleHeaderConverter), tombstones for empty payloads.
		{name: "outbox", schemas: true, partitions: 1, tables: []string{"sentinel", "outbox", "outbox_text"}, outboxTables: outboxTables, outbox: map[string]string{
			"route.topic.replacement":           "PREFIX.outbox.${routedByValue}",
			"table.fields.additional.placement": "type:header:eventType,tenant:header",
			"route.tombstone.on.empty.payload":  "true",
		}},
	}
}

// selectPipelines keeps the named pipelines, failing the test on an unknown name.
func selectPipelines(t *testing.T, all []*pipeline, names []string) []*pipeline {
	t.Helper()
	var out []*pipeline
	for _, name := range names {
		found := false
		for _, p := range all {
			if p.name == strings.TrimSpace(name) {
				out, found = append(out, p), true
			}
		}
		if !found {
			t.Fatalf("PROCON_COMPAT_PIPELINES names %q, which is not a pipeline", name)
		}
	}
	t.Logf("pipelines of PROCON_COMPAT_PIPELINES: %s", strings.Join(names, ","))
	return out
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

func TestDebeziumCompat(t *testing.T) {
	env := testenv.Get(t)
	// Fault tests in other packages stop Kafka or restart PostgreSQL; the Debezium runners
	// would give up. They wait for this test instead.
	env.HoldServices(t)
	db := env.Database(t)
	ctx := testenv.Context(t, 20*time.Minute)
	var major int
	if err := db.Pool.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		t.Fatalf("server version: %v", err)
	}
	t.Logf("PostgreSQL %d", major)
	if _, err := db.Pool.Exec(ctx, forServer(schemaSQL+toastSetup, major)); err != nil {
		t.Fatalf("schema: %v", err)
	}

	pls := pipelines()
	if only := os.Getenv("PROCON_COMPAT_PIPELINES"); only != "" {
		// A subset, where the full set would cost too much (make test-pg-versions runs this
		// test on more server versions).
		pls = selectPipelines(t, pls, strings.Split(only, ","))
	}
	if major < 15 {
		// Before 15 pgoutput sends every transaction of the database, even one with no
		// published change: the action query's write every second would make transaction
		// events for as long as the connectors run, at moments that differ between the two,
		// and the topics would never be still. The action query does not depend on the
		// server's version; 15 and newer cover it.
		for _, p := range pls {
			delete(p.debezium, "heartbeat.action.query")
			delete(p.proconDebezium, "heartbeat.action.query")
		}
	}
	base := strings.TrimPrefix(testenv.Name(t, "x"), "x_")
	suffix := base[len(base)-8:]
	for i, p := range pls {
		p.dbzPrefix = fmt.Sprintf("dbz%d_%s", i, suffix)
		p.pcPrefix = fmt.Sprintf("pcn%d_%s", i, suffix)
		p.dbzSlot, p.pcSlot = p.dbzPrefix, p.pcPrefix
		env.DeleteTopicsAtCleanup(t, p.dbzPrefix)
		env.DeleteTopicsAtCleanup(t, p.pcPrefix)
		env.DeleteTopicsAtCleanup(t, "__debezium-heartbeat."+p.dbzPrefix)
		env.DeleteTopicsAtCleanup(t, "__debezium-heartbeat."+p.pcPrefix)
	}

	// The slots are made here: creating a logical slot waits for every transaction running in
	// the cluster, and ten connectors doing it at once (while other tests hold transactions
	// open) can outlast Debezium's task start timeout. One slot is created, the others are
	// copies of it (instant, same position). Both connectors stream from an existing slot's
	// position when they have no offsets.
	//
	// The publications exist first (each connector still adjusts its own at start): pgoutput
	// reads the publication as of each change it decodes, so a change written between a slot's
	// start and its publication's creation (procon-cdc's heartbeat.action.query, while the
	// Debezium runners still start) would stop that stream with "publication does not exist".
	start := time.Now()
	for _, p := range pls {
		tables := make([]string, len(p.tables))
		for i, tb := range p.tables {
			tables[i] = "public." + tb
		}
		// Debezium's own would carry only the operations not skipped, when skipped.operations
		// is set (it leaves an existing publication with the right tables as it is).
		with := ""
		if ops := p.debezium["skipped.operations"]; ops != "" && ops != "none" {
			var publish []string
			for _, op := range []struct{ letter, name string }{{"c", "insert"}, {"u", "update"}, {"d", "delete"}, {"t", "truncate"}} {
				if !strings.Contains(ops, op.letter) {
					publish = append(publish, op.name)
				}
			}
			with = fmt.Sprintf(" WITH (publish = '%s')", strings.Join(publish, ","))
		}
		for _, pub := range []string{p.dbzSlot, p.pcSlot} {
			if pub == p.pcSlot {
				with = ""
			}
			if _, err := db.Pool.Exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s%s", pub, strings.Join(tables, ", "), with)); err != nil {
				t.Fatalf("create publication %s: %v", pub, err)
			}
		}
	}
	first := pls[0].dbzSlot
	if _, err := db.Pool.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", first); err != nil {
		t.Fatalf("create slot %s: %v", first, err)
	}
	for _, p := range pls {
		for _, slot := range []string{p.dbzSlot, p.pcSlot} {
			if slot == first {
				continue
			}
			if _, err := db.Pool.Exec(ctx, "SELECT pg_copy_logical_replication_slot($1, $2)", first, slot); err != nil {
				t.Fatalf("copy slot %s: %v", slot, err)
			}
		}
	}
	t.Logf("slots created in %s", time.Since(start).Round(time.Millisecond))

	// Start everything: the Debezium runners take a while (JVMs), procon-cdc is ready once
	// engine.New returns.
	start = time.Now()
	runners := make([]*debezium, len(pls))
	for i, p := range pls {
		runners[i] = startDebezium(t, db.DSN, p, env.Brokers)
		p.runner = runners[i]
	}
	for _, p := range pls {
		startProcon(t, db.DSN, p, env.Brokers)
	}
	for i, p := range pls {
		runners[i].waitReady(t, p.name, 5*time.Minute)
	}
	t.Logf("%d Debezium runners and %d procon-cdc engines streaming after %s", len(pls), len(pls), time.Since(start).Round(time.Millisecond))

	// The workload.
	start = time.Now()
	barriers := 0
	for i, s := range workload {
		if s.barrier {
			barriers++
			barrier(t, env, db, pls, barriers)
			continue
		}
		if _, err := db.Pool.Exec(ctx, forServer(s.sql, major)); err != nil {
			t.Fatalf("workload step %d: %v\n%s", i, err, forServer(s.sql, major))
		}
	}
	barriers++
	barrier(t, env, db, pls, barriers)
	t.Logf("workload of %d steps written and captured by all in %s", len(workload), time.Since(start).Round(time.Millisecond))

	// Both ran heartbeat.action.query.
	var who []string
	if err := db.Pool.QueryRow(ctx, "SELECT coalesce(array_agg(DISTINCT who ORDER BY who), '{}') FROM hb_action").Scan(&who); err != nil {
		t.Fatal(err)
	}
	actionQuery := false
	for _, p := range pls {
		actionQuery = actionQuery || p.debezium["heartbeat.action.query"] != ""
	}
	if actionQuery && strings.Join(who, ",") != "debezium,procon" {
		t.Errorf("heartbeat.action.query ran for %q, want both debezium and procon", who)
	}

	// Read everything each side wrote and compare.
	topics := quiescentTopics(t, env, pls)
	recs := readAll(t, env, pls, topics)
	if dir := os.Getenv("PROCON_COMPAT_DUMP"); dir != "" {
		dumpRecords(t, dir, recs)
	}
	total := newComparator()
	var summary strings.Builder
	for _, p := range pls {
		c := newComparator()
		c.includeUnknown = p.debezium["include.unknown.datatypes"] == "true"
		comparePipeline(t, c, p, recs)
		fmt.Fprintf(&summary, "  %-8s events %5d  fields %7d  keys byte-identical %d/%d  values equal %d/%d  mismatches %d\n",
			p.name, c.events, c.fields, c.keysIdentical, c.keys, c.valuesIdentical, c.events, len(c.mismatches))
		total.events += c.events
		total.fields += c.fields
		total.keys += c.keys
		total.keysIdentical += c.keysIdentical
		total.valuesIdentical += c.valuesIdentical
		total.mismatches = append(total.mismatches, c.mismatches...)
		for r, n := range c.exempted {
			total.exempted[r] += n
		}
	}
	t.Logf("Debezium 3.6.1.Final vs procon-cdc, %d pipelines:\n%s  total    events %5d  fields %7d  keys byte-identical %d/%d  mismatches %d\nexempted fields (compare_test.go):\n%s",
		len(pls), summary.String(), total.events, total.fields, total.keysIdentical, total.keys, len(total.mismatches), total.exemptionSummary())
	if len(total.mismatches) > 0 {
		limit := 60
		if n, err := strconv.Atoi(os.Getenv("PROCON_COMPAT_REPORT_GROUPS")); err == nil {
			limit = n
		}
		t.Errorf("%d mismatches:\n%s", len(total.mismatches), total.report(limit))
	}
}

// barrier inserts sentinel row n and waits until every connector has written it.
func barrier(t *testing.T, env *testenv.Env, db *testenv.DB, pls []*pipeline, n int) {
	t.Helper()
	db.Exec(t, fmt.Sprintf("INSERT INTO sentinel VALUES (%d)", n))
	var wg sync.WaitGroup
	errs := make(chan error, 2*len(pls))
	for _, p := range pls {
		for _, prefix := range []string{p.dbzPrefix, p.pcPrefix} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				topic := prefix + ".public.sentinel"
				got, err := env.ReadUntil(topic, 3*time.Minute, func(r []*kgo.Record) bool { return len(r) >= n })
				if err != nil {
					errs <- fmt.Errorf("%s: sentinel %d: %v (have %d records)", topic, n, err, len(got))
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		for _, p := range pls {
			t.Logf("procon %s log tail:\n%s", p.name, tail(p.engineLog, 6))
			t.Logf("Debezium %s log tail:\n%s", p.name, tail(p.runner.log, 12))
		}
		t.FailNow()
	}
}

// quiescentTopics lists every topic of the pipelines and waits until their end offsets stop
// moving (heartbeats aside).
func quiescentTopics(t *testing.T, env *testenv.Env, pls []*pipeline) map[string]int64 {
	t.Helper()
	adm := kadm.NewClient(env.Kafka(t))
	ctx := testenv.Context(t, time.Minute)
	list := func() map[string]int64 {
		all, err := adm.ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, name := range all.Names() {
			for _, p := range pls {
				if ours(name, p.dbzPrefix) || ours(name, p.pcPrefix) {
					names = append(names, name)
				}
			}
		}
		ends, err := adm.ListEndOffsets(ctx, names...)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if !strings.HasPrefix(o.Topic, "__debezium-heartbeat") {
				out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset
			}
		})
		return out
	}
	prev := list()
	for {
		time.Sleep(2 * time.Second)
		cur := list()
		if fmt.Sprint(cur) == fmt.Sprint(prev) {
			return cur
		}
		prev = cur
	}
}

func ours(topic, prefix string) bool {
	return strings.HasPrefix(topic, prefix+".") || topic == "__debezium-heartbeat."+prefix
}

// readAll reads every record of the topics in ends ("topic/partition" -> end offset) and of
// the pipelines' heartbeat topics, up to their current end.
func readAll(t *testing.T, env *testenv.Env, pls []*pipeline, ends map[string]int64) map[string][]record {
	t.Helper()
	seen := map[string]bool{}
	var topics []string
	for tp := range ends {
		if name := tp[:strings.LastIndexByte(tp, '/')]; !seen[name] {
			seen[name] = true
			topics = append(topics, name)
		}
	}
	adm := kadm.NewClient(env.Kafka(t))
	ctx := testenv.Context(t, 2*time.Minute)
	all, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range all.Names() {
		for _, p := range pls {
			if (name == "__debezium-heartbeat."+p.dbzPrefix || name == "__debezium-heartbeat."+p.pcPrefix) && !seen[name] {
				seen[name] = true
				topics = append(topics, name)
			}
		}
	}
	current, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	current.Each(func(o kadm.ListedOffset) {
		key := fmt.Sprintf("%s/%d", o.Topic, o.Partition)
		if e, ok := ends[key]; ok {
			want[key] = e
		} else {
			want[key] = o.Offset
		}
	})
	out := map[string][]record{}
	cons := env.Kafka(t, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	have := map[string]int64{}
	done := func() bool {
		for k, e := range want {
			if have[k] < e {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the topics: %v", ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			key := fmt.Sprintf("%s/%d", r.Topic, r.Partition)
			if r.Offset >= want[key] {
				return
			}
			have[key] = r.Offset + 1
			out[r.Topic] = append(out[r.Topic], record{topic: r.Topic, partition: r.Partition, offset: r.Offset,
				key: r.Key, value: r.Value, headers: r.Headers})
		})
	}
	for _, rs := range out {
		sort.SliceStable(rs, func(i, j int) bool {
			if rs[i].partition != rs[j].partition {
				return rs[i].partition < rs[j].partition
			}
			return rs[i].offset < rs[j].offset
		})
	}
	return out
}

// comparePipeline pairs the topics of the two sides and compares them partition by partition.
func comparePipeline(t *testing.T, c *comparator, p *pipeline, recs map[string][]record) {
	norm := func(topic string) string { return strings.Replace(topic, p.pcPrefix, p.dbzPrefix, 1) }
	dbzTopics := map[string][]record{}
	pcTopics := map[string][]record{}
	for topic, rs := range recs {
		switch {
		case ours(topic, p.dbzPrefix):
			dbzTopics[topic] = rs
		case ours(topic, p.pcPrefix):
			n := norm(topic)
			nrs := make([]record, len(rs))
			for i, r := range rs {
				nrs[i] = normalize(r, p)
				nrs[i].topic = n
			}
			pcTopics[n] = nrs
		}
	}
	var names []string
	for n := range dbzTopics {
		names = append(names, n)
	}
	for n := range pcTopics {
		if _, ok := dbzTopics[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, topic := range names {
		kind, table := topicKind(topic, p.dbzPrefix)
		byPart := func(rs []record) map[int32][]record {
			m := map[int32][]record{}
			for _, r := range rs {
				m[r.partition] = append(m[r.partition], r)
			}
			return m
		}
		d, pc := byPart(dbzTopics[topic]), byPart(pcTopics[topic])
		parts := map[int32]bool{}
		for k := range d {
			parts[k] = true
		}
		for k := range pc {
			parts[k] = true
		}
		var ps []int32
		for k := range parts {
			ps = append(ps, k)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		if kind == 'h' || kind == 't' && p.partitions > 1 {
			// One sequence for the whole topic.
			c.compareRecords(p.name, kind, table, dbzTopics[topic], pcTopics[topic])
			continue
		}
		for _, part := range ps {
			c.compareRecords(p.name, kind, table, d[part], pc[part])
		}
	}
}

// normalize rewrites procon-cdc's topic prefix to Debezium's in a record.
func normalize(r record, p *pipeline) record {
	rep := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		return []byte(strings.ReplaceAll(string(b), p.pcPrefix, p.dbzPrefix))
	}
	out := r
	out.key, out.value = rep(r.key), rep(r.value)
	out.headers = make([]kgo.RecordHeader, len(r.headers))
	for i, h := range r.headers {
		out.headers[i] = kgo.RecordHeader{Key: h.Key, Value: rep(h.Value)}
	}
	return out
}

// topicKind classifies a (Debezium-named) topic: d data (with its table), t transaction
// metadata, m logical messages, h heartbeats.
func topicKind(topic, prefix string) (byte, string) {
	switch {
	case strings.HasPrefix(topic, "__debezium-heartbeat"):
		return 'h', ""
	case topic == prefix+".transaction":
		return 't', ""
	case topic == prefix+".message":
		return 'm', ""
	}
	return 'd', topic[strings.LastIndexByte(topic, '.')+1:]
}

// dumpRecords writes every record read, one file per topic (PROCON_COMPAT_DUMP=dir), for
// looking at a mismatch in full.
func dumpRecords(t *testing.T, dir string, recs map[string][]record) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for topic, rs := range recs {
		var b strings.Builder
		for _, r := range rs {
			fmt.Fprintf(&b, "p%d@%d key=%s\n", r.partition, r.offset, r.key)
			for _, h := range r.headers {
				fmt.Fprintf(&b, "  header %s=%s\n", h.Key, h.Value)
			}
			fmt.Fprintf(&b, "  value=%s\n", r.value)
		}
		if err := os.WriteFile(filepath.Join(dir, topic), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
