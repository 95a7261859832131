package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/procon-cdc/procon/pg"
)

// StateTable is the table holding snapshot progress, in the source database.
const StateTable = "public.procon_snapshot_progress"

// InitSQL creates StateTable. procon-cdc creates it when it is missing; procon-cdc init-sql
// prints it for databases where the engine's role may not create tables.
const InitSQL = `-- Snapshot progress: one header row per snapshot (relation = '') and one row per key range
-- of each table, with the last key whose row Kafka has acknowledged. procon-cdc status reads it.
CREATE TABLE IF NOT EXISTS public.procon_snapshot_progress (
    slot       text    NOT NULL,
    snapshot   text    NOT NULL,
    relation   text    NOT NULL,
    part       int     NOT NULL,
    kind       text    NOT NULL,
    status     text    NOT NULL,
    filter     text,
    lo         text[],
    hi         text[],
    last_key   text[],
    rows_done  bigint  NOT NULL DEFAULT 0,
    rows_total bigint  NOT NULL DEFAULT 0,
    lsn        pg_lsn,
    txid       bigint,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    error      text,
    PRIMARY KEY (slot, snapshot, relation, part)
);
`

// errorColumnSQL adds the error column to a progress table created before it existed.
const errorColumnSQL = `ALTER TABLE ` + StateTable + ` ADD COLUMN IF NOT EXISTS error text`

// Snapshot kinds.
const (
	KindInitial     = "initial"     // before streaming, from the slot's exported snapshot
	KindAlways      = "always"      // snapshot.mode always on an existing slot, in the stream
	KindIncremental = "incremental" // requested by an execute-snapshot signal, in the stream
)

// Snapshot statuses.
const (
	StatusPending = "pending" // initial: recorded before the slot is created
	StatusRunning = "running"
	StatusDone    = "done"
	StatusStopped = "stopped" // stop-snapshot signal, or superseded
	// StatusRefused: procon-cdc would not run it (a filter it refuses, a signal it cannot
	// take); nothing of it was read. A snapshot is refused when every one of its tables is.
	StatusRefused = "refused"
	// StatusFailed: a table's read failed (a chunk over snapshot.statement_timeout, a
	// table that cannot be read) and stopped there; a snapshot has failed when it ended
	// with any table refused or failed. The error column says why.
	StatusFailed = "failed"
)

// InitialID is the id of the initial snapshot of a slot.
const InitialID = "initial"

// Snapshot is one recorded snapshot and its ranges.
type Snapshot struct {
	ID     string
	Kind   string
	Status string
	// LSN and TxID are the consistent point and the snapshot transaction (initial only).
	LSN     pglogrepl.LSN
	TxID    int64
	Started time.Time
	Updated time.Time
	// Error says why a refused or failed snapshot ended.
	Error  string
	Ranges []*Range
}

// Range is a key range of one table: the rows with Lo < key <= Hi (nil bounds are open).
// Last is the key of the last row Kafka acknowledged; the rest starts after it.
type Range struct {
	Relation string
	Part     int
	Filter   string
	Lo, Hi   []string
	Last     []string
	Rows     int64 // rows acknowledged
	Total    int64 // estimate
	// Done: nothing is left to read, because the range was read to its end or because it
	// ended with an Outcome.
	Done bool
	// Outcome is StatusRefused or StatusFailed for a range that ended without being read
	// to its end, and Error says why; both empty otherwise.
	Outcome, Error string
	Updated        time.Time
}

// status is the status recorded for a range.
func (r *Range) status() string {
	switch {
	case r.Outcome != "":
		return r.Outcome
	case r.Done:
		return StatusDone
	}
	return StatusRunning
}

// Store reads and writes StateTable for one slot.
type Store struct {
	pool *pgxpool.Pool
	slot string
}

// OpenStore connects to dsn (a small pool) and creates StateTable when it is missing.
func OpenStore(ctx context.Context, dsn, slot string) (*Store, error) {
	pool, err := pg.NewPool(ctx, dsn, "procon-cdc snapshot progress", 2)
	if err != nil {
		return nil, fmt.Errorf("snapshot: connect to PostgreSQL: %w", err)
	}
	s := &Store{pool: pool, slot: slot}
	if err := s.ensure(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store's connections.
func (s *Store) Close() { s.pool.Close() }

func (s *Store) ensure(ctx context.Context) error {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, StateTable).Scan(&exists); err != nil {
		return fmt.Errorf("snapshot: look up %s: %w", StateTable, err)
	}
	if exists {
		return s.ensureErrorColumn(ctx)
	}
	if _, err := s.pool.Exec(ctx, InitSQL); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07") { // created concurrently
			return nil
		}
		return fmt.Errorf("snapshot: create %s (run the SQL of procon-cdc init-sql as a role that may): %w", StateTable, err)
	}
	return nil
}

