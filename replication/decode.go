package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"
)

// decoder turns pgoutput messages into Changes, keeping the relation cache and the open
// transaction. It is used by the stream goroutine only.
type decoder struct {
	rels    map[uint32]*Relation
	gens    map[uint32]int
	byName  map[string]uint32       // the ID of each schema.table in rels
	specs   map[string]RelationSpec // captured relations by schema.table
	cat     *catalog
	tracker *Tracker
	log     *slog.Logger

	tx  *Tx
	seq int
}

func newDecoder(specs map[string]RelationSpec, cat *catalog, tracker *Tracker, log *slog.Logger) *decoder {
	return &decoder{
		rels:    map[uint32]*Relation{},
		gens:    map[uint32]int{},
		byName:  map[string]uint32{},
		specs:   specs,
		cat:     cat,
		tracker: tracker,
		log:     log,
	}
}

// decode handles one pgoutput message that started at lsn, calling emit for each Change.
//
// A message the parsers cannot take (pglogrepl's panic on some truncated ones) becomes an
// error naming its LSN: the stream stops there without confirming it, instead of crashing.
func (d *decoder) decode(ctx context.Context, lsn pglogrepl.LSN, data []byte, emit func(*Change) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed pgoutput message %q of %d bytes at %s: %v", firstByte(data), len(data), lsn, r)
		}
	}()
	if len(data) == 0 {
		return errors.New("empty pgoutput message")
	}
	switch data[0] {
	case 'I', 'U', 'D':
		m, err := parseRow(data)
		if err != nil {
			return fmt.Errorf("parse pgoutput message at %s: %w", lsn, err)
		}
		op := OpInsert
		switch data[0] {
		case 'U':
			op = OpUpdate
		case 'D':
			op = OpDelete
		}
		return d.row(lsn, op, m.relID, m.oldKind, m.old, m.new, emit)
	}
	switch data[0] {
	case 'B': // Begin: final LSN, commit time, xid (pglogrepl.Parse allocates a message)
		if len(data) < 21 {
			return fmt.Errorf("begin message of %d bytes at %s, want 21", len(data), lsn)
		}
		return d.begin(lsn, binary.BigEndian.Uint32(data[17:]), pglogrepl.LSN(binary.BigEndian.Uint64(data[1:])),
			timeFromPG(int64(binary.BigEndian.Uint64(data[9:]))), emit)
	case 'C': // Commit: flags, commit LSN, end LSN, commit time
		if len(data) < 26 {
			return fmt.Errorf("commit message of %d bytes at %s, want 26", len(data), lsn)
		}
		return d.commit(lsn, pglogrepl.LSN(binary.BigEndian.Uint64(data[10:])), emit)
	}
	if data[0] == 'T' {
		// pglogrepl allocates the relation list before reading it: check the count it claims
		// against the bytes there are (Int32 count, Int8 options, Int32 per relation).
		if len(data) < 6 || uint64(len(data)) != 6+4*uint64(binary.BigEndian.Uint32(data[1:5])) {
			return fmt.Errorf("truncate message of %d bytes at %s: its relation count does not fit", len(data), lsn)
		}
	}
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("parse pgoutput message %q at %s: %w", data[0], lsn, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		return d.relation(ctx, m)

	case *pglogrepl.TypeMessage:
		d.cat.forget(m.DataType)
		return nil

	case *pglogrepl.OriginMessage:
		return nil

	case *pglogrepl.TruncateMessage:
		c := &Change{Op: OpTruncate, LSN: lsn, Cascade: m.Option&1 != 0, RestartIdentity: m.Option&2 != 0}
		for _, id := range m.RelationIDs {
			rel, ok := d.rels[id]
			if !ok {
				return fmt.Errorf("truncate at %s of relation %d that was never described", lsn, id)
			}
			if rel.Captured {
				c.Truncated = append(c.Truncated, rel)
			}
		}
		if len(c.Truncated) == 0 {
			return nil
		}
		return d.inTx(c, emit)

	case *pglogrepl.LogicalDecodingMessage:
		c := &Change{
			Op: OpMessage, LSN: lsn, Prefix: m.Prefix, Transactional: m.Transactional,
			Content: append([]byte(nil), m.Content...), // m.Content points into the receive buffer
		}
		if m.Transactional {
			return d.inTx(c, emit)
		}
		// A non-transactional message stands alone: it gets a transaction of its own, ended
		// just past it, so that confirming it never skips anything else.
		tx := &Tx{CommitLSN: lsn, EndLSN: lsn + 1, CommitTime: time.Now()}
		d.tracker.Begin(tx)
		c.Tx, c.Seq = tx, 1
		tx.Changes = 1
		tx.begin = Change{Op: OpBegin, Tx: tx, LSN: lsn}
		if err := emit(&tx.begin); err != nil {
			return err
		}
		if err := emit(c); err != nil {
			return err
		}
		tx.commit = Change{Op: OpCommit, Tx: tx, LSN: lsn}
		return emit(&tx.commit)
	}
	d.log.Debug("ignoring pgoutput message", "type", msg.Type().String(), "lsn", lsn.String())
	return nil
}

