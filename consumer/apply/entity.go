package apply

import (
	"fmt"
	"slices"
	"strings"
)

// Entity is what one topic's events do to one table (an entry of the configuration's
// entities list).
type Entity struct {
	Topic string
	// Table is "schema.table" (split at the first dot) or "table", which means public.table.
	Table string
	// MasterKey matches local columns to event fields. The key is read from after on create
	// and read, from before on update and delete; when that row lacks a field (or holds a
	// null), from after, then from the record key.
	MasterKey []KeyColumn
	// Mapping is keys_mapping: which event field writes which column.
	Mapping Mapping
	// SoftDelete is a column set on delete instead of deleting the row ("" deletes): true for a
	// boolean column, the transaction's time for timestamp, timestamptz and date columns. Every
	// upsert sets it back (false, null), unless a field maps to it.
	SoftDelete string
	// OnTruncate is "ignore" (the default: logged) or "delete" (every row of the table is
	// deleted, or soft deleted).
	OnTruncate string
	// CreateTable creates the table from the first event's schema when it is missing (events
	// need schemas: JSON with schemas, or Avro); its primary key is the master key.
	CreateTable bool
	// AddColumns adds a column when an event has a field with no column (the field needs its
	// schema); without it such fields are ignored, logged once per field.
	AddColumns bool
}

// KeyColumn is one column of a master key and the event field it is read from. Field may be a
// dotted path into nested structs.
type KeyColumn struct{ Column, Field string }

// Mapping is keys_mapping: an event field writes the column of its own name unless mapped.
type Mapping struct {
	// Fields maps event fields (a dotted path reads a nested field: "meta.plan") to columns.
	Fields map[string]string
	// OnCreate and OnUpdate are merged over Fields for creates (and reads) and for updates.
	OnCreate, OnUpdate map[string]string
	// Drop lists fields never written; DropOnCreate and DropOnUpdate those not written by
	// creates (and reads) or by updates.
	Drop, DropOnCreate, DropOnUpdate []string
}

// Truncate actions.
const (
	TruncateIgnore = "ignore"
	TruncateDelete = "delete"
)

// opKind selects the per-operation part of a Mapping.
type opKind int

const (
	opCreate opKind = iota
	opUpdate
)

// fieldPlan is a Mapping resolved for one operation.
type fieldPlan struct {
	drop   map[string]bool   // top-level fields never written
	mapped map[string]string // top-level field -> column
	nested []nestedField     // dotted paths -> column
}

type nestedField struct {
	path   []string
	column string
}

func (e *Entity) name() string { return fmt.Sprintf("entity %s → %s", e.Topic, e.Table) }

// plans checks the mapping and resolves it for creates and updates.
func (e *Entity) plans() ([2]fieldPlan, error) {
	var plans [2]fieldPlan
	keyField := map[string]string{}
	for _, k := range e.MasterKey {
		keyField[k.Column] = k.Field
	}
	for op, perOp := range [2]struct {
		name string
		over map[string]string
		drop []string
	}{{"on_create", e.Mapping.OnCreate, e.Mapping.DropOnCreate}, {"on_update", e.Mapping.OnUpdate, e.Mapping.DropOnUpdate}} {
		merged := map[string]string{}
		for f, c := range e.Mapping.Fields {
			merged[f] = c
		}
		for f, c := range perOp.over {
			merged[f] = c
		}
		p := fieldPlan{drop: map[string]bool{}, mapped: map[string]string{}}
		for _, f := range slices.Concat(e.Mapping.Drop, perOp.drop) {
			p.drop[f] = true
		}
		byColumn := map[string]string{}
		fields := make([]string, 0, len(merged))
		for f := range merged {
			fields = append(fields, f)
		}
		slices.Sort(fields)
		for _, f := range fields {
			col := merged[f]
			path := strings.Split(f, ".")
			if col == "" || slices.Contains(path, "") {
				return plans, fmt.Errorf("apply: %s: keys_mapping (%s) maps %q to %q: both need a name, and a path no empty part", e.name(), perOp.name, f, col)
			}
			if other, dup := byColumn[col]; dup {
				return plans, fmt.Errorf("apply: %s: keys_mapping (%s) maps both %q and %q to column %q: map one of them elsewhere or drop it", e.name(), perOp.name, other, f, col)
			}
			if kf, isKey := keyField[col]; isKey && kf != f {
				return plans, fmt.Errorf("apply: %s: keys_mapping (%s) maps %q to %q, a master key column, which is read from field %q", e.name(), perOp.name, f, col, kf)
			}
			byColumn[col] = f
			if p.drop[f] {
				continue
			}
			if len(path) == 1 {
				p.mapped[f] = col
			} else {
				p.nested = append(p.nested, nestedField{path: path, column: col})
			}
		}
		plans[op] = p
	}
	return plans, nil
}

// validate checks what does not depend on the table.
func (e *Entity) validate() error {
	if e.Table == "" {
		return fmt.Errorf("apply: entity of topic %s: table is empty", e.Topic)
	}
	if len(e.MasterKey) == 0 {
		return fmt.Errorf("apply: %s: master_key is empty: name the column(s) that identify a row", e.name())
	}
	seen := map[string]bool{}
	for _, k := range e.MasterKey {
		if k.Column == "" || k.Field == "" || slices.Contains(strings.Split(k.Field, "."), "") {
			return fmt.Errorf("apply: %s: master_key [%q, %q] needs a column and a field", e.name(), k.Column, k.Field)
		}
		if seen[k.Column] {
			return fmt.Errorf("apply: %s: master_key names column %q twice", e.name(), k.Column)
		}
		seen[k.Column] = true
	}
	if seen[e.SoftDelete] {
		return fmt.Errorf("apply: %s: soft_delete column %q is part of the master key", e.name(), e.SoftDelete)
	}
	switch e.OnTruncate {
	case "", TruncateIgnore, TruncateDelete:
	default:
		return fmt.Errorf("apply: %s: on_truncate is %q: use %q or %q", e.name(), e.OnTruncate, TruncateIgnore, TruncateDelete)
	}
	return nil
}

// splitTable returns the schema and table of e.Table.
func (e *Entity) splitTable() (schema, table string) {
	if s, t, ok := strings.Cut(e.Table, "."); ok {
		return s, t
	}
	return "public", e.Table
}
