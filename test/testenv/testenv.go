// Package testenv is the harness that Procon's integration tests share: it finds the real
// PostgreSQL, Kafka and schema registry started by scripts/services, gives each test its own
// database, slot, publication and topic names so that tests run in any order and in parallel,
// and waits on conditions instead of sleeping.
//
// Tests skip loudly when PROCON_PG_DSN is unset outside CI; under CI=true (or
// PROCON_REQUIRE_SERVICES=1) a missing service fails the test instead. Objects a failed test
// created are kept for inspection, as franz-go's test helpers do.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Env holds the addresses of the real services.
type Env struct {
	PGDSN       string // superuser DSN of the services' default database
	Brokers     []string
	RegistryURL string
	PGBinDir    string // PostgreSQL's bin directory (pg_recvlogical), may be empty
	// SASLBrokers is Kafka's listener that requires SASL/PLAIN as SASLUser/SASLPassword.
	SASLBrokers            []string
	SASLUser, SASLPassword string
	// TLSBrokers is Kafka's listener that requires TLS and SASL/SCRAM-SHA-512 as the same
	// user; RegistryTLSURL the registry's HTTPS address. Both, and PostgreSQL's TLS, present
	// a certificate for 127.0.0.1 signed by the CA in the PEM file TLSCA.
	TLSBrokers     []string
	RegistryTLSURL string
	TLSCA          string
	// FaultBrokers is Kafka's listener for fault tests: the broker advertises it but listens on
	// FaultUpstream, and a test's proxy (FaultProxies) joins the two.
	FaultBrokers  []string
	FaultUpstream string
	Services      string // path of scripts/services

	mu        sync.Mutex
	exclusive map[testing.TB]bool // tests holding the services lock exclusively
}

func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("PROCON_REQUIRE_SERVICES") == "1"
}

// Get returns the services' addresses, skipping the test when they are not configured (or
// failing it under CI).
func Get(t testing.TB) *Env {
	t.Helper()
	e := &Env{
		PGDSN:       os.Getenv("PROCON_PG_DSN"),
		RegistryURL: os.Getenv("PROCON_SCHEMA_REGISTRY_URL"),
		PGBinDir:    os.Getenv("PROCON_PG_BINDIR"),
		Services:    os.Getenv("PROCON_SERVICES"),

		SASLUser:     os.Getenv("PROCON_KAFKA_SASL_USER"),
		SASLPassword: os.Getenv("PROCON_KAFKA_SASL_PASSWORD"),

		RegistryTLSURL: os.Getenv("PROCON_SCHEMA_REGISTRY_TLS_URL"),
		TLSCA:          os.Getenv("PROCON_TLS_CA"),
	}
	if b := os.Getenv("PROCON_KAFKA_TLS_BROKERS"); b != "" {
		e.TLSBrokers = strings.Split(b, ",")
	}
	if b := os.Getenv("PROCON_KAFKA_SASL_BROKERS"); b != "" {
		e.SASLBrokers = strings.Split(b, ",")
	}
	if b := os.Getenv("PROCON_KAFKA_FAULT_BROKERS"); b != "" {
		e.FaultBrokers = strings.Split(b, ",")
		e.FaultUpstream = os.Getenv("PROCON_KAFKA_FAULT_UPSTREAM")
	}
	if b := os.Getenv("PROCON_KAFKA_BROKERS"); b != "" {
		e.Brokers = strings.Split(b, ",")
	}
	if e.Services == "" {
		e.Services = filepath.Join(RepoRoot(), "scripts", "services")
	}
	if e.PGDSN == "" || len(e.Brokers) == 0 || e.RegistryURL == "" {
		msg := "PROCON_PG_DSN, PROCON_KAFKA_BROKERS and PROCON_SCHEMA_REGISTRY_URL must be set: " +
			`run scripts/services up && eval "$(scripts/services env)"`
		if required() {
			t.Fatal("testenv: " + msg)
		}
		t.Skip("\n\n*** SKIPPING INTEGRATION TEST: " + msg + " ***\n\n")
	}
	return e
}

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var nonIdent = regexp.MustCompile(`[^a-z0-9_]+`)

// Name returns a fresh lower-case identifier that is valid as a database, slot, publication or
// topic name (at most 63 bytes), readable enough to find the test that made it.
func Name(t testing.TB, prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	base := nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_")
	base = strings.Trim(base, "_")
	if max := 63 - len(prefix) - 10; len(base) > max {
		base = base[len(base)-max:]
	}
	return prefix + "_" + base + "_" + hex.EncodeToString(b[:])
}

// WaitFor polls cond until it reports true, failing the test with msg after timeout. cond's
// error is reported with the failure, not treated as false forever.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 10 * time.Millisecond
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, msg, lastErr)
		}
		time.Sleep(delay)
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}

// Context returns a context that ends with the test or after timeout, whichever is first.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// StopService stops one of postgres, kafka or registry through scripts/services, and registers a
// cleanup that starts it again so that a failing test never leaves the stack broken.
func (e *Env) StopService(t testing.TB, name string) {
	t.Helper()
	e.takeDown(t, "stop", name)
}

// CrashService is StopService the hard way: PostgreSQL's immediate shutdown (no checkpoint,
// sessions cut), SIGKILL for Kafka and the registry.
func (e *Env) CrashService(t testing.TB, name string) {
	t.Helper()
	e.takeDown(t, "crash", name)
}

func (e *Env) takeDown(t testing.TB, how, name string) {
	t.Helper()
	// Tests of other packages (other processes) that hold the services wait for this one to
	// end; the lock is released after the service is back (cleanups run last-in first-out).
	// A test takes it once: a second flock of its own would wait for the first forever.
	e.mu.Lock()
	if !e.exclusive[t] {
		e.lockServices(t, syscall.LOCK_EX)
		if e.exclusive == nil {
			e.exclusive = map[testing.TB]bool{}
		}
		e.exclusive[t] = true
		t.Cleanup(func() {
			e.mu.Lock()
			delete(e.exclusive, t)
			e.mu.Unlock()
		})
	}
	e.mu.Unlock()
	e.runServices(t, how, name)
	t.Cleanup(func() { e.runServices(t, "start", name) })
}

// HoldServices keeps every service up for the rest of the test: StopService in any test
// process waits until this test ends. For tests that cannot ride out a service outage (the
// Debezium comparison runs Java clients that give up).
func (e *Env) HoldServices(t testing.TB) {
	t.Helper()
	e.lockServices(t, syscall.LOCK_SH)
}

// lockServices takes the lock of these services (a flock on a file in the temp directory named
// after their addresses) until the test ends. Another set of services on the same machine (a
// soak or a benchmark on other ports) has a lock of its own, so neither waits for the other.
func (e *Env) lockServices(t testing.TB, how int) {
	t.Helper()
	h := fnv.New64a()
	h.Write([]byte(e.PGDSN + "|" + strings.Join(e.Brokers, ",") + "|" + e.RegistryURL))
	f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("procon-services-%016x.lock", h.Sum64())), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("testenv: services lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		t.Fatalf("testenv: services lock: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}

// StartService starts one service again and waits until it answers.
func (e *Env) StartService(t testing.TB, name string) {
	t.Helper()
	e.runServices(t, "start", name)
}

func (e *Env) runServices(t testing.TB, cmd, name string) {
	t.Helper()
	out, err := exec.Command(e.Services, cmd, name).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/services %s %s: %v\n%s", cmd, name, err, out)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf("testenv: "+format, args...) }
