package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/metrics"
)

func TestBarText(t *testing.T) {
	cases := []struct {
		row  barRow
		want string
	}{
		{barRow{rows: 1_200_000, total: 2_300_000, rate: 14_000, eta: 80},
			"[##########----------]  52%  1.2M/2.3M rows  14k rows/s  ETA 1m20s"},
		{barRow{rows: 0, total: 500, rate: 0, eta: -1},
			"[--------------------]   0%  0/500 rows  0 rows/s  ETA ?"},
		// The planner's estimate can be low: the bar stops full, the count goes on.
		{barRow{rows: 1500, total: 1000, rate: 2.5, eta: 0},
			"[####################] 100%  1.5k/1.0k rows  2.5 rows/s  ETA 0s"},
		// No estimate (a new table): no percentage, no total.
		{barRow{rows: 42, total: 0, rate: 7, eta: -1},
			"[--------------------]    ?  42 rows  7 rows/s  ETA ?"},
		{barRow{rows: 10, total: 0, done: true},
			"[####################] 100%  10 rows  done"},
		{barRow{rows: 300, total: 1000, outcome: "failed"},
			"[######--------------]  30%  300/1.0k rows  failed"},
	}
	for _, c := range cases {
		if got := barText(c.row); got != c.want {
			t.Errorf("barText(%+v)\n got %q\nwant %q", c.row, got, c.want)
		}
	}
}

