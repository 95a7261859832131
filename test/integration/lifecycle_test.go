package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestGracefulShutdown sends SIGTERM: procon-cdc drains what it produced, confirms that
// position, and exits 0.
func TestGracefulShutdown(t *testing.T) {
	s := newSetup(t, `public.items: {}`, "")
	s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, note text)`)
	p := s.startProcess(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 5000) g`)
	end := s.currentLSN(t)
	testenv.WaitFor(t, time.Minute, "all rows in Kafka", func() (bool, error) {
		return s.countIfExists(t, s.topic("items")) == 5000, nil
	})
	if err := p.signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.output())
	}
	if got := s.confirmedLSN(t); got < end {
		t.Fatalf("confirmed %s after a clean shutdown, want at least %s (everything Kafka acknowledged)", got, end)
	}
	if !strings.Contains(p.output(), "confirmed position on shutdown") {
		t.Errorf("no shutdown confirmation in the log:\n%s", p.output())
	}
}

// TestStopFinishesTheOpenTransaction stops the engine while a large transaction is still being
// produced: the stop waits for the rest of it, so Kafka holds all of it and the slot is
// confirmed past it, and a restart sends none of it again.
func TestStopFinishesTheOpenTransaction(t *testing.T) {
	const rows = 300_000
	s := newSetup(t, `public.items: {}`, "")
	s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, note text)`)
	r := s.startEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, $1::int) g`, rows)
	end := s.currentLSN(t)
	var atStop int64
	testenv.WaitFor(t, time.Minute, "the transaction's first records in Kafka", func() (bool, error) {
		atStop = s.countIfExists(t, s.topic("items"))
		return atStop > 0, nil
	})
	r.cancel()
	if atStop >= rows {
		t.Fatalf("all %d rows were in Kafka before the stop; the test needs a larger transaction", rows)
	}
	if err := r.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("Run after the stop: %v", err)
	}
	if got := s.countIfExists(t, s.topic("items")); got != rows {
		t.Fatalf("%d records in Kafka after the stop (%d at the stop), want the whole transaction's %d", got, atStop, rows)
	}
	if got := s.confirmedLSN(t); got < end {
		t.Fatalf("confirmed %s after the stop, want at least %s: a restart would send the transaction again", got, end)
	}
}

