package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/procon-cdc/procon/pg"
)

// StateSchema is the schema of procon-cdc's own tables. Only procon-cdc's roles may own it
// or create in it (pg.CheckOwnSchema): no other role can then make the table before
// procon-cdc does, with a trigger that would run with procon-cdc's role at every write, nor
// replace it. public does not give that (before PostgreSQL 15 every role may create there).
const StateSchema = "procon"

// StateTable is the table holding snapshot progress, in the source database.
const StateTable = StateSchema + ".procon_snapshot_progress"

// legacyStateTable is where versions before StateSchema kept progress. A database that has it
// and no StateTable keeps using it (with a warning saying how to move it) until it is moved:
// progress of a running snapshot must not be forgotten, and moving the table under other
// procon-cdc processes of the same database that still use it would split their progress.
const legacyStateTable = "public.procon_snapshot_progress"

// InitSQL creates StateSchema and StateTable. procon-cdc creates them when they are missing;
// procon-cdc init-sql prints them for databases where the engine's role may not create a
// schema.
const InitSQL = `-- procon-cdc's own tables live in the schema procon, which only procon-cdc's role (or a
-- superuser) may own or create in: procon-cdc refuses it otherwise. Run this as procon-cdc's
-- role, or as a superuser and then GRANT USAGE ON SCHEMA procon and SELECT, INSERT, UPDATE,
-- DELETE ON procon.procon_snapshot_progress to procon-cdc's role.
CREATE SCHEMA IF NOT EXISTS procon;

-- Snapshot progress: one header row per snapshot (relation = '') and one row per key range
-- of each table, with the last key whose row Kafka has acknowledged. procon-cdc status reads it.
CREATE TABLE IF NOT EXISTS procon.procon_snapshot_progress (
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
    started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    error      text,
    PRIMARY KEY (slot, snapshot, relation, part)
);
`

// errorColumnSQL adds the error column to a progress table (table, quoted) created before it
// existed.
func errorColumnSQL(table string) string {
	return `ALTER TABLE ` + table + ` ADD COLUMN IF NOT EXISTS error text`
}

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

// Store reads and writes StateTable (or the legacy table, see legacyStateTable) for one slot.
type Store struct {
	pool  *pgxpool.Pool
	slot  string
	table string // quoted
}

// OpenStore connects to dsn (a small pool), finds where progress is kept, creates StateSchema
// and StateTable when there is none, and refuses a table or schema that another role could
// make run its code (pg.CheckOwnSchema, pg.CheckOwnTable).
func OpenStore(ctx context.Context, dsn, slot string, log *slog.Logger) (*Store, error) {
	pool, err := pg.NewPool(ctx, dsn, "procon-cdc snapshot progress", 2)
	if err != nil {
		return nil, fmt.Errorf("snapshot: connect to PostgreSQL: %w", err)
	}
	s := &Store{pool: pool, slot: slot}
	if err := s.ensure(ctx, log); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store's connections.
func (s *Store) Close() { s.pool.Close() }

func (s *Store) ensure(ctx context.Context, log *slog.Logger) error {
	table, err := locateState(ctx, s.pool, s.slot)
	if err != nil {
		return err
	}
	if table == "" {
		// Checked before anything is made in it, and again below.
		if _, err := pg.CheckOwnSchema(ctx, s.pool, StateSchema); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if err := s.create(ctx); err != nil {
			return err
		}
		table = StateTable
	}
	if table == legacyStateTable {
		log.Warn("snapshot progress is kept in "+legacyStateTable+", where earlier versions made it; once every procon-cdc of this database runs this version, move it as its owner: "+
			"CREATE SCHEMA IF NOT EXISTS "+StateSchema+"; ALTER TABLE "+legacyStateTable+" SET SCHEMA "+StateSchema, "slot", s.slot)
	}
	if err := checkState(ctx, s.pool, table); err != nil {
		return err
	}
	s.table = pg.QuoteQualified(table)
	return s.ensureErrorColumn(ctx)
}

// ensureErrorColumn adds the error column to a progress table made by an older procon-cdc.
func (s *Store) ensureErrorColumn(ctx context.Context) error {
	var has bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
		WHERE attrelid = $1::pg_catalog.regclass AND attname = 'error' AND NOT attisdropped)`, s.table).Scan(&has); err != nil {
		return fmt.Errorf("snapshot: look up %s: %w", s.table, err)
	}
	if has {
		return nil
	}
	if _, err := s.pool.Exec(ctx, errorColumnSQL(s.table)); err != nil {
		return fmt.Errorf("snapshot: add the error column to %s (run %q as the table's owner): %w", s.table, errorColumnSQL(s.table), err)
	}
	return nil
}

func (s *Store) create(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, InitSQL)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07" || pgErr.Code == "42P06"): // created concurrently
		return nil
	case errors.As(err, &pgErr) && pgErr.Code == "42501":
		return fmt.Errorf("snapshot: create %s: %w; run the SQL of procon-cdc init-sql as a role that may (it says what to grant then), or GRANT CREATE ON DATABASE to procon-cdc's role", StateTable, err)
	}
	return fmt.Errorf("snapshot: create %s (run the SQL of procon-cdc init-sql as a role that may): %w", StateTable, err)
}

// locateState returns where the progress of slot is kept: StateTable; legacyStateTable when
// only that exists; "" when neither does. When both exist and the legacy table holds progress
// of slot, it refuses to choose: an earlier procon-cdc of this slot wrote there after this
// version made StateTable, and ignoring either could forget a running snapshot.
func locateState(ctx context.Context, q querier, slot string) (string, error) {
	var current, legacy bool
	err := q.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL, pg_catalog.to_regclass($2) IS NOT NULL`,
		pg.QuoteQualified(StateTable), pg.QuoteQualified(legacyStateTable)).Scan(&current, &legacy)
	if err != nil {
		return "", fmt.Errorf("snapshot: look up %s: %w", StateTable, err)
	}
	switch {
	case current && legacy:
		var n int
		err := q.QueryRow(ctx, `SELECT pg_catalog.count(*) FROM `+pg.QuoteQualified(legacyStateTable)+` WHERE slot = $1`, slot).Scan(&n)
		if err != nil {
			return "", fmt.Errorf("snapshot: look up %s: %w", legacyStateTable, err)
		}
		if n > 0 {
			return "", fmt.Errorf("snapshot: progress of slot %s is in %s, where an earlier procon-cdc kept it, and %s exists too: move the slot's rows (INSERT INTO %s SELECT * FROM %s WHERE slot = '%s'; DELETE FROM %s WHERE slot = '%s'), or drop %s once no earlier procon-cdc uses it",
				slot, legacyStateTable, StateTable, StateTable, legacyStateTable, slot, legacyStateTable, slot, legacyStateTable)
		}
		return StateTable, nil
	case current:
		return StateTable, nil
	case legacy:
		return legacyStateTable, nil
	}
	return "", nil
}

