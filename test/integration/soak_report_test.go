package integration

import (
	"context"
	"fmt"
	"image/color"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/procon-cdc/procon/test/testenv"
)

// soakSample is one pipeline's state at one moment. NaN (or -1 for records) is a value that
// could not be read then: PostgreSQL or Kafka down, procon-cdc restarting.
type soakSample struct {
	at          time.Duration // since the run's start
	pipeline    int
	incarnation int
	sinceStart  time.Duration // since this incarnation started
	rssMiB      float64
	goroutines  float64
	records     int64   // in the pipeline's table topics (end offsets, so with exactly-once's markers)
	lagMiB      float64 // pg_current_wal_lsn() - the slot's confirmed_flush_lsn
	perSecond   float64 // records written since the previous sample, per second
}

const soakSampleEvery = 10 * time.Second

// sample records every pipeline's state every 10 s until ctx ends. It reaches the services
// directly, not through the proxies.
func (sk *soak) sample(ctx context.Context, t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.Get(t).Brokers...))
	if err != nil {
		t.Errorf("soak sampler: kafka client: %v", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	prev := make([]soakSample, len(sk.procs))
	tick := time.NewTicker(soakSampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i, p := range sk.procs {
			sk.mu.Lock()
			proc, inc, started := p.fp.p, p.incarnation, p.started
			sk.mu.Unlock()
			s := soakSample{at: sk.since(), pipeline: i, incarnation: inc, sinceStart: time.Since(started),
				rssMiB: rssMiB(proc), goroutines: goroutines(p.metrics), records: -1, lagMiB: math.NaN(), perSecond: math.NaN()}
			var topics []string
			for _, tb := range p.fp.w.tables {
				topics = append(topics, p.fp.s.topic(tb))
			}
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			if ends, err := adm.ListEndOffsets(c, topics...); err == nil && ends.Error() == nil {
				s.records = 0
				ends.Each(func(o kadm.ListedOffset) { s.records += o.Offset })
			}
			var lag *float64
			if err := p.fp.s.db.Pool.QueryRow(c, `SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::float8
				FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, p.fp.s.slot).Scan(&lag); err == nil && lag != nil {
				s.lagMiB = *lag / (1 << 20)
			}
			cancel()
			if s.records >= 0 && prev[i].records >= 0 && prev[i].at > 0 {
				s.perSecond = float64(s.records-prev[i].records) / (s.at - prev[i].at).Seconds()
			}
			if s.records >= 0 || prev[i].at == 0 {
				prev[i] = s
			}
			sk.mu.Lock()
			sk.samples = append(sk.samples, s)
			sk.mu.Unlock()
		}
	}
}

// rssMiB is a process's resident set (VmRSS of /proc/PID/status), NaN once it has exited.
func rssMiB(p *process) float64 {
	select {
	case <-p.exited:
		return math.NaN()
	default:
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return math.NaN()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				return kib / 1024
			}
		}
	}
	return math.NaN()
}

// goroutines is go_goroutines of a procon-cdc's metrics, NaN when it does not answer.
func goroutines(addr string) float64 {
	code, body, err := testenv.TryHTTPGet("http://" + addr + "/metrics")
	if err != nil || code != 200 {
		return math.NaN()
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return math.NaN()
	}
	if v, ok := testenv.MetricValue(fams, "go_goroutines"); ok {
		return v
	}
	return math.NaN()
}

// The growth rule (docs/soak.md). Samples from the last two thirds of the run are grouped by
// process lifetime (a kill -9 or an exit starts a new one), leaving out each lifetime's first
// minute (caches and buffers fill). A lifetime with at least two minutes of such samples is
// split in halves by time: the median of the second half may exceed the first half's by at
// most the noise allowance, the larger of 25 % and 16 MiB for RSS, of 25 % and 20 goroutines.
const (
	soakWarmup      = time.Minute
	soakMinLifetime = 12 // samples: two minutes
	soakRSSNoise    = 16.0
	soakGoNoise     = 20.0
	soakNoiseShare  = 0.25
)

type soakGrowth struct {
	text   string
	failed bool
}

func (sk *soak) growth() []soakGrowth {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	type life struct{ pipeline, incarnation int }
	groups := map[life][]soakSample{}
	var order []life
	for _, s := range sk.samples {
		if s.at < sk.dur/3 || s.sinceStart < soakWarmup {
			continue
		}
		k := life{s.pipeline, s.incarnation}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], s)
	}
	var out []soakGrowth
	for _, k := range order {
		ss := groups[k]
		who := fmt.Sprintf("pipeline %d lifetime %d (%d samples from %s)", k.pipeline, k.incarnation, len(ss), ss[0].at)
		if len(ss) < soakMinLifetime {
			out = append(out, soakGrowth{text: who + ": too short to judge"})
			continue
		}
		half := len(ss) / 2
		for _, m := range []struct {
			name, unit string
			noise      float64
			get        func(soakSample) float64
		}{
			{"RSS", " MiB", soakRSSNoise, func(s soakSample) float64 { return s.rssMiB }},
			{"goroutines", "", soakGoNoise, func(s soakSample) float64 { return s.goroutines }},
		} {
			first, second := median(ss[:half], m.get), median(ss[half:], m.get)
			allowed := math.Max(first*soakNoiseShare, m.noise)
			g := soakGrowth{text: fmt.Sprintf("%s: %s median %.1f%s then %.1f%s (allowed growth %.1f)", who, m.name, first, m.unit, second, m.unit, allowed)}
			if second-first > allowed || math.IsNaN(first) || math.IsNaN(second) {
				g.failed = !math.IsNaN(first) && !math.IsNaN(second)
				if g.failed {
					g.text += ": GROWTH"
				} else {
					g.text += ": no values"
				}
			}
			out = append(out, g)
		}
	}
	return out
}

// median of the non-NaN values get takes from ss, NaN if none.
func median(ss []soakSample, get func(soakSample) float64) float64 {
	vs := values(ss, get)
	if len(vs) == 0 {
		return math.NaN()
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

func values(ss []soakSample, get func(soakSample) float64) []float64 {
	var vs []float64
	for _, s := range ss {
		if v := get(s); !math.IsNaN(v) {
			vs = append(vs, v)
		}
	}
	return vs
}

// minMedMax formats the minimum, median and maximum of a series.
func minMedMax(ss []soakSample, get func(soakSample) float64, format string) string {
	vs := values(ss, get)
	if len(vs) == 0 {
		return "no values"
	}
	slices.Sort(vs)
	f := func(v float64) string { return fmt.Sprintf(format, v) }
	return f(vs[0]) + " / " + f(vs[len(vs)/2]) + " / " + f(vs[len(vs)-1])
}

// writeReport writes report.md, soak.png and samples.csv to SOAK_OUT.
func (sk *soak) writeReport(t *testing.T) {
	sk.mu.Lock()
	phase, faults, samples := sk.phase, slices.Clone(sk.faults), slices.Clone(sk.samples)
	findings, results := slices.Clone(sk.findings), slices.Clone(sk.results)
	sk.mu.Unlock()
	growth := sk.growth()
	status := "PASSED"
	if t.Failed() {
		status = "FAILED during " + phase + " (the test log says why)"
	}
	var b strings.Builder
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	fmt.Fprintf(&b, "# Soak run\n\nWritten by `make soak` (test/integration/soak_test.go); docs/soak.md says what it does and how to read this.\n\n")
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| result | **%s** |\n", status)
	fmt.Fprintf(&b, "| started | %s |\n| duration | %s (faults and workload), then the checks |\n", sk.began.UTC().Format(time.RFC3339), sk.dur)
	fmt.Fprintf(&b, "| seed | %d (replay: `make soak SOAK_SEED=%d SOAK_DURATION=%s`) |\n", sk.seed, sk.seed, sk.dur)
	fmt.Fprintf(&b, "| commit | %s |\n| machine | %d CPUs (%s/%s), shared |\n", strings.TrimSpace(string(commit)), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	build := "built without the race detector, as users run it"
	if !sk.procs[0].fp.s.release {
		build = "built with the race detector (SOAK_RACE): RSS includes its shadow memory"
	}
	fmt.Fprintf(&b, "| procon-cdc | %s |\n", build)
	fmt.Fprintf(&b, "| faults | %d |\n\n", len(faults))

	b.WriteString("## Faults\n\n| kind | count |\n|---|---|\n")
	counts := map[string]int{}
	var kinds []string
	for _, f := range faults {
		if counts[f.kind] == 0 {
			kinds = append(kinds, f.kind)
		}
		counts[f.kind]++
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "| %s | %d |\n", k, counts[k])
	}
	b.WriteString("\n| from | to | kind | detail |\n|---|---|---|---|\n")
	for _, f := range faults {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.start, f.end, f.kind, f.detail)
	}

	b.WriteString("\n## Workload and pipelines\n\n")
	for i, p := range sk.procs {
		l := sk.loads[i]
		l.mu.Lock()
		p.fp.w.mu.Lock()
		txs := len(p.fp.w.txs)
		p.fp.w.mu.Unlock()
		var mine []soakSample
		for _, s := range samples {
			if s.pipeline == i {
				mine = append(mine, s)
			}
		}
		var records int64
		for _, s := range mine {
			records = max(records, s.records)
		}
		fmt.Fprintf(&b, "**Pipeline %d** (%s; %d lifetimes):\n\n", i, p.fp.mode(), p.incarnation+1)
		fmt.Fprintf(&b, "- transactions committed and checked: %d, of which %d large (%d rows in all); %d realtime notifications; %d columns added (%s)\n",
			txs, l.bigTxs, l.bigRowsOut, len(l.notified), len(l.alters), strings.Join(shortAlters(l.alters), ", "))
		fmt.Fprintf(&b, "- records in the table topics at the last sample: %d\n", records)
		fmt.Fprintf(&b, "- throughput (records/s, per 10 s) min / median / max: %s\n", minMedMax(mine, func(s soakSample) float64 { return s.perSecond }, "%.0f"))
		fmt.Fprintf(&b, "- lag (MiB of WAL) min / median / max: %s\n", minMedMax(mine, func(s soakSample) float64 { return s.lagMiB }, "%.2f"))
		fmt.Fprintf(&b, "- RSS (MiB) min / median / max: %s\n", minMedMax(mine, func(s soakSample) float64 { return s.rssMiB }, "%.1f"))
		fmt.Fprintf(&b, "- goroutines min / median / max: %s\n\n", minMedMax(mine, func(s soakSample) float64 { return s.goroutines }, "%.0f"))
		l.mu.Unlock()
	}

	b.WriteString("## Checks\n\n")
	for _, r := range results {
		fmt.Fprintf(&b, "- %s\n", r)
	}
	b.WriteString("\nGrowth (last two thirds of the run, per process lifetime, first minute left out):\n\n")
	for _, g := range growth {
		fmt.Fprintf(&b, "- %s\n", g.text)
	}
	if len(findings) > 0 {
		b.WriteString("\n## Findings\n\n")
		for _, f := range findings {
			fmt.Fprintf(&b, "```\n%s\n```\n", f)
		}
	}
	b.WriteString("\n![throughput, lag, RSS and goroutines over time, faults shaded](soak.png)\n")
	if err := os.WriteFile(filepath.Join(sk.out, "report.md"), []byte(b.String()), 0o644); err != nil {
		t.Errorf("soak report: %v", err)
	}
	var csv strings.Builder // the plot's data, for other tools
	csv.WriteString("seconds,pipeline,lifetime,rss_mib,goroutines,records,records_per_s,lag_mib\n")
	for _, s := range samples {
		fmt.Fprintf(&csv, "%.0f,%d,%d,%.1f,%.0f,%d,%.1f,%.3f\n", s.at.Seconds(), s.pipeline, s.incarnation, s.rssMiB, s.goroutines, s.records, s.perSecond, s.lagMiB)
	}
	if err := os.WriteFile(filepath.Join(sk.out, "samples.csv"), []byte(csv.String()), 0o644); err != nil {
		t.Errorf("soak samples: %v", err)
	}
	if err := sk.plot(filepath.Join(sk.out, "soak.png"), faults, samples); err != nil {
		t.Errorf("soak plot: %v", err)
	}
	t.Logf("soak report in %s", sk.out)
	fmt.Printf("soak: %s; report and plot in %s\n", status, sk.out)
}

func shortAlters(alters []string) []string {
	var out []string
	for _, a := range alters {
		f := strings.Fields(a) // ALTER TABLE public.x ADD COLUMN IF NOT EXISTS c int DEFAULT n
		if len(f) > 8 {
			out = append(out, f[2]+"."+f[8])
		}
	}
	return out
}

var (
	soakPipelineColors = []color.Color{color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
	soakFaultColors    = map[string]color.Color{
		"postgres blackhole": color.NRGBA{R: 0x33, G: 0x66, B: 0xcc, A: 0x55},
		"kafka blackhole":    color.NRGBA{R: 0x00, G: 0x99, B: 0x33, A: 0x55},
		"connection resets":  color.NRGBA{R: 0x99, G: 0x66, B: 0x00, A: 0x55},
		"latency 500ms":      color.NRGBA{R: 0xcc, G: 0x99, B: 0x00, A: 0x55},
		"kafka restart":      color.NRGBA{R: 0x66, G: 0x00, B: 0x99, A: 0x55},
		"postgres crash":     color.NRGBA{R: 0x00, G: 0x66, B: 0x99, A: 0x55},
		"kill -9":            color.NRGBA{R: 0xcc, G: 0x00, B: 0x00, A: 0x55},
	}
)

// plot draws throughput, lag, RSS and goroutines over time, one line per pipeline, with each
// fault shaded over its duration (at least a few seconds wide, to be seen).
func (sk *soak) plot(path string, faults []soakFault, samples []soakSample) error {
	panels := []struct {
		title string
		get   func(soakSample) float64
	}{
		{"throughput (records/s)", func(s soakSample) float64 { return s.perSecond }},
		{"lag (MiB of WAL not confirmed)", func(s soakSample) float64 { return s.lagMiB }},
		{"procon-cdc RSS (MiB)", func(s soakSample) float64 { return s.rssMiB }},
		{"goroutines", func(s soakSample) float64 { return s.goroutines }},
	}
	plots := make([][]*plot.Plot, len(panels))
	for pi, panel := range panels {
		p := plot.New()
		p.Title.Text = panel.title
		p.X.Label.Text = "minutes"
		p.X.Min, p.X.Max = 0, sk.dur.Minutes()+1
		ymax := 1.0
		for _, s := range samples {
			if v := panel.get(s); !math.IsNaN(v) {
				ymax = math.Max(ymax, v)
			}
		}
		ymax *= 1.05
		p.Y.Min, p.Y.Max = 0, ymax
		seen := map[string]bool{}
		for _, f := range faults {
			x0, x1 := f.start.Minutes(), math.Max(f.end.Minutes(), f.start.Minutes()+3.0/60)
			poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: 0}, {X: x1, Y: 0}, {X: x1, Y: ymax}, {X: x0, Y: ymax}})
			if err != nil {
				return err
			}
			poly.Color = soakFaultColors[f.kind]
			poly.LineStyle.Width = 0
			p.Add(poly)
			if pi == 0 && !seen[f.kind] {
				seen[f.kind] = true
				p.Legend.Add(f.kind, poly)
			}
		}
		p.Add(plotter.NewGrid()) // over the shading, under the lines
		for pl := range sk.procs {
			name := fmt.Sprintf("pipeline %d (%s)", pl, sk.procs[pl].fp.mode())
			// One line per run of readable values of one process lifetime: gaps stay gaps.
			var seg plotter.XYs
			legend := false
			flush := func() error {
				if len(seg) == 0 {
					return nil
				}
				l, err := plotter.NewLine(seg)
				if err != nil {
					return err
				}
				l.Color = soakPipelineColors[pl%len(soakPipelineColors)]
				l.Width = vg.Points(1)
				p.Add(l)
				if pi == 0 && !legend {
					p.Legend.Add(name, l)
					legend = true
				}
				seg = nil
				return nil
			}
			last := -1
			for _, s := range samples {
				if s.pipeline != pl {
					continue
				}
				v := panel.get(s)
				if math.IsNaN(v) || s.incarnation != last {
					if err := flush(); err != nil {
						return err
					}
				}
				last = s.incarnation
				if !math.IsNaN(v) {
					seg = append(seg, plotter.XY{X: s.at.Minutes(), Y: v})
				}
			}
			if err := flush(); err != nil {
				return err
			}
		}
		if pi == 0 {
			p.Legend.Top = true
			p.Legend.Left = false
			p.Legend.TextStyle.Font.Size = vg.Points(7)
		}
		plots[pi] = []*plot.Plot{p}
	}
	img := vgimg.New(vg.Points(900), vg.Points(1000))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadX: vg.Millimeter * 2, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
