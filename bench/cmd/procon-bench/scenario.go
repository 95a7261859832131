package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

type scenarioKind int

const (
	backlog  scenarioKind = iota // written while no contender runs; each drains it from its slot
	steady                       // written at a fixed rate while the contender runs
	snapshot                     // a filled table read by an initial snapshot
	apply                        // changes applied to target databases (apply.go)
)

// scenario is one workload.
type scenario struct {
	Name     string
	Code     string // in object names
	Describe string
	Kind     scenarioKind
	Events   int64 // row changes
	Records  int64 // Kafka records: events plus delete tombstones
	Rate     int   // steady: the writer's transactions per second
	Sizes    map[string]any
	// Tables are the relations the workload writes (default: table alone).
	Tables []string
	// only, when set, is the contenders that take part (in the order -contenders gives).
	only    []string
	prepare func(ctx context.Context) error // after the table exists, before any slot
	write   func(ctx context.Context) error // backlog: the workload, after the slots exist
	plan    *applyPlan                      // apply: the workload
}

func scaled(n float64, scale float64, min int64) int64 {
	v := int64(math.Round(n * scale))
	if v < min {
		return min
	}
	return v
}

func (b *bench) scenario(name string) *scenario {
	s := b.o.scale
	switch name {
	case "drain-small":
		n := scaled(1e6, s, 1000)
		return &scenario{Name: name, Code: "ds", Kind: backlog, Events: n, Records: n,
			Describe: fmt.Sprintf("%d single-row insert transactions written while the contender is stopped, then drained", n),
			Sizes:    map[string]any{"transactions": n, "rows_per_transaction": 1},
			write:    func(ctx context.Context) error { return b.writeSingleRows(ctx, 1, n) }}
	case "drain-split":
		n := scaled(1e6, s, 1000)
		tables := []string{table, table2}
		per := b.rowsPerTable(n, len(tables))
		return &scenario{Name: name, Code: "dsp", Kind: backlog, Events: n, Records: n, Tables: tables,
			only: []string{"pg_recvlogical", "procon-json", "procon-2pipelines"},
			Describe: fmt.Sprintf("%d single-row insert transactions, %d into %s and %d into %s, written while the contender is stopped, then drained by one pipeline (both tables) and by two (one table each, each its own slot and publication)",
				n, per[0], table, per[1], table2),
			Sizes: map[string]any{"transactions": n, "rows_per_transaction": 1, "tables": tables, "rows_per_table": per},
			write: func(ctx context.Context) error { return b.writeSingleRowsInto(ctx, tables, 1, n) }}
	case "drain-batched":
		p := batchedPlan{txs: int(scaled(1000, s, 1)), size: 1000, writers: b.o.writers}
		events := int64(p.txs) * int64(p.size)
		return &scenario{Name: name, Code: "db", Kind: backlog, Events: events, Records: events + int64(p.txs)*p.del(),
			Describe: fmt.Sprintf("%d changes in %d transactions of %d (50%% insert, 40%% update, 10%% delete; deletes add a tombstone each)", events, p.txs, p.size),
			Sizes:    map[string]any{"transactions": p.txs, "changes_per_transaction": p.size, "inserts": int64(p.txs) * p.ins(), "updates": int64(p.txs) * p.upd(), "deletes": int64(p.txs) * p.del()},
			prepare:  func(ctx context.Context) error { return b.seedBatched(ctx, p) },
			write:    func(ctx context.Context) error { return b.writeBatched(ctx, p) }}
	case "huge-tx":
		n := scaled(5e6, s, 1000)
		return &scenario{Name: name, Code: "ht", Kind: backlog, Events: n, Records: n,
			Describe: fmt.Sprintf("one transaction of %d inserts", n),
			Sizes:    map[string]any{"transactions": 1, "rows": n},
			write:    func(ctx context.Context) error { return b.writeHugeTx(ctx, n) }}
	case "steady", "steady-fast":
		code, rate := "st", b.o.steadyRate
		if name == "steady-fast" {
			code, rate = "sf", b.o.steadyFastRate
		}
		n := int64(float64(rate) * b.o.steadyFor.Seconds())
		return &scenario{Name: name, Code: code, Kind: steady, Events: n, Records: n, Rate: rate,
			Describe: fmt.Sprintf("a writer at %d single-row transactions/s for %s while the contender streams; latency = Kafka LogAppendTime - source.ts_ms", rate, b.o.steadyFor),
			Sizes:    map[string]any{"rate": rate, "seconds": b.o.steadyFor.Seconds(), "transactions": n}}
	case "apply":
		return b.applyScenario()
	case "snapshot":
		n := scaled(5e6, s, 1000)
		return &scenario{Name: name, Code: "sn", Kind: snapshot, Events: n, Records: n,
			Describe: fmt.Sprintf("initial snapshot of a %d-row table (procon-cdc snapshot.mode initial, Debezium snapshot.mode=initial); limit = COPY TO STDOUT into /dev/null", n),
			Sizes:    map[string]any{"rows": n},
			prepare:  func(ctx context.Context) error { return b.fillTable(ctx, n) }}
	}
	panic("unknown scenario " + name)
}

