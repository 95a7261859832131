package replication

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
)

// DescribeTable reads a captured relation's current shape over conn, as Stream.Describe does,
// for readers that run beside the stream (snapshots). It also returns the indexes in
// Columns of the table's primary key, which orders keyset pagination; when the table has no
// primary key they are the record key (the configured pkey), and nil for a keyless relation.
func DescribeTable(ctx context.Context, conn *pgx.Conn, name string, spec RelationSpec) (rel *Relation, order []int, err error) {
	s := &Stream{cfg: Config{Relations: map[string]RelationSpec{name: spec}}, sql: conn, dec: &decoder{cat: newCatalog(conn)}}
	if rel, err = s.Describe(ctx, name); err != nil {
		return nil, nil, err
	}
	pk, err := s.dec.cat.primaryKey(ctx, rel.ID)
	if err != nil {
		return nil, nil, err
	}
	if len(pk) == 0 {
		return rel, rel.Key, nil
	}
	order = make([]int, len(pk))
	for i, col := range pk {
		if order[i] = rel.ColumnIndex(col); order[i] < 0 {
			return nil, nil, fmt.Errorf("relation %s: primary key column %q is not a published column", name, col)
		}
	}
	return rel, order, nil
}

// SlotInfo is what pg_replication_slots says of a slot, for deciding whether to snapshot.
type SlotInfo struct {
	Exists    bool
	Plugin    string
	Database  string
	ActivePID int32
	// Lost is set when the server no longer keeps the WAL the slot needs (wal_status 'lost'):
	// streaming from it would fail.
	Lost bool
	// Confirmed is the slot's confirmed_flush_lsn as text ("" when unknown).
	Confirmed string
}

// confirmedLSN is Confirmed as an LSN (0 when unknown).
func (s SlotInfo) confirmedLSN(slot string) (pglogrepl.LSN, error) {
	if s.Confirmed == "" {
		return 0, nil
	}
	lsn, err := pglogrepl.ParseLSN(s.Confirmed)
	if err != nil {
		return 0, fmt.Errorf("slot %s: confirmed_flush_lsn %q: %w", slot, s.Confirmed, err)
	}
	return lsn, nil
}

// ReadSlot reads the state of a slot; a missing slot is SlotInfo{Exists: false}.
func ReadSlot(ctx context.Context, conn *pgx.Conn, slot string) (SlotInfo, error) {
	var s SlotInfo
	var plugin, database, walStatus, confirmed *string
	var pid *int32
	err := conn.QueryRow(ctx, `SELECT plugin, database, active_pid, wal_status, confirmed_flush_lsn::text
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, slot).Scan(&plugin, &database, &pid, &walStatus, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read slot %s: %w", slot, err)
	}
	s.Exists = true
	if plugin != nil {
		s.Plugin = *plugin
	}
	if database != nil {
		s.Database = *database
	}
	if pid != nil {
		s.ActivePID = *pid
	}
	s.Lost = walStatus != nil && *walStatus == "lost"
	if confirmed != nil {
		s.Confirmed = *confirmed
	}
	return s, nil
}
