package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Result is one contender's numbers on one scenario.
type Result struct {
	Scenario  string `json:"scenario"`
	Contender string `json:"contender"`
	// Events is the number of row changes the contender had to deliver.
	Events int64 `json:"events"`
	// ExpectedRecords is what Kafka must hold at the end: events plus delete tombstones.
	ExpectedRecords int64 `json:"expected_records,omitempty"`
	RecordsInKafka  int64 `json:"records_in_kafka,omitempty"`
	// Complete: every record is in Kafka (exactly ExpectedRecords), or pg_recvlogical reached
	// the end LSN, or the COPY finished.
	Complete bool `json:"complete"`
	// WallSeconds runs from the process start (startup included) to the moment Kafka's end
	// offset reached ExpectedRecords (pg_recvlogical and COPY: to the process exit). Steady:
	// the writer's duration plus the time to drain after it stopped.
	WallSeconds float64 `json:"wall_seconds"`
	// FirstRecordSeconds is process start to the first record in Kafka.
	FirstRecordSeconds float64 `json:"first_record_seconds,omitempty"`
	EventsPerSecond    float64 `json:"events_per_second"`
	// CPUSeconds is user + sys of the contender's process tree from its start to done
	// (steady: from the writer's start to done).
	CPUSeconds    float64 `json:"cpu_seconds"`
	CPUPerMillion float64 `json:"cpu_seconds_per_million_events"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	WalsenderCPU  float64 `json:"walsender_cpu_seconds,omitempty"`
	KafkaCPU      float64 `json:"kafka_broker_cpu_seconds,omitempty"`
	// TargetCPU (apply) is the CPU of the target database's backends serving the contender.
	TargetCPU float64 `json:"target_backend_cpu_seconds,omitempty"`
	// HarnessCPU is this program's own CPU during the run (polling, and the steady writer's
	// client side); OtherCPU excludes it and the steady writer's backends.
	HarnessCPU float64      `json:"harness_cpu_seconds"`
	OtherCPU   float64      `json:"other_cpu_seconds"`
	Latency    *latency     `json:"latency,omitempty"`
	Steady     *steadyStats `json:"steady_writer,omitempty"`
	ExitCode   int          `json:"exit_code"`
	// ReplayedAfterStop is how many changes the slot would send again after the contender
	// stopped: 0 when it confirmed everything it delivered (procon-cdc and pg_recvlogical).
	ReplayedAfterStop  *int64       `json:"replayed_after_stop,omitempty"`
	ConfirmedAfterStop string       `json:"slot_confirmed_after_stop,omitempty"`
	VsDebezium         float64      `json:"events_per_second_vs_debezium,omitempty"`
	VsLimit            float64      `json:"events_per_second_vs_limit,omitempty"`
	CPUVsDebezium      float64      `json:"cpu_per_event_vs_debezium,omitempty"`
	Targets            []Target     `json:"targets,omitempty"`
	Error              string       `json:"error,omitempty"`
	Notes              []string     `json:"notes,omitempty"`
	Log                string       `json:"log"`
	Profile            string       `json:"profile,omitempty"`
	Runs               []RunSummary `json:"runs,omitempty"`
}

// run is what a contender needs to know about the scenario it runs in.
type runSpec struct {
	sc     *scenario
	name   string // slot, and topic prefix of Kafka contenders
	pub    string
	tables []string // the relations it streams (default: table)
	// parts are the pipelines of procon-2pipelines, each a runSpec of its own (name, slot,
	// publication, tables); nil for every other contender.
	parts    []*runSpec
	endLSN   string // backlog: where the workload ended
	snapshot bool   // read the table with an initial snapshot instead of the slot's backlog
	steady   func(ctx context.Context) (steadyStats, error)
	// metricsAddr is procon-metrics's metrics.listen.
	metricsAddr string
}

// topic is the Kafka topic of the first (usually only) table.
func (r *runSpec) topic() string { return r.topics()[0] }

// topics are the Kafka topics of every table r streams, <name>.public.<table>.
func (r *runSpec) topics() []string {
	tables := r.tables
	if len(tables) == 0 {
		tables = []string{table}
	}
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = r.name + ".public." + t
	}
	return out
}

func isKafka(c string) bool { return isProcon(c) || c == "debezium" }

// isProcon reports whether c is procon-cdc.
func isProcon(c string) bool {
	return c == "procon-json" || c == "procon-avro" || c == "procon-eos" || c == "procon-metrics" || c == "procon-2pipelines"
}

func short(c string) string {
	switch c {
	case "procon-json":
		return "json"
	case "procon-avro":
		return "avro"
	case "procon-eos":
		return "eos"
	case "procon-metrics":
		return "met"
	case "procon-2pipelines":
		return "2p"
	case "debezium":
		return "dbz"
	case "pg_recvlogical":
		return "recv"
	case "pg_recvlogical-binary":
		return "recvb"
	case "pg-subscription":
		return "sub"
	case "procon-consume":
		return "cons"
	case "debezium-jdbc":
		return "jdbc"
	}
	return "copy"
}

// sampler keeps the latest readings of a contender's process tree and its walsender.
type sampler struct {
	b      *bench
	pid    int
	slot   string
	mu     sync.Mutex
	last   usage
	wsPID  int
	wsCPU  float64
	stopCh chan struct{}
	wg     sync.WaitGroup
}

func (b *bench) startSampler(ctx context.Context, pid int, slot string) *sampler {
	s := &sampler{b: b, pid: pid, slot: slot, stopCh: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample(ctx)
			select {
			case <-t.C:
			case <-s.stopCh:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

func (s *sampler) sample(ctx context.Context) {
	u := treeUsage(s.pid, s.b.clkTck)
	var wsPID int
	if s.slot != "" {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		wsPID, _, _, _ = s.b.slotState(qctx, s.slot, "")
		cancel()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !u.ReadErr {
		s.last = u
	}
	if wsPID != 0 {
		s.wsPID = wsPID
	}
	if s.wsPID != 0 {
		if c := pidCPU(s.wsPID, s.b.clkTck); c > 0 {
			s.wsCPU = c
		}
	}
}

func (s *sampler) stop() {
	close(s.stopCh)
	s.wg.Wait()
}

func (s *sampler) readings() (usage, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.wsCPU
}

// lineWatcher copies a process's stdout to its log and closes ready at the first line
// containing marker.
type lineWatcher struct {
	f      *os.File
	marker string
	ready  chan struct{}
	once   sync.Once
	buf    []byte
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if bytes.Contains(w.buf[:i], []byte(w.marker)) {
			w.once.Do(func() { close(w.ready) })
		}
		w.buf = w.buf[i+1:]
	}
	return w.f.Write(p)
}

// runContender runs one contender on a prepared scenario and measures it.
func (b *bench) runContender(ctx context.Context, r *runSpec, c string) *Result {
	res := &Result{Scenario: r.sc.Name, Contender: c, Events: r.sc.Events}
	if isKafka(c) {
		res.ExpectedRecords = r.sc.Records
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Notes = append(res.Notes, "load before: "+strings.Join(strings.Fields(string(load))[:3], " "))
	}
	var err error
	switch {
	case c == "pg_recvlogical", c == "pg_recvlogical-binary":
		err = b.runRecvlogical(ctx, r, res, c == "pg_recvlogical-binary")
	case c == "copy":
		err = b.runCopy(ctx, r, res)
	case len(r.parts) > 0:
		err = b.runPipelines(ctx, r, res)
	default:
		err = b.runKafkaContender(ctx, r, c, res)
	}
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
	status := "ok"
	if !res.Complete {
		status = "INCOMPLETE: " + res.Error
	}
	b.logf("  %-14s %s: %.1f s, %.0f events/s, %.2f CPU s/M events, peak RSS %.0f MB, %s",
		c, r.sc.Name, res.WallSeconds, res.EventsPerSecond, res.CPUPerMillion, res.PeakRSSMB, status)
	return res
}

// scrape reads url every second until ctx ends, as a Prometheus would; failures (before the
// listener is up) are ignored.
func scrape(ctx context.Context, url string) {
	cl := http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if resp, err := cl.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// proconRun writes cfg to base.yaml and returns the procon-cdc run command for it, with a pprof
// listener (its address) when -pprof is set.
func (b *bench) proconRun(base, cfg string) (args []string, pprofAddr string, err error) {
	if err := os.WriteFile(base+".yaml", []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	args = []string{b.o.proconBin, "run", "--config", base + ".yaml"}
	if b.o.pprof {
		if pprofAddr, err = freePort(); err != nil {
			return nil, "", err
		}
		args = append(args, "--pprof", pprofAddr)
	}
	return args, pprofAddr, nil
}

// proconConfig is procon-cdc's YAML for one contender.
func (b *bench) proconConfig(r *runSpec, c string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %s\n", r.name)
	if c == "procon-avro" {
		sb.WriteString("serialization: avro\nschema_registry:\n  url: ${PROCON_SCHEMA_REGISTRY_URL}\n")
	} else {
		sb.WriteString("serialization: json\n")
	}
	autocreate, pub, mode := "disabled", r.pub, "no_data"
	if r.snapshot {
		autocreate, pub, mode = "filtered", r.name, "initial"
	}
	delivery := ""
	if c == "procon-eos" {
		delivery = "  delivery: exactly_once\n"
	}
	if c == "procon-metrics" {
		fmt.Fprintf(&sb, "metrics:\n  listen: %s\n", r.metricsAddr)
	}
	tables := r.tables
	if len(tables) == 0 {
		tables = []string{table}
	}
	var rels strings.Builder
	for _, t := range tables {
		fmt.Fprintf(&rels, "  public.%s: {}\n", t)
	}
	fmt.Fprintf(&sb, `postgres:
  dsn: ${PROCON_PG_DSN}
  slot: %s
  publication: %s
  publication_autocreate: %s
kafka:
  brokers: ${PROCON_KAFKA_BROKERS}
%s  topic_defaults:
    partitions: 1
    replication_factor: 1
    configs: {message.timestamp.type: LogAppendTime}
snapshot:
  mode: %s
relation_configs:
%slog:
  level: %s
`, r.name, pub, autocreate, delivery, mode, rels.String(), envString("BENCH_PROCON_LOG_LEVEL", "warn"))
	return sb.String()
}

// debeziumProps is the runner's properties file for one contender.
func (b *bench) debeziumProps(r *runSpec) string {
	e := b.env
	pub, autocreate, mode := r.pub, "disabled", "no_data"
	if r.snapshot {
		pub, autocreate, mode = r.name, "filtered", "initial"
	}
	lines := []string{
		"debezium.connector.class=io.debezium.connector.postgresql.PostgresConnector",
		"debezium.plugin.name=pgoutput",
		"debezium.database.hostname=" + e.pgHost,
		"debezium.database.port=" + e.pgPort,
		"debezium.database.user=" + e.pgUser,
		"debezium.database.password=" + e.pgPassword,
		"debezium.database.dbname=" + e.pgDB,
		"debezium.topic.prefix=" + r.name,
		"debezium.table.include.list=public." + table,
		"debezium.slot.name=" + r.name,
		"debezium.publication.name=" + pub,
		"debezium.publication.autocreate.mode=" + autocreate,
		"debezium.snapshot.mode=" + mode,
		"debezium.offset.storage.file.filename=" + filepath.Join(b.dir, r.name+".offsets"),
		"debezium.offset.flush.interval.ms=1000",
		"debezium.errors.max.retries=0",
		"converter.schemas.enable=false",
		"kafka.bootstrap.servers=" + strings.Join(e.Brokers, ","),
		"topic.partitions=1",
		"topic.replication.factor=1",
		"log.level=warn",
		"progress.interval.ms=5000",
	}
	for _, kv := range b.o.debeziumOpts {
		lines = append(lines, "debezium."+kv)
	}
	return strings.Join(lines, "\n") + "\n"
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// runKafkaContender runs procon-cdc or Debezium until Kafka holds every record.
func (b *bench) runKafkaContender(ctx context.Context, r *runSpec, c string, res *Result) error {
	base := filepath.Join(b.dir, r.name)
	res.Log = base + ".log"
	var args []string
	var stdout *lineWatcher
	var ready chan struct{}
	var pprofAddr string
	// What Kafka holds: the topic's end offsets, except under exactly-once delivery, where
	// transaction markers take offsets too: there the records visible to a read_committed
	// consumer are counted (committedCounter), and in steady a consumer times them.
	count := func(ctx context.Context) (int64, error) { return b.topicsCount(ctx, r.topics()) }
	var live *liveReader
	if c == "procon-eos" {
		cc, err := b.newCommittedCounter(r.topic())
		if err != nil {
			return err
		}
		defer func() {
			if cc.aborted {
				res.Notes = append(res.Notes, "records of an aborted Kafka transaction were in the topic (not counted out)")
			}
			cc.close()
		}()
		count = cc.count
		if r.steady != nil {
			if live, err = b.startLiveReader(ctx, r.topic()); err != nil {
				return err
			}
			defer live.close()
		}
	}
	switch c {
	case "debezium":
		props := base + ".properties"
		if err := os.WriteFile(props, []byte(b.debeziumProps(r)), 0o644); err != nil {
			return err
		}
		args = append([]string{"java"}, strings.Fields(b.o.javaOpts)...)
		args = append(args, "-jar", b.o.debeziumJar, props)
		ready = make(chan struct{})
	default:
		if c == "procon-metrics" {
			addr, err := freePort()
			if err != nil {
				return err
			}
			r.metricsAddr = addr
			// Scraped every second while it runs (Prometheus usually scrapes every 15 s):
			// the scrapes' cost is part of what is measured.
			sctx, stop := context.WithCancel(ctx)
			defer stop()
			go scrape(sctx, "http://"+addr+"/metrics")
		}
		var err error
		if args, pprofAddr, err = b.proconRun(base, b.proconConfig(r, c)); err != nil {
			return err
		}
	}
	var p *proc
	var err error
	if ready != nil {
		lf, err := os.Create(base + ".stdout")
		if err != nil {
			return err
		}
		defer lf.Close()
		stdout = &lineWatcher{f: lf, marker: "DEBEZIUM-READY", ready: ready}
		p, err = startProc(res.Log, stdout, nil, args...)
		if err != nil {
			return err
		}
	} else {
		p, err = startProc(res.Log, nil, nil, args...)
		if err != nil {
			return err
		}
	}
	defer p.kill()
	s0 := b.snapMachine()
	smp := b.startSampler(ctx, p.pid(), r.name)
	var prof *profiler
	if pprofAddr != "" {
		prof = startProfiler(ctx, pprofAddr, base)
	}
	defer func() {
		smp.stop()
		if prof != nil {
			res.Profile = prof.finish(b, filepath.Join(b.o.outDir, r.name+".pprof"))
		}
	}()

	measureFrom := p.started
	var base0 usage
	var ws0 float64
	if r.steady != nil {
		if err := b.waitReady(ctx, p, r.name, ready); err != nil {
			return err
		}
		time.Sleep(time.Second)
		smp.sample(ctx)
		base0, ws0 = smp.readings()
		s0 = b.snapMachine()
		measureFrom = time.Now()
		st, err := r.steady(ctx)
		res.Steady = &st
		if err != nil {
			return fmt.Errorf("steady writer: %w", err)
		}
	}
	doneAt, first, err := b.waitRecords(ctx, count, res.ExpectedRecords, p)
	final := treeUsage(p.pid(), b.clkTck)
	smp.sample(ctx)
	last, wsCPU := smp.readings()
	if final.ReadErr {
		final = last
	}
	s1 := b.snapMachine()
	if !first.IsZero() && r.steady == nil {
		res.FirstRecordSeconds = first.Sub(p.started).Seconds()
	}
	if err != nil {
		p.stop(30 * time.Second)
		res.ExitCode = p.exitCode()
		res.RecordsInKafka, _ = count(ctx)
		return fmt.Errorf("%w (log: %s)", err, res.Log)
	}
	res.WallSeconds = doneAt.Sub(measureFrom).Seconds()
	res.CPUSeconds = final.CPU - base0.CPU
	res.PeakRSSMB = float64(final.HWMKiB) * 1024 / 1e6
	res.WalsenderCPU = wsCPU - ws0
	if b.kafkaPID > 0 {
		res.KafkaCPU = s1.kafka - s0.kafka
	}
	res.HarnessCPU = s1.self - s0.self
	var writer float64
	if res.Steady != nil {
		writer = res.Steady.BackendCPU
	}
	res.OtherCPU = max(0, (s1.machine-s0.machine)-res.HarnessCPU-writer-res.CPUSeconds-res.WalsenderCPU-res.KafkaCPU)
	if prof != nil {
		prof.stop()
	}
	p.stop(60 * time.Second)
	res.ExitCode = p.exitCode()
	if res.ExitCode != 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("exit status %d after SIGTERM", res.ExitCode))
	}
	// Anything more than expected (a duplicate) would show up here.
	time.Sleep(time.Second)
	res.RecordsInKafka, err = count(ctx)
	if err != nil {
		return err
	}
	res.Complete = res.RecordsInKafka == res.ExpectedRecords
	if !res.Complete {
		return fmt.Errorf("Kafka holds %d records, want %d", res.RecordsInKafka, res.ExpectedRecords)
	}
	if c != "debezium" && r.endLSN != "" {
		b.replayCheck(ctx, r, res)
	}
	if r.steady != nil {
		var lat *latency
		if live != nil {
			lat, err = live.latency()
			if a, aerr := live.appendLatency(); aerr == nil {
				res.Notes = append(res.Notes, fmt.Sprintf("latency is commit-to-visible for a read_committed consumer; commit-to-append (LogAppendTime, as for the others) p50 / p99 / max: %.0f / %.0f / %.0f ms", a.P50, a.P99, a.Max))
			}
		} else {
			lat, err = b.measureLatency(ctx, r.topic(), res.ExpectedRecords, c == "procon-avro")
		}
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		res.Latency = lat
	}
	return nil
}

// waitReady waits until the contender streams: Debezium says DEBEZIUM-READY; procon-cdc holds
// its slot.
func (b *bench) waitReady(ctx context.Context, p *proc, slot string, ready chan struct{}) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if p.done() {
			return fmt.Errorf("exited with status %d before streaming", p.exitCode())
		}
		if ready != nil {
			select {
			case <-ready:
				return nil
			default:
			}
		} else if pid, _, _, err := b.slotState(ctx, slot, ""); err == nil && pid != 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("not streaming after 2 minutes")
}

// waitRecords polls count (topics' end offsets) every 50 ms until it reaches want, and returns
// when that happened and when the first record appeared. Any of ps exiting first is a failure.
func (b *bench) waitRecords(ctx context.Context, count func(context.Context) (int64, error), want int64, ps ...*proc) (done, first time.Time, err error) {
	deadline := ps[0].started.Add(b.o.timeout)
	lastN, lastMove := int64(-1), time.Now()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		n, err := count(ctx)
		now := time.Now()
		if err == nil {
			if n > 0 && first.IsZero() {
				first = now
			}
			if n >= want {
				return now, first, nil
			}
			if n != lastN {
				lastN, lastMove = n, now
			}
		}
		for i, p := range ps {
			if p.done() {
				which := ""
				if len(ps) > 1 {
					which = fmt.Sprintf("process %d of %d ", i+1, len(ps))
				}
				return now, first, fmt.Errorf("%sexited with status %d with %d of %d records in Kafka", which, p.exitCode(), max(lastN, 0), want)
			}
		}
		if now.After(deadline) {
			return now, first, fmt.Errorf("timed out after %s with %d of %d records in Kafka", b.o.timeout, max(lastN, 0), want)
		}
		// Before the first record only the timeout applies: huge-tx decodes the whole
		// transaction first.
		if !first.IsZero() && now.Sub(lastMove) > b.o.stall {
			return now, first, fmt.Errorf("stalled: %d of %d records in Kafka, none for %s", max(lastN, 0), want, b.o.stall)
		}
		select {
		case <-ctx.Done():
			return now, first, ctx.Err()
		case <-t.C:
		}
	}
}

// runRecvlogical reads the slot's backlog up to the workload's end LSN into /dev/null: what one
// slot can decode and send, with no work on the client side. With binary, pgoutput sends
// column values in their binary send format instead of text (PostgreSQL 14+): what that
// saves the walsender.
func (b *bench) runRecvlogical(ctx context.Context, r *runSpec, res *Result, binary bool) error {
	bin, err := b.env.tool("pg_recvlogical")
	if err != nil {
		return errors.New("pg_recvlogical not found in PROCON_PG_BINDIR or PATH")
	}
	if r.steady != nil || r.snapshot {
		return errors.New("pg_recvlogical runs only on backlogs")
	}
	res.Log = filepath.Join(b.dir, r.name+".log")
	args := []string{"-d", b.env.DSN, "--slot", r.name, "--start",
		"--endpos", r.endLSN, "-o", "proto_version=1", "-o", "publication_names=" + r.pub,
		"--file", "/dev/null", "--fsync-interval", "0", "--no-loop"}
	if binary {
		args = append(args, "-o", "binary=true")
	}
	p, err := startProc(res.Log, nil, nil, append([]string{bin}, args...)...)
	if err != nil {
		return err
	}
	defer p.kill()
	s0 := b.snapMachine()
	smp := b.startSampler(ctx, p.pid(), r.name)
	select {
	case <-p.exited:
	case <-time.After(b.o.timeout):
		smp.stop()
		return fmt.Errorf("did not reach %s in %s", r.endLSN, b.o.timeout)
	case <-ctx.Done():
		smp.stop()
		return ctx.Err()
	}
	smp.stop()
	s1 := b.snapMachine()
	_, wsCPU := smp.readings()
	res.WallSeconds = p.ended.Sub(p.started).Seconds()
	cpu, rss := p.rusage()
	res.CPUSeconds = cpu
	res.PeakRSSMB = float64(rss) * 1024 / 1e6
	res.WalsenderCPU = wsCPU
	res.KafkaCPU = s1.kafka - s0.kafka
	res.OtherCPU = max(0, (s1.machine-s0.machine)-(s1.self-s0.self)-cpu-wsCPU-res.KafkaCPU)
	res.ExitCode = p.exitCode()
	if res.ExitCode != 0 {
		return fmt.Errorf("exit status %d (log: %s)", res.ExitCode, res.Log)
	}
	b.replayCheck(ctx, r, res)
	res.Complete = true
	res.Notes = append(res.Notes, "walsender CPU sampled every 250 ms: may miss the last quarter second")
	return nil
}

// runCopy reads the whole table with COPY TO STDOUT into /dev/null through psql: the rate at
// which one connection can read it, the snapshot's limit.
func (b *bench) runCopy(ctx context.Context, r *runSpec, res *Result) error {
	bin, err := b.env.tool("psql")
	if err != nil {
		return errors.New("psql not found in PROCON_PG_BINDIR or PATH")
	}
	res.Log = filepath.Join(b.dir, r.name+".log")
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	p, err := startProc(res.Log, devnull, nil, bin, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", b.env.DSN,
		"-c", "COPY public."+table+" TO STDOUT")
	if err != nil {
		return err
	}
	defer p.kill()
	s0 := b.snapMachine()
	select {
	case <-p.exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	s1 := b.snapMachine()
	res.WallSeconds = p.ended.Sub(p.started).Seconds()
	cpu, rss := p.rusage()
	res.CPUSeconds = cpu
	res.PeakRSSMB = float64(rss) * 1024 / 1e6
	res.KafkaCPU = s1.kafka - s0.kafka
	res.OtherCPU = max(0, (s1.machine-s0.machine)-(s1.self-s0.self)-cpu-res.KafkaCPU)
	res.ExitCode = p.exitCode()
	if res.ExitCode != 0 {
		return fmt.Errorf("psql exit status %d", res.ExitCode)
	}
	res.Complete = true
	res.Notes = append(res.Notes, "CPU is psql's only; the server backend that reads and formats the rows is not counted")
	return nil
}

// replayCheck records what a restart would send again, and where the slot stands.
func (b *bench) replayCheck(ctx context.Context, r *runSpec, res *Result) {
	_, _, confirmed, err := b.slotState(ctx, r.name, r.endLSN)
	if err == nil {
		res.ConfirmedAfterStop = confirmed
	}
	n, err := b.replayed(ctx, r.name, r.pub, r.endLSN)
	if err != nil {
		res.Notes = append(res.Notes, "replay check failed: "+err.Error())
		return
	}
	res.ReplayedAfterStop = &n
	if n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("slot confirmed %s after the stop (workload end %s): a restart would decode and send %d changes again", confirmed, r.endLSN, n))
	}
}

// machineSnap is a reading of the machine's busy CPU, the Kafka broker's and this program's.
type machineSnap struct{ machine, kafka, self float64 }

func (b *bench) snapMachine() machineSnap {
	return machineSnap{machine: machineCPU(b.clkTck), kafka: pidCPU(b.kafkaPID, b.clkTck), self: pidCPU(os.Getpid(), b.clkTck)}
}
