package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestMetricsPrometheus runs a real Prometheus scraping procon-cdc run while rows are written
// and Kafka is away for a while, and checks through Prometheus's query API what an operator
// relies on: every row written is counted once, the replication lag rises while Kafka is
// away and falls back after, and the "lag growing" alert of docs/monitoring fires. The
// probes are checked on the side: /readyz fails while Kafka is away, /healthz never does.
func TestMetricsPrometheus(t *testing.T) {
	const table = "items"
	s := newSetup(t, `public.`+table+`: {}`, "metrics: {listen: 127.0.0.1:0}")
	s.db.Exec(t, `CREATE TABLE `+table+` (id bigserial PRIMARY KEY, pad text NOT NULL)`)
	rules := fastLagRule(t)
	p := s.startProcess(t)
	addr := metricsAddr(t, p)
	prom := testenv.StartPrometheus(t, testenv.PrometheusConfig{Target: addr, RuleFiles: []string{rules}})
	probes := watchProbes(t, "http://"+addr)
	s.waitSlot(t)
	ctx := testenv.Context(t, 3*time.Minute)

	events := fmt.Sprintf(`sum(procon_events_produced_total{relation="public.%s"})`, table)
	acked := fmt.Sprintf(`sum(procon_kafka_acknowledged_records_total{topic=%q})`, s.topic(table))
	lagSeconds := `procon_replication_lag_seconds`
	lagBytes := `procon_replication_lag_bytes`
	firing := `ALERTS{alertname="ProconReplicationLagGrowing",alertstate="firing"}`
	query := func(expr string, at time.Time) (float64, error) { return prom.QueryAt(ctx, expr, at) }
	// over applies a range-vector function to the samples of selector from..to.
	over := func(fn, selector string, from, to time.Time) (float64, error) {
		return query(fmt.Sprintf("max(%s(%s[%dms]))", fn, selector, to.Sub(from).Milliseconds()), to)
	}

	writeStart := time.Now()
	stopWriting := startRowWriter(t, s, table)
	testenv.WaitFor(t, time.Minute, "Prometheus to count events while rows are written", func() (bool, error) {
		n, err := query(events, time.Time{})
		return n >= 300, err
	})
	testenv.WaitFor(t, 30*time.Second, "/readyz to answer 200 while streaming", func() (bool, error) {
		return probes.seen("/readyz", http.StatusOK, writeStart), nil
	})

	outageStart := time.Now()
	s.env.StopService(t, "kafka")
	testenv.WaitFor(t, time.Minute, "ProconReplicationLagGrowing to fire while Kafka is away", func() (bool, error) {
		return prom.Firing(ctx, "ProconReplicationLagGrowing")
	})
	t.Logf("ProconReplicationLagGrowing fires %s after Kafka was stopped", time.Since(outageStart).Round(time.Millisecond))
	testenv.WaitFor(t, time.Minute, "/readyz to answer 503 while Kafka is away", func() (bool, error) {
		return probes.seen("/readyz", http.StatusServiceUnavailable, outageStart), nil
	})
	// The one fixed wait: the outage lasts at least this long whatever the conditions above
	// took, so that the Kafka client is deep in its reconnect backoff and the lag is far above
	// its normal value when Kafka returns, as in a real outage.
	time.Sleep(time.Until(outageStart.Add(20 * time.Second)))
	recovery := time.Now()
	s.env.StartService(t, "kafka")
	kafkaBack := time.Now()

	testenv.WaitFor(t, 2*time.Minute, "the lag to fall after Kafka returned, while rows are still written", func() (bool, error) {
		v, err := query(lagSeconds, time.Time{})
		return err == nil && v < 2, err
	})
	written := stopWriting()
	t.Logf("wrote %d rows; Kafka away %s (restart took %s)", written, recovery.Sub(outageStart).Round(time.Millisecond), kafkaBack.Sub(recovery).Round(time.Millisecond))
	testenv.WaitFor(t, 2*time.Minute, "every row in Kafka", func() (bool, error) {
		return s.countIfExists(t, s.topic(table)) >= written, nil
	})
	if n := s.countIfExists(t, s.topic(table)); n != written {
		t.Fatalf("the topic holds %d records, want the %d rows written", n, written)
	}
	testenv.WaitFor(t, time.Minute, "Prometheus to see the last events acknowledged and the lag back at 0", func() (bool, error) {
		n, err1 := query(events, time.Time{})
		a, err2 := query(acked, time.Time{})
		lag, err3 := query(lagSeconds, time.Time{})
		return n >= float64(written) && a >= float64(written) && lag == 0, errors.Join(err1, err2, err3)
	})
	done := time.Now()

	// Every row written is counted once: not less (lost), not more (counted again after the
	// Kafka client retried); both when handed to Kafka and when Kafka acknowledged it.
	if n, err := query(events, time.Time{}); err != nil || n != float64(written) {
		t.Errorf("Prometheus counts %v events of public.%s (err %v), want the %d rows written", n, table, err, written)
	}
	if n, err := query(acked, time.Time{}); err != nil || n != float64(written) {
		t.Errorf("Prometheus counts %v records acknowledged by Kafka in %s (err %v), want the %d rows written", n, s.topic(table), err, written)
	}

	// The lag rose during the outage and fell after it.
	lagBefore, err1 := over("max_over_time", lagSeconds, writeStart, outageStart)
	lagPeak, err2 := over("max_over_time", lagSeconds, outageStart, recovery)
	lagAfter, err3 := query(lagSeconds, time.Time{})
	t.Logf("lag seconds: %.3f before the outage, %.3f at its peak, %.3f at the end", lagBefore, lagPeak, lagAfter)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	// The oldest transaction waiting for Kafka ages with the clock while Kafka is away: the
	// peak is about the outage's length (at least the alert's threshold plus its for).
	if lagPeak < lagBefore+8 {
		t.Errorf("the lag in seconds peaked at %.3f during the outage, want at least 8 s above the %.3f before it", lagPeak, lagBefore)
	}
	if lagAfter != 0 {
		t.Errorf("the lag in seconds is %.3f once every row is in Kafka, want 0", lagAfter)
	}
	bytesBefore, err1 := over("max_over_time", lagBytes, writeStart, outageStart)
	bytesPeak, err2 := over("max_over_time", lagBytes, outageStart, recovery)
	bytesAfter, err3 := query(lagBytes, time.Time{})
	t.Logf("lag bytes: %.0f before the outage, %.0f at its peak, %.0f at the end", bytesBefore, bytesPeak, bytesAfter)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if bytesPeak < 4*bytesBefore || bytesPeak < 64<<10 {
		t.Errorf("the lag in bytes peaked at %.0f during the outage, want well above the %.0f before it (4x, and 64 KiB)", bytesPeak, bytesBefore)
	}
	if bytesAfter >= bytesPeak/4 {
		t.Errorf("the lag in bytes is %.0f once every row is in Kafka, want it back far below the peak %.0f", bytesAfter, bytesPeak)
	}

	// The alert fired during the outage, not before it, and resolved after it.
	if _, err := over("max_over_time", firing, writeStart, outageStart); !errors.Is(err, testenv.ErrNoSamples) {
		t.Errorf("ProconReplicationLagGrowing fired before the outage (or the query failed: %v)", err)
	}
	if v, err := over("max_over_time", firing, outageStart, done); err != nil || v != 1 {
		t.Errorf("ALERTS has no firing ProconReplicationLagGrowing during the outage: %v, %v", v, err)
	}
	testenv.WaitFor(t, time.Minute, "ProconReplicationLagGrowing to resolve after the outage", func() (bool, error) {
		on, err := prom.Firing(ctx, "ProconReplicationLagGrowing")
		return !on, err
	})

	// The probes: /readyz was 503 while Kafka was away and is 200 again after; /healthz was
	// 200 throughout.
	got := probes.stop()
	for _, r := range got {
		if r.path == "/healthz" && r.code != http.StatusOK {
			t.Errorf("/healthz answered %d at %s (%s into the test): %s", r.code, r.at.Format(time.TimeOnly), r.at.Sub(writeStart).Round(time.Millisecond), r.body)
		}
	}
	if last := lastProbe(got, "/readyz"); last.code != http.StatusOK {
		t.Errorf("/readyz answers %d after the outage, want 200: %s", last.code, last.body)
	}
	// What /readyz said, once per change, for the log.
	var prev string
	for _, r := range got {
		if r.path != "/readyz" || r.at.Before(writeStart) {
			continue
		}
		if said := fmt.Sprintf("%d %s", r.code, r.body); said != prev {
			t.Logf("/readyz at %+.1fs from the outage's start: %s", r.at.Sub(outageStart).Seconds(), said)
			prev = said
		}
	}
}

