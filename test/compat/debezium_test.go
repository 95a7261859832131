package compat

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/procon-cdc/procon/test/testenv"
)

// The Debezium side: Debezium 3.6.1.Final's embedded engine, run by scripts/debezium's runner
// (test/compat/debezium) as a child process with its own slot, publication and topic prefix.

var (
	jarOnce sync.Once
	jarPath string
	jarErr  error
)

// debeziumJar builds the runner jar if needed (cached in ~/.m2 and .procon-dev/lib).
func debeziumJar(t *testing.T) string {
	t.Helper()
	jarOnce.Do(func() {
		cmd := exec.Command(filepath.Join(testenv.RepoRoot(), "scripts", "debezium"), "build")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			jarErr = fmt.Errorf("scripts/debezium build: %v\n%s", err, stderr.String())
			return
		}
		jarPath = strings.TrimSpace(string(out))
	})
	if jarErr != nil {
		t.Fatal(jarErr)
	}
	return jarPath
}

// debezium is one running runner.
type debezium struct {
	cmd    *exec.Cmd
	log    string // stderr file
	ready  chan struct{}
	exited chan error
}

// startDebezium writes the runner's properties and starts it; waitReady waits for
// DEBEZIUM-READY.
func startDebezium(t *testing.T, dsn string, p *pipeline, brokers []string) *debezium {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pass, _ := u.User.Password()
	dir := t.TempDir()
	props := map[string]string{
		"debezium.connector.class":              "io.debezium.connector.postgresql.PostgresConnector",
		"debezium.plugin.name":                  "pgoutput",
		"debezium.database.hostname":            u.Hostname(),
		"debezium.database.port":                u.Port(),
		"debezium.database.user":                u.User.Username(),
		"debezium.database.password":            pass,
		"debezium.database.dbname":              strings.TrimPrefix(u.Path, "/"),
		"debezium.topic.prefix":                 p.dbzPrefix,
		"debezium.slot.name":                    p.dbzSlot,
		"debezium.publication.name":             p.dbzSlot,
		"debezium.publication.autocreate.mode":  "filtered",
		"debezium.snapshot.mode":                "no_data",
		"debezium.table.include.list":           tableIncludeList(p.tables),
		"debezium.offset.storage.file.filename": filepath.Join(dir, "offsets.dat"),
		"debezium.offset.flush.interval.ms":     "1000",
		"debezium.errors.max.retries":           "0",
		"converter.schemas.enable":              fmt.Sprint(p.schemas),
		"kafka.bootstrap.servers":               strings.Join(brokers, ","),
		// The reference must deliver every record in order however loaded the machine is (seven
		// JVMs, seven engines and the broker on two cores): never give a record up, never time
		// a request out under a stall, and keep one request in flight, so that a retry cannot
		// land behind a later batch (an endless OUT_OF_ORDER_SEQUENCE_NUMBER otherwise).
		"kafka.delivery.timeout.ms":                   "2147483647",
		"kafka.request.timeout.ms":                    "300000",
		"kafka.max.in.flight.requests.per.connection": "1",
		"topic.partitions":                            fmt.Sprint(p.partitions),
		"progress.interval.ms":                        "60000",
		"log.level":                                   "warn",
	}
	for k, v := range p.debezium {
		props["debezium."+k] = v
	}
	if len(p.outboxTables) > 0 {
		// EventRouter applies to every record of a connector: a predicate keeps it to the
		// outbox tables' topics, as a Debezium user capturing other tables would.
		names := make([]string, len(p.outboxTables))
		for i, tb := range p.outboxTables {
			names[i] = regexp.QuoteMeta(p.dbzPrefix + ".public." + tb)
		}
		props["debezium.transforms"] = "outbox"
		props["debezium.transforms.outbox.type"] = "io.debezium.transforms.outbox.EventRouter"
		props["debezium.transforms.outbox.predicate"] = "isOutbox"
		props["debezium.predicates"] = "isOutbox"
		props["debezium.predicates.isOutbox.type"] = "org.apache.kafka.connect.transforms.predicates.TopicNameMatches"
		props["debezium.predicates.isOutbox.pattern"] = strings.Join(names, "|")
		for k, v := range p.outbox {
			props["debezium.transforms.outbox."+k] = strings.ReplaceAll(v, "PREFIX", p.dbzPrefix)
		}
		if !p.jsonHeaders {
			props["debezium.header.converter.class"] = "org.apache.kafka.connect.storage.SimpleHeaderConverter"
		}
	}
	var b strings.Builder
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, strings.ReplaceAll(props[k], `\`, `\\`))
	}
	propsFile := filepath.Join(dir, "runner.properties")
	if err := os.WriteFile(propsFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	d := &debezium{log: filepath.Join(dir, "debezium.log"), ready: make(chan struct{}), exited: make(chan error, 1)}
	logFile, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	// UTC, as the services' machines run: Debezium converts date/time array elements through
	// the JVM's default zone.
	d.cmd = exec.Command("java", "-Xms128m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError", "-XX:TieredStopAtLevel=1",
		"-Duser.timezone=UTC", "-jar", debeziumJar(t), propsFile)
	d.cmd.Stderr = logFile
	// If the test binary dies (a panic, a timeout), the runner goes with it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		once := sync.Once{}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "DEBEZIUM-READY") {
				once.Do(func() { close(d.ready) })
			}
		}
		d.exited <- d.cmd.Wait()
		logFile.Close()
	}()
	t.Cleanup(func() { d.stop(t) })
	return d
}

func (d *debezium) waitReady(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	select {
	case <-d.ready:
	case err := <-d.exited:
		d.exited <- err
		t.Fatalf("Debezium runner of %s exited before it was ready: %v\n%s", name, err, tail(d.log, 60))
	case <-time.After(timeout):
		t.Fatalf("Debezium runner of %s not ready after %s\n%s", name, timeout, tail(d.log, 60))
	}
}

func (d *debezium) stop(t *testing.T) {
	if d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil && !t.Failed() {
			t.Logf("Debezium runner exited: %v\n%s", err, tail(d.log, 30))
		}
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func tableIncludeList(tables []string) string {
	out := make([]string, len(tables))
	for i, tb := range tables {
		out[i] = `public\.` + tb
	}
	return strings.Join(out, ",")
}
