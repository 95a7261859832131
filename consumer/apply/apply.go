package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/consumer/event"
)

// Applier applies the events of one entity's topic to its table.
type Applier struct {
	e        Entity
	log      *slog.Logger
	plans    [2]fieldPlan    // by opKind
	quoted   string          // "schema"."table"
	regclass string          // the same, as to_regclass reads it
	keyField map[string]bool // master key fields, not logged when they have no column of their own

	mu      sync.Mutex
	tbl     *tableState
	reload  bool            // DDL ran: read the table again before the next batch
	ignored map[string]bool // fields with no column already logged
	// truncateLogged: an ignored truncate was logged at warn level; the next are at debug.
	truncateLogged bool
}

// Stats counts what a batch did, as applying its events one at a time would count it.
type Stats struct {
	Upserted       int // creates, reads and updates (a key-changing update counts here and as a delete)
	Deleted        int // deletes that removed a row
	SoftDeleted    int // deletes that marked a row
	MissingDeletes int // deletes that found no row
	Truncated      int // truncates applied (on_truncate: delete)
	Ignored        int // tombstones and ignored truncates
}

// RecordError is returned (wrapped) by Apply when events[Index] can never apply: its mapping
// fails, it lacks a master key field, or one of its values cannot be read as its column's
// type. Apply has rolled its effects back; the caller sets the record aside (dead-letter
// topic) and applies the others.
type RecordError struct {
	Index int
	Err   error
}

func (e *RecordError) Error() string { return fmt.Sprintf("event %d of the batch: %v", e.Index, e.Err) }

func (e *RecordError) Unwrap() error { return e.Err }

// New checks the entity against its table: the master key columns must exist and carry a
// primary key or unique index of exactly those columns, mapped columns must exist (unless
// e.AddColumns), and the soft delete column must be a boolean, timestamp or date. A missing
// table is an error unless e.CreateTable, in which case the first Apply creates it. log may be
// nil.
func New(ctx context.Context, db Querier, e Entity, log *slog.Logger) (*Applier, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	plans, err := e.plans()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	schema, table := e.splitTable()
	quoted := pgx.Identifier{schema, table}.Sanitize()
	a := &Applier{e: e, log: log, plans: plans, quoted: quoted, regclass: quoted, keyField: map[string]bool{}, ignored: map[string]bool{}}
	for _, k := range e.MasterKey {
		a.keyField[k.Field] = true
	}
	if a.tbl, err = a.readTable(ctx, db); err != nil {
		return nil, err
	}
	return a, nil
}

// Apply applies a batch of events (of one partition, in offset order) in tx, rolled back to a
// savepoint on error. See [RecordError] for records that can never apply. Truncates and
// tombstones may appear anywhere in the batch.
func (a *Applier) Apply(ctx context.Context, tx pgx.Tx, events []*event.Event) (Stats, error) {
	if len(events) == 0 {
		return Stats{}, nil
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("apply: %s: savepoint: %w", a.e.name(), err)
	}
	stats, err := a.apply(ctx, tx, sp, events)
	if err != nil {
		if rbErr := sp.Rollback(ctx); rbErr != nil && !errors.Is(rbErr, pgx.ErrTxClosed) {
			err = errors.Join(err, fmt.Errorf("apply: %s: roll back to the savepoint: %w", a.e.name(), rbErr))
		}
		return Stats{}, err
	}
	if err := sp.Commit(ctx); err != nil {
		return Stats{}, fmt.Errorf("apply: %s: release the savepoint: %w", a.e.name(), err)
	}
	return stats, nil
}

