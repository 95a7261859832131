package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWindowRate(t *testing.T) {
	w := newWindow(time.Minute)
	t0 := time.Unix(1000, 0)
	if r := w.rate(t0, 0); r != 0 {
		t.Fatalf("one sample: rate %v, want 0", r)
	}
	if r := w.rate(t0.Add(10*time.Second), 100); r != 10 {
		t.Fatalf("100 in 10s: rate %v, want 10", r)
	}
	// After more than the span, the rate covers the last minute only: 600 more in 60s.
	w.rate(t0.Add(70*time.Second), 700)
	if r := w.rate(t0.Add(130*time.Second), 1300); r != 10 {
		t.Fatalf("600 in the last 60s: rate %v, want 10", r)
	}
	if n := len(w.samples); n > 3 {
		t.Fatalf("%d samples kept, want the few within the span", n)
	}
}

func TestLSNText(t *testing.T) {
	l := LSN(0x16_B374D848)
	b, _ := l.MarshalText()
	if string(b) != "16/B374D848" {
		t.Fatalf("%s, want 16/B374D848", b)
	}
	var back LSN
	if err := back.UnmarshalText(b); err != nil || back != l {
		t.Fatalf("read back %v (%v), want %v", back, err, l)
	}
	if err := back.UnmarshalText([]byte("16-B3")); err == nil {
		t.Fatal("16-B3 read as a position")
	}
}

func TestStateLag(t *testing.T) {
	now := time.Unix(2000, 0)
	st := State{ConfirmedLSN: 100, ServerLSN: 150, SlotPoll: &SlotState{ServerLSN: 400}}
	if got := st.LagBytes(); got != 300 {
		t.Errorf("lag bytes %d, want 300 (the furthest server position minus the confirmed one)", got)
	}
	if got := st.LagSeconds(now); got != 0 {
		t.Errorf("lag seconds %v with nothing unacknowledged, want 0", got)
	}
	st.OldestUnacknowledged = now.Add(-90 * time.Second)
	if got := st.LagSeconds(now); got != 90 {
		t.Errorf("lag seconds %v, want 90", got)
	}
	st.ConfirmedLSN = 500
	if got := st.LagBytes(); got != 0 {
		t.Errorf("lag bytes %d with the confirmed position ahead, want 0", got)
	}
}

