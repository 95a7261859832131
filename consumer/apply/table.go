package apply

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/consumer/event"
)

// Querier runs a query: a *pgx.Conn, a pgx.Tx or a *pgxpool.Pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// column is a writable column of the target table.
type column struct {
	name string
	// typ is format_type(atttypid, atttypmod), what event.Value.Text reads a value for.
	typ string
	// cast is format_type(atttypid, -1): the type a text value is cast to, without its
	// modifier, which the column's assignment then applies (bpchar, not character, which
	// would mean character(1)).
	cast string
}

// softKind is the type family of the soft delete column.
type softKind int

const (
	softNone softKind = iota
	softBool
	softTime
)

// tableState is what the Applier knows of its table; replaced whole, never changed, so that
// concurrent Applies can share it.
type tableState struct {
	exists    bool
	cols      []column
	index     map[string]int  // column name -> index in cols
	generated map[string]bool // generated columns: never written
	key       []int           // master key columns
	soft      int             // soft delete column, -1 when none
	softKind  softKind
	sqlCache  sync.Map // statement text by kind and columns
}

// columnsSQL reads the writable columns. A type outside pg_catalog is cast to by its
// qualified name, which format_type gives only when the type is not on the reading session's
// search_path, and Procon's sessions search only the catalog.
const columnsSQL = `
SELECT a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod),
	CASE WHEN n.nspname = 'pg_catalog' THEN pg_catalog.format_type(a.atttypid, -1)
	ELSE pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) END,
	a.attgenerated <> ''
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

// uniqueSQL lists the key columns of the table's unique indexes that ON CONFLICT can infer:
// valid, not partial, on plain columns.
const uniqueSQL = `
SELECT ARRAY(
	SELECT a.attname::pg_catalog.text
	FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, n)
	JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
	WHERE k.n <= i.indnkeyatts)
