package snapshot

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/replication"
)

// applicationName names the snapshot's connections in pg_stat_activity.
const applicationName = "procon-cdc snapshot"

// Table is a captured table as a snapshot reads it.
type Table struct {
	Name string // schema.table
	// Rel is the table's shape: rows are read in its column order, and its Key is the record
	// key.
	Rel *replication.Relation
	// Order are the columns of the key that orders and chunks the reads (the primary key,
	// else the configured pkey); nil for a keyless table, which is read whole.
	Order []int

	from     string   // quoted schema.table
	cols     string   // quoted column list
	keyCols  string   // quoted key columns, comma-separated
	keyDesc  string   // the same, each DESC
	keyTypes []string // quoted type of each key column, for casting text bounds
	keyOps   []string // schema of each key column's comparison operators (Type.OperatorSchema)
}

// DescribeTable reads the shape of a captured table over conn.
func DescribeTable(ctx context.Context, conn *pgx.Conn, name string, spec replication.RelationSpec) (*Table, error) {
	rel, order, err := replication.DescribeTable(ctx, conn, name, spec)
	if err != nil {
		return nil, err
	}
	return newTable(name, rel, order), nil
}

func newTable(name string, rel *replication.Relation, order []int) *Table {
	t := &Table{Name: name, Rel: rel, Order: order}
	t.from = pgx.Identifier{rel.Schema, rel.Table}.Sanitize()
	cols := make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	t.cols = strings.Join(cols, ", ")
	keys := make([]string, len(order))
	desc := make([]string, len(order))
	t.keyTypes = make([]string, len(order))
	t.keyOps = make([]string, len(order))
	for i, ci := range order {
		keys[i] = cols[ci]
		desc[i] = cols[ci] + " DESC"
		typ := rel.Columns[ci].Type
		t.keyTypes[i] = pgx.Identifier{typ.Schema, typ.Name}.Sanitize()
		t.keyOps[i] = typ.OperatorSchema()
	}
	t.keyCols = strings.Join(keys, ", ")
	t.keyDesc = strings.Join(desc, ", ")
	return t
}

// Keyed reports whether the table has a key to chunk by.
func (t *Table) Keyed() bool { return len(t.Order) > 0 }

// keyPredicate is "key > (bound)" or "key <= (bound)" with the bound's values as parameters
// from $n on, each cast to its column's type. The operators are those of each key type's
// default btree class (pg.Operator), the order ORDER BY reads in: Procon's sessions search
// only pg_catalog, where an extension type (citext) would find text's operators, and chunks
// would skip or repeat rows. When the key columns' operators are in one schema, the key is one
// row comparison, which an index on the key serves; otherwise it is spelt out column by
// column: (a > x) OR (a = x AND b > y).
func (t *Table) keyPredicate(op string, n int) string {
	param := func(i int) string { return "$" + strconv.Itoa(n+i) + "::" + t.keyTypes[i] }
	oneSchema := true
	for _, s := range t.keyOps {
		oneSchema = oneSchema && s == t.keyOps[0]
	}
	if len(t.Order) == 1 || oneSchema {
		var keys, params []string
		for i, ci := range t.Order {
			keys = append(keys, pgx.Identifier{t.Rel.Columns[ci].Name}.Sanitize())
			params = append(params, param(i))
		}
		if len(t.Order) == 1 {
			return keys[0] + " " + pg.Operator(t.keyOps[0], op) + " " + params[0]
		}
		return "(" + strings.Join(keys, ", ") + ") " + pg.Operator(t.keyOps[0], op) + " (" + strings.Join(params, ", ") + ")"
	}
	strict := strings.TrimSuffix(op, "=") // the columns before the last compare strictly
	var b strings.Builder
	for i, ci := range t.Order {
		col := pgx.Identifier{t.Rel.Columns[ci].Name}.Sanitize()
		if i == len(t.Order)-1 {
			b.WriteString(col + " " + pg.Operator(t.keyOps[i], op) + " " + param(i))
			break
		}
		b.WriteString("(" + col + " " + pg.Operator(t.keyOps[i], strict) + " " + param(i) + " OR (" +
			col + " " + pg.Operator(t.keyOps[i], "=") + " " + param(i) + " AND ")
	}
	b.WriteString(strings.Repeat("))", len(t.Order)-1))
	return b.String()
}