// Snapshots returns the snapshots recorded for the slot, oldest first, with their ranges.
func (s *Store) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	return readSnapshots(ctx, s.pool, s.table, s.slot)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readSnapshots(ctx context.Context, q querier, table, slot string) ([]*Snapshot, error) {
	// The error column is read through to_jsonb: procon-cdc status reads tables made before
	// it existed.
	rows, err := q.Query(ctx, `SELECT snapshot, relation, part, kind, status, coalesce(filter, ''), lo, hi, last_key,
			rows_done, rows_total, coalesce(lsn::text, ''), coalesce(txid, 0), started_at, updated_at,
			coalesce(pg_catalog.to_jsonb(p) OPERATOR(pg_catalog.->>) 'error', '')
		FROM `+table+` p WHERE slot = $1 ORDER BY started_at, snapshot, relation, part`, slot)
	if err != nil {
		return nil, fmt.Errorf("snapshot: read %s: %w", table, err)
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
			return nil, fmt.Errorf("snapshot: read %s: %w", table, err)
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
		return nil, fmt.Errorf("snapshot: read %s: %w", table, err)
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
		if err := tx.QueryRow(ctx, `SELECT pg_catalog.count(*) FROM `+s.table+` WHERE slot = $1 AND snapshot = $2`, s.slot, snap.ID).Scan(&n); err != nil {
			return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
		}
		if n > 0 {
			return false, nil
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+s.table+` WHERE slot = $1 AND snapshot = $2`, s.slot, snap.ID); err != nil {
		return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+s.table+` (slot, snapshot, relation, part, kind, status, lsn, txid, error)
		VALUES ($1, $2, '', 0, $3, $4, $5::text::pg_lsn, $6, nullif($7, ''))`, s.slot, snap.ID, snap.Kind, snap.Status, lsnText(snap.LSN), nullInt(snap.TxID), snap.Error); err != nil {
		return false, fmt.Errorf("snapshot: record %s: %w", snap.ID, err)
	}
	if err := insertRanges(ctx, tx, s.table, s.slot, snap); err != nil {
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
	if _, err := tx.Exec(ctx, `DELETE FROM `+s.table+` WHERE slot = $1 AND snapshot = $2 AND relation <> ''`, s.slot, snap.ID); err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE `+s.table+` SET status = $3, lsn = $4::text::pg_lsn, txid = $5, updated_at = pg_catalog.now()
		WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, snap.ID, snap.Status, lsnText(snap.LSN), nullInt(snap.TxID)); err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	if err := insertRanges(ctx, tx, s.table, s.slot, snap); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("snapshot: record ranges of %s: %w", snap.ID, err)
	}
	return nil
}