func TestBarNamesAreCutToWidth(t *testing.T) {
	var b bytes.Buffer
	printBars(&b, []barRow{
		{name: "public.orders", rows: 1, total: 2, eta: -1},
		{name: "public.a_table_with_a_very_long_name_indeed", rows: 1, total: 2, eta: -1},
	})
	want := "  public.orders                   [##########----------]  50%  1/2 rows  0 rows/s  ETA ?\n" +
		"  public.a_table_with_a_very_...  [##########----------]  50%  1/2 rows  0 rows/s  ETA ?\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestHumanizedNumbers(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.25: "0.2", 7: "7", 9.96: "10", 999: "999", 999.6: "1.0k", 1234: "1.2k",
		14_000: "14k", 999_499: "999k", 999_500: "1.0M", 2_345_678: "2.3M", 7.5e9: "7.5G", -1: "?"} {
		if got := numberText(v); got != want {
			t.Errorf("numberText(%v) = %q, want %q", v, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB",
		3 << 30: "3.0 GiB", 2 << 40: "2.0 TiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
	for d, want := range map[time.Duration]string{-time.Second: "0.0s", 400 * time.Millisecond: "0.4s", 9900 * time.Millisecond: "9.9s",
		42 * time.Second: "42s", 185 * time.Second: "3m05s", 2*time.Hour + 10*time.Minute + 59*time.Second: "2h10m",
		76 * time.Hour: "3d04h"} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestProcessText(t *testing.T) {
	cases := []struct {
		st   metrics.Status
		want string
	}{
		{metrics.Status{State: metrics.State{Phase: "streaming"}, Ready: true, KafkaReachable: true}, "streaming, ready"},
		// The reason that only repeats the phase is said once.
		{metrics.Status{State: metrics.State{Phase: "snapshotting"}, NotReady: "not streaming: snapshotting", KafkaReachable: true},
			"snapshotting, not ready until streaming"},
		{metrics.Status{State: metrics.State{Phase: "streaming"}, NotReady: "Kafka is not reachable"},
			"streaming, not ready: Kafka is not reachable"},
		{metrics.Status{State: metrics.State{Phase: "streaming"}, KafkaReachable: true,
			NotReady: "replication lag 2m0s is above metrics.ready_max_lag 1m0s"},
			"streaming, not ready: replication lag 2m0s is above metrics.ready_max_lag 1m0s"},
		// /readyz gives the first failed check; Kafka's state is not hidden behind it.
		{metrics.Status{State: metrics.State{Phase: "reconnecting"}, NotReady: "not streaming: reconnecting"},
			"reconnecting, not ready until streaming; Kafka is not reachable"},
	}
	for _, c := range cases {
		if got := processText(&c.st); got != c.want {
			t.Errorf("processText(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
}

func TestInFlightText(t *testing.T) {
	cases := []struct {
		st   metrics.State
		want string
	}{
		{metrics.State{BufferedRecords: 12, BufferedBytes: 3 << 10, MaxBufferedRecords: 10000, MaxBufferedBytes: 64 << 20},
			"12/10000 records, 3.0 KiB/64.0 MiB"},
		{metrics.State{BufferedRecords: 10000, BufferedBytes: 3 << 20, MaxBufferedRecords: 10000, MaxBufferedBytes: 64 << 20},
			"10000/10000 records, 3.0 MiB/64.0 MiB; paused by backpressure (Kafka's producer buffer is full)"},
		{metrics.State{BufferedRecords: 40, BufferedBytes: 64 << 20, MaxBufferedRecords: 10000, MaxBufferedBytes: 64 << 20},
			"40/10000 records, 64.0 MiB/64.0 MiB; paused by backpressure (Kafka's producer buffer is full)"},
		{metrics.State{BufferedRecords: 1, BufferedBytes: 100, MaxBufferedRecords: 10},
			"1/10 records, 100 B (no byte limit)"},
	}
	for _, c := range cases {
		if got := inFlightText(&c.st); got != c.want {
			t.Errorf("inFlightText(%+v)\n got %q\nwant %q", c.st, got, c.want)
		}
	}
}

// statusFixture is a reading with a process that streams while a signal snapshot runs.
func statusFixture(now time.Time) *statusOutput {
	lag := int64(1536)
	safe := int64(1 << 30)
	return &statusOutput{
		At:         now,
		ProcessURL: "http://127.0.0.1:9187/status",
		Process: &metrics.Status{
			State: metrics.State{Phase: "streaming", Slot: "demo", ConfirmedLSN: 0x1A2B3C4D, ServerLSN: 0x1A2B4000,
				BufferedRecords: 120, BufferedBytes: 1 << 20, MaxBufferedRecords: 10000, MaxBufferedBytes: 64 << 20,
				SlotPoll: &metrics.SlotState{Exists: true, Active: true, ServerLSN: 0x1A2B4100, RetainedBytes: 3 << 20, SafeWALSize: &safe},
				Snapshot: &metrics.SnapshotState{ID: "signal:01J", Kind: "incremental", Running: true, Tables: []metrics.SnapshotTable{
					{Relation: "public.orders", Rows: 1_200_000, Total: 2_300_000, Chunks: 12, RowsPerSecond: 14_000, ETASeconds: 80},
					{Relation: "public.items", Rows: 5000, Total: 5000, Chunks: 1, RowsPerSecond: 900, Done: true},
				}},
				Realtime:    &metrics.RealtimeState{},
				DeadLetters: []metrics.DeadLetterCount{{Kind: "row", Outcome: "dead_letter", Records: 3}, {Kind: "row", Outcome: "skipped"}},
			},
			LagBytes: 0x100 + 0x1A2B4000 - 0x1A2B3C4D, LagSeconds: 3.2, EventsPerSecond: 1234, EventsProduced: 5_600_000,
			KafkaReachable: true, Ready: true,
			LastError: &metrics.LastError{At: now.Add(-130 * time.Second), Message: "the replication connection was lost; reconnecting"},
		},
		Postgres: &statusReport{
			Slot: slotReport{Name: "demo", Exists: true, ActivePID: 4242, Confirmed: "0/1A2B3C00", ServerLSN: "0/1A2B4100", LagBytes: &lag, PositionOK: true},
			Snapshots: []snapshotReport{
				{ID: "initial", Kind: "initial", Status: "done", Tables: []tableReport{{Relation: "public.orders", Rows: 50, Total: 50, Done: true, RowsPerSec: 25}}},
				{ID: "signal:01J", Kind: "incremental", Status: "running", Tables: []tableReport{
					{Relation: "public.orders", Rows: 1_100_000, Total: 2_300_000, RowsPerSec: 13_000, ETASeconds: 92},
					{Relation: "public.items", Rows: 5000, Total: 5000, Done: true}}},
			},
		},
	}
}

func TestPrintStatusWithProcess(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	printStatus(&b, statusFixture(now), now)
	want := `process      streaming, ready (http://127.0.0.1:9187/status)
slot         demo: active (server process 4242), keeps 3.0 MiB of WAL, 1.0 GiB more before max_slot_wal_keep_size
position     in Kafka up to 0/1A2B3C4D, slot confirmed_flush_lsn 0/1A2B3C00, server WAL 0/1A2B4100
lag          1.2 KiB of WAL, 3.2s since the oldest commit not yet in Kafka
throughput   1.2k events/s over the last minute, 5.6M events produced since the start
in flight    120/10000 records, 1.0 MiB/64.0 MiB
snapshot     signal:01J (incremental), running
  public.orders  [##########----------]  52%  1.2M/2.3M rows  14k rows/s  ETA 1m20s
  public.items   [####################] 100%  5.0k/5.0k rows  done
dead letters row: 3 to the dead-letter topic
last error   2m10s ago: the replication connection was lost; reconnecting

SNAPSHOT    KIND         STATUS   TABLE          ROWS     EST. TOTAL  DONE  ROWS/S  ETA
initial     initial      done     public.orders  50       50          100%  25      -
signal:01J  incremental  running  public.orders  1100000  2300000     47%   13000   1m32s
                                  public.items   5000     5000        100%  0       -
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestPrintStatusWithoutProcess(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	out := statusFixture(now)
	out.Process, out.ProcessError = nil, "dial tcp 127.0.0.1:9187: connect: connection refused"
	var b bytes.Buffer
	printStatus(&b, out, now)
	want := `procon-cdc run is not answering on http://127.0.0.1:9187/status: dial tcp 127.0.0.1:9187: connect: connection refused; showing what PostgreSQL says
slot         demo: active (server process 4242)
position     slot confirmed_flush_lsn 0/1A2B3C00, server WAL 0/1A2B4100
lag          1.5 KiB of WAL past the slot's confirmed_flush_lsn
snapshot     signal:01J (incremental), running (as recorded in the progress table)
  public.orders  [#########-----------]  47%  1.1M/2.3M rows  13k rows/s  ETA 1m32s
  public.items   [####################] 100%  5.0k/5.0k rows  done
`
	if !strings.HasPrefix(b.String(), want) {
		t.Errorf("got\n%s\nwant it to start with\n%s", b.String(), want)
	}

	out.ProcessURL, out.ProcessError = "", ""
	out.Postgres.Slot = slotReport{Name: "demo", Exists: false, PositionOK: false}
	out.Postgres.Snapshots = nil
	b.Reset()
	printStatus(&b, out, now)
	want = `metrics.listen is not set: running procon-cdc run with metrics.listen shows more here (phase, lag in seconds, throughput, in flight, live snapshot progress, last error); showing what PostgreSQL says
slot         demo: does not exist (procon-cdc run creates it)
snapshots    none recorded
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}

	// PostgreSQL down, the process answering: its view, and what failed.
	out = statusFixture(now)
	out.Postgres, out.PostgresError = nil, "connect to PostgreSQL: connection refused"
	b.Reset()
	printStatus(&b, out, now)
	for _, line := range []string{"process      streaming, ready", "postgres     connect to PostgreSQL: connection refused\n",
		"position     in Kafka up to 0/1A2B3C4D, server WAL 0/1A2B4100\n", "  public.orders  [##########"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("no %q in\n%s", line, b.String())
		}
	}
}

func TestProcessURL(t *testing.T) {
	for listen, want := range map[string]string{
		":9187":            "http://127.0.0.1:9187/status",
		"0.0.0.0:9187":     "http://127.0.0.1:9187/status",
		"[::]:9187":        "http://[::1]:9187/status",
		"127.0.0.2:80":     "http://127.0.0.2:80/status",
		"metrics.lan:9187": "http://metrics.lan:9187/status",
		"[fe80::1]:9187":   "http://[fe80::1]:9187/status",
	} {
		got, err := processURL(listen)
		if err != nil || got != want {
			t.Errorf("processURL(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	if _, err := processURL(":0"); err == nil || !strings.Contains(err.Error(), "port 0") {
		t.Errorf("processURL(:0): %v, want an error about port 0", err)
	}
}

func TestFetchProcessStatus(t *testing.T) {
	answer := func(code int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/status" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL + "/status"
	}
	client := &http.Client{Timeout: processTimeout}
	ctx := context.Background()

	want := metrics.Status{State: metrics.State{Phase: "streaming", Slot: "demo", ConfirmedLSN: 0x16B374D848}, Ready: true, EventsProduced: 7}
	body, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	st, err := fetchProcessStatus(ctx, client, answer(200, string(body)), "demo")
	if err != nil || st.Phase != "streaming" || !st.Ready || st.EventsProduced != 7 || st.ConfirmedLSN.String() != "16/B374D848" {
		t.Errorf("fetch: %+v, %v", st, err)
	}
	if _, err := fetchProcessStatus(ctx, client, answer(200, string(body)), "other"); err == nil ||
		err.Error() != "the process there streams slot demo, not this configuration's other" {
		t.Errorf("another slot's process: %v", err)
	}
	if _, err := fetchProcessStatus(ctx, client, answer(503, "stopping\n"), "demo"); err == nil ||
		err.Error() != "it answered 503 Service Unavailable: stopping" {
		t.Errorf("503: %v", err)
	}
	if _, err := fetchProcessStatus(ctx, client, answer(200, "<html>"), "demo"); err == nil ||
		!strings.HasPrefix(err.Error(), "its answer is not the status of procon-cdc run: ") {
		t.Errorf("not JSON: %v", err)
	}
}

// TestStatusReaderNamesWhatFailed reads with neither part reachable: each failure is named,
// and a metrics.listen status cannot use is not mistaken for an unset one.
func TestStatusReaderNamesWhatFailed(t *testing.T) {
	cfg := &config.Config{}
	cfg.Postgres.DSN = "host=/nonexistent-procon-test dbname=x"
	cfg.Postgres.Slot = "demo"
	cfg.Metrics.Listen = ":0"
	r := newStatusReader(cfg)
	defer r.close()
	out := r.read(context.Background())
	if out.Process != nil || out.ProcessURL != "" || !strings.Contains(out.ProcessError, `metrics.listen ":0" has port 0`) {
		t.Errorf("process %+v, process_url %q, process_error %q; want the port 0 named", out.Process, out.ProcessURL, out.ProcessError)
	}
	if out.Postgres != nil || !strings.HasPrefix(out.PostgresError, "connect to PostgreSQL: ") {
		t.Errorf("postgres %+v, postgres_error %q; want the connection named", out.Postgres, out.PostgresError)
	}
	var b bytes.Buffer
	printStatus(&b, out, out.At)
	if first, _, _ := strings.Cut(b.String(), "\n"); !strings.HasPrefix(first, "procon-cdc run cannot be asked: metrics.listen \":0\" has port 0") {
		t.Errorf("first line %q", first)
	}
}
