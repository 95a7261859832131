package testenv

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB is a database of its own for one test, dropped at the end unless the test failed.
type DB struct {
	Name string
	DSN  string // superuser DSN of this database
	Pool *pgxpool.Pool
}

// Database creates an empty database for the test. Replication slots made in it are dropped
// with it, so a test leaves nothing that retains WAL.
func (e *Env) Database(t testing.TB) *DB {
	t.Helper()
	name := Name(t, "t")
	ctx := Context(t, time.Minute)
	admin, err := pgx.Connect(ctx, e.PGDSN)
	if err != nil {
		t.Fatalf("testenv: connect to %s: %v", redact(e.PGDSN), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	dsn, err := withDatabase(e.PGDSN, name)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatalf("testenv: pool for %s: %v", name, err)
	}
	db := &DB{Name: name, DSN: dsn, Pool: pool}
	t.Cleanup(func() {
		pool.Close()
		// A failed test's database is kept for inspection, but not its slots: they would
		// retain WAL and use up max_replication_slots for every later run.
		if t.Failed() {
			e.cleanDatabase(t, name, false)
			t.Logf("testenv: keeping database %s of the failed test (its slots are dropped)", name)
			return
		}
		e.cleanDatabase(t, name, true)
	})
	return db
}

// cleanDatabase drops the slots of a test's database and, with drop, the database.
func (e *Env) cleanDatabase(t testing.TB, name string, drop bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, e.PGDSN)
	if err != nil {
		t.Logf("testenv: drop database %s: %v", name, err)
		return
	}
	defer admin.Close(ctx)
	// A slot is active while a walsender serves it; end those sessions before dropping.
	_, _ = admin.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
		WHERE database = $1 AND active_pid IS NOT NULL`, name)
	WaitFor(t, 30*time.Second, "slots of "+name+" to become inactive", func() (bool, error) {
		var n int
		err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE database = $1 AND active`, name).Scan(&n)
		return n == 0, err
	})
	if _, err := admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1`, name); err != nil {
		t.Logf("testenv: drop slots of %s: %v", name, err)
	}
	if !drop {
		return
	}
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Logf("testenv: drop database %s: %v", name, err)
	}
}

// Exec runs SQL statements in the test database, failing the test on error.
func (db *DB) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// Conn opens a dedicated connection to the test database, closed at cleanup.
func (db *DB) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), db.DSN)
	if err != nil {
		t.Fatalf("testenv: connect to %s: %v", db.Name, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// ReplicationDSN is the DSN of a logical replication connection to the test database.
func (db *DB) ReplicationDSN() string {
	u, _ := url.Parse(db.DSN)
	q := u.Query()
	q.Set("replication", "database")
	u.RawQuery = q.Encode()
	return u.String()
}

func withDatabase(dsn, name string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errorf("PROCON_PG_DSN must be a URL (postgres://user:pass@host:port/db): %v", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

// ServerMajor is the major version of the services' PostgreSQL (scripts/services runs
// PROCON_PG_VERSION's, 13 to 18).
func (e *Env) ServerMajor(t testing.TB) int {
	t.Helper()
	ctx := Context(t, time.Minute)
	conn, err := pgx.Connect(ctx, e.PGDSN)
	if err != nil {
		t.Fatalf("testenv: connect to %s: %v", redact(e.PGDSN), err)
	}
	defer conn.Close(ctx)
	var major int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		t.Fatalf("testenv: server version: %v", err)
	}
	return major
}

// RequireServer skips the test on a PostgreSQL older than major, saying why: for features
// that cannot exist there (logical decoding messages before 14), never for behaviour that
// merely differs.
func (e *Env) RequireServer(t testing.TB, major int, why string) {
	t.Helper()
	if got := e.ServerMajor(t); got < major {
		t.Skipf("needs PostgreSQL %d or newer (%s); the server is %d", major, why, got)
	}
}
