package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/metrics"
	"github.com/procon-cdc/procon/test/testenv"
)

// statusJSON is procon-cdc status --json, read with the field names scripts use.
type statusJSON struct {
	At       time.Time `json:"at"`
	Postgres *struct {
		Slot struct {
			Name       string `json:"name"`
			Exists     bool   `json:"exists"`
			ActivePID  int32  `json:"active_pid"`
			Confirmed  string `json:"confirmed_flush_lsn"`
			ServerLSN  string `json:"server_lsn"`
			LagBytes   *int64 `json:"lag_bytes"`
			PositionOK bool   `json:"position_available"`
		} `json:"slot"`
		Snapshots []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Tables []struct {
				Relation string `json:"relation"`
				Done     bool   `json:"done"`
			} `json:"tables"`
		} `json:"snapshots"`
	} `json:"postgres"`
	PostgresError string          `json:"postgres_error"`
	Process       *metrics.Status `json:"process"`
	ProcessURL    string          `json:"process_url"`
	ProcessError  string          `json:"process_error"`
}

// runStatus runs procon-cdc status --config path with args and returns its standard output;
// it must exit 0 with nothing on standard error.
func runStatus(t *testing.T, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.ProconBinary(t), append([]string{"status", "--config", path}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("procon-cdc status %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func statusOf(t *testing.T, path string) statusJSON {
	t.Helper()
	out := runStatus(t, path, "--json")
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

func mustLSN(t *testing.T, text string) pglogrepl.LSN {
	t.Helper()
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	return lsn
}

// TestStatusShowsTheRunningProcess runs procon-cdc with metrics.listen and writes rows:
// procon-cdc status reports, beside what PostgreSQL says, the process streaming and ready,
// every row produced, nothing in flight, and the position the slot has.
func TestStatusShowsTheRunningProcess(t *testing.T) {
	const rows = 250
	listen := testenv.FreeAddr(t)
	s := newSetup(t, `public.items: {}`, "metrics:\n  listen: "+listen)
	s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, note text)`)
	path := writeConfig(t, s.config)
	s.startProcess(t)
	s.waitSlot(t)
	// The first reading also starts the throughput's window, which is sampled at each reading.
	testenv.WaitFor(t, time.Minute, "status to show the process streaming", func() (bool, error) {
		st := statusOf(t, path)
		return st.Process != nil && st.Process.Phase == metrics.PhaseStreaming, nil
	})
	for i := range 5 {
		s.db.Exec(t, `INSERT INTO items SELECT g, 'n' || g FROM generate_series($1::int, $2::int) g`, i*rows/5+1, (i+1)*rows/5)
	}
	end := s.currentLSN(t)
	testenv.WaitFor(t, time.Minute, "all rows in Kafka", func() (bool, error) {
		return s.countIfExists(t, s.topic("items")) == rows, nil
	})
	var st statusJSON
	testenv.WaitFor(t, time.Minute, "status to show the slot confirmed where the process is, past the writes", func() (bool, error) {
		st = statusOf(t, path)
		return st.Process != nil && st.Postgres != nil && st.Process.EventsProduced >= rows && st.Process.ConfirmedLSN >= metrics.LSN(end) &&
			st.Postgres.Slot.Confirmed == st.Process.ConfirmedLSN.String(), nil
	})
	p, pgs := st.Process, st.Postgres
	if st.ProcessURL != "http://"+listen+"/status" || st.ProcessError != "" || st.PostgresError != "" {
		t.Errorf("process_url %q, process_error %q, postgres_error %q; want http://%s/status and no errors", st.ProcessURL, st.ProcessError, st.PostgresError, listen)
	}
	if p.Phase != metrics.PhaseStreaming || !p.Ready || p.NotReady != "" || !p.KafkaReachable || p.Slot != s.slot {
		t.Errorf("process: phase %q, ready %v (%q), kafka_reachable %v, slot %q; want streaming, ready, reachable, %s", p.Phase, p.Ready, p.NotReady, p.KafkaReachable, p.Slot, s.slot)
	}
	if p.EventsProduced != rows {
		t.Errorf("events_produced %d, want the %d rows written", p.EventsProduced, rows)
	}
	if p.EventsPerSecond <= 0 {
		t.Errorf("events_per_second %v after %d rows within the minute, want more than 0", p.EventsPerSecond, rows)
	}
	if p.BufferedRecords != 0 || p.LagSeconds != 0 || p.MaxBufferedRecords <= 0 {
		t.Errorf("buffered_records %d (limit %d), lag_seconds %v once everything is in Kafka; want 0, a limit, 0", p.BufferedRecords, p.MaxBufferedRecords, p.LagSeconds)
	}
	if !pgs.Slot.Exists || pgs.Slot.Name != s.slot || pgs.Slot.ActivePID == 0 || !pgs.Slot.PositionOK || pgs.Slot.LagBytes == nil {
		t.Errorf("postgres.slot %+v: want %s, existing, active, its position available, a lag", pgs.Slot, s.slot)
	}
	if server, confirmed := mustLSN(t, pgs.Slot.ServerLSN), mustLSN(t, pgs.Slot.Confirmed); server < confirmed || *pgs.Slot.LagBytes != int64(server-confirmed) {
		t.Errorf("postgres.slot: server_lsn %s, confirmed_flush_lsn %s, lag_bytes %d: want the server at or past the slot, the lag their difference",
			pgs.Slot.ServerLSN, pgs.Slot.Confirmed, *pgs.Slot.LagBytes)
	}
	if after := s.confirmedLSN(t); after < mustLSN(t, pgs.Slot.Confirmed) {
		t.Errorf("pg_replication_slots says %s after status said %s", after, pgs.Slot.Confirmed)
	}
	if len(pgs.Snapshots) != 1 || pgs.Snapshots[0].ID != "initial" || pgs.Snapshots[0].Status != "done" {
		t.Errorf("postgres.snapshots %+v, want the initial snapshot, done", pgs.Snapshots)
	}

	text := runStatus(t, path)
	hex := `[0-9A-F]+/[0-9A-F]+`
	for _, line := range []string{
		`process +streaming, ready \(http://` + regexp.QuoteMeta(listen) + `/status\)`,
		`slot +` + s.slot + `: active \(server process \d+\), keeps \d.* of WAL; lock held by procon-cdc lock \d+@\S+ \(server process \d+, [0-9.:]+\)`,
		`position +in Kafka up to ` + hex + `, slot confirmed_flush_lsn ` + hex + `, server WAL ` + hex,
		`lag +\d.* of WAL; every transaction received is in Kafka`,
		`throughput +\S+ events/s over the last minute, 250 events produced since the start`,
		`in flight +0/\d+ records, 0 B/\d.*`,
		`initial +initial +done +public\.items +0 +0 +100% +.*`,
	} {
		if !regexp.MustCompile(`(?m)^` + line + `$`).MatchString(text) {
			t.Errorf("no line matching %s in procon-cdc status:\n%s", line, text)
		}
	}
}

// TestStatusWhenTheProcessDoesNotAnswer points metrics.listen at a port nothing listens on,
// as when procon-cdc run is stopped: status says so in one line, shows what PostgreSQL says
// (the slot inactive at its confirmed position while the server's WAL moves on), and exits 0.
func TestStatusWhenTheProcessDoesNotAnswer(t *testing.T) {
	s := newSetup(t, `public.items: {}`, "")
	s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, note text)`)
	r := s.startEngine(t) // without metrics.listen
	s.waitSnapshot(t, "initial", "done", time.Minute)
	r.stop(t)
	s.waitSlotReleased(t)
	s.db.Exec(t, `INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 100) g`)
	written := s.currentLSN(t)
	confirmed := s.confirmedLSN(t) // nothing confirms while procon-cdc is stopped
	listen := testenv.FreeAddr(t)
	path := writeConfig(t, s.config+"\nmetrics:\n  listen: "+listen+"\n")

	text := runStatus(t, path)
	lines := strings.Split(text, "\n")
	want := "procon-cdc run is not answering on http://" + listen + "/status: dial tcp " + listen + ": connect: connection refused; showing what PostgreSQL says"
	if lines[0] != want {
		t.Errorf("first line\n%s\nwant\n%s", lines[0], want)
	}
	for _, line := range []string{
		`slot +` + s.slot + `: inactive`,
		`position +slot confirmed_flush_lsn ` + confirmed.String() + `, server WAL [0-9A-F]+/[0-9A-F]+`,
		`lag +\d.* of WAL past the slot's confirmed_flush_lsn`,
		`initial +initial +done +public\.items +0 +0 +100% +.*`,
	} {
		if !regexp.MustCompile(`(?m)^` + line + `$`).MatchString(text) {
			t.Errorf("no line matching %s in procon-cdc status:\n%s", line, text)
		}
	}

	st := statusOf(t, path)
	if st.Process != nil || st.ProcessError != "dial tcp "+listen+": connect: connection refused" || st.Postgres == nil {
		t.Fatalf("status --json: process %+v, process_error %q, postgres %+v (%s); want no process, the refusal, PostgreSQL's part",
			st.Process, st.ProcessError, st.Postgres, st.PostgresError)
	}
	slot := st.Postgres.Slot
	if !slot.Exists || slot.Name != s.slot || slot.ActivePID != 0 || !slot.PositionOK || slot.Confirmed != confirmed.String() {
		t.Errorf("postgres.slot %+v: want %s, existing, inactive, its position available, confirmed at %s", slot, s.slot, confirmed)
	}
	if server := mustLSN(t, slot.ServerLSN); server < written || slot.LagBytes == nil || *slot.LagBytes != int64(server-confirmed) {
		t.Errorf("postgres.slot: server_lsn %s (the rows were written up to %s), lag_bytes %v: want the server past the rows, the lag from %s to it",
			slot.ServerLSN, written, slot.LagBytes, confirmed)
	}

	// Without metrics.listen, status says what it would show with it.
	text = runStatus(t, writeConfig(t, s.config))
	if !strings.HasPrefix(text, "metrics.listen is not set: running procon-cdc run with metrics.listen shows more here") {
		t.Errorf("without metrics.listen:\n%s", text)
	}
}