func (d *decoder) begin(lsn pglogrepl.LSN, xid uint32, final pglogrepl.LSN, at time.Time, emit func(*Change) error) error {
	if d.tx != nil {
		return fmt.Errorf("begin of xid %d at %s inside xid %d", xid, lsn, d.tx.XID)
	}
	tx := &Tx{XID: xid, CommitLSN: final, CommitTime: at}
	d.tx = tx
	d.tracker.Begin(tx)
	d.seq = 0
	tx.begin = Change{Op: OpBegin, Tx: tx, LSN: lsn}
	return emit(&tx.begin)
}

func (d *decoder) commit(lsn, end pglogrepl.LSN, emit func(*Change) error) error {
	if d.tx == nil {
		return fmt.Errorf("commit at %s without begin", lsn)
	}
	tx := d.tx
	tx.EndLSN = end
	d.tx = nil
	tx.commit = Change{Op: OpCommit, Tx: tx, LSN: lsn}
	return emit(&tx.commit)
}

// timeFromPG is a timestamp of the protocol (microseconds since 2000-01-01 UTC) as pglogrepl
// reads it.
func timeFromPG(us int64) time.Time {
	const y2k = 946684800 * 1000000 // microseconds from the Unix epoch to 2000-01-01
	return time.Unix(0, (y2k+us)*1000)
}

func (d *decoder) inTx(c *Change, emit func(*Change) error) error {
	if d.tx == nil {
		return fmt.Errorf("%s at %s outside a transaction", c.Op, c.LSN)
	}
	d.seq++
	c.Tx, c.Seq = d.tx, d.seq
	d.tx.Changes++
	return emit(c)
}

func (d *decoder) row(lsn pglogrepl.LSN, op Op, relID uint32, oldKind uint8, old, new []Datum, emit func(*Change) error) error {
	rel, ok := d.rels[relID]
	if !ok {
		return fmt.Errorf("%s at %s for relation %d that was never described", op, lsn, relID)
	}
	if !rel.Captured {
		return nil
	}
	c := &Change{Op: op, LSN: lsn, Rel: rel, OldKind: oldKind, Old: old, New: new}
	return d.inTx(c, emit)
}

func (d *decoder) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	d.gens[m.RelationID]++
	rel := &Relation{
		ID:              m.RelationID,
		Schema:          m.Namespace,
		Table:           m.RelationName,
		ReplicaIdentity: m.ReplicaIdentity,
		Columns:         make([]Column, len(m.Columns)),
		Generation:      d.gens[m.RelationID],
	}
	spec, captured := d.specs[rel.QualifiedName()]
	rel.Captured = captured
	for i, c := range m.Columns {
		rel.Columns[i] = Column{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, IdentityKey: c.Flags&1 != 0}
	}
	d.forgetNameHolder(rel)
	if !captured {
		d.rels[m.RelationID] = rel
		d.log.Debug("published relation is not in relation_configs; its changes are not captured", "relation", rel.QualifiedName())
		return nil
	}
	info, err := d.cat.table(ctx, m.RelationID)
	if err != nil {
		return err
	}
	for i := range rel.Columns {
		col := &rel.Columns[i]
		ci := info.columns[col.Name]
		col.NotNull, col.Default = ci.notNull, ci.def
		if col.Type, err = d.cat.typ(ctx, col.TypeOID); err != nil {
			return fmt.Errorf("relation %s column %s: %w", rel.QualifiedName(), col.Name, err)
		}
	}
	if rel.Key, err = keyColumns(rel, spec, info.pkey); err != nil {
		return err
	}
	d.rels[m.RelationID] = rel
	d.log.Info("relation described", "relation", rel.QualifiedName(), "generation", rel.Generation,
		"columns", len(rel.Columns), "replica_identity", string(rel.ReplicaIdentity))
	return nil
}

// forgetNameHolder drops the relation that had rel's name under another ID: a table dropped
// and created again (or renamed away, whose next change brings a Relation message first, as
// pgoutput sends one after any change to a relation's definition). Without this, every table
// created and dropped under a name would stay.
func (d *decoder) forgetNameHolder(rel *Relation) {
	name := rel.QualifiedName()
	if id, ok := d.byName[name]; ok && id != rel.ID {
		if old := d.rels[id]; old != nil && old.QualifiedName() == name {
			delete(d.rels, id)
			delete(d.gens, id)
		}
	}
	if old := d.rels[rel.ID]; old != nil && old.QualifiedName() != name && d.byName[old.QualifiedName()] == rel.ID {
		delete(d.byName, old.QualifiedName()) // renamed
	}
	d.byName[name] = rel.ID
}

// abandonOpenTx forgets a transaction that was cut by a broken connection; the server sends it
// again from its Begin.
func (d *decoder) abandonOpenTx() {
	if d.tx != nil {
		d.tracker.abandon(d.tx.txn)
		d.tx = nil
	}
}

func firstByte(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}