// selectSQL reads the rows of from (the table, or a filter's view of it: see filter.go) with
// lo < key <= hi (nil bounds are open), in key order, at most limit of them (0: no limit).
// Its parameters are lo's values, then hi's.
func (t *Table) selectSQL(from string, lo, hi []string, limit int) (string, [][]byte) {
	var where []string
	var params [][]byte
	if lo != nil {
		where = append(where, t.keyPredicate(">", len(params)+1))
		for _, v := range lo {
			params = append(params, []byte(v))
		}
	}
	if hi != nil {
		where = append(where, t.keyPredicate("<=", len(params)+1))
		for _, v := range hi {
			params = append(params, []byte(v))
		}
	}
	sql := "SELECT " + t.cols + " FROM " + from
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	if t.Keyed() {
		sql += " ORDER BY " + t.keyCols
	}
	if limit > 0 {
		sql += " LIMIT " + strconv.Itoa(limit)
	}
	return sql, params
}

// readRows runs sql with text parameters and text results, calling fn with each row's values
// (nil for NULL). The values are only valid during the call.
func readRows(ctx context.Context, conn *pgx.Conn, sql string, params [][]byte, fn func(vals [][]byte) error) error {
	rr := conn.PgConn().ExecParams(ctx, sql, params, nil, nil, nil)
	for rr.NextRow() {
		if err := fn(rr.Values()); err != nil {
			_, _ = rr.Close()
			return err
		}
	}
	_, err := rr.Close()
	return err
}

// datums turns text values into tuple data, reusing out.
func datums(vals [][]byte, out []replication.Datum) []replication.Datum {
	out = out[:0]
	for _, v := range vals {
		if v == nil {
			out = append(out, replication.Datum{Kind: replication.DatumNull})
		} else {
			out = append(out, replication.Datum{Kind: replication.DatumText, Data: v})
		}
	}
	return out
}

// keyOf returns the text of the key columns of a row.
func keyOf(vals [][]byte, order []int) []string {
	k := make([]string, len(order))
	for i, ci := range order {
		k[i] = string(vals[ci])
	}
	return k
}

// keyID is a map key for a key's text values: each length-prefixed, so that ("a,b") and
// ("a", "b") differ. ok is false when a value is missing (NULL or unchanged TOAST).
func keyID(buf []byte, d []replication.Datum, order []int) ([]byte, bool) {
	buf = buf[:0]
	for _, ci := range order {
		if ci >= len(d) || d[ci].Kind != replication.DatumText {
			return buf, false
		}
		buf = binary.AppendUvarint(buf, uint64(len(d[ci].Data)))
		buf = append(buf, d[ci].Data...)
	}
	return buf, true
}

// copyRow copies a row's values into one allocation.
func copyRow(vals [][]byte) []replication.Datum {
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	buf := make([]byte, 0, n)
	out := make([]replication.Datum, len(vals))
	for i, v := range vals {
		if v == nil {
			out[i] = replication.Datum{Kind: replication.DatumNull}
			continue
		}
		start := len(buf)
		buf = append(buf, v...)
		out[i] = replication.Datum{Kind: replication.DatumText, Data: buf[start:len(buf):len(buf)]}
	}
	return out
}

// queryRower runs a query returning one row: a connection or a transaction.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// estimateRows asks the planner how many rows of t's from (the table, or a filter's view of
// it) there are.
func estimateRows(ctx context.Context, q queryRower, t *Table, from string) (int64, error) {
	sql := "EXPLAIN (FORMAT JSON) SELECT 1 FROM " + from
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	if err := q.QueryRow(ctx, sql).Scan(&plan); err != nil {
		return 0, fmt.Errorf("estimate rows of %s: %w", t.Name, err)
	}
	if len(plan) == 0 {
		return 0, nil
	}
	return int64(plan[0].Plan.Rows), nil
}