func insertRanges(ctx context.Context, tx pgx.Tx, table, slot string, snap *Snapshot) error {
	if len(snap.Ranges) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, r := range snap.Ranges {
		b.Queue(`INSERT INTO `+table+` (slot, snapshot, relation, part, kind, status, filter, lo, hi, last_key, rows_done, rows_total, error)
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
	_, err := s.pool.Exec(ctx, `UPDATE `+s.table+` SET status = $3, updated_at = pg_catalog.now()
		WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, id, status)
	if err != nil {
		return fmt.Errorf("snapshot: set %s %s: %w", id, status, err)
	}
	return nil
}

// SetOutcome ends a snapshot with status and the reason for it (empty for done or stopped).
func (s *Store) SetOutcome(ctx context.Context, id, status, reason string) error {
	_, err := s.pool.Exec(ctx, `UPDATE `+s.table+` SET status = $3, error = nullif($4, ''), updated_at = pg_catalog.now()
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
		b.Queue(`UPDATE `+s.table+` SET last_key = $5, rows_done = $6, status = $7, error = nullif($8, ''), updated_at = pg_catalog.now()
			WHERE slot = $1 AND snapshot = $2 AND relation = $3 AND part = $4`, s.slot, id, u.Relation, u.Part, u.Last, u.Rows, r.status(), u.Error)
	}
	b.Queue(`UPDATE `+s.table+` SET updated_at = pg_catalog.now() WHERE slot = $1 AND snapshot = $2 AND relation = ''`, s.slot, id)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("snapshot: record progress of %s: %w", id, err)
	}
	return nil
}

// CheckState refuses, as OpenStore does but without creating anything, a progress table or
// schema that another role could make run its code (procon-cdc check).
func CheckState(ctx context.Context, conn *pgx.Conn, slot string) error {
	table, err := locateState(ctx, conn, slot)
	if err != nil {
		return err
	}
	return checkState(ctx, conn, table)
}

// checkState refuses the progress table ("": none yet), and StateSchema unless the table is
// the legacy one, when a role other than procon-cdc's could make procon-cdc's writes there
// run its code. It reports every problem it finds.
func checkState(ctx context.Context, q pg.Querier, table string) error {
	var errs []error
	if table != legacyStateTable {
		if _, err := pg.CheckOwnSchema(ctx, q, StateSchema); err != nil {
			errs = append(errs, err)
		}
	}
	if table != "" {
		if err := pg.CheckOwnTable(ctx, q, table); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("snapshot: %w", errors.Join(errs...))
	}
	return nil
}

// ReadSnapshots reads the snapshots recorded for slot over conn, without creating anything:
// nil when no progress table exists. procon-cdc status uses it.
func ReadSnapshots(ctx context.Context, conn *pgx.Conn, slot string) ([]*Snapshot, error) {
	table, err := locateState(ctx, conn, slot)
	if err != nil || table == "" {
		return nil, err
	}
	return readSnapshots(ctx, conn, pg.QuoteQualified(table), slot)
}

// Forget deletes what the progress tables (StateTable, and the legacy one if it exists)
// record for slot (procon-cdc drop), and reports how many snapshots that was.
func Forget(ctx context.Context, conn *pgx.Conn, slot string) (int64, error) {
	var forgotten int64
	for _, table := range []string{StateTable, legacyStateTable} {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, pg.QuoteQualified(table)).Scan(&exists); err != nil {
			return 0, fmt.Errorf("snapshot: look up %s: %w", table, err)
		}
		if !exists {
			continue
		}
		if err := pg.CheckOwnTable(ctx, conn, table); err != nil {
			return 0, fmt.Errorf("snapshot: %w", err)
		}
		quoted := pg.QuoteQualified(table)
		tag, err := conn.Exec(ctx, `DELETE FROM `+quoted+` WHERE slot = $1 AND relation = ''`, slot)
		if err != nil {
			return 0, fmt.Errorf("snapshot: forget snapshots of %s: %w", slot, err)
		}
		if _, err := conn.Exec(ctx, `DELETE FROM `+quoted+` WHERE slot = $1`, slot); err != nil {
			return 0, fmt.Errorf("snapshot: forget snapshots of %s: %w", slot, err)
		}
		forgotten += tag.RowsAffected()
	}
	return forgotten, nil
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
