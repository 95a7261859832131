package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/test/testenv"
)

// walPositions reads what the walsender of the test's slot reports: the position the engine
// says it received (write_lsn) and the one it confirmed (flush_lsn).
func (s *setup) walPositions(t *testing.T) (written, flushed pglogrepl.LSN, ok bool) {
	t.Helper()
	var w, f *string
	err := s.db.Pool.QueryRow(context.Background(), `SELECT r.write_lsn::text, r.flush_lsn::text
		FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid
		WHERE s.slot_name = $1`, s.slot).Scan(&w, &f)
	if err != nil || w == nil || f == nil {
		return 0, 0, false
	}
	written, _ = pglogrepl.ParseLSN(*w)
	flushed, _ = pglogrepl.ParseLSN(*f)
	return written, flushed, true
}

func (s *setup) currentLSN(t *testing.T) pglogrepl.LSN {
	t.Helper()
	var text string
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&text); err != nil {
		t.Fatal(err)
	}
	lsn, _ := pglogrepl.ParseLSN(text)
	return lsn
}

// TestKafkaDown stops Kafka mid-stream while writes continue: the confirmed LSN must not move
// past what Kafka acknowledged; once Kafka is back, every change arrives, once.
func TestKafkaDown(t *testing.T) {
	s := newSetup(t, `public.versions: {}`, "")
	w := newVersionWriter(t, s, 10)
	s.runEngine(t)
	s.waitSlot(t)
	stop := w.start()
	testenv.WaitFor(t, time.Minute, "events to flow", func() (bool, error) { return s.countIfExists(t, s.topic("versions")) > 100, nil })

	s.env.StopService(t, "kafka")
	held := s.confirmedLSN(t)
	target := s.currentLSN(t) + 1 // WAL written while Kafka is down, from here on
	testenv.WaitFor(t, time.Minute, "the engine to receive WAL written while Kafka is down", func() (bool, error) {
		written, flushed, ok := s.walPositions(t)
		if ok && flushed > held {
			return false, fmt.Errorf("confirmed LSN moved from %s to %s while Kafka was down", held, flushed)
		}
		return ok && written > target, nil
	})
	if _, flushed, _ := s.walPositions(t); flushed > held {
		t.Fatalf("confirmed LSN moved from %s to %s while Kafka was down", held, flushed)
	}
	if got := s.confirmedLSN(t); got > held {
		t.Fatalf("slot confirmed_flush_lsn moved from %s to %s while Kafka was down", held, got)
	}
	s.env.StartService(t, "kafka")
	testenv.WaitFor(t, time.Minute, "more events after Kafka returned", func() (bool, error) {
		return s.confirmedLSN(t) > target, nil
	})
	stop()
	checkVersions(t, s, w.finalVersions(t), false)
}

// TestPostgresRestart restarts PostgreSQL mid-stream: procon-cdc loses the slot's lock with
// its session, stops producing, takes the lock again once the server is back (the process
// runs on: no supervisor restarts it) and streams on; nothing is lost.
func TestPostgresRestart(t *testing.T) {
	s := newSetup(t, `public.versions: {}`, "")
	w := newVersionWriter(t, s, 10)
	p := s.startProcess(t)
	s.waitSlot(t)
	stop := w.start()
	testenv.WaitFor(t, time.Minute, "events to flow", func() (bool, error) { return s.countIfExists(t, s.topic("versions")) > 100, nil })
	s.env.StopService(t, "postgres")
	s.env.StartService(t, "postgres")
	before := s.countIfExists(t, s.topic("versions"))
	testenv.WaitFor(t, 2*time.Minute, "events after the restart", func() (bool, error) {
		return s.countIfExists(t, s.topic("versions")) > before+100, nil
	})
	stop()
	checkVersions(t, s, w.finalVersions(t), false)
	if out := p.output(); !strings.Contains(out, "lost the slot's lock; waiting to take it again") {
		t.Fatalf("procon-cdc did not say it lost the slot's lock with PostgreSQL's restart:\n%s", out)
	}
}