FROM pg_catalog.pg_index i
WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisunique AND i.indisvalid
	AND i.indpred IS NULL AND i.indexprs IS NULL`

// readTable reads the table's columns and checks the entity against them. A missing table is
// a state with exists false (an error unless the entity creates it).
func (a *Applier) readTable(ctx context.Context, q Querier) (*tableState, error) {
	e := &a.e
	t := &tableState{index: map[string]int{}, generated: map[string]bool{}, soft: -1}
	rows, err := q.Query(ctx, columnsSQL, a.regclass)
	if err != nil {
		return nil, fmt.Errorf("apply: %s: read the columns of %s: %w", e.name(), e.Table, err)
	}
	for rows.Next() {
		var c column
		var generated bool
		if err := rows.Scan(&c.name, &c.typ, &c.cast, &generated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("apply: %s: read the columns of %s: %w", e.name(), e.Table, err)
		}
		if generated {
			t.generated[c.name] = true
			continue
		}
		t.index[c.name] = len(t.cols)
		t.cols = append(t.cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("apply: %s: read the columns of %s: %w", e.name(), e.Table, err)
	}
	if len(t.cols) == 0 && len(t.generated) == 0 {
		if !e.CreateTable {
			return nil, fmt.Errorf("apply: %s: table %s does not exist: create it, or set create_table", e.name(), e.Table)
		}
		return t, nil
	}
	t.exists = true

	keyCols := make([]string, len(e.MasterKey))
	for i, k := range e.MasterKey {
		keyCols[i] = k.Column
		ci, ok := t.index[k.Column]
		if !ok {
			return nil, fmt.Errorf("apply: %s: master key column %q is not a writable column of %s", e.name(), k.Column, e.Table)
		}
		t.key = append(t.key, ci)
	}
	if err := a.checkUnique(ctx, q, keyCols); err != nil {
		return nil, err
	}
	if !e.AddColumns {
		for _, p := range a.plans {
			for _, col := range p.mapped {
				if _, ok := t.index[col]; !ok {
					return nil, fmt.Errorf("apply: %s: keys_mapping writes column %q, which %s does not have: add it, or set add_columns", e.name(), col, e.Table)
				}
			}
			for _, n := range p.nested {
				if _, ok := t.index[n.column]; !ok {
					return nil, fmt.Errorf("apply: %s: keys_mapping writes column %q, which %s does not have: add it, or set add_columns", e.name(), n.column, e.Table)
				}
			}
		}
	}
	if e.SoftDelete != "" {
		ci, ok := t.index[e.SoftDelete]
		if !ok {
			return nil, fmt.Errorf("apply: %s: soft_delete column %q is not a writable column of %s", e.name(), e.SoftDelete, e.Table)
		}
		switch t.cols[ci].cast {
		case "boolean":
			t.softKind = softBool
		case "timestamp with time zone", "timestamp without time zone", "date":
			t.softKind = softTime
		default:
			return nil, fmt.Errorf("apply: %s: soft_delete column %q of %s is %s: use a boolean (set to true) or a timestamp, timestamptz or date column (set to the time of the delete)", e.name(), e.SoftDelete, e.Table, t.cols[ci].typ)
		}
		t.soft = ci
	}
	return t, nil
}

func (a *Applier) checkUnique(ctx context.Context, q Querier, keyCols []string) error {
	rows, err := q.Query(ctx, uniqueSQL, a.regclass)
	if err != nil {
		return fmt.Errorf("apply: %s: read the unique indexes of %s: %w", a.e.name(), a.e.Table, err)
	}
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
	if err != nil {
		return fmt.Errorf("apply: %s: read the unique indexes of %s: %w", a.e.name(), a.e.Table, err)
	}
	want := slices.Sorted(slices.Values(keyCols))
	for _, cols := range indexes {
		slices.Sort(cols)
		if slices.Equal(cols, want) {
			return nil
		}
	}
	quoted := make([]string, len(keyCols))
	for i, c := range keyCols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	list := strings.Join(quoted, ", ")
	return fmt.Errorf("apply: %s: %s has no primary key or unique index on exactly the master key (%s), which upserts need: ALTER TABLE %s ADD PRIMARY KEY (%s) or CREATE UNIQUE INDEX ON %s (%s)",
		a.e.name(), a.e.Table, strings.Join(keyCols, ", "), a.quoted, list, a.quoted, list)
}

// createTable creates the missing table from the schema of the first event with a row. The
// columns are the ones that event writes, typed by event.ColumnType; the primary key is the
// master key.
func (a *Applier) createTable(ctx context.Context, tx pgx.Tx, events []*event.Event) error {
	e := &a.e
	var ev *event.Event
	for _, x := range events {
		if !x.Tombstone && (x.After != nil || x.Before != nil) {
			ev = x
			break
		}
	}
	if ev == nil {
		return nil // nothing to learn the columns from yet; nothing to write either
	}
	row := ev.After
	if row == nil {
		row = ev.Before
	}
	type newCol struct{ name, typ string }
	var cols []newCol
	seen := map[string]bool{}
	add := func(name string, v event.Value, what string) error {
		if seen[name] {
			return nil
		}
		if v.Schema == nil {
			return fmt.Errorf("apply: %s: create_table needs the events' schemas (JSON with schemas, or Avro), and %s has none", e.name(), what)
		}
		typ, err := event.ColumnType(v.Schema)
		if err != nil {
			return fmt.Errorf("apply: %s: create_table: the type of column %q (%s): %w", e.name(), name, what, err)
		}
		seen[name] = true
		cols = append(cols, newCol{name, typ})
		return nil
	}
	for _, k := range e.MasterKey {
		path := strings.Split(k.Field, ".")
		v, ok := rowPath(row, path)
		if !ok {
			v, ok = rowPath(ev.Key, path)
		}
		if !ok {
			return fmt.Errorf("apply: %s: create_table: the first event has no master key field %q", e.name(), k.Field)
		}
		if err := add(k.Column, v, "field "+k.Field); err != nil {
			return err
		}
	}
	p := &a.plans[opCreate]
	for _, f := range row.Fields {
		if p.drop[f.Name] {
			continue
		}
		col := f.Name
		if m, ok := p.mapped[f.Name]; ok {
			col = m
		}
		if err := add(col, f.Value, "field "+f.Name); err != nil {
			return err
		}
	}
	for _, n := range p.nested {
		if v, ok := rowPath(row, n.path); ok {
			if err := add(n.column, v, "field "+strings.Join(n.path, ".")); err != nil {
				return err
			}
		}
	}
	defs := make([]string, 0, len(cols)+2)
	for _, c := range cols {
		defs = append(defs, pgx.Identifier{c.name}.Sanitize()+" "+c.typ)
	}
	if e.SoftDelete != "" && !seen[e.SoftDelete] {
		defs = append(defs, pgx.Identifier{e.SoftDelete}.Sanitize()+" boolean NOT NULL DEFAULT false")
	}
	keys := make([]string, len(e.MasterKey))
	for i, k := range e.MasterKey {
		keys[i] = pgx.Identifier{k.Column}.Sanitize()
	}
	defs = append(defs, "PRIMARY KEY ("+strings.Join(keys, ", ")+")")
	sql := "CREATE TABLE IF NOT EXISTS " + a.quoted + " (" + strings.Join(defs, ", ") + ")"
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("apply: %s: create table: %w", e.name(), err)
	}
	a.log.Info("created the target table", "topic", e.Topic, "table", e.Table, "columns", len(defs)-1)
	return nil
}

// addColumn adds a column for a field the table lacks.
func (a *Applier) addColumn(ctx context.Context, tx pgx.Tx, name string, v event.Value, field string) error {
	e := &a.e
	if v.Schema == nil {
		return fmt.Errorf("apply: %s: add_columns needs the events' schemas (JSON with schemas, or Avro) to add column %q for field %q", e.name(), name, field)
	}
	typ, err := event.ColumnType(v.Schema)
	if err != nil {
		return fmt.Errorf("apply: %s: add_columns: the type of column %q (field %s): %w", e.name(), name, field, err)
	}
	sql := "ALTER TABLE " + a.quoted + " ADD COLUMN IF NOT EXISTS " + pgx.Identifier{name}.Sanitize() + " " + typ
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("apply: %s: add column %q: %w", e.name(), name, err)
	}
	a.log.Info("added a column to the target table", "topic", e.Topic, "table", e.Table, "column", name, "type", typ)
	return nil
}

// rowPath reads a field of r by path (nested structs below the first name).
func rowPath(r *event.Row, path []string) (event.Value, bool) {
	v, ok := r.Get(path[0])
	if !ok || len(path) == 1 {
		return v, ok
	}
	return v.Path(path[1:]...)
}
