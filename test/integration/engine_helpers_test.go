package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/test/testenv"
)

// setup is a test's database plus the names its engine uses.
type setup struct {
	env    *testenv.Env
	db     *testenv.DB
	name   string // logical server name = topic prefix
	slot   string
	config string // YAML
	// release runs procon-cdc built without the race detector (the soak measures its memory).
	release bool
	// avro, when set, reads the values of an Avro pipeline for the ledger checks
	// (valueJSON); they read JSON values otherwise.
	avro *avroReader
}

// valueJSON is a record value as the ledger checks read it: the value itself for JSON, the
// fields they need of an Avro value.
func (s *setup) valueJSON(t *testing.T, value []byte) []byte {
	t.Helper()
	if s.avro == nil || value == nil {
		return value
	}
	v, _ := s.avro.decode(t, value)
	m, _ := v.(map[string]any)
	num := func(x any) int64 {
		str, _ := x.(string) // the reader renders numbers as exact rationals
		q, ok := new(big.Rat).SetString(str)
		if !ok || !q.IsInt() {
			t.Fatalf("Avro value: %v is not an integer", x)
		}
		return q.Num().Int64()
	}
	out := map[string]any{"op": m["op"]}
	if after, ok := m["after"].(map[string]any); ok {
		out["after"] = map[string]any{"id": num(after["id"]), "v": num(after["v"])}
	}
	if src, ok := m["source"].(map[string]any); ok {
		out["source"] = map[string]any{"txId": num(src["txId"])}
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newSetup(t *testing.T, relations string, extra string) *setup {
	t.Helper()
	env := testenv.Get(t)
	s := &setup{env: env, db: env.Database(t)}
	s.name = strings.ReplaceAll(testenv.Name(t, "p"), "_", "-")
	s.slot = strings.ReplaceAll(s.name, "-", "_")
	env.DeleteTopicsAtCleanup(t, s.name)
	s.config = s.configFor(relations, extra)
	return s
}

// configFor is the YAML configuration of s's pipeline over relations (YAML mappings, one per
// line), with extra top-level keys.
func (s *setup) configFor(relations, extra string) string {
	return fmt.Sprintf(`name: %s
postgres:
  dsn: %s
  slot: %s
  publication: %s
  status_interval: 200ms
kafka:
  brokers: %s
log:
  level: debug
relation_configs:
%s
%s`, s.name, s.db.DSN, s.slot, s.slot, strings.Join(s.env.Brokers, ","), indent(relations), extra)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

func (s *setup) topic(table string) string { return s.name + ".public." + table }

func (s *setup) cfg(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(s.config), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v\n%s", err, s.config)
	}
	return cfg
}

// runEngine runs the engine in-process until the test ends.
func (s *setup) runEngine(t *testing.T) *engine.Engine { return s.startEngine(t).e }

// engineRun is an in-process engine that a test stops (or that stops by itself); it is stopped
// when the test ends, and an error from Run nobody waited for fails the test.
type engineRun struct {
	e      *engine.Engine
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
	log    lockedWriter // what the engine logged (Info and up), also in the test's log
}

func (s *setup) startEngine(t *testing.T) *engineRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logged := lockedWriter{&sync.Mutex{}, &bytes.Buffer{}}
	s.requireMessages(t)
	e, err := engine.New(ctx, s.cfg(t), slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, logged), &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		cancel()
		t.Fatalf("engine.New: %v", err)
	}
	r := &engineRun{e: e, cancel: cancel, done: make(chan error, 1), log: logged}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *engineRun) stop(t *testing.T) {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	if r.err != nil {
		t.Errorf("engine.Run: %v", r.err)
	}
}

// wait returns what Run returned once it stops (by itself, or after cancel), at most timeout.
func (r *engineRun) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.once.Do(func() {}) // the test has the error: stop neither waits nor reports it
		return err
	case <-time.After(timeout):
		t.Fatalf("the engine did not stop within %s", timeout)
		return nil
	}
}

// exited waits for an engine that stops by itself, without error.
func (r *engineRun) exited(t *testing.T, timeout time.Duration) {
	t.Helper()
	if err := r.wait(t, timeout); err != nil {
		t.Fatalf("engine.Run: %v", err)
	}
}

// logs returns what the engine logged so far.
func (r *engineRun) logs() string {
	r.log.mu.Lock()
	defer r.log.mu.Unlock()
	return r.log.w.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// process is procon-cdc running as a child process. One goroutine owns cmd.Wait (exec.Cmd
// allows a single Wait; a second one blocks for ever on the output copiers the first drained):
// everything else waits on exited.
type process struct {
	cmd     *exec.Cmd
	out     *bytes.Buffer
	mu      *sync.Mutex
	exited  chan struct{} // closed when the process has exited and its output is copied
	waitErr error         // how it exited; read only after exited is closed
}

func (s *setup) startProcess(t *testing.T) *process {
	t.Helper()
	s.requireMessages(t)
	bin := testenv.ProconBinary(t)
	if s.release {
		bin = testenv.ProconReleaseBinary(t)
	}
	return startProconBinary(t, bin, "run", writeConfig(t, s.config))
}

// requireMessages skips the test on a server before 14 when the configuration uses what needs
// logical decoding messages there (procon-cdc refuses it: TestMessageSettingsRefusedBefore14).
func (s *setup) requireMessages(t *testing.T) {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(s.config), os.LookupEnv)
	if err != nil {
		return // the run says what is wrong
	}
	if keys := engine.NeedsMessages(cfg); len(keys) > 0 {
		s.env.RequireServer(t, engine.MessagesSince, "settings that need logical decoding messages: "+strings.Join(keys, ", "))
	}
}