// ensureErrorColumn adds the error column to a progress table made by an older procon-cdc.
func (s *Store) ensureErrorColumn(ctx context.Context) error {
	var has bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
		WHERE attrelid = $1::regclass AND attname = 'error' AND NOT attisdropped)`, StateTable).Scan(&has); err != nil {
		return fmt.Errorf("snapshot: look up %s: %w", StateTable, err)
	}
	if has {
		return nil
	}
	if _, err := s.pool.Exec(ctx, errorColumnSQL); err != nil {
		return fmt.Errorf("snapshot: add the error column to %s (run %q as the table's owner): %w", StateTable, errorColumnSQL, err)
	}
	return nil
}

// Snapshots returns the snapshots recorded for the slot, oldest first, with their ranges.
func (s *Store) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	return readSnapshots(ctx, s.pool, s.slot)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readSnapshots(ctx context.Context, q querier, slot string) ([]*Snapshot, error) {
	// The error column is read through to_jsonb: procon-cdc status reads tables made before
	// it existed.
	rows, err := q.Query(ctx, `SELECT snapshot, relation, part, kind, status, coalesce(filter, ''), lo, hi, last_key,
			rows_done, rows_total, coalesce(lsn::text, ''), coalesce(txid, 0), started_at, updated_at,
			coalesce(pg_catalog.to_jsonb(p) ->> 'error', '')
		FROM `+StateTable+` p WHERE slot = $1 ORDER BY started_at, snapshot, relation, part`, slot)
	if err != nil {
		return nil, fmt.Errorf("snapshot: read %s: %w", StateTable, err)
	}
	defer rows.Close()
	var out []*Snapshot
	byID := map[string]*Snapshot{}
	for rows.Next() {
		var (
			id, rel, kind, status, filter, lsn string
			reason                             string
			part                               int
			lo, hi, last                       []string
			done, total, txid                  int64
			started, updated                   time.Time
		)
		if err := rows.Scan(&id, &rel, &part, &kind, &status, &filter, &lo, &hi, &last, &done, &total, &lsn, &txid, &started, &updated, &reason); err != nil {
			return nil, fmt.Errorf("snapshot: read %s: %w", StateTable, err)
		}
		snap := byID[id]
		if snap == nil {
			snap = &Snapshot{ID: id}
			byID[id] = snap
			out = append(out, snap)
		}
		if rel == "" {
			snap.Kind, snap.Status, snap.TxID, snap.Started, snap.Updated, snap.Error = kind, status, txid, started, updated, reason
			if lsn != "" {
				if snap.LSN, err = pglogrepl.ParseLSN(lsn); err != nil {
					return nil, fmt.Errorf("snapshot: %s: lsn %q: %w", id, lsn, err)
				}
			}
			continue
		}
		r := &Range{Relation: rel, Part: part, Filter: filter, Lo: lo, Hi: hi, Last: last,
			Rows: done, Total: total, Done: status == StatusDone, Updated: updated}
		if status == StatusRefused || status == StatusFailed {
			r.Done, r.Outcome, r.Error = true, status, reason
		}
		snap.Ranges = append(snap.Ranges, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: read %s: %w", StateTable, err)
	}
	return out, nil
}

// Insert records a new snapshot and its ranges, replacing any snapshot of the same id. With
// ifAbsent, an existing snapshot of that id is kept and Insert reports false.
func (s *Store) Insert(ctx context.Context, snap *Snapshot, ifAbsent bool) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
	}
	defer tx.Rollback(context.Background())
	if ifAbsent {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+StateTable+` WHERE slot = $1 AND snapshot = $2`, s.slot, snap.ID).Scan(&n); err != nil {
			return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
		}
		if n > 0 {
			return false, nil
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+StateTable+` WHERE slot = $1 AND snapshot = $2`, s.slot, snap.ID); err != nil {
		return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+StateTable+` (slot, snapshot, relation, part, kind, status, lsn, txid, error)
		VALUES ($1, $2, '', 0, $3, $4, $5::text::pg_lsn, $6, nullif($7, ''))`, s.slot, snap.ID, snap.Kind, snap.Status, lsnText(snap.LSN), nullInt(snap.TxID), snap.Error); err != nil {
		return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
	}
	if err := insertRanges(ctx, tx, s.slot, snap); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
	}
	return true, nil
}

// AddRanges records the ranges of a snapshot planned after its header, and sets its status,
// consistent point and transaction, in one transaction.
func (s *Store) AddRanges(ctx context.Context, snap *Snapshot) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `DELETE FROM `+StateTable+` WHERE slot = $1 AND snapshot = $2 AND relation <> ''`, s.slot, snap.ID); err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE `+StateTable+` SET status = $3, lsn = $4::text::pg_lsn, txid = $5, updated_at = now()
		WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, snap.ID, snap.Status, lsnText(snap.LSN), nullInt(snap.TxID)); err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	if err := insertRanges(ctx, tx, s.slot, snap); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	return nil
}

func insertRanges(ctx context.Context, tx pgx.Tx, slot string, snap *Snapshot) error {
	if len(snap.Ranges) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, r := range snap.Ranges {
		b.Queue(`INSERT INTO `+StateTable+` (slot, snapshot, relation, part, kind, status, filter, lo, hi, last_key, rows_done, rows_total, error)
			VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), $8, $9, $10, $11, $12, nullif($13, ''))`,
			slot, snap.ID, r.Relation, r.Part, snap.Kind, r.status(), r.Filter, r.Lo, r.Hi, r.Last, r.Rows, r.Total, r.Error)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	return nil
}

// SetStatus sets the status of a snapshot (its header row).
func (s *Store) SetStatus(ctx context.Context, id, status string) error {
	_, err := s.pool.Exec(ctx, `UPDATE `+StateTable+` SET status = $3, updated_at = now()
		WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, id, status)
	if err != nil {
		return fmt.Errorf("snapshot: set %s %s: %w", id, status, err)
	}
	return nil
}

