package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// pipelines is how contender c's rep-th run reads sc: one runSpec per procon-cdc process.
// procon-2pipelines splits sc's tables over pipelines of their own (one table each here: name,
// slot and publication <name>_p<i>), as the README's "Splitting a database over several
// pipelines" describes; every other contender is one pipeline on every table and pub.
func (b *bench) pipelines(sc *scenario, c string, rep int, pub string) []*runSpec {
	name := b.name(sc, c, rep)
	if c != "procon-2pipelines" {
		return []*runSpec{{sc: sc, name: name, pub: pub, tables: sc.tables()}}
	}
	var parts []*runSpec
	for i, t := range sc.tables() {
		n := fmt.Sprintf("%s_p%d", name, i+1)
		parts = append(parts, &runSpec{sc: sc, name: n, pub: fmt.Sprintf("%s_p%d", pub, i+1), tables: []string{t}})
	}
	return parts
}

// runPipelines runs one procon-cdc process per part of r at once (procon-json's settings each)
// until Kafka holds every record of every part's topics, and measures them as one contender:
// wall time from the first start to the last record; CPU, peak RSS and walsender CPU summed
// over the processes and their slots' walsenders (each of which decodes the whole WAL).
func (b *bench) runPipelines(ctx context.Context, r *runSpec, res *Result) error {
	if r.steady != nil || r.snapshot {
		return fmt.Errorf("%s runs only on backlogs", res.Contender)
	}
	res.Log = filepath.Join(b.dir, r.parts[0].name+".log")
	var procs []*proc
	var smps []*sampler
	var profs []*profiler
	defer func() {
		for _, s := range smps {
			s.stop()
		}
		var saved []string
		for i, prof := range profs {
			saved = append(saved, prof.finish(b, filepath.Join(b.o.outDir, r.parts[i].name+".pprof")))
		}
		res.Profile = strings.Join(saved, ",")
		for _, p := range procs {
			p.kill()
		}
	}()
	s0 := b.snapMachine()
	var topics []string
	for _, part := range r.parts {
		base := filepath.Join(b.dir, part.name)
		args, pprofAddr, err := b.proconRun(base, b.proconConfig(part, "procon-json"))
		if err != nil {
			return err
		}
		p, err := startProc(base+".log", nil, nil, args...)
		if err != nil {
			return fmt.Errorf("start pipeline %s: %w", part.name, err)
		}
		procs = append(procs, p)
		if pprofAddr != "" {
			profs = append(profs, startProfiler(ctx, pprofAddr, base))
		}
		smps = append(smps, b.startSampler(ctx, p.pid(), part.name))
		topics = append(topics, part.topics()...)
	}
	count := func(ctx context.Context) (int64, error) { return b.topicsCount(ctx, topics) }
	doneAt, first, err := b.waitRecords(ctx, count, res.ExpectedRecords, procs...)
	var cpu, ws float64
	var hwm int64
	for i, p := range procs {
		final := treeUsage(p.pid(), b.clkTck)
		smps[i].sample(ctx)
		last, wsCPU := smps[i].readings()
		if final.ReadErr {
			final = last
		}
		cpu += final.CPU
		hwm += final.HWMKiB
		ws += wsCPU
		res.Notes = append(res.Notes, fmt.Sprintf("pipeline %s (%s): CPU %.1f s, walsender CPU %.1f s, peak RSS %.0f MB",
			r.parts[i].name, strings.Join(r.parts[i].tables, ", "), final.CPU, wsCPU, float64(final.HWMKiB)*1024/1e6))
	}
	s1 := b.snapMachine()
	for _, prof := range profs {
		prof.stop()
	}
	if !first.IsZero() {
		res.FirstRecordSeconds = first.Sub(procs[0].started).Seconds()
	}
	if err != nil {
		for _, p := range procs {
			p.stop(30 * time.Second)
		}
		res.RecordsInKafka, _ = count(ctx)
		return fmt.Errorf("%w (logs: %s)", err, strings.TrimSuffix(res.Log, "_p1.log")+"_p*.log")
	}
	res.WallSeconds = doneAt.Sub(procs[0].started).Seconds()
	res.CPUSeconds = cpu
	res.PeakRSSMB = float64(hwm) * 1024 / 1e6
	res.WalsenderCPU = ws
	if b.kafkaPID > 0 {
		res.KafkaCPU = s1.kafka - s0.kafka
	}
	res.HarnessCPU = s1.self - s0.self
	res.OtherCPU = max(0, (s1.machine-s0.machine)-res.HarnessCPU-res.CPUSeconds-res.WalsenderCPU-res.KafkaCPU)
	for _, p := range procs {
		p.stop(60 * time.Second)
		if code := p.exitCode(); code != 0 {
			res.ExitCode = code
			res.Notes = append(res.Notes, fmt.Sprintf("exit status %d after SIGTERM", code))
		}
	}
	// Anything more than expected (a duplicate) would show up here.
	time.Sleep(time.Second)
	if res.RecordsInKafka, err = count(ctx); err != nil {
		return err
	}
	res.Complete = res.RecordsInKafka == res.ExpectedRecords
	if !res.Complete {
		return fmt.Errorf("Kafka holds %d records, want %d", res.RecordsInKafka, res.ExpectedRecords)
	}
	// What a restart of each would send again: the sum over the slots.
	var replayed int64
	var confirmed []string
	for _, part := range r.parts {
		one := &Result{}
		b.replayCheck(ctx, part, one)
		res.Notes = append(res.Notes, one.Notes...)
		if one.ReplayedAfterStop != nil {
			replayed += *one.ReplayedAfterStop
		}
		confirmed = append(confirmed, one.ConfirmedAfterStop)
	}
	res.ReplayedAfterStop = &replayed
	res.ConfirmedAfterStop = strings.Join(confirmed, ",")
	return nil
}