func TestProducerCountsAndReadiness(t *testing.T) {
	reg := NewRegistry("test")
	state := State{Phase: PhaseStreaming}
	p := NewProducer(reg, ProducerConfig{Relations: []string{"public.a"}, State: func() State { return state }, ReadyMaxLag: time.Minute})
	p.Produced("public.a", "t.a", 10)
	p.Produced("public.a", "t.a", 5)
	p.Produced("public.unlisted", "t.x", 1) // not a configured relation: no label of its own
	if got := testutil.ToFloat64(p.events.WithLabelValues("public.a", "t.a")); got != 2 {
		t.Errorf("events of public.a: %v, want 2", got)
	}
	if got := testutil.ToFloat64(p.bytes.WithLabelValues("public.a", "t.a")); got != 15 {
		t.Errorf("bytes of public.a: %v, want 15", got)
	}
	if got := testutil.ToFloat64(p.events.WithLabelValues("", "t.x")); got != 1 {
		t.Errorf("events of an unlisted relation under relation=\"\": %v, want 1", got)
	}
	if n := testutil.CollectAndCount(p.events); n != 2 {
		t.Errorf("%d event series, want 2", n)
	}
	if st := p.Status(); !st.Ready || st.EventsProduced != 3 {
		t.Fatalf("status %+v, want ready with 3 events", st)
	}
	for _, tc := range []struct {
		name  string
		setup func()
		want  string
	}{
		{"reconnecting", func() { state.Phase = PhaseReconnecting }, "not streaming: reconnecting"},
		{"standby", func() { state.Phase = PhaseStandby }, "not streaming: standby"},
		{"kafka away", func() { p.Connected(errors.New("connection refused")) }, "Kafka is not reachable"},
		{"lag", func() { state.OldestUnacknowledged = time.Now().Add(-2 * time.Minute) }, "above metrics.ready_max_lag 1m0s"},
	} {
		state = State{Phase: PhaseStreaming}
		p.Connected(nil)
		tc.setup()
		st := p.Status()
		if st.Ready || !strings.Contains(st.NotReady, tc.want) {
			t.Errorf("%s: ready %v %q, want not ready saying %q", tc.name, st.Ready, st.NotReady, tc.want)
		}
	}
	p.Connected(errors.New("connection refused"))
	if st := p.Status(); st.LastError == nil || !strings.Contains(st.LastError.Message, "connection refused") {
		t.Errorf("last error %+v, want the refused connection", st.LastError)
	}
	// The gauges of the state are collected; an absent slot poll emits no slot series.
	state = State{Phase: PhaseStreaming}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP procon_replication_lag_seconds Time since the commit of the oldest transaction not all in Kafka; 0 when every transaction received is.
# TYPE procon_replication_lag_seconds gauge
procon_replication_lag_seconds 0
`), "procon_replication_lag_seconds", "procon_slot_active"); err != nil {
		t.Error(err)
	}
}

func TestConsumerReadiness(t *testing.T) {
	state := ConsumerState{}
	c := NewConsumer(NewRegistry("test"), ConsumerConfig{State: func() ConsumerState { return state }, ReadyMaxLag: time.Minute})
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "no partition assigned") {
		t.Fatalf("ready with no partition: %v", err)
	}
	c.Committed("t", CommitStats{Applied: 5, Newest: time.Now().Add(-2 * time.Minute)})
	// Lag 1 is a transactional topic's last commit marker: nothing waits.
	state.Partitions = []PartitionState{{Topic: "t", Next: 10, End: 11}}
	if err := c.Ready(); err != nil {
		t.Fatalf("lag 1: %v, want ready", err)
	}
	state.Partitions[0].End = 20
	if err := c.Ready(); err == nil {
		t.Fatal("records wait and the newest applied is 2m old: ready, want not ready")
	}
	if st := c.Status(); st.LagRecords != 10 || st.Applied != 5 {
		t.Errorf("status lag %d applied %d, want 10 and 5", st.LagRecords, st.Applied)
	}
	state.Partitions = append(state.Partitions, PartitionState{Topic: "t", Partition: 1, Next: 3, End: -1})
	if st := c.Status(); st.LagRecords != -1 {
		t.Errorf("lag %d with a partition's end unknown, want -1", st.LagRecords)
	}
}

func TestServerProbes(t *testing.T) {
	alive := error(nil)
	s, err := Listen("127.0.0.1:0", NewRegistry("test"), Probes{
		Alive:  func() error { return alive },
		Ready:  func() error { return errors.New("not streaming: starting") },
		Status: func() any { return map[string]string{"phase": "starting"} },
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	alive = errors.New("the replication stream's loop has not run for 2m0s")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "has not run") {
		t.Errorf("/healthz when stuck: %d %q, want 503 saying why", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Errorf("/readyz: %d %q, want 503 saying why", code, body)
	}
	if code, body := get("/status"); code != 200 || !strings.Contains(body, `"phase": "starting"`) {
		t.Errorf("/status: %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `procon_build_info{goversion=`) || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d, want procon_build_info and the Go metrics:\n%s", code, body)
	}
	if _, err := Listen(s.Addr(), NewRegistry("test"), Probes{}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("a second listener on the same port: %v, want an error naming metrics.listen", err)
	}
}

func TestWindowSampledBeforeFirstRead(t *testing.T) {
	w := newWindow(time.Minute)
	var total atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.sampleEvery(ctx, time.Millisecond, total.Load) }()
	for {
		w.mu.Lock()
		n := len(w.samples)
		w.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond) // the sampler's first tick; nothing to wait on
	}
	cancel()
	<-done
	total.Store(100)
	if r := w.rate(time.Now().Add(time.Second), total.Load()); r <= 0 {
		t.Fatalf("first read after a sample: rate %v, want the 100 events since it", r)
	}
}