// TestIdleSlot writes 100 MB of WAL to a table that is not published: the slot must not
// retain it.
func TestIdleSlot(t *testing.T) {
	s := newSetup(t, `public.captured: {}`, "")
	s.db.Exec(t, `CREATE TABLE captured (id int PRIMARY KEY)`)
	s.db.Exec(t, `CREATE TABLE unpublished (id bigserial PRIMARY KEY, pad text)`)
	s.runEngine(t)
	s.waitSlot(t)
	start := s.currentLSN(t)
	for range 10 { // ten transactions of ~10 MB of WAL each
		s.db.Exec(t, `INSERT INTO unpublished (pad) SELECT repeat(md5(g::text), 6) FROM generate_series(1, 40000) g`)
	}
	end := s.currentLSN(t)
	if end-start < 100<<20 {
		t.Fatalf("wrote only %d bytes of WAL, want 100 MB", end-start)
	}
	testenv.WaitFor(t, time.Minute, "the slot to confirm the WAL of the unpublished table", func() (bool, error) {
		return s.currentLSN(t)-s.confirmedLSN(t) < 1<<20, nil
	})
	t.Logf("wrote %d MB of WAL; slot retains %d bytes", (end-start)>>20, s.currentLSN(t)-s.confirmedLSN(t))
}

// TestBadConfig runs procon-cdc with broken configurations: each is refused with an error that
// names the problem, exits non-zero, and changes nothing in the database.
func TestBadConfig(t *testing.T) {
	s := newSetup(t, `public.good: {}`, "")
	s.db.Exec(t, `CREATE TABLE good (id int PRIMARY KEY)`)
	s.db.Exec(t, `CREATE TABLE nokey (id int)`)
	good := s.config
	cases := []struct {
		name   string
		config string
		want   string
	}{
		{"missing name", strings.Replace(good, "name: "+s.name, "", 1), "name: is required"},
		{"missing dsn", strings.Replace(good, "dsn: "+s.db.DSN, "", 1), "postgres.dsn: is required"},
		{"unset variable", strings.Replace(good, "dsn: "+s.db.DSN, "dsn: ${PROCON_TEST_UNSET_VAR}", 1), "PROCON_TEST_UNSET_VAR is not set"},
		{"unknown key", good + "\nbogus_key: 1\n", "field bogus_key not found"},
		{"bad mode", strings.Replace(good, "status_interval: 200ms", "status_interval: 200ms\n  publication_autocreate: sometimes", 1), "postgres.publication_autocreate"},
		{"unknown relation", strings.Replace(good, "public.good: {}", "public.good: {}\n  public.nosuch: {}", 1), "public.nosuch does not exist"},
		{"no primary key", strings.Replace(good, "public.good: {}", "public.nokey: {}", 1), "relation_configs.public.nokey.pkey"},
		{"bad pkey column", strings.Replace(good, "public.good: {}", "public.good: {pkey: [nope]}", 1), `key column "nope" does not exist`},
		{"postgres unreachable", strings.Replace(good, s.db.DSN, "postgres://procon:procon@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", 1), "connect to PostgreSQL"},
		{"kafka unreachable", strings.Replace(good, "brokers: "+strings.Join(s.env.Brokers, ","), "brokers: 127.0.0.1:1", 1), "do not answer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(testenv.ProconBinary(t), "run", "--config", path)
			cmd.Env = append(os.Environ(), "PROCON_TEST_UNSET_VAR=")
			cmd.Env = cmd.Env[:len(cmd.Env)-1]
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0, want an error; output:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output does not say %q:\n%s", tc.want, out)
			}
			var slots, pubs int
			_ = s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&slots)
			_ = s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication WHERE pubname = $1`, s.slot).Scan(&pubs)
			if slots != 0 || pubs != 0 {
				t.Fatalf("the refused run left %d slot(s) and %d publication(s)", slots, pubs)
			}
		})
	}
}