// SetOutcome ends a snapshot with status and the reason for it (empty for done or stopped).
func (s *Store) SetOutcome(ctx context.Context, id, status, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE `+StateTable+` SET status = $3, error = nullif($4, ''), updated_at = now()
		WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, id, status, reason)
	if err != nil {
		return fmt.Errorf("snapshot: set %s %s: %w", id, status, err)
	}
	return nil
}

// RangeUpdate is the progress of one range to record.
type RangeUpdate struct {
	Relation string
	Part     int
	Last     []string
	Rows     int64
	Done     bool
	// Outcome and Error end a range that was not read to its end (see Range).
	Outcome, Error string
}

// SaveProgress records range progress of snapshot id, in one transaction.
func (s *Store) SaveProgress(ctx context.Context, id string, updates []RangeUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, u := range updates {
		r := Range{Done: u.Done, Outcome: u.Outcome}
		b.Queue(`UPDATE `+StateTable+` SET last_key = $5, rows_done = $6, status = $7, error = nullif($8, ''), updated_at = now()
			WHERE slot = $1 AND snapshot = $2 AND relation = $3 AND part = $4`, s.slot, id, u.Relation, u.Part, u.Last, u.Rows, r.status(), u.Error)
	}
	b.Queue(`UPDATE `+StateTable+` SET updated_at = now() WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, id)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("snapshot: record progress of %s: %w", id, err)
	}
	return nil
}

// ReadSnapshots reads the snapshots recorded for slot over conn, without creating anything:
// nil when StateTable does not exist. procon-cdc status uses it.
func ReadSnapshots(ctx context.Context, conn *pgx.Conn, slot string) ([]*Snapshot, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, StateTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("snapshot: look up %s: %w", StateTable, err)
	}
	if !exists {
		return nil, nil
	}
	return readSnapshots(ctx, conn, slot)
}

// Forget deletes what StateTable records for slot (procon-cdc drop).
func Forget(ctx context.Context, conn *pgx.Conn, slot string) (int64, error) {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, StateTable).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	tag, err := conn.Exec(ctx, `DELETE FROM `+StateTable+` WHERE slot = $1 AND relation = ''`, slot)
	if err != nil {
		return 0, fmt.Errorf("snapshot: forget snapshots of %s: %w", slot, err)
	}
	if _, err := conn.Exec(ctx, `DELETE FROM `+StateTable+` WHERE slot = $1`, slot); err != nil {
		return 0, fmt.Errorf("snapshot: forget snapshots of %s: %w", slot, err)
	}
	return tag.RowsAffected(), nil
}

func lsnText(l pglogrepl.LSN) *string {
	if l == 0 {
		return nil
	}
	s := l.String()
	return &s
}

func nullInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

// Latest returns the last snapshot of a kind, or nil.
func Latest(snaps []*Snapshot, kind string) *Snapshot {
	for i := len(snaps) - 1; i >= 0; i-- {
		if snaps[i].Kind == kind {
			return snaps[i]
		}
	}
	return nil
}
