package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/test/testenv"
)

// TestCachesAcrossReconnectsAndDDL runs the engine against the real services through
// reconnects (the walsender terminated) and DDLs, each of which makes a new relation version:
// nothing is lost, and the caches kept per version hold one version of the table at the end.
func TestCachesAcrossReconnectsAndDDL(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	name := strings.ReplaceAll(testenv.Name(t, "p"), "_", "-")
	slot := strings.ReplaceAll(name, "-", "_")
	env.DeleteTopicsAtCleanup(t, name)
	db.Exec(t, `CREATE TABLE versioned (id int PRIMARY KEY)`)
	cfg, err := config.Parse(strings.NewReader(fmt.Sprintf(`name: %s
postgres: {dsn: "%s", slot: %s, publication: %s, status_interval: 200ms}
kafka: {brokers: "%s"}
json: {schemas: true}
relation_configs:
  public.versioned: {}
`, name, db.DSN, slot, slot, strings.Join(env.Brokers, ","))), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	topic := name + ".public.versioned"
	adm := kadm.NewClient(env.Kafka(t))
	records := func() int64 {
		ends, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			return 0
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}
	walsender := func() (pid int) {
		_ = db.Pool.QueryRow(context.Background(), `SELECT coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid)
		return pid
	}
	testenv.WaitFor(t, time.Minute, "the slot in use", func() (bool, error) { return walsender() != 0, nil })
	const rounds = 6
	id := 0
	for i := range rounds {
		db.Exec(t, fmt.Sprintf(`ALTER TABLE versioned ADD COLUMN c%d int`, i)) // a DDL: a new version
		id++
		db.Exec(t, `INSERT INTO versioned (id) VALUES ($1)`, id)
		want := int64(id)
		testenv.WaitFor(t, time.Minute, fmt.Sprintf("record %d", id), func() (bool, error) { return records() >= want, nil })
		pid := walsender()
		db.Exec(t, `SELECT pg_terminate_backend($1)`, pid) // a reconnect: every relation a new version
		testenv.WaitFor(t, time.Minute, "the engine to reconnect", func() (bool, error) {
			p := walsender()
			return p != 0 && p != pid, nil
		})
		id++
		db.Exec(t, `INSERT INTO versioned (id) VALUES ($1)`, id)
		want = int64(id)
		testenv.WaitFor(t, time.Minute, fmt.Sprintf("record %d", id), func() (bool, error) { return records() >= want, nil })
	}
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatalf("Run: %v", err)
	}
	// The engine has stopped: its parts can be looked at from here.
	if n := e.builder.CachedVersions(); n != 1 {
		t.Errorf("the builder keeps %d versions of the table after %d DDLs and %d reconnects, want 1", n, rounds, rounds)
	}
	if n := e.enc.json.CachedSchemas(); n > 2 {
		t.Errorf("the JSON encoder keeps %d schemas after %d DDLs and %d reconnects, want at most 2 (key and envelope of the last version)", n, rounds, rounds)
	}
}
