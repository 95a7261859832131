// Command procon-bench races procon-cdc against Debezium 3.6.1 embedded and pg_recvlogical on
// the same WAL backlog, in one run on one machine, and prints one table; its apply scenario
// races procon-cdc consume against a PostgreSQL subscription and the Debezium JDBC sink.
//
// bench/run is the entry point (it starts the services and builds the binaries); see
// bench/README.md for what each scenario does and how each number is measured.
//
//	procon-bench -procon BIN -debezium-jar JAR [flags] [scenario...]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options is everything a run is parameterised by: flags, with environment defaults.
type options struct {
	scale       float64
	scenarios   []string
	contenders  []string
	proconBin   string
	debeziumJar string
	outDir      string
	workDir     string
	timeout     time.Duration
	stall       time.Duration
	settle      time.Duration
	writers     int
	steadyRate  int
	// steadyFastRate is steady-fast's rate: as high as this machine's writer reaches.
	steadyFastRate int
	steadyFor      time.Duration
	pprof          bool
	repeat         int
	keep           bool
	debeziumOpts   []string // extra debezium.* properties, k=v
	javaOpts       string
	connectLib     string // the Kafka Connect + JDBC sink classpath (bench/jdbc-sink/build)
	jdbcTasks      int
	jdbcOpts       []string // extra JDBC sink connector properties, k=v
	applyChanges   int64    // apply's change count; 0: 1M x scale
}

var allScenarios = []string{"drain-small", "drain-batched", "drain-split", "huge-tx", "steady", "steady-fast", "snapshot", "apply"}

// cdcContenders produce to Kafka from the source (every scenario but apply); applyContenders
// apply changes to a target database (apply); optContenders run only when -contenders names
// them.
var (
	cdcContenders   = []string{"pg_recvlogical", "procon-json", "procon-avro", "procon-eos", "procon-metrics", "procon-2pipelines", "debezium"}
	applyContenders = []string{"pg-subscription", "procon-consume", "debezium-jdbc"}
	optContenders   = []string{"pg_recvlogical-binary"}
	allContenders   = append(append([]string{}, cdcContenders...), applyContenders...)
)