// fastLagRule copies docs/monitoring/procon-rules.yml with ProconReplicationLagGrowing scaled
// from minutes to seconds (window 30s, threshold 3 s, for 5s), so that it can fire during a
// short test. It fails the test when the rule no longer has the shape it rewrites: a changed
// rule must not make the test silently check nothing.
func fastLagRule(t *testing.T) string {
	t.Helper()
	src := filepath.Join(testenv.RepoRoot(), "docs", "monitoring", "procon-rules.yml")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	rule := findAlertRule(&doc, "ProconReplicationLagGrowing")
	if rule == nil {
		t.Fatalf("%s has no alert ProconReplicationLagGrowing", src)
	}
	expr, forNode := mapValue(rule, "expr"), mapValue(rule, "for")
	const (
		wantExpr = "deriv(procon_replication_lag_seconds[10m]) > 0 and procon_replication_lag_seconds > 60"
		fastExpr = "deriv(procon_replication_lag_seconds[30s]) > 0 and procon_replication_lag_seconds > 3"
	)
	if expr == nil || forNode == nil || strings.TrimSpace(expr.Value) != wantExpr || forNode.Value != "10m" {
		t.Fatalf("%s: ProconReplicationLagGrowing is no longer `expr: %s` with `for: 10m`: update this test's rewrite of it (got expr %v, for %v)",
			src, wantExpr, nodeValue(expr), nodeValue(forNode))
	}
	expr.Value, forNode.Value = fastExpr, "5s"
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "procon-rules.yml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// findAlertRule finds the rule mapping of an alert in a Prometheus rule file.
func findAlertRule(doc *yaml.Node, name string) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	groups := mapValue(doc.Content[0], "groups")
	if groups == nil {
		return nil
	}
	for _, g := range groups.Content {
		rules := mapValue(g, "rules")
		if rules == nil {
			continue
		}
		for _, r := range rules.Content {
			if a := mapValue(r, "alert"); a != nil && a.Value == name {
				return r
			}
		}
	}
	return nil
}

