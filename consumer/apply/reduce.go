package apply

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/procon-cdc/procon/consumer/event"
)

// batch is one Apply's work: the events reduced per key into segments (split by truncates),
// then executed.
type batch struct {
	a        *Applier
	tbl      *tableState
	sp       pgx.Tx // for DDL found while reducing
	softMode bool
	ddl      bool // columns were added
	segments []*segment
	stats    Stats
}

// segment is the part of a batch up to a truncate that deletes.
type segment struct {
	keys     []*keyState // in order of first appearance
	byKey    map[string]*keyState
	truncate bool // a truncate ends the segment
}

// existence is what the batch knows of a key's row.
type existence int8

const (
	unknown existence = iota // as in the database before the batch
	present                  // written by an earlier event of the batch
	absent                   // deleted by an earlier event of the batch (hard deletes)
)

// keyState is the reduced effect of a segment's events on one key.
type keyState struct {
	key    []pgtype.Text
	first  int // index of the first event of the key
	known  existence
	del    bool  // a delete (or soft delete) statement must reach the row as it was before the batch
	weight int32 // deletes whose count depends on whether that row exists
	// deleted: (soft deletes) the last event deleted the key.
	deleted bool
	up      *row // the row to upsert, nil when none
}

// row is the values an upsert writes, by column index.
type row struct {
	vals []colVal
}

type colVal struct {
	v         pgtype.Text
	set       bool  // written
	unchanged bool  // an unchanged-TOAST placeholder: not written unless an earlier event gives it
	explicit  bool  // set by keys_mapping, which wins over a field of the column's own name
	src       int32 // event index the value comes from
}

func (r *row) at(ci int) *colVal {
	if ci >= len(r.vals) {
		r.vals = append(r.vals, make([]colVal, ci+1-len(r.vals))...)
	}
	return &r.vals[ci]
}

// mergeFrom fills the columns r does not write with those an earlier upsert of the key wrote.
func (r *row) mergeFrom(base *row) {
	for ci := range base.vals {
		if b := &base.vals[ci]; b.set {
			if c := r.at(ci); !c.set {
				*c = *b
			}
		}
	}
}

func newSegment() *segment { return &segment{byKey: map[string]*keyState{}} }

// reduce reads the events into segments, counting what it can know without the database.
func (b *batch) reduce(ctx context.Context, events []*event.Event) error {
	cur := newSegment()
	for i, ev := range events {
		if err := b.event(ctx, cur, i, ev); err != nil {
			return err
		}
		if cur.truncate {
			b.segments = append(b.segments, cur)
			cur = newSegment()
		}
	}
	if len(cur.keys) > 0 {
		b.segments = append(b.segments, cur)
	}
	return nil
}

func (b *batch) event(ctx context.Context, seg *segment, i int, ev *event.Event) error {
	if ev.Tombstone {
		b.stats.Ignored++
		return nil
	}
	switch ev.Op {
	case event.Truncate:
		if b.a.e.OnTruncate != TruncateDelete {
			b.stats.Ignored++
			b.a.ignoreTruncate(ctx)
			return nil
		}
		b.stats.Truncated++
		seg.truncate = true
		return nil
	case event.Create, event.Read:
		if ev.After == nil {
			return &RecordError{Index: i, Err: errors.New("a create has no after row")}
		}
		key, err := b.keyOf(i, ev.After, ev.Key)
		if err != nil {
			return err
		}
		r, err := b.row(ctx, i, ev.After, opCreate, key)
		if err != nil {
			return err
		}
		b.upsert(seg, i, key, r)
	case event.Update:
		if ev.After == nil {
			return &RecordError{Index: i, Err: errors.New("an update has no after row")}
		}
		newKey, err := b.keyOf(i, ev.After, ev.Key)
		if err != nil {
			return err
		}
		oldKey, err := b.keyOf(i, ev.Before, ev.After, ev.Key)
		if err != nil {
			return err
		}
		r, err := b.row(ctx, i, ev.After, opUpdate, newKey)
		if err != nil {
			return err
		}
		if keyString(oldKey) != keyString(newKey) {
			b.delete(seg, i, oldKey)
		}
		b.upsert(seg, i, newKey, r)
	case event.Delete:
		key, err := b.keyOf(i, ev.Before, ev.After, ev.Key)
		if err != nil {
			return err
		}
		b.delete(seg, i, key)
	default:
		return &RecordError{Index: i, Err: fmt.Errorf("unknown operation %q", rune(ev.Op))}
	}
	return nil
}

func (seg *segment) state(i int, key []pgtype.Text) *keyState {
	s := keyString(key)
	k, ok := seg.byKey[s]
	if !ok {
		k = &keyState{key: key, first: i}
		seg.byKey[s] = k
		seg.keys = append(seg.keys, k)
	}
	return k
}

func (b *batch) upsert(seg *segment, i int, key []pgtype.Text, r *row) {
	k := seg.state(i, key)
	if k.up != nil {
		r.mergeFrom(k.up)
	}
	k.up, k.known, k.deleted = r, present, false
	b.stats.Upserted++
}

