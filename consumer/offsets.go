package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/txid"
)

// OffsetsSchema and OffsetsTable keep the consumer's position in the target database.
const (
	OffsetsSchema = "procon"
	OffsetsTable  = OffsetsSchema + ".procon_consumer_offsets"
)

// OffsetsSQL creates OffsetsTable; consume creates it when it is missing, and procon-cdc
// init-sql prints it for a database where the consumer's role may not create a schema.
const OffsetsSQL = `-- The consuming side's position: for each consumer group and partition, the offset of the
-- next record to apply, written in the same transaction as the effects of the records before
-- it. The position of the last applied procon-cdc record lets a consumer recognise records
-- an at-least-once producer sends again.
CREATE SCHEMA IF NOT EXISTS procon;
CREATE TABLE IF NOT EXISTS procon.procon_consumer_offsets (
    consumer_group text   NOT NULL,
    topic          text   NOT NULL,
    partition      int    NOT NULL,
    next_offset    bigint NOT NULL,
    last_source    text,
    last_tx        text,
    last_seq       int,
    updated_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
`

// offsets reads and writes OffsetsTable for one consumer group.
type offsets struct {
	pool  *pgxpool.Pool
	group string
}

// ensure creates OffsetsTable when it is missing and refuses one other roles could tamper
// with (a trigger there would run in every apply transaction).
func (o *offsets) ensure(ctx context.Context) error {
	var exists bool
	if err := o.pool.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, OffsetsTable).Scan(&exists); err != nil {
		return fmt.Errorf("look up %s: %w", OffsetsTable, err)
	}
	if !exists {
		if _, err := pg.CheckOwnSchema(ctx, o.pool, OffsetsSchema); err != nil {
			return err
		}
		_, err := o.pool.Exec(ctx, OffsetsSQL)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == "42P07" || pgErr.Code == "42P06"): // created concurrently
		default:
			return fmt.Errorf("create %s (run the SQL of procon-cdc init-sql as a role that may, or GRANT CREATE ON DATABASE to the consumer's role): %w", OffsetsTable, err)
		}
	}
	if _, err := pg.CheckOwnSchema(ctx, o.pool, OffsetsSchema); err != nil {
		return err
	}
	return pg.CheckOwnTable(ctx, o.pool, OffsetsTable)
}

// stored is a partition's row of OffsetsTable.
type stored struct {
	next int64 // -1: nothing applied yet
	last position
}

// position is the last applied record that carried procon-cdc's headers.
type position struct {
	source string
	tx     txid.ID
	seq    int
	valid  bool
}

// repeats reports whether a record with these headers repeats one at or before p: an
// at-least-once producer sends a transaction again after a crash. In a partition, the records
// of an earlier transaction all come before those of a later one, and within a streamed
// transaction they come in seq order; the rows of an initial snapshot share one transaction
// but are written by parallel readers, out of seq order, so for them (snapshot reads) only an
// earlier transaction counts.
func (p position) repeats(source string, k txid.Key, snapshotRead bool) bool {
	if !p.valid || source != p.source || k.Tx.Instance() != p.tx.Instance() {
		return false
	}
	switch a, b := k.Tx.CommitLSN(), p.tx.CommitLSN(); {
	case a < b:
		return true
	case a > b:
		return false
	}
	return !snapshotRead && k.Seq <= p.seq
}

// after is p moved past a record with these headers.
func (p position) after(source string, k txid.Key) position {
	if p.valid && source == p.source && k.Tx.Instance() == p.tx.Instance() {
		switch a, b := k.Tx.CommitLSN(), p.tx.CommitLSN(); {
		case a < b:
			return p
		case a == b && k.Seq <= p.seq:
			return p
		}
	}
	return position{source: source, tx: k.Tx, seq: k.Seq, valid: true}
}

// load returns the stored positions of partitions, inserting a row for each that has none, so
// that every later write is a compare-and-set on an existing row.
func (o *offsets) load(ctx context.Context, topic string, partitions []int32) (map[int32]stored, error) {
	if _, err := o.pool.Exec(ctx, `INSERT INTO `+OffsetsTable+` (consumer_group, topic, partition, next_offset)
		SELECT $1, $2, p, -1 FROM pg_catalog.unnest($3::pg_catalog.int4[]) AS p ON CONFLICT DO NOTHING`, o.group, topic, partitions); err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	rows, err := o.pool.Query(ctx, `SELECT partition, next_offset, last_source, last_tx, last_seq FROM `+OffsetsTable+`
		WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3)`, o.group, topic, partitions)
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	out := map[int32]stored{}
	for rows.Next() {
		var (
			part    int32
			s       stored
			src, tx *string
			seq     *int32
		)
		if err := rows.Scan(&part, &s.next, &src, &tx, &seq); err != nil {
			return nil, fmt.Errorf("offsets of %s: %w", topic, err)
		}
		if src != nil && tx != nil && seq != nil {
			id, err := txid.Parse(*tx)
			if err != nil {
				return nil, fmt.Errorf("%s row of %s[%d]: last_tx: %w", OffsetsTable, topic, part, err)
			}
			s.last = position{source: *src, tx: id, seq: int(*seq), valid: true}
		}
		out[part] = s
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	return out, nil
}

// errMoved: the stored offset is not the one this member started from; another member
// applied records of the partition (it was taken away from this one).
var errMoved = errors.New("the partition's stored offset moved: another consumer applied its records")

// store moves a partition's row from "from" to "to" inside tx, only if it still holds from.
func (o *offsets) store(ctx context.Context, tx pgx.Tx, topic string, partition int32, from, to stored) error {
	var src, txt *string
	var seq *int32
	if to.last.valid {
		s, t, q := to.last.source, to.last.tx.String(), int32(to.last.seq)
		src, txt, seq = &s, &t, &q
	}
	tag, err := tx.Exec(ctx, `UPDATE `+OffsetsTable+` SET next_offset = $4, last_source = $5, last_tx = $6, last_seq = $7, updated_at = pg_catalog.now()
		WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $8`,
		o.group, topic, partition, to.next, src, txt, seq, from.next)
	if err != nil {
		return fmt.Errorf("store the offset of %s[%d]: %w", topic, partition, err)
	}
	if tag.RowsAffected() != 1 {
		return errMoved
	}
	return nil
}

// current reads a partition's stored offset (after an ambiguous commit or errMoved).
func (o *offsets) current(ctx context.Context, topic string, partition int32) (stored, error) {
	m, err := o.load(ctx, topic, []int32{partition})
	if err != nil {
		return stored{}, err
	}
	return m[partition], nil
}
