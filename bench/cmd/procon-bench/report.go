package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Target is one of the benchmark issues' goals (8, 14, 16, 20), checked on one procon-cdc result.
type Target struct {
	Name   string `json:"name"`
	Status string `json:"status"` // PASS, FAIL or n/a (no reference to compare with)
	Detail string `json:"detail"`
}

func target(name string, ok, known bool, detail string) Target {
	st := "n/a"
	if !known {
		detail = "no reference run"
	} else {
		st = "FAIL"
		if ok {
			st = "PASS"
		}
	}
	return Target{Name: name, Status: st, Detail: detail}
}

func find(res *ScenarioResult, contender string) *Result {
	for _, r := range res.Results {
		if r.Contender == contender && r.Complete && r.EventsPerSecond > 0 {
			return r
		}
	}
	return nil
}

// score fills in the ratios to Debezium and to the limit (pg_recvlogical, or COPY for the
// snapshot) and checks procon-cdc's targets.
func score(res *ScenarioResult) {
	if res.Name == "apply" {
		scoreApply(res)
		return
	}
	dbz := find(res, "debezium")
	limit := find(res, "pg_recvlogical")
	limitName := "pg_recvlogical"
	if res.Name == "snapshot" {
		limit, limitName = find(res, "copy"), "COPY"
	}
	for _, r := range res.Results {
		if !r.Complete || r.EventsPerSecond == 0 {
			continue
		}
		if dbz != nil {
			r.VsDebezium = r.EventsPerSecond / dbz.EventsPerSecond
			if dbz.CPUPerMillion > 0 {
				r.CPUVsDebezium = r.CPUPerMillion / dbz.CPUPerMillion
			}
		}
		if limit != nil {
			r.VsLimit = r.EventsPerSecond / limit.EventsPerSecond
		}
	}
	for _, r := range res.Results {
		if !strings.HasPrefix(r.Contender, "procon") {
			continue
		}
		ok := r.Complete
		speedDbz := func() Target {
			return target("≥5× Debezium events/s", ok && r.VsDebezium >= 5, dbz != nil || !ok, fmt.Sprintf("%.2f×", r.VsDebezium))
		}
		speedLimit := func() Target {
			return target("≥0.7× "+limitName+" events/s", ok && r.VsLimit >= 0.7, limit != nil || !ok, fmt.Sprintf("%.2f×", r.VsLimit))
		}
		cpu := target("CPU/event ≤ ⅕ Debezium", ok && r.CPUVsDebezium > 0 && r.CPUVsDebezium <= 0.2, dbz != nil || !ok, fmt.Sprintf("%.2f×", r.CPUVsDebezium))
		if r.Contender == "procon-eos" {
			r.Targets = eosTargets(res, r)
			continue
		}
		if r.Contender == "procon-metrics" {
			r.Targets = metricsTargets(res, r)
			continue
		}
		if r.Contender == "procon-2pipelines" {
			r.Notes = append(r.Notes, splitRatios(res, r)...)
			continue
		}
		// Issue 20: procon-cdc's CPU per event at most half its walsender's in the drains, and
		// memory bounded everywhere.
		halfWalsender := func() Target {
			v := vsWalsender(r)
			return target("CPU ≤ ½ walsender", ok && v > 0 && v <= 0.5, v > 0 || !ok, fmt.Sprintf("%.2f×", v))
		}
		rss := target("peak RSS < 100 MB", ok && r.PeakRSSMB < 100, true, fmt.Sprintf("%.0f MB", r.PeakRSSMB))
		switch res.Name {
		case "drain-small", "drain-batched":
			r.Targets = []Target{speedDbz(), speedLimit(), cpu, halfWalsender(), rss}
		case "drain-split": // a comparison of one pipeline with two, without targets
		case "huge-tx":
			r.Targets = []Target{rss, speedLimit(), cpu, halfWalsender()}
		case "steady":
			p99 := -1.0
			if r.Latency != nil {
				p99 = r.Latency.P99
			}
			r.Targets = []Target{target("p99 ≤ 10 ms", ok && p99 >= 0 && p99 <= 10, true, fmt.Sprintf("%.0f ms", p99)), cpu, rss}
		case "steady-fast": // reported with its latency; no target beyond memory
			r.Targets = []Target{rss}
		default:
			r.Targets = []Target{cpu, rss}
		}
	}
}