// TestPermanentKafkaError makes Kafka refuse a record for good (larger than the producer may
// send): the engine stops with a clear error and the LSN stays before that transaction.
func TestPermanentKafkaError(t *testing.T) {
	s := newSetup(t, `public.blobs: {}`, "")
	s.config = strings.Replace(s.config, "kafka:\n", "kafka:\n  max_record_bytes: 20000\n", 1)
	s.db.Exec(t, `CREATE TABLE blobs (id int PRIMARY KEY, body text)`)
	r := s.startEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO blobs VALUES (1, 'small')`)
	testenv.WaitFor(t, time.Minute, "the small row", func() (bool, error) { return s.countIfExists(t, s.topic("blobs")) == 1, nil })
	before := s.currentLSN(t)
	s.db.Exec(t, `INSERT INTO blobs VALUES (2, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g))`)
	err := r.wait(t, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "max_record_bytes") {
		t.Fatalf("got %v, want an error that says how to fix the record size", err)
	}
	s.heldBefore(t, err, before)
}

// TestCheckCommand runs procon-cdc check on a good and a bad configuration.
func TestCheckCommand(t *testing.T) {
	s := newSetup(t, `public.good: {}`, "")
	s.db.Exec(t, `CREATE TABLE good (id int PRIMARY KEY)`)
	s.db.Exec(t, `CREATE TABLE nokey (id int)`)
	run := func(config string) (string, error) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(testenv.ProconBinary(t), "check", "--config", path).CombinedOutput()
		return string(out), err
	}
	out, err := run(s.config)
	if err != nil {
		t.Fatalf("check of a good configuration: %v\n%s", err, out)
	}
	for _, want := range []string{"wal_level is logical", "REPLICA IDENTITY DEFAULT", "does not exist yet; run creates it", "answer"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	out, err = run(strings.Replace(s.config, "public.good: {}", "public.good: {}\n  public.nokey: {}", 1))
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "public.nokey has no primary key") {
		t.Fatalf("check of a table without key: %v\n%s", err, out)
	}
	var slots int
	_ = s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&slots)
	if slots != 0 {
		t.Fatal("check created a slot")
	}

	// Avro: the registry must answer and every pinned version exist.
	avro := func(url, pin string) string {
		return strings.Replace(s.config, "public.good: {}", "public.good: {serialization: avro"+pin+"}", 1) +
			"schema_registry:\n  url: " + url + "\n"
	}
	out, err = run(avro(s.env.RegistryURL, ""))
	if err != nil || !strings.Contains(out, "schema registry") || !strings.Contains(out, "answers") {
		t.Fatalf("check of an Avro configuration: %v\n%s", err, out)
	}
	for _, tc := range []struct{ name, config, want string }{
		{"registry away", avro("http://127.0.0.1:1", ""), "127.0.0.1:1"},
		{"missing pinned version", avro(s.env.RegistryURL, ", avro_value_schema: "+s.name+"-nosuch, avro_value_schema_version: 3"), s.name + "-nosuch"},
	} {
		out, err = run(tc.config)
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "schema registry") || !strings.Contains(out, tc.want) {
			t.Errorf("check with the %s: %v\n%s", tc.name, err, out)
		}
	}
}

// TestNumbersPastTheirBoundsRefused: a number too large for what the engine makes of it (an
// int32, milliseconds in a time.Duration, an allocation) or a negative duration stops
// procon-cdc at start with exit code 2, naming the key and the range it accepts, before it
// touches PostgreSQL or Kafka.
func TestNumbersPastTheirBoundsRefused(t *testing.T) {
	env := testenv.Get(t)
	base := "name: bounds\npostgres:\n  dsn: postgres://nobody@127.0.0.1:1/none\n  status_interval: %s\n" +
		"kafka:\n  brokers: " + strings.Join(env.Brokers, ",") + "\n  %s\nsnapshot:\n  %s\ndebezium:\n  %s\n" +
		"relation_configs:\n  public.accounts: {%s}\n"
	// Accepted values of the five places base leaves open; each case replaces one (slot).
	ok := []string{"1s", "linger: 2ms", "chunk_size: 10", "heartbeat.interval.ms: 0", ""}
	for _, tc := range []struct {
		slot  int
		value string
		want  string
	}{
		// 2^32 + 1024: int32 makes it 1024, which the producer would take.
		{1, "max_record_bytes: 4294968320", "kafka.max_record_bytes: must be an integer from 8192 to 104857600 bytes, got 4294968320"},
		{1, "linger: 9223372036855", "kafka.linger: must be a duration from 0s to 1m0s"},
		{0, "-5s", "postgres.status_interval: must be a duration from 100ms to 1m0s, got -5s"},
		{2, "chunk_size: 9223372036854775807", "snapshot.chunk_size: must be an integer from 1 to 1000000, got 9223372036854775807"},
		// Milliseconds that wrap to a negative time.Duration: the heartbeat ticker would panic.
		{3, "heartbeat.interval.ms: 9223372036854775", "debezium.heartbeat.interval.ms: must be 0 (off) or an integer from 1 to 86400000 milliseconds"},
		{4, "rt_threshold: 99999999999999999999", "relation_configs.public.accounts.rt_threshold: must be an integer from 0 to 86400000 milliseconds"},
		{4, "partitions: 3000000000", "relation_configs.public.accounts.partitions: must be 0 (kafka.topic_defaults.partitions) or an integer from 1 to 10000"},
	} {
		vals := make([]any, len(ok))
		for i, v := range ok {
			vals[i] = v
		}
		vals[tc.slot] = tc.value
		path := filepath.Join(t.TempDir(), "procon.yaml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(base, vals...)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(testenv.ProconBinary(t), "run", "--config", path).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%s: got %v, want exit code 2\n%s", tc.value, err, out)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: output\n%s\ndoes not say %q", tc.value, out, tc.want)
		}
	}
}

// TestKeylessRelation captures a table without a key when the user accepts keyless events.
func TestKeylessRelation(t *testing.T) {
	s := newSetup(t, `public.logs: {keyless: true}`, "")
	s.db.Exec(t, `CREATE TABLE logs (at timestamptz, line text)`)
	s.runEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO logs VALUES ('2024-01-01 00:00:00+00', 'hello')`)
	recs := s.env.ReadN(t, s.topic("logs"), 1, time.Minute)
	ev := decode(t, recs)[0]
	if recs[0].Key != nil || ev.op() != "c" || ev.after()["line"] != "hello" {
		t.Fatalf("got key %q op %s after %v, want a keyless create", recs[0].Key, ev.op(), ev.after())
	}
}