// ScenarioResult is one scenario's row of the table: every contender's numbers.
type ScenarioResult struct {
	Name         string         `json:"name"`
	Describe     string         `json:"description"`
	Events       int64          `json:"events"`
	Records      int64          `json:"expected_records"`
	Sizes        map[string]any `json:"sizes"`
	WriteSeconds float64        `json:"workload_write_seconds,omitempty"`
	EndLSN       string         `json:"end_lsn,omitempty"`
	Skipped      string         `json:"skipped,omitempty"`
	Repeat       int            `json:"repeat"`
	Results      []*Result      `json:"results"`
}

// tables is what sc writes.
func (sc *scenario) tables() []string {
	if len(sc.Tables) == 0 {
		return []string{table}
	}
	return sc.Tables
}

// name is the slot, publication-free name and topic prefix of contender c's rep-th run.
func (b *bench) name(sc *scenario, c string, rep int) string {
	n := fmt.Sprintf("%s%s_%s_%s", objectPrefix, b.runID, sc.Code, short(c))
	if b.o.repeat > 1 {
		n += fmt.Sprintf("_r%d", rep)
	}
	return n
}

func (b *bench) runScenario(ctx context.Context, sc *scenario) (*ScenarioResult, error) {
	res := &ScenarioResult{Name: sc.Name, Describe: sc.Describe, Events: sc.Events, Records: sc.Records, Sizes: sc.Sizes, Repeat: b.o.repeat}
	var err error
	runs := map[string][]*Result{}
	switch sc.Kind {
	case backlog:
		err = b.runBacklog(ctx, sc, res, runs)
	case steady:
		err = b.runSteady(ctx, sc, res, runs)
	case snapshot:
		err = b.runSnapshot(ctx, sc, res, runs)
	case apply:
		err = b.runApply(ctx, sc, res, runs)
	}
	order := b.contendersFor(sc)
	if sc.Kind == snapshot {
		order = append([]string{"copy"}, order...)
	}
	for _, c := range order {
		if len(runs[c]) > 0 {
			res.Results = append(res.Results, pickMedian(runs[c], sc.Kind == steady))
		}
	}
	score(res)
	return res, err
}

// contendersFor is the chosen contenders that take part in sc, in the order given.
func (b *bench) contendersFor(sc *scenario) []string {
	set := slices.Concat(cdcContenders, optContenders)
	if sc.Kind == apply {
		set = applyContenders
	}
	var out []string
	for _, c := range b.o.contenders {
		switch {
		case !contains(set, c):
		case sc.only != nil && !contains(sc.only, c):
		case sc.only == nil && c == "procon-2pipelines": // needs a workload over several tables
		default:
			out = append(out, c)
		}
	}
	return out
}