func (b *batch) delete(seg *segment, i int, key []pgtype.Text) {
	k := seg.state(i, key)
	switch k.known {
	case present:
		if b.softMode {
			b.stats.SoftDeleted++
		} else {
			b.stats.Deleted++
		}
	case absent:
		b.stats.MissingDeletes++
	case unknown:
		k.weight++
		k.del = true
	}
	if b.softMode {
		// The row stays, marked: a later upsert of the key updates it.
		k.deleted = true
		return
	}
	k.del, k.up, k.known = true, nil, absent
}

// keyString is a map key for a master key's values.
func keyString(key []pgtype.Text) string {
	var sb strings.Builder
	for _, v := range key {
		if !v.Valid {
			sb.WriteString("-")
			continue
		}
		sb.WriteString(strconv.Itoa(len(v.String)))
		sb.WriteByte(':')
		sb.WriteString(v.String)
	}
	return sb.String()
}

// keyOf reads the master key from the first of rows that has each field (non-null).
func (b *batch) keyOf(i int, rows ...*event.Row) ([]pgtype.Text, error) {
	key := make([]pgtype.Text, len(b.a.e.MasterKey))
	for j, kc := range b.a.e.MasterKey {
		path := strings.Split(kc.Field, ".")
		col := &b.tbl.cols[b.tbl.key[j]]
		found := false
		for _, r := range rows {
			v, ok := rowPath(r, path)
			if !ok || v.Raw == nil || v.Unchanged() {
				continue
			}
			text, null, err := v.Text(col.typ)
			if err != nil {
				return nil, &RecordError{Index: i, Err: fmt.Errorf("master key field %s as %s: %w", kc.Field, col.typ, err)}
			}
			if null {
				continue
			}
			key[j] = pgtype.Text{String: text, Valid: true}
			found = true
			break
		}
		if !found {
			return nil, &RecordError{Index: i, Err: fmt.Errorf("no value for master key field %s (column %s)", kc.Field, kc.Column)}
		}
	}
	return key, nil
}

// row reads the values an upsert of src writes.
func (b *batch) row(ctx context.Context, i int, src *event.Row, op opKind, key []pgtype.Text) (*row, error) {
	p := &b.a.plans[op]
	r := &row{vals: make([]colVal, len(b.tbl.cols))}
	for _, f := range src.Fields {
		if p.drop[f.Name] {
			continue
		}
		col, explicit := p.mapped[f.Name]
		if !explicit {
			col = f.Name
		}
		if err := b.set(ctx, r, i, f.Name, col, f.Value, explicit); err != nil {
			return nil, err
		}
	}
	for _, n := range p.nested {
		if v, ok := rowPath(src, n.path); ok {
			if err := b.set(ctx, r, i, strings.Join(n.path, "."), n.column, v, true); err != nil {
				return nil, err
			}
		}
	}
	for j, ci := range b.tbl.key {
		*r.at(ci) = colVal{v: key[j], set: true, src: int32(i)}
	}
	if b.tbl.soft >= 0 {
		if c := r.at(b.tbl.soft); !c.set && !c.unchanged {
			// An upserted row is not deleted.
			*c = colVal{v: pgtype.Text{String: "false", Valid: b.tbl.softKind == softBool}, set: true, src: int32(i)}
		}
	}
	return r, nil
}

// set reads one field's value into its column.
func (b *batch) set(ctx context.Context, r *row, i int, field, col string, v event.Value, explicit bool) error {
	if b.tbl.generated[col] {
		b.a.ignoreField(field, col, "its column is generated")
		return nil
	}
	ci, ok := b.tbl.index[col]
	if !ok {
		if b.a.keyField[field] {
			return nil // read for the master key only
		}
		if !b.a.e.AddColumns {
			b.a.ignoreField(field, col, "the table has no such column (set add_columns to add it)")
			return nil
		}
		if err := b.addColumn(ctx, col, v, field); err != nil {
			return err
		}
		if ci, ok = b.tbl.index[col]; !ok {
			return fmt.Errorf("apply: %s: column %q was added but is not in the catalog", b.a.e.name(), col)
		}
	}
	c := r.at(ci)
	if c.explicit && !explicit {
		return nil
	}
	if v.Unchanged() {
		*c = colVal{unchanged: true, explicit: explicit}
		return nil
	}
	typ := b.tbl.cols[ci].typ
	text, null, err := v.Text(typ)
	if err != nil {
		return &RecordError{Index: i, Err: fmt.Errorf("field %s for column %s (%s): %w", field, col, typ, err)}
	}
	*c = colVal{v: pgtype.Text{String: text, Valid: !null}, set: true, explicit: explicit, src: int32(i)}
	return nil
}

func (b *batch) addColumn(ctx context.Context, col string, v event.Value, field string) error {
	if err := b.a.addColumn(ctx, b.sp, col, v, field); err != nil {
		return err
	}
	b.ddl = true
	b.a.markReload()
	tbl, err := b.a.readTable(ctx, b.sp)
	if err != nil {
		return err
	}
	b.tbl = tbl
	b.a.mu.Lock()
	b.a.tbl = tbl
	b.a.mu.Unlock()
	return nil
}