func (a *Applier) apply(ctx context.Context, tx, sp pgx.Tx, events []*event.Event) (Stats, error) {
	tbl, err := a.table(ctx, sp, events)
	if err != nil {
		return Stats{}, err
	}
	b := &batch{a: a, tbl: tbl, sp: sp, softMode: a.e.SoftDelete != ""}
	if !tbl.exists {
		// The table is created at the first batch with a row; before it, tombstones and
		// truncates have nothing to do.
		var st Stats
		for _, ev := range events {
			switch {
			case ev.Tombstone || (ev.Op == event.Truncate && a.e.OnTruncate != TruncateDelete):
				st.Ignored++
			case ev.Op == event.Truncate:
				st.Truncated++
			default:
				return Stats{}, fmt.Errorf("apply: %s: table %s is missing and the batch gave no row to create it from", a.e.name(), a.e.Table)
			}
		}
		return st, nil
	}
	if err := b.reduce(ctx, events); err != nil {
		return Stats{}, err
	}
	run := sp
	if b.ddl {
		// Keep the DDL when a statement fails, so the culprit can be searched with it.
		if run, err = sp.Begin(ctx); err != nil {
			return Stats{}, fmt.Errorf("apply: %s: savepoint: %w", a.e.name(), err)
		}
	}
	err = b.execute(ctx, run)
	var de *dataError
	if !errors.As(err, &de) {
		if err != nil {
			return Stats{}, err
		}
		if run != sp {
			if err := run.Commit(ctx); err != nil {
				return Stats{}, fmt.Errorf("apply: %s: release the savepoint: %w", a.e.name(), err)
			}
		}
		return b.stats, nil
	}
	// A value the server could not read: find its record. Probes run in savepoints under
	// the last one that has no failed statement.
	if rbErr := run.Rollback(ctx); rbErr != nil {
		return Stats{}, errors.Join(err, rbErr)
	}
	parent := sp
	if run == sp {
		parent = tx
	}
	index, findErr := b.culprit(ctx, parent, de.stmt)
	if findErr != nil {
		return Stats{}, errors.Join(err, findErr)
	}
	if index < 0 {
		return Stats{}, err
	}
	return Stats{}, &RecordError{Index: index, Err: de.err}
}

// table returns the table's state for a batch: read again after DDL, and created when
// missing.
func (a *Applier) table(ctx context.Context, tx pgx.Tx, events []*event.Event) (*tableState, error) {
	a.mu.Lock()
	tbl, reload := a.tbl, a.reload
	a.reload = false
	a.mu.Unlock()
	if !reload && tbl.exists {
		return tbl, nil
	}
	tbl, err := a.readTable(ctx, tx)
	if err != nil {
		return nil, err
	}
	if !tbl.exists {
		if err := a.createTable(ctx, tx, events); err != nil {
			return nil, err
		}
		a.markReload()
		if tbl, err = a.readTable(ctx, tx); err != nil {
			return nil, err
		}
	}
	a.mu.Lock()
	a.tbl = tbl
	a.mu.Unlock()
	return tbl, nil
}

// markReload makes the next batch read the table again: DDL in a transaction may still roll
// back.
func (a *Applier) markReload() {
	a.mu.Lock()
	a.reload = true
	a.mu.Unlock()
}

// ignoreField logs, once per field, that a field has no column to write.
func (a *Applier) ignoreField(field, column, why string) {
	a.mu.Lock()
	seen := a.ignored[field]
	a.ignored[field] = true
	a.mu.Unlock()
	if !seen {
		a.log.Warn("ignoring an event field", "topic", a.e.Topic, "table", a.e.Table, "field", field, "column", column, "reason", why)
	}
}

// ignoreTruncate logs an ignored truncate: the first at warn level, the next at debug level
// (on_truncate: ignore asks for them all to be ignored).
func (a *Applier) ignoreTruncate(ctx context.Context) {
	a.mu.Lock()
	logged := a.truncateLogged
	a.truncateLogged = true
	a.mu.Unlock()
	lvl := slog.LevelWarn
	if logged {
		lvl = slog.LevelDebug
	}
	a.log.Log(ctx, lvl, "ignoring a truncate (on_truncate: ignore); the next are logged at debug level",
		"topic", a.e.Topic, "table", a.e.Table)
}