// scoreApply fills in the apply scenario's ratios: × Debezium is to the JDBC sink, × limit to
// the subscription (PostgreSQL's own apply); issue 15's targets for procon-cdc consume are at
// least 0.7× the subscription's rows/s and 3× the JDBC sink's.
func scoreApply(res *ScenarioResult) {
	jdbc := find(res, "debezium-jdbc")
	sub := find(res, "pg-subscription")
	for _, r := range res.Results {
		if !r.Complete || r.EventsPerSecond == 0 {
			continue
		}
		if jdbc != nil {
			r.VsDebezium = r.EventsPerSecond / jdbc.EventsPerSecond
			if jdbc.CPUPerMillion > 0 && r.CPUPerMillion > 0 {
				r.CPUVsDebezium = r.CPUPerMillion / jdbc.CPUPerMillion
			}
		}
		if sub != nil {
			r.VsLimit = r.EventsPerSecond / sub.EventsPerSecond
		}
	}
	for _, r := range res.Results {
		if r.Contender != "procon-consume" || (r.WallSeconds == 0 && r.Error == "") {
			continue
		}
		ok := r.Complete
		r.Targets = []Target{
			target("≥0.7× pg-subscription rows/s", ok && r.VsLimit >= 0.7, sub != nil || !ok, fmt.Sprintf("%.2f×", r.VsLimit)),
			target("≥3× debezium-jdbc rows/s", ok && r.VsDebezium >= 3, jdbc != nil || !ok, fmt.Sprintf("%.2f×", r.VsDebezium)),
		}
	}
}

// eosTargets are exactly-once delivery's goals (issue 14), against at-least-once procon-json
// in the same run: at least 0.8× its throughput in the drains; in steady, p99 commit-to-visible
// (to a read_committed consumer) under 50 ms.
func eosTargets(res *ScenarioResult, r *Result) []Target {
	ok := r.Complete
	alo := find(res, "procon-json")
	switch res.Name {
	case "drain-small", "drain-batched":
		ratio := 0.0
		if alo != nil && alo.EventsPerSecond > 0 {
			ratio = r.EventsPerSecond / alo.EventsPerSecond
		}
		return []Target{target("≥0.8× procon-json events/s", ok && ratio >= 0.8, alo != nil || !ok, fmt.Sprintf("%.2f×", ratio))}
	case "steady":
		p99 := -1.0
		if r.Latency != nil {
			p99 = r.Latency.P99
		}
		return []Target{target("p99 visible < 50 ms", ok && p99 >= 0 && p99 < 50, true, fmt.Sprintf("%.0f ms", p99))}
	}
	return nil
}

// metricsTargets is the cost of metrics (issue 16): with metrics.listen on and scraped every
// second, at least 0.97× procon-json's throughput in the same run.
func metricsTargets(res *ScenarioResult, r *Result) []Target {
	base := find(res, "procon-json")
	ratio := 0.0
	if base != nil && base.EventsPerSecond > 0 {
		ratio = r.EventsPerSecond / base.EventsPerSecond
	}
	return []Target{target("≥0.97× procon-json events/s", r.Complete && ratio >= 0.97, base != nil || !r.Complete, fmt.Sprintf("%.3f×", ratio))}
}