// mapValue is the value of key in a YAML mapping node, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func nodeValue(n *yaml.Node) string {
	if n == nil {
		return "<missing>"
	}
	return fmt.Sprintf("%q", n.Value)
}

var metricsAddrLine = regexp.MustCompile(`msg="serving metrics and probes" addr=(\S+)`)

// metricsAddr waits for procon-cdc to log the address its metrics listener bound (the test
// asks for port 0: any free port).
func metricsAddr(t *testing.T, p *process) string {
	t.Helper()
	var addr string
	testenv.WaitFor(t, time.Minute, "procon-cdc to log its metrics address", func() (bool, error) {
		select {
		case <-p.exited:
			return false, fmt.Errorf("procon-cdc exited: %v\n%s", p.waitErr, p.output())
		default:
		}
		if m := metricsAddrLine.FindStringSubmatch(p.output()); m != nil {
			addr = m[1]
			return true, nil
		}
		return false, nil
	})
	return addr
}

// startRowWriter inserts rows into table, one per transaction at a steady pace, until the
// returned function is called; that waits for the writer to stop and returns the rows the
// table holds (the ground truth of what was written).
func startRowWriter(t *testing.T, s *setup, table string) func() int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	wg.Add(1)
	go func() {
		defer wg.Done()
		pace := time.NewTicker(5 * time.Millisecond) // a steady load, not a flood
		defer pace.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-pace.C:
			}
			// Not ctx: a cancelled INSERT would leave whether it committed unknown.
			if _, err := s.db.Pool.Exec(context.Background(), `INSERT INTO `+table+` (pad) VALUES (repeat('x', 100))`); err != nil {
				failed.Store(&err)
				return
			}
		}
	}()
	stopped := false
	stop := func() int64 {
		if !stopped {
			stopped = true
			cancel()
			wg.Wait()
		}
		if err := failed.Load(); err != nil {
			t.Fatalf("writing rows: %v", *err)
		}
		var n int64
		if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return stop
}

// probeResult is one answer of a probe endpoint (code 0: no answer).
type probeResult struct {
	at   time.Time
	path string
	code int
	body string
}

// probeWatcher polls /healthz and /readyz of a metrics listener in the background.
type probeWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	got    []probeResult
}

func watchProbes(t *testing.T, base string) *probeWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &probeWatcher{cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, path := range []string{"/healthz", "/readyz"} {
				r := probeResult{at: time.Now(), path: path}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					r.body = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.code, r.body = resp.StatusCode, strings.TrimSpace(string(b))
				}
				w.mu.Lock()
				w.got = append(w.got, r)
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

// seen reports whether path has answered code since a time.
func (w *probeWatcher) seen(path string, code int, since time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.got {
		if r.path == path && r.code == code && !r.at.Before(since) {
			return true
		}
	}
	return false
}

// stop ends the polling and returns every answer.
func (w *probeWatcher) stop() []probeResult {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got
}

func lastProbe(got []probeResult, path string) probeResult {
	for i := len(got) - 1; i >= 0; i-- {
		if got[i].path == path {
			return got[i]
		}
	}
	return probeResult{}
}