// startProcon runs procon-cdc's command with --config path as a child process, killed when the
// test ends; its output is logged if the test failed.
func startProcon(t *testing.T, command, path string) *process {
	t.Helper()
	return startProconBinary(t, testenv.ProconBinary(t), command, path)
}

// startProconBinary is startProcon with the procon-cdc binary bin.
func startProconBinary(t *testing.T, bin, command, path string) *process {
	t.Helper()
	p := &process{out: &bytes.Buffer{}, mu: &sync.Mutex{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, command, "--config", path)
	w := lockedWriter{p.mu, p.out}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // an error only says it has exited already
		<-p.exited
		if t.Failed() {
			t.Logf("procon-cdc %s output:\n%s", command, p.output())
		}
	})
	return p
}

// wait blocks until the process has exited and returns how it exited.
func (p *process) wait() error {
	<-p.exited
	return p.waitErr
}

// signal sends sig to the process and waits for it to exit.
func (p *process) signal(t *testing.T, sig os.Signal) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait()
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *process) kill9(t *testing.T) {
	t.Helper()
	_ = p.signal(t, syscall.SIGKILL)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// confirmedLSN reads the slot's confirmed flush LSN.
func (s *setup) confirmedLSN(t *testing.T) pglogrepl.LSN {
	t.Helper()
	var text *string
	err := s.db.Pool.QueryRow(context.Background(),
		`SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&text)
	if err != nil || text == nil {
		t.Fatalf("read slot %s: %v", s.slot, err)
	}
	lsn, err := pglogrepl.ParseLSN(*text)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// waitSlotReleased waits until no walsender holds the slot (a killed procon-cdc's exits once
// it has read what the socket still held, status updates included).
func (s *setup) waitSlotReleased(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, "slot "+s.slot+" to be released", func() (bool, error) {
		var active bool
		err := s.db.Pool.QueryRow(context.Background(), `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&active)
		return !active, err
	})
}

// waitSlot waits until the slot is created: from then on every commit reaches the stream. A
// slot is listed while it is being created, but transactions that commit before it reaches its
// consistent point (it waits for those running in the whole cluster) are not decoded; its
// confirmed_flush_lsn is set once it has.
func (s *setup) waitSlot(t *testing.T) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, "slot "+s.slot+" to be created", func() (bool, error) {
		var n int
		err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots
			WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL`, s.slot).Scan(&n)
		return n == 1, err
	})
}

// event is a decoded change event (JSON without schemas).
type event struct {
	Key    map[string]any
	Value  map[string]any // nil for a tombstone
	Record *kgo.Record
}

func decode(t *testing.T, recs []*kgo.Record) []event {
	t.Helper()
	out := make([]event, len(recs))
	for i, r := range recs {
		out[i].Record = r
		if r.Key != nil {
			dec := json.NewDecoder(bytes.NewReader(r.Key))
			dec.UseNumber()
			if err := dec.Decode(&out[i].Key); err != nil {
				t.Fatalf("key %q: %v", r.Key, err)
			}
		}
		if r.Value != nil {
			dec := json.NewDecoder(bytes.NewReader(r.Value))
			dec.UseNumber()
			if err := dec.Decode(&out[i].Value); err != nil {
				t.Fatalf("value %q: %v", r.Value, err)
			}
		}
	}
	return out
}

func (e event) op() string {
	if e.Value == nil {
		return "tombstone"
	}
	return e.Value["op"].(string)
}

func (e event) after() map[string]any {
	m, _ := e.Value["after"].(map[string]any)
	return m
}

func (e event) before() map[string]any {
	m, _ := e.Value["before"].(map[string]any)
	return m
}

// writeConfig writes a configuration file for the test and returns its path.
func writeConfig(t *testing.T, config string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "procon.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// requireSASL skips the test (fails it under CI) when Kafka has no SASL listener.
func (s *setup) requireSASL(t *testing.T) {
	t.Helper()
	if len(s.env.SASLBrokers) == 0 {
		msg := "PROCON_KAFKA_SASL_BROKERS is not set: restart Kafka with this tree's scripts/services (stop kafka, up)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// withSASL returns config, written by newSetup, reaching Kafka through its SASL listener with
// password.
func (s *setup) withSASL(config, password string) string {
	return strings.Replace(config, "brokers: "+strings.Join(s.env.Brokers, ","), "brokers: "+strings.Join(s.env.SASLBrokers, ",")+
		"\n  sasl: {mechanism: PLAIN, username: "+s.env.SASLUser+", password: "+password+"}", 1)
}

// startTail runs procon-cdc tail with args for at most a minute, stopped when the test ends,
// and returns a scanner of its output lines (up to 1 MiB each) and its stderr.
func startTail(t *testing.T, args ...string) (*bufio.Scanner, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := exec.CommandContext(ctx, testenv.ProconBinary(t), append([]string{"tail"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); cancel() })
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	return sc, stderr
}