// splitRatios compares two pipelines with one (procon-json on both tables) in the same run:
// events/s, procon-cdc CPU per event, walsender CPU and peak RSS, for the shown (median) runs
// and, with -repeat, for each repeat (the k-th runs of both ran one after the other).
func splitRatios(res *ScenarioResult, r *Result) []string {
	one := find(res, "procon-json")
	if one == nil || !r.Complete {
		return nil
	}
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	line := func(what string, eps2, eps1, cpu2, cpu1, ws2, ws1, rss2, rss1 float64) string {
		return fmt.Sprintf("%s two pipelines ÷ one (procon-json): events/s %.2f×, procon-cdc CPU/event %.2f×, walsender CPU %.2f×, peak RSS %.2f×",
			what, div(eps2, eps1), div(cpu2, cpu1), div(ws2, ws1), div(rss2, rss1))
	}
	out := []string{line("shown runs:", r.EventsPerSecond, one.EventsPerSecond, r.CPUPerMillion, one.CPUPerMillion,
		r.WalsenderCPU, one.WalsenderCPU, r.PeakRSSMB, one.PeakRSSMB)}
	if len(r.Runs) > 1 && len(r.Runs) == len(one.Runs) {
		for k := range r.Runs {
			a, b := r.Runs[k], one.Runs[k]
			if !a.Complete || !b.Complete {
				continue
			}
			out = append(out, line(fmt.Sprintf("repeat %d:", k+1), a.EventsPerSecond, b.EventsPerSecond, a.CPUPerMillion, b.CPUPerMillion,
				a.WalsenderCPU, b.WalsenderCPU, a.PeakRSSMB, b.PeakRSSMB))
		}
	}
	return out
}

// RunSummary is one run of a contender that ran several times (-repeat).
type RunSummary struct {
	Complete        bool     `json:"complete"`
	WallSeconds     float64  `json:"wall_seconds"`
	EventsPerSecond float64  `json:"events_per_second"`
	CPUPerMillion   float64  `json:"cpu_seconds_per_million_events"`
	PeakRSSMB       float64  `json:"peak_rss_mb"`
	WalsenderCPU    float64  `json:"walsender_cpu_seconds,omitempty"`
	OtherCPU        float64  `json:"other_cpu_seconds"`
	P99             float64  `json:"p99_ms,omitempty"`
	Notes           []string `json:"notes,omitempty"`
}