// cleanup drops what a scenario created, unless -keep.
func (b *bench) cleanup(sc *scenario, pubs, slots, topics []string) {
	if b.o.keep {
		b.logf("keeping slots %v, publications %v, topics %v and tables %v", slots, pubs, topics, sc.tables())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, s := range slots {
		b.dropSlot(ctx, s)
	}
	for _, p := range pubs {
		b.dropPublication(ctx, p)
	}
	b.deleteTopics(ctx, topics...)
	b.deleteSubjects(ctx, topics...)
	for _, t := range sc.tables() {
		_ = b.exec(ctx, "DROP TABLE IF EXISTS public."+t)
	}
}

func (b *bench) runBacklog(ctx context.Context, sc *scenario, res *ScenarioResult, runs map[string][]*Result) error {
	if err := b.recreateTables(ctx, sc.tables()); err != nil {
		return err
	}
	if sc.prepare != nil {
		if err := sc.prepare(ctx); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	pub := fmt.Sprintf("%s%s_%s", objectPrefix, b.runID, sc.Code)
	pubs := []string{pub}
	var slots, topics []string
	defer func() { b.cleanup(sc, pubs, slots, topics) }()
	if err := b.createPublication(ctx, pub, sc.tables()...); err != nil {
		return err
	}
	// Every run's slot exists before the first change: all of them read the same WAL.
	for rep := 1; rep <= b.o.repeat; rep++ {
		for _, c := range b.contendersFor(sc) {
			for _, part := range b.pipelines(sc, c, rep, pub) {
				if part.pub != pub && !contains(pubs, part.pub) {
					if err := b.createPublication(ctx, part.pub, part.tables...); err != nil {
						return err
					}
					pubs = append(pubs, part.pub)
				}
				if err := b.createSlot(ctx, part.name); err != nil {
					return err
				}
				slots = append(slots, part.name)
				if isKafka(c) {
					for _, t := range part.topics() {
						if err := b.createTopic(ctx, t); err != nil {
							return err
						}
						topics = append(topics, t)
					}
				}
			}
		}
	}
	b.logf("writing the workload")
	t0 := time.Now()
	if err := sc.write(ctx); err != nil {
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
	return b.interleave(ctx, b.contendersFor(sc), func(c string, rep int) error {
		parts := b.pipelines(sc, c, rep, pub)
		r := parts[0]
		if len(parts) > 1 {
			r = &runSpec{sc: sc, name: b.name(sc, c, rep), pub: pub, tables: sc.tables(), parts: parts}
		}
		for _, p := range parts {
			p.endLSN = end
		}
		r.endLSN = end
		runs[c] = append(runs[c], b.runContender(ctx, r, c))
		// A finished run's slots would only hold WAL from here on.
		for _, p := range parts {
			b.dropSlot(ctx, p.name)
		}
		return nil
	})
}

// interleave runs every contender once per repeat, in turn, settle apart, so that a repeated
// run's contenders share the machine's slow and fast moments.
func (b *bench) interleave(ctx context.Context, contenders []string, run func(c string, rep int) error) error {
	first := true
	for rep := 1; rep <= b.o.repeat; rep++ {
		for _, c := range contenders {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !first {
				time.Sleep(b.o.settle)
			}
			first = false
			if err := run(c, rep); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bench) runSteady(ctx context.Context, sc *scenario, res *ScenarioResult, runs map[string][]*Result) error {
	if err := b.recreateTables(ctx, sc.tables()); err != nil {
		return err
	}
	pub := fmt.Sprintf("%s%s_%s", objectPrefix, b.runID, sc.Code)
	var slots, topics []string
	defer func() { b.cleanup(sc, []string{pub}, slots, topics) }()
	if err := b.createPublication(ctx, pub, sc.tables()...); err != nil {
		return err
	}
	k := int64(0)
	for rep := 1; rep <= b.o.repeat; rep++ {
		for _, c := range b.contendersFor(sc) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if !isKafka(c) {
				if rep == 1 {
					runs[c] = append(runs[c], &Result{Scenario: sc.Name, Contender: c, Events: sc.Events,
						Notes: []string{"not run: no Kafka, so no commit-to-Kafka latency"}})
				}
				continue
			}
			name := b.name(sc, c, rep)
			if err := b.createSlot(ctx, name); err != nil {
				return err
			}
			slots = append(slots, name)
			t := name + ".public." + table
			if err := b.createTopic(ctx, t); err != nil {
				return err
			}
			topics = append(topics, t)
			if err := b.checkpoint(ctx); err != nil {
				return err
			}
			k++
			first := k * 1_000_000_000
			r := &runSpec{sc: sc, name: name, pub: pub, steady: func(ctx context.Context) (steadyStats, error) {
				b.logf("  %s streaming; writing %d transactions/s for %s", c, sc.Rate, b.o.steadyFor)
				return b.writeSteady(ctx, first, sc.Rate, b.o.steadyFor)
			}}
			runs[c] = append(runs[c], b.runContender(ctx, r, c))
			b.dropSlot(ctx, name)
			time.Sleep(b.o.settle)
		}
	}
	return nil
}

// snapshotSupported says whether the procon-cdc binary contains the snapshot package (an
// initial snapshot); before it does, the scenario is skipped with that reason.
func (b *bench) snapshotSupported() bool {
	raw, err := os.ReadFile(b.o.proconBin)
	return err == nil && bytes.Contains(raw, []byte("github.com/procon-cdc/procon/snapshot."))
}

func (b *bench) runSnapshot(ctx context.Context, sc *scenario, res *ScenarioResult, runs map[string][]*Result) error {
	contenders := []string{"copy"}
	for _, c := range b.contendersFor(sc) {
		if !isKafka(c) {
			continue
		}
		if c != "debezium" && !b.snapshotSupported() {
			res.Skipped = "procon-cdc has no initial snapshot yet (the binary does not contain package snapshot); Debezium alone was measured"
			b.logf("  skipping %s: %s", c, res.Skipped)
			continue
		}
		contenders = append(contenders, c)
	}
	if err := b.recreateTables(ctx, sc.tables()); err != nil {
		return err
	}
	var slots, topics []string
	// Each Kafka contender creates its slot and a publication of the same name itself.
	defer func() { b.cleanup(sc, slots, slots, topics) }()
	b.logf("filling the table")
	t0 := time.Now()
	if err := sc.prepare(ctx); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	res.WriteSeconds = time.Since(t0).Seconds()
	if err := b.checkpoint(ctx); err != nil {
		return err
	}
	return b.interleave(ctx, contenders, func(c string, rep int) error {
		name := b.name(sc, c, rep)
		if isKafka(c) {
			t := name + ".public." + table
			if err := b.createTopic(ctx, t); err != nil {
				return err
			}
			topics = append(topics, t)
			slots = append(slots, name)
		}
		r := &runSpec{sc: sc, name: name, snapshot: true}
		runs[c] = append(runs[c], b.runContender(ctx, r, c))
		if isProcon(c) {
			b.proconDrop(ctx, r)
		}
		b.dropSlot(ctx, name)
		return nil
	})
}

// proconDrop runs procon-cdc drop on a contender's config: whatever procon-cdc keeps for a
// pipeline (slot, publication, snapshot progress) goes.
func (b *bench) proconDrop(ctx context.Context, r *runSpec) {
	if b.o.keep {
		return
	}
	cfg := filepath.Join(b.dir, r.name+".yaml")
	out, err := exec.CommandContext(ctx, b.o.proconBin, "drop", "--config", cfg).CombinedOutput()
	if err != nil {
		b.logf("procon-cdc drop %s: %v: %s", r.name, err, bytes.TrimSpace(out))
	}
}