// TestStatusWatch runs status --watch --json: one object per line per refresh, over one
// PostgreSQL connection, which it opens again when the server ends it; Ctrl-C stops it
// with exit 0. Without --json, reports are separated by a blank line off a terminal.
func TestStatusWatch(t *testing.T) {
	s := newSetup(t, `public.items: {}`, "")
	s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, note text)`)
	s.runEngine(t)
	s.waitSlot(t)
	path := writeConfig(t, s.config)

	cmd := exec.Command(testenv.ProconBinary(t), "status", "--config", path, "--watch", "--json", "--interval", "200ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	readings := make(chan statusJSON)
	stopped := make(chan struct{})
	t.Cleanup(func() { close(stopped); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		defer close(readings)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var st statusJSON
			if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
				t.Errorf("a line of --watch --json is not one JSON object: %v\n%s", err, sc.Text())
				return
			}
			select {
			case readings <- st:
			case <-stopped:
				return
			}
		}
	}()
	next := func() statusJSON {
		t.Helper()
		select {
		case st, ok := <-readings:
			if !ok {
				t.Fatalf("status --watch ended: %s", stderr.String())
			}
			return st
		case <-time.After(30 * time.Second):
			t.Fatal("no reading from status --watch within 30s")
		}
		return statusJSON{}
	}
	// backend is the server process of status's one connection.
	backend := func() (pid int32) {
		t.Helper()
		var n int
		err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*), coalesce(min(pid), 0) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'procon-cdc status'`).Scan(&n, &pid)
		if err != nil || n != 1 {
			t.Fatalf("procon-cdc status has %d connections (%v), want one", n, err)
		}
		return pid
	}

	first := next()
	if first.Postgres == nil || !first.Postgres.Slot.Exists {
		t.Fatalf("first reading: %+v (%s)", first.Postgres, first.PostgresError)
	}
	pid := backend()
	last := first
	for range 3 {
		st := next()
		if st.Postgres == nil || !st.At.After(last.At) {
			t.Fatalf("reading at %s after %s: postgres %+v (%s)", st.At, last.At, st.Postgres, st.PostgresError)
		}
		last = st
	}
	if again := backend(); again != pid {
		t.Errorf("the readings used connections %d and %d, want one", pid, again)
	}

	if _, err := s.db.Pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	// The reading that finds the connection ended comes within a few (one may be under way).
	failed := next()
	for i := 0; failed.PostgresError == "" && i < 5; i++ {
		failed = next()
	}
	if failed.Postgres != nil || !strings.HasPrefix(failed.PostgresError, "read PostgreSQL: ") {
		t.Errorf("the reading after the connection ended: postgres %+v, postgres_error %q", failed.Postgres, failed.PostgresError)
	}
	if st := next(); st.Postgres == nil || !st.Postgres.Slot.Exists {
		t.Errorf("the reading after a failed one: postgres %+v (%s), want a new connection", st.Postgres, st.PostgresError)
	}
	if again := backend(); again == pid {
		t.Errorf("still backend %d after it was terminated", pid)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range readings {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("status --watch after Ctrl-C: %v, want exit 0\n%s", err, stderr.String())
	}

	// Text off a terminal: successive reports, each with its time, a blank line between.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	text := exec.CommandContext(ctx, testenv.ProconBinary(t), "status", "--config", path, "--watch", "--interval", "500ms")
	text.Cancel = func() error { return text.Process.Signal(os.Interrupt) }
	got, err := text.Output()
	if err != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("status --watch: %v\n%s", err, got)
	}
	reports := strings.Split(string(got), "\n\nprocon-cdc status at ")
	if len(reports) < 3 || strings.Contains(string(got), "\x1b") || !strings.HasPrefix(reports[0], "procon-cdc status at ") {
		t.Errorf("status --watch for 3s every 500ms printed %d reports:\n%q", len(reports), got)
	}
	for _, r := range reports {
		if !regexp.MustCompile(`(?m)^slot +` + s.slot + `: active`).MatchString(r) {
			t.Errorf("a report without the slot:\n%s", r)
		}
	}
}