// pickMedian returns the median run (by events/s, or by p99 latency for steady; the lower
// middle of an even count) with every run summarised in it, or the first failed run.
func pickMedian(runs []*Result, byLatency bool) *Result {
	if len(runs) == 1 {
		return runs[0]
	}
	var sums []RunSummary
	var failed []*Result
	for _, r := range runs {
		s := RunSummary{Complete: r.Complete, WallSeconds: r.WallSeconds, EventsPerSecond: r.EventsPerSecond,
			CPUPerMillion: r.CPUPerMillion, PeakRSSMB: r.PeakRSSMB, WalsenderCPU: r.WalsenderCPU, OtherCPU: r.OtherCPU}
		if r.Latency != nil {
			s.P99 = r.Latency.P99
		}
		for _, n := range r.Notes {
			if !strings.HasPrefix(n, "load before") {
				s.Notes = append(s.Notes, n)
			}
		}
		if r.Error != "" {
			s.Notes = append(s.Notes, r.Error)
		}
		sums = append(sums, s)
		if !r.Complete {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		f := failed[0]
		f.Runs = sums
		f.Notes = append(f.Notes, fmt.Sprintf("%d of %d runs failed", len(failed), len(runs)))
		return f
	}
	sorted := append([]*Result(nil), runs...)
	key := func(r *Result) float64 {
		if byLatency && r.Latency != nil {
			return r.Latency.P99
		}
		return r.EventsPerSecond
	}
	sort.Slice(sorted, func(i, j int) bool { return key(sorted[i]) < key(sorted[j]) })
	m := sorted[(len(sorted)-1)/2]
	m.Runs = sums
	what, unit := "events/s", "%.0f"
	if byLatency {
		what, unit = "p99 ms", "%.0f"
	}
	var all []string
	for _, r := range sorted {
		all = append(all, fmt.Sprintf(unit, key(r)))
	}
	m.Notes = append(m.Notes, fmt.Sprintf("median of %d runs by %s (%s)", len(runs), what, strings.Join(all, ", ")))
	return m
}

// Report is the whole run: what bench/results/*.json holds.
type Report struct {
	RunID     string            `json:"run_id"`
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Command   string            `json:"command"`
	Scale     float64           `json:"scale"`
	Machine   Machine           `json:"machine"`
	Settings  map[string]string `json:"settings"`
	Scenarios []*ScenarioResult `json:"scenarios"`
}

func (b *bench) newReport() *Report {
	cmd := os.Getenv("BENCH_COMMAND")
	if cmd == "" {
		cmd = strings.Join(os.Args, " ")
	}
	return &Report{
		RunID:   b.runID,
		Started: b.start,
		Command: cmd,
		Scale:   b.o.scale,
		Machine: b.machine(context.Background()),
		Settings: map[string]string{
			"contenders":            strings.Join(b.o.contenders, ","),
			"writers":               fmt.Sprint(b.o.writers),
			"steady_rate":           fmt.Sprint(b.o.steadyRate),
			"steady_duration":       b.o.steadyFor.String(),
			"debezium_java_opts":    b.o.javaOpts,
			"debezium_extra_props":  strings.Join(b.o.debeziumOpts, ","),
			"jdbc_sink":             fmt.Sprintf("Debezium JDBC sink 3.6.0.Final in a Kafka Connect %s standalone worker, JsonConverter schemas.enable=true, tasks.max=%d, insert.mode=upsert, delete.enabled=true, primary.key.mode=record_key, schema.evolution=none; otherwise the connector's defaults; extra: %s", kafkaVersion(), b.o.jdbcTasks, strings.Join(b.o.jdbcOpts, ",")),
			"pprof":                 fmt.Sprint(b.o.pprof),
			"topics":                "1 partition, RF 1, message.timestamp.type=LogAppendTime, created before each contender starts",
			"procon":                "serialization json (no schema wrapper) or avro via PROCON_SCHEMA_REGISTRY_URL; otherwise procon-cdc's defaults (linger 0, no compression)",
			"debezium":              "3.6.1.Final embedded, pgoutput, JsonConverter schemas.enable=false, runner's KafkaProducer acks=all idempotent; otherwise Debezium's and Kafka's defaults",
			"pg_recvlogical":        "-o proto_version=1 -o publication_names=<pub> --endpos <end of workload> -f /dev/null -F 0",
			"pg_recvlogical-binary": "pg_recvlogical's options and -o binary=true (column values in their binary send format)",
			"contender_order":       "one after another on the same backlog, in the order of contenders",
			"wall_time_includes":    "process start (JVM or Go startup, connecting) up to the last record acknowledged by Kafka",
			"cpu_includes":          "the contender's process tree, from its start (steady: from the writer's start) to done; not the walsender or the broker",
			"other_cpu":             "machine busy CPU during the run minus contender, walsender and Kafka broker: other load on the machine",
			"latency":               "Kafka LogAppendTime minus the event's source.ts_ms (commit time, ms precision)",
		},
	}
}

func (r *Report) finish() { r.Finished = time.Now() }

// write saves the report as markdown and JSON, named after the start time and scale, and as
// latest.{md,json}.
func (r *Report) write(dir string, partial bool) (md, js string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	stem := filepath.Join(dir, fmt.Sprintf("%s-scale%g", r.Started.Format("20060102-150405"), r.Scale))
	md, js = stem+".md", stem+".json"
	raw, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	text := r.markdown()
	for _, f := range []struct{ path, data string }{
		{js, string(raw) + "\n"}, {md, text},
		{filepath.Join(dir, "latest.json"), string(raw) + "\n"}, {filepath.Join(dir, "latest.md"), text},
	} {
		if err := os.WriteFile(f.path, []byte(f.data), 0o644); err != nil {
			return "", "", err
		}
	}
	return md, js, nil
}

func num(v float64, prec int) string {
	if v == 0 {
		return "–"
	}
	return commas(fmt.Sprintf("%.*f", prec, v))
}

// commas groups the integer part by thousands.
func commas(s string) string {
	intPart, frac, hasFrac := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var out []byte
	for i, c := range []byte(intPart) {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	res := string(out)
	if neg {
		res = "-" + res
	}
	if hasFrac {
		res += "." + frac
	}
	return res
}

func ratio(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}

func (r *Report) markdown() string {
	var sb strings.Builder
	m := r.Machine
	fmt.Fprintf(&sb, "# Procon benchmark run %s\n\n", r.RunID)
	fmt.Fprintf(&sb, "- **When:** %s (%s)\n", r.Started.Format("2006-01-02 15:04 MST"), r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&sb, "- **Command:** `%s` (scale %g)\n", r.Command, r.Scale)
	fmt.Fprintf(&sb, "- **Machine:** %d CPUs (%s), %s GiB RAM, %s; load average at start %s\n", m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.LoadAtStart)
	fmt.Fprintf(&sb, "- **Versions:** procon %s, PostgreSQL %s, Kafka %s, Debezium %s, %s\n\n", m.Procon, m.Postgres, m.Kafka, m.Debezium, m.Go)

	sb.WriteString("| scenario | contender | events | records in Kafka | wall s | events/s | × Debezium | × limit | 1st record s | CPU s / M events | CPU × Debezium | peak RSS MB | walsender CPU s | CPU ÷ walsender | other CPU s | latency p50 / p99 / max ms | targets |\n")
	sb.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	var notes []string
	for _, sc := range r.Scenarios {
		for _, x := range sc.Results {
			inKafka := "–"
			if x.ExpectedRecords > 0 {
				inKafka = commas(fmt.Sprint(x.RecordsInKafka))
				if x.RecordsInKafka != x.ExpectedRecords {
					inKafka += fmt.Sprintf(" of %s ✗", commas(fmt.Sprint(x.ExpectedRecords)))
				} else {
					inKafka += " ✓"
				}
			} else if x.Complete {
				inKafka = "n/a ✓"
			}
			lat := "–"
			if x.Latency != nil {
				lat = fmt.Sprintf("%.0f / %.0f / %.0f", x.Latency.P50, x.Latency.P99, x.Latency.Max)
			}
			var tg []string
			for _, t := range x.Targets {
				tg = append(tg, fmt.Sprintf("%s %s (%s)", t.Name, t.Status, t.Detail))
			}
			contender := x.Contender
			if contender == "copy" {
				contender = "COPY (limit)"
			}
			eps := num(x.EventsPerSecond, 0)
			wall := num(x.WallSeconds, 1)
			if x.Error != "" {
				eps = "failed"
				notes = append(notes, fmt.Sprintf("%s / %s: %s", sc.Name, x.Contender, x.Error))
			} else if x.WallSeconds == 0 && len(x.Notes) > 0 {
				eps = "not run"
			}
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				sc.Name, contender, commas(fmt.Sprint(x.Events)), inKafka, wall, eps,
				ratio(x.VsDebezium), ratio(x.VsLimit), num(x.FirstRecordSeconds, 1), num(x.CPUPerMillion, 1),
				ratio(x.CPUVsDebezium), num(x.PeakRSSMB, 0), num(x.WalsenderCPU, 1), ratio(vsWalsender(x)), num(x.OtherCPU, 1), lat, strings.Join(tg, "<br>"))
			for _, run := range x.Runs {
				for _, n := range run.Notes {
					if (strings.HasPrefix(n, "slot confirmed") || strings.HasPrefix(n, "exit status") || strings.HasPrefix(n, "replay check")) && !contains(x.Notes, n) {
						notes = append(notes, fmt.Sprintf("%s / %s (one of the repeated runs): %s", sc.Name, x.Contender, n))
					}
				}
			}
			for _, n := range x.Notes {
				if strings.HasPrefix(n, "load before") || strings.HasPrefix(n, "walsender CPU sampled") || strings.HasPrefix(n, "CPU is psql") {
					continue
				}
				notes = append(notes, fmt.Sprintf("%s / %s: %s", sc.Name, x.Contender, n))
			}
			if x.Steady != nil && x.Steady.MaxBehindMs > 50 {
				notes = append(notes, fmt.Sprintf("%s / %s: the writer reached %.0f tx/s and fell up to %.0f ms behind its schedule", sc.Name, x.Contender, x.Steady.Rate, x.Steady.MaxBehindMs))
			}
		}
		if sc.Skipped != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", sc.Name, sc.Skipped))
		}
	}
	sb.WriteString("\n**Scenarios.**\n\n")
	for _, sc := range r.Scenarios {
		fmt.Fprintf(&sb, "- **%s**: %s.", sc.Name, sc.Describe)
		if sc.WriteSeconds > 0 {
			fmt.Fprintf(&sb, " Written in %.1f s.", sc.WriteSeconds)
		}
		sb.WriteString("\n")
	}
	sb.WriteString(`
**Columns.** *wall s*: from the contender's process start (startup included) until Kafka's end
offset reached the expected record count (pg_recvlogical, COPY: until the process exited at the
end); steady: from the writer's start. *events/s* = events / wall s. *× limit*: to
pg_recvlogical (pgoutput into /dev/null: one slot's decode-and-transfer limit); snapshot: to
COPY TO STDOUT into /dev/null. *1st record s*: process start to the first record in Kafka
(startup, plus for huge-tx the walsender decoding the whole transaction). *CPU*: user + sys of the
contender's process tree (/proc/<pid>/stat) up to done, per million events. *peak RSS*: VmHWM.
*walsender CPU*: the PostgreSQL walsender serving the contender's slot (not in CPU). *CPU ÷
walsender*: the contender's CPU per event over its walsender's (issue 20's target: at most 0.5×
for procon-cdc in drain-small, drain-batched and huge-tx). *other CPU*:
the machine's busy CPU during the run minus contender, walsender, Kafka broker, this harness and
(steady) the writer's backends, i.e. noise from other work on the machine. *records in Kafka*: end offsets after the contender stopped, including delete
tombstones; ✓ = exactly the expected count. *latency*: Kafka LogAppendTime − source.ts_ms.
`)
	for _, sc := range r.Scenarios {
		if sc.Name == "apply" {
			sb.WriteString(`
*apply*: *events* are source row changes (the sentinel inserts included); *wall s* runs from the
process start (the subscription: from ALTER SUBSCRIPTION ENABLE) until the target database holds
the last source transaction, and every target is then compared with the source; *events/s* is
rows/s applied; *× Debezium* is to debezium-jdbc, *× limit* to pg-subscription; *1st record s*:
until the target's statistics first showed an applied change (about 1 s precision); *records in
Kafka*: the pre-filled topics the Kafka contenders read; *CPU*: the subscription's apply worker,
the Connect JVM or procon-cdc (the target database's backends are in the notes).
`)
			break
		}
	}
	if len(notes) > 0 {
		sb.WriteString("\n**Notes.**\n\n")
		for _, n := range notes {
			fmt.Fprintf(&sb, "- %s\n", n)
		}
	}
	return sb.String()
}

// vsWalsender is a contender's CPU per event over the walsender's CPU per event in the same
// run: what reading the slot costs next to what producing it costs the server (zero when
// either is unknown).
func vsWalsender(x *Result) float64 {
	if x.WalsenderCPU <= 0 || x.Events <= 0 || x.CPUPerMillion <= 0 {
		return 0
	}
	return x.CPUPerMillion / (x.WalsenderCPU * 1e6 / float64(x.Events))
}
