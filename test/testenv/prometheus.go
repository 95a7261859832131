package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server (Debian's prometheus package) that a test started on
// loopback, scraping one target every second and evaluating rule files every second.
type Prometheus struct {
	// URL is the server's base address, e.g. http://127.0.0.1:41234.
	URL    string
	client *http.Client
}

// PrometheusConfig configures StartPrometheus.
type PrometheusConfig struct {
	// Target is the host:port scraped (path /metrics) as job "procon".
	Target string
	// RuleFiles are rule files to load and evaluate.
	RuleFiles []string
}

// ErrNoSamples is what Query returns when the query selects no series.
var ErrNoSamples = errors.New("the query returned no samples")

// prometheusBinary finds the prometheus binary on PATH or where Debian puts it.
func prometheusBinary() (string, error) {
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	const debian = "/usr/bin/prometheus"
	if _, err := os.Stat(debian); err != nil {
		return "", errors.New("the prometheus binary is neither on PATH nor at " + debian + ": apt-get install prometheus")
	}
	return debian, nil
}

// StartPrometheus starts Prometheus with a temporary data directory and waits until it is
// ready; it is stopped when the test ends, and its output is logged if the test failed. A
// missing binary skips the test, or fails it under CI.
func StartPrometheus(t testing.TB, cfg PrometheusConfig) *Prometheus {
	t.Helper()
	bin, err := prometheusBinary()
	if err != nil {
		if required() {
			t.Fatal("testenv: " + err.Error())
		}
		t.Skip("\n\n*** SKIPPING TEST THAT NEEDS PROMETHEUS: " + err.Error() + " ***\n\n")
	}
	dir := t.TempDir()
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(prometheusConfig(cfg)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The free port is found by binding and releasing it, so another process may take it
	// before Prometheus binds it: then Prometheus exits at once, and we try another port.
	var last string
	for attempt := range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testenv: a free port for Prometheus: %v", err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p := &Prometheus{URL: "http://" + addr, client: &http.Client{Timeout: 10 * time.Second}}
		proc := startPrometheusProcess(t, bin, configPath, filepath.Join(dir, fmt.Sprintf("data%d", attempt)), addr)
		if proc.waitReady(p) {
			t.Cleanup(func() { proc.stop(t) })
			return p
		}
		proc.stop(t)
		last = proc.output()
		if !strings.Contains(last, "address already in use") {
			break
		}
	}
	t.Fatalf("testenv: Prometheus did not become ready; its output:\n%s", last)
	return nil
}

// prometheusConfig is a configuration scraping cfg.Target and evaluating cfg.RuleFiles every
// second, so that a test sees metrics and alerts change within seconds.
func prometheusConfig(cfg PrometheusConfig) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n")
	if len(cfg.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range cfg.RuleFiles {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(f))
		}
	}
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: procon\n    static_configs:\n      - targets: [%s]\n", strconv.Quote(cfg.Target))
	return b.String()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// prometheusProcess is a running prometheus and its output.
type prometheusProcess struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    strings.Builder
	exited chan struct{}
	once   sync.Once
}

func startPrometheusProcess(t testing.TB, bin, configPath, dataDir, addr string) *prometheusProcess {
	t.Helper()
	p := &prometheusProcess{exited: make(chan struct{})}
	p.cmd = exec.Command(bin,
		"--config.file="+configPath,
		"--storage.tsdb.path="+dataDir,
		"--web.listen-address="+addr,
		"--storage.tsdb.retention.time=1h",
		"--log.level=info")
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", bin, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

func (p *prometheusProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *prometheusProcess) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitReady polls /-/ready until Prometheus answers 200 (true) or exits or a minute passes
// (false).
func (p *prometheusProcess) waitReady(prom *Prometheus) bool {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return false
		default:
		}
		resp, err := prom.client.Get(prom.URL + "/-/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-p.exited:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// stop ends Prometheus (SIGTERM, then SIGKILL after 10 s) and logs its output if the test
// failed.
func (p *prometheusProcess) stop(t testing.TB) {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM) // an error only says it has exited already
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", p.output())
		}
	})
}

// apiResponse is the envelope of Prometheus's HTTP API.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

// get calls an API path with query parameters and decodes its data into out.
func (p *Prometheus) get(ctx context.Context, path string, params url.Values, out any) error {
	u := p.URL + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("prometheus %s: HTTP %d, not the API's JSON: %q", path, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("prometheus %s: %s: %s", path, r.ErrorType, r.Error)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		return fmt.Errorf("prometheus %s: data: %w", path, err)
	}
	return nil
}

// Query evaluates an instant query now; see QueryAt.
func (p *Prometheus) Query(ctx context.Context, expr string) (float64, error) {
	return p.QueryAt(ctx, expr, time.Time{})
}

// QueryAt evaluates an instant query at the time at (now when zero) through /api/v1/query and
// returns its value: a scalar's, or the one sample of a vector. A vector with no sample is
// ErrNoSamples; one with several series is an error (aggregate them in the query).
func (p *Prometheus) QueryAt(ctx context.Context, expr string, at time.Time) (float64, error) {
	params := url.Values{"query": {expr}}
	if !at.IsZero() {
		params.Set("time", strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', 3, 64))
	}
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get(ctx, "/api/v1/query", params, &data); err != nil {
		return 0, fmt.Errorf("%s: %w", expr, err)
	}
	var sample []any // [unix seconds, "value"]
	switch data.ResultType {
	case "scalar":
		if err := json.Unmarshal(data.Result, &sample); err != nil {
			return 0, fmt.Errorf("%s: scalar: %w", expr, err)
		}
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vec); err != nil {
			return 0, fmt.Errorf("%s: vector: %w", expr, err)
		}
		switch len(vec) {
		case 0:
			return 0, fmt.Errorf("%s: %w", expr, ErrNoSamples)
		case 1:
			sample = vec[0].Value
		default:
			return 0, fmt.Errorf("%s: %d series, want one (aggregate them): %v", expr, len(vec), vec)
		}
	default:
		return 0, fmt.Errorf("%s: result type %q, want a scalar or a vector", expr, data.ResultType)
	}
	if len(sample) != 2 {
		return 0, fmt.Errorf("%s: sample %v is not [time, value]", expr, sample)
	}
	s, ok := sample[1].(string)
	if !ok {
		return 0, fmt.Errorf("%s: value %v is not a string", expr, sample[1])
	}
	v, err := strconv.ParseFloat(s, 64) // also NaN, +Inf, -Inf as Prometheus writes them
	if err != nil {
		return 0, fmt.Errorf("%s: value %q: %w", expr, s, err)
	}
	return v, nil
}

// Alert is an alert as /api/v1/alerts lists it: pending or firing.
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"` // pending or firing
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// Alerts lists the alerts that are pending or firing now.
func (p *Prometheus) Alerts(ctx context.Context) ([]Alert, error) {
	var data struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := p.get(ctx, "/api/v1/alerts", nil, &data); err != nil {
		return nil, err
	}
	return data.Alerts, nil
}

// Firing reports whether an alert named name fires now.
func (p *Prometheus) Firing(ctx context.Context, name string) (bool, error) {
	alerts, err := p.Alerts(ctx)
	if err != nil {
		return false, err
	}
	for _, a := range alerts {
		if a.Labels["alertname"] == name && a.State == "firing" {
			return true, nil
		}
	}
	return false, nil
}
