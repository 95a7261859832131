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
    PRIMARY KEY (slot, snapshot, relation, part)
);
`

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
	Ranges  []*Range
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
	Done     bool
	Updated  time.Time
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
		return nil
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

// Snapshots returns the snapshots recorded for the slot, oldest first, with their ranges.
func (s *Store) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	return readSnapshots(ctx, s.pool, s.slot)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readSnapshots(ctx context.Context, q querier, slot string) ([]*Snapshot, error) {
	rows, err := q.Query(ctx, `SELECT snapshot, relation, part, kind, status, coalesce(filter, ''), lo, hi, last_key,
			rows_done, rows_total, coalesce(lsn::text, ''), coalesce(txid, 0), started_at, updated_at
		FROM `+StateTable+` WHERE slot = $1 ORDER BY started_at, snapshot, relation, part`, slot)
	if err != nil {
		return nil, fmt.Errorf("snapshot: read %s: %w", StateTable, err)
	}
	defer rows.Close()
	var out []*Snapshot
	byID := map[string]*Snapshot{}
	for rows.Next() {
		var (
			id, rel, kind, status, filter, lsn string
			part                               int
			lo, hi, last                       []string
			done, total, txid                  int64
			started, updated                   time.Time
		)
		if err := rows.Scan(&id, &rel, &part, &kind, &status, &filter, &lo, &hi, &last, &done, &total, &lsn, &txid, &started, &updated); err != nil {
			return nil, fmt.Errorf("snapshot: read %s: %w", StateTable, err)
		}
		snap := byID[id]
		if snap == nil {
			snap = &Snapshot{ID: id}
			byID[id] = snap
			out = append(out, snap)
		}
		if rel == "" {
			snap.Kind, snap.Status, snap.TxID, snap.Started, snap.Updated = kind, status, txid, started, updated
			if lsn != "" {
				if snap.LSN, err = pglogrepl.ParseLSN(lsn); err != nil {
					return nil, fmt.Errorf("snapshot: %s: lsn %q: %w", id, lsn, err)
				}
			}
			continue
		}
		snap.Ranges = append(snap.Ranges, &Range{Relation: rel, Part: part, Filter: filter, Lo: lo, Hi: hi, Last: last,
			Rows: done, Total: total, Done: status == StatusDone, Updated: updated})
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
	if _, err := tx.Exec(ctx, `INSERT INTO `+StateTable+` (slot, snapshot, relation, part, kind, status, lsn, txid)
		VALUES ($1, $2, '', 0, $3, $4, $5::text::pg_lsn, $6)`, s.slot, snap.ID, snap.Kind, snap.Status, lsnText(snap.LSN), nullInt(snap.TxID)); err != nil {
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
		status := StatusRunning
		if r.Done {
			status = StatusDone
		}
		b.Queue(`INSERT INTO `+StateTable+` (slot, snapshot, relation, part, kind, status, filter, lo, hi, last_key, rows_done, rows_total)
			VALUES ($1, $2, $3, $4, $5, $6, nullif($7, ''), $8, $9, $10, $11, $12)`,
			slot, snap.ID, r.Relation, r.Part, snap.Kind, status, r.Filter, r.Lo, r.Hi, r.Last, r.Rows, r.Total)
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

// RangeUpdate is the progress of one range to record.
type RangeUpdate struct {
	Relation string
	Part     int
	Last     []string
	Rows     int64
	Done     bool
}

// SaveProgress records range progress of snapshot id, in one transaction.
func (s *Store) SaveProgress(ctx context.Context, id string, updates []RangeUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, u := range updates {
		status := StatusRunning
		if u.Done {
			status = StatusDone
		}
		b.Queue(`UPDATE `+StateTable+` SET last_key = $5, rows_done = $6, status = $7, updated_at = now()
			WHERE slot = $1 AND snapshot = $2 AND relation = $3 AND part = $4`, s.slot, id, u.Relation, u.Part, u.Last, u.Rows, status)
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
