package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// env is what scripts/services env exports.
type env struct {
	DSN        string
	Brokers    []string
	Registry   string
	PGBinDir   string
	DevDir     string
	pgHost     string
	pgPort     string
	pgUser     string
	pgPassword string
	pgDB       string
}

func loadEnv() (*env, error) {
	e := &env{
		DSN:      os.Getenv("PROCON_PG_DSN"),
		Registry: os.Getenv("PROCON_SCHEMA_REGISTRY_URL"),
		PGBinDir: os.Getenv("PROCON_PG_BINDIR"),
		DevDir:   os.Getenv("PROCON_DEV_DIR"),
	}
	for _, b := range strings.Split(os.Getenv("PROCON_KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			e.Brokers = append(e.Brokers, b)
		}
	}
	if e.DSN == "" || len(e.Brokers) == 0 {
		return nil, errors.New(`PROCON_PG_DSN and PROCON_KAFKA_BROKERS are unset: run scripts/services up and eval "$(scripts/services env)", or use bench/run`)
	}
	u, err := url.Parse(e.DSN)
	if err != nil || u.Scheme == "" {
		return nil, errors.New("PROCON_PG_DSN must be a postgres:// URL (Debezium needs host, port, user, password, database)")
	}
	e.pgHost, e.pgPort = u.Hostname(), u.Port()
	if e.pgPort == "" {
		e.pgPort = "5432"
	}
	e.pgUser = u.User.Username()
	e.pgPassword, _ = u.User.Password()
	e.pgDB = strings.TrimPrefix(u.Path, "/")
	return e, nil
}

// tool is the path of a PostgreSQL client program: from PROCON_PG_BINDIR, else PATH.
func (e *env) tool(name string) (string, error) {
	if e.PGBinDir != "" {
		p := filepath.Join(e.PGBinDir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

// bench holds the clients and settings shared by every scenario of one run.
type bench struct {
	o        *options
	env      *env
	runID    string
	dir      string // configs and logs of this run
	pool     *pgxpool.Pool
	kcl      *kgo.Client
	adm      *kadm.Client
	start    time.Time
	clkTck   int64
	kafkaPID int
}

func newBench(ctx context.Context, o *options, e *env) (*bench, error) {
	b := &bench{o: o, env: e, start: time.Now(), clkTck: clockTicks()}
	b.runID = strconv.FormatInt(time.Now().Unix()%(36*36*36*36*36), 36)
	work := o.workDir
	if work == "" {
		dev := e.DevDir
		if dev == "" {
			dev = ".procon-dev"
		}
		work = filepath.Join(dev, "bench")
	}
	if err := lockWork(work); err != nil {
		return nil, err
	}
	b.dir = filepath.Join(work, "run-"+b.runID)
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(b.dir)
	if err == nil {
		b.dir = abs
	}
	cfg, err := pgxpool.ParseConfig(e.DSN)
	if err != nil {
		return nil, fmt.Errorf("PROCON_PG_DSN: %v", err)
	}
	cfg.MaxConns = int32(o.writers + 4)
	cfg.ConnConfig.RuntimeParams["application_name"] = "procon-bench"
	b.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %v", err)
	}
	if err := b.pool.Ping(ctx); err != nil {
		b.pool.Close()
		return nil, fmt.Errorf("postgres: %v", err)
	}
	b.kcl, err = kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
	if err != nil {
		b.pool.Close()
		return nil, fmt.Errorf("kafka: %v", err)
	}
	b.adm = kadm.NewClient(b.kcl)
	if e.DevDir != "" {
		if raw, err := os.ReadFile(filepath.Join(e.DevDir, "run", "kafka.pid")); err == nil {
			b.kafkaPID, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		}
	}
	return b, nil
}

func (b *bench) close() {
	b.kcl.Close()
	b.pool.Close()
}

func (b *bench) logf(format string, args ...any) {
	el := time.Since(b.start).Round(time.Second)
	fmt.Fprintf(os.Stderr, "[%8s] %s\n", el, fmt.Sprintf(format, args...))
}

// clockTicks is sysconf(_SC_CLK_TCK), the unit of /proc/<pid>/stat times.
func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

// Machine describes where the numbers were measured.
type Machine struct {
	CPUs        int    `json:"cpus"`
	CPUModel    string `json:"cpu_model"`
	MemoryGiB   string `json:"memory_gib"`
	Kernel      string `json:"kernel"`
	Go          string `json:"go"`
	Postgres    string `json:"postgres"`
	Kafka       string `json:"kafka"`
	Debezium    string `json:"debezium"`
	Procon      string `json:"procon"`
	LoadAtStart string `json:"load_at_start"`
}

func (b *bench) machine(ctx context.Context) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Debezium: "3.6.1.Final (embedded, scripts/debezium)"}
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if kb := meminfo("MemTotal"); kb > 0 {
		m.MemoryGiB = fmt.Sprintf("%.1f", float64(kb)/(1<<20))
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	_ = b.pool.QueryRow(ctx, "SELECT current_setting('server_version')").Scan(&m.Postgres)
	m.Kafka = kafkaVersion()
	m.Procon = proconVersion()
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAtStart = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	return m
}

func meminfo(key string) int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// kafkaVersion reads KAFKA_VERSION from scripts/services (the broker bench/run started).
func kafkaVersion() string {
	raw, err := os.ReadFile("scripts/services")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "KAFKA_VERSION="); ok {
			return strings.Fields(v)[0]
		}
	}
	return ""
}

// proconVersion is the commit the binary was built from, "+dirty" when the tree had changes.
func proconVersion() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	v := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		v += "+dirty"
	}
	return v
}

// lockWork makes runs on the same services take turns: they share the table, the binaries and
// the cleanup of leftovers. bench/run takes the same lock itself (before building) and says so
// with BENCH_LOCKED=1. The lock is held until the process exits.
func lockWork(work string) error {
	if os.Getenv("BENCH_LOCKED") != "" {
		return nil
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(work, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintln(os.Stderr, "procon-bench: another benchmark is running on these services; waiting for it to finish")
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
	}
	workLock = f // referenced, so that no finalizer closes it: the lock lives as long as the process
	return nil
}

var workLock *os.File