func main() {
	if err := run(); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "procon-bench: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		return err
	}
	env, err := loadEnv()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b, err := newBench(ctx, o, env)
	if err != nil {
		return err
	}
	defer b.close()

	rep := b.newReport()
	fmt.Fprintf(os.Stderr, "procon-bench: run %s, scale %g, scenarios %s, contenders %s\n",
		b.runID, o.scale, strings.Join(o.scenarios, " "), strings.Join(o.contenders, " "))
	fmt.Fprintf(os.Stderr, "procon-bench: logs and configs in %s\n", b.dir)
	b.cleanupLeftovers(ctx)

	var runErr error
	for _, name := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		sc := b.scenario(name)
		b.logf("=== %s: %s", sc.Name, sc.Describe)
		res, err := b.runScenario(ctx, sc)
		rep.Scenarios = append(rep.Scenarios, res)
		if err != nil {
			b.logf("%s: %v", sc.Name, err)
			runErr = errors.Join(runErr, fmt.Errorf("%s: %w", sc.Name, err))
		}
		// Write what we have after every scenario: a long run interrupted late keeps its numbers.
		rep.finish()
		if _, _, err := rep.write(o.outDir, true); err != nil {
			b.logf("writing results: %v", err)
		}
	}
	rep.finish()
	md, js, err := rep.write(o.outDir, false)
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(rep.markdown())
	fmt.Fprintf(os.Stderr, "\nprocon-bench: wrote %s and %s\n", md, js)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return runErr
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("procon-bench", flag.ContinueOnError)
	fs.Float64Var(&o.scale, "scale", envFloat("BENCH_SCALE", 1), "multiplies every workload size (BENCH_SCALE); 0.1 is a quick run")
	contenders := fs.String("contenders", envString("BENCH_CONTENDERS", strings.Join(allContenders, ",")), "comma-separated contenders (BENCH_CONTENDERS)")
	fs.StringVar(&o.proconBin, "procon", envString("BENCH_PROCON_BIN", ""), "the procon-cdc binary (BENCH_PROCON_BIN)")
	fs.StringVar(&o.debeziumJar, "debezium-jar", envString("BENCH_DEBEZIUM_JAR", ""), "the Debezium runner jar (scripts/debezium build)")
	fs.StringVar(&o.outDir, "out", envString("BENCH_OUT", "bench/results"), "where the table goes, as markdown and JSON")
	fs.StringVar(&o.workDir, "work", envString("BENCH_WORK", ""), "directory for configs and logs (default $PROCON_DEV_DIR/bench)")
	fs.DurationVar(&o.timeout, "timeout", envDuration("BENCH_TIMEOUT", 45*time.Minute), "longest a contender may take on one scenario")
	fs.DurationVar(&o.stall, "stall", envDuration("BENCH_STALL", 3*time.Minute), "a contender whose Kafka count stops moving for this long (after its first record) has failed")
	fs.DurationVar(&o.settle, "settle", envDuration("BENCH_SETTLE", 3*time.Second), "pause between contenders")
	fs.IntVar(&o.writers, "writers", envInt("BENCH_WRITERS", 8), "parallel connections writing the workloads")
	fs.IntVar(&o.steadyRate, "steady-rate", envInt("BENCH_STEADY_RATE", 5000), "transactions per second of the steady writer")
	fs.IntVar(&o.steadyFastRate, "steady-fast-rate", envInt("BENCH_STEADY_FAST_RATE", 20000), "transactions per second of the steady-fast writer")
	fs.DurationVar(&o.steadyFor, "steady-duration", envDuration("BENCH_STEADY_DURATION", 0), "how long the steady writer writes (default 60s x scale, at least 10s)")
	fs.IntVar(&o.repeat, "repeat", envInt("BENCH_REPEAT", 1), "runs of each contender per scenario, interleaved; the table shows the median run (BENCH_REPEAT)")
	fs.BoolVar(&o.pprof, "pprof", envBool("BENCH_PPROF"), "profile procon-cdc (CPU, through run --pprof) and save the profile next to the results")
	fs.BoolVar(&o.keep, "keep", envBool("BENCH_KEEP"), "keep slots, publications, topics and the table after each scenario")
	debeziumOpts := fs.String("debezium-props", envString("BENCH_DEBEZIUM_PROPS", ""), "extra Debezium engine properties, k=v,k=v (BENCH_DEBEZIUM_PROPS), e.g. poll.interval.ms=10")
	fs.StringVar(&o.connectLib, "connect-lib", envString("BENCH_CONNECT_LIB", ""), "directory of the Kafka Connect worker's and the Debezium JDBC sink's jars (bench/jdbc-sink/build; bench/run passes it)")
	fs.IntVar(&o.jdbcTasks, "jdbc-tasks", envInt("BENCH_JDBC_TASKS", 3), "tasks.max of the Debezium JDBC sink (apply; one per topic partition by default)")
	jdbcOpts := fs.String("jdbc-props", envString("BENCH_JDBC_PROPS", ""), "extra Debezium JDBC sink connector properties, k=v,k=v (BENCH_JDBC_PROPS), e.g. batch.size=2000")
	fs.Int64Var(&o.applyChanges, "apply-changes", int64(envInt("BENCH_APPLY_CHANGES", 0)), "source changes of the apply scenario, a multiple of 1000 (default 1M x scale)")
	fs.StringVar(&o.javaOpts, "java-opts", envString("PROCON_DEBEZIUM_JAVA_OPTS", "-Xms256m -Xmx1g -XX:+ExitOnOutOfMemoryError"), "JVM options of the Debezium runner (scripts/debezium's default)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: procon-bench [flags] [scenario...]\nscenarios: %s (default: all)\ncontenders: %s\n\nflags:\n",
			strings.Join(allScenarios, " "), strings.Join(cdcContenders, " ")+"; apply: "+strings.Join(applyContenders, " ")+"; only when named: "+strings.Join(optContenders, " "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.scale <= 0 {
		return nil, fmt.Errorf("-scale must be positive, got %g", o.scale)
	}
	if o.proconBin == "" || o.debeziumJar == "" {
		return nil, errors.New("-procon and -debezium-jar are required (bench/run passes them)")
	}
	for _, p := range []*string{&o.proconBin, &o.debeziumJar, &o.outDir, &o.connectLib} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		*p = abs
	}
	if o.repeat < 1 {
		return nil, fmt.Errorf("-repeat must be at least 1, got %d", o.repeat)
	}
	o.scenarios = fs.Args()
	if len(o.scenarios) == 0 || (len(o.scenarios) == 1 && o.scenarios[0] == "all") {
		o.scenarios = allScenarios
	}
	for _, s := range o.scenarios {
		if !contains(allScenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q: expected one of %s", s, strings.Join(allScenarios, " "))
		}
	}
	for _, c := range strings.Split(*contenders, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !contains(allContenders, c) && !contains(optContenders, c) {
			return nil, fmt.Errorf("unknown contender %q: expected some of %s", c, strings.Join(slices.Concat(allContenders, optContenders), ","))
		}
		o.contenders = append(o.contenders, c)
	}
	for _, kv := range strings.Split(*debeziumOpts, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if !strings.Contains(kv, "=") {
			return nil, fmt.Errorf("-debezium-props: %q is not k=v", kv)
		}
		o.debeziumOpts = append(o.debeziumOpts, kv)
	}
	if o.applyChanges < 0 || o.applyChanges%applyTxSize != 0 {
		return nil, fmt.Errorf("-apply-changes must be a multiple of %d (0: 1M x scale), got %d", applyTxSize, o.applyChanges)
	}
	if o.jdbcTasks < 1 {
		return nil, fmt.Errorf("-jdbc-tasks must be at least 1, got %d", o.jdbcTasks)
	}
	for _, kv := range strings.Split(*jdbcOpts, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if !strings.Contains(kv, "=") {
			return nil, fmt.Errorf("-jdbc-props: %q is not k=v", kv)
		}
		o.jdbcOpts = append(o.jdbcOpts, kv)
	}
	if o.steadyFor == 0 {
		o.steadyFor = time.Duration(float64(60*time.Second) * o.scale).Round(time.Second)
		if o.steadyFor < 10*time.Second {
			o.steadyFor = 10 * time.Second
		}
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func envString(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

func envFloat(k string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(k), 64); err == nil {
		return f
	}
	return def
}

func envInt(k string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return n
	}
	return def
}

func envDuration(k string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(k)); err == nil {
		return d
	}
	return def
}

func envBool(k string) bool {
	v, _ := strconv.ParseBool(os.Getenv(k))
	return v
}
