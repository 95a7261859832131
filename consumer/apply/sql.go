package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// statement is one multi-row statement: parallel arrays, one element per row.
type statement struct {
	what   string // for errors: "upsert", "delete", ...
	sql    string
	arrays []any // []pgtype.Text or []int32, all of length n
	n      int
	counts bool // returns the rows it reached and their delete weight
	// rows are the upserted rows (nil for deletes); keys the deleted keys.
	rows []*row
	cols []int
	keys []*keyState
}

func (s *statement) args(lo, hi int) []any {
	out := make([]any, len(s.arrays))
	for i, arr := range s.arrays {
		switch x := arr.(type) {
		case []pgtype.Text:
			out[i] = x[lo:hi]
		case []int32:
			out[i] = x[lo:hi]
		}
	}
	return out
}

// run executes the statement over rows [lo, hi): for deletes, the rows found and their weight.
func (s *statement) run(ctx context.Context, q pgx.Tx, lo, hi int) (found, weight int64, err error) {
	if s.counts {
		err = q.QueryRow(ctx, s.sql, s.args(lo, hi)...).Scan(&found, &weight)
		return found, weight, err
	}
	tag, err := q.Exec(ctx, s.sql, s.args(lo, hi)...)
	return tag.RowsAffected(), 0, err
}

// dataError is a statement that failed on a value the server could not read (SQLSTATE class
// 22, data exception): its record is to be found.
type dataError struct {
	stmt *statement
	err  error
}

func (e *dataError) Error() string { return e.err.Error() }
func (e *dataError) Unwrap() error { return e.err }

func isDataException(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// execute runs the segments in order: deletes, then upserts grouped by column set, then the
// truncate that ended the segment.
func (b *batch) execute(ctx context.Context, tx pgx.Tx) error {
	for _, seg := range b.segments {
		if err := b.executeSegment(ctx, tx, seg); err != nil {
			return err
		}
	}
	return nil
}

func (b *batch) executeSegment(ctx context.Context, tx pgx.Tx, seg *segment) error {
	var dels []*keyState
	for _, k := range seg.keys {
		if k.del {
			dels = append(dels, k)
		}
	}
	if len(dels) > 0 {
		s := b.deleteStatement(dels)
		_, weight, err := s.run(ctx, tx, 0, s.n)
		if err != nil {
			return b.stmtError(s, err)
		}
		var total int64
		for _, k := range dels {
			total += int64(k.weight)
		}
		if b.softMode {
			b.stats.SoftDeleted += int(weight)
		} else {
			b.stats.Deleted += int(weight)
		}
		b.stats.MissingDeletes += int(total - weight)
	}

	// Group the upserts by the columns they write, in order of first appearance.
	ncols := len(b.tbl.cols)
	groups := map[string]*statement{}
	var order []*statement
	sig := make([]byte, (ncols+7)/8)
	for _, k := range seg.keys {
		r := k.up
		if r == nil {
			continue
		}
		if b.softMode && k.deleted {
			c := r.at(b.tbl.soft)
			deletedValue := "true"
			if b.tbl.softKind == softTime {
				deletedValue = "now" // the transaction's start, as now()
			}
			*c = colVal{v: pgtype.Text{String: deletedValue, Valid: true}, set: true, src: c.src}
		}
		clear(sig)
		for ci := 0; ci < ncols && ci < len(r.vals); ci++ {
			if r.vals[ci].set {
				sig[ci/8] |= 1 << (ci % 8)
			}
		}
		g, ok := groups[string(sig)]
		if !ok {
			g = &statement{what: "upsert"}
			for ci := 0; ci < ncols && ci < len(r.vals); ci++ {
				if r.vals[ci].set {
					g.cols = append(g.cols, ci)
				}
			}
			groups[string(sig)] = g
			order = append(order, g)
		}
		g.rows = append(g.rows, r)
	}
	for _, g := range order {
		b.fillUpsert(g)
		if _, _, err := g.run(ctx, tx, 0, g.n); err != nil {
			return b.stmtError(g, err)
		}
	}

	if seg.truncate {
		var sql string
		if b.softMode {
			sql = "UPDATE " + b.a.quoted + " SET " + pgx.Identifier{b.a.e.SoftDelete}.Sanitize() + " = " + b.softValueSQL()
		} else {
			sql = "DELETE FROM " + b.a.quoted
		}
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("apply: %s: truncate: %w", b.a.e.name(), err)
		}
	}
	return nil
}

func (b *batch) stmtError(s *statement, err error) error {
	if isDataException(err) {
		return &dataError{stmt: s, err: fmt.Errorf("apply: %s: %s of %d rows: %w", b.a.e.name(), s.what, s.n, err)}
	}
	return fmt.Errorf("apply: %s: %s of %d rows: %w", b.a.e.name(), s.what, s.n, err)
}

func (b *batch) softValueSQL() string {
	if b.tbl.softKind == softTime {
		return "pg_catalog.now()"
	}
	return "true"
}

// fillUpsert sets the statement's SQL and arrays for its rows and columns.
func (b *batch) fillUpsert(s *statement) {
	s.n = len(s.rows)
	s.sql = b.upsertSQL(s.cols)
	s.arrays = make([]any, len(s.cols))
	for j, ci := range s.cols {
		arr := make([]pgtype.Text, len(s.rows))
		for r, row := range s.rows {
			arr[r] = row.vals[ci].v
		}
		s.arrays[j] = arr
	}
}

// rowsFrom is the FROM item of n parallel text arrays, as u(c0, c1, ...), followed by extra
// columns of other array types.
func rowsFrom(n int, extra ...string) string {
	var sb strings.Builder
	sb.WriteString("ROWS FROM (")
	for i := range n + len(extra) {
		if i > 0 {
			sb.WriteString(", ")
		}
		typ := "pg_catalog.text[]"
		if i >= n {
			typ = extra[i-n]
		}
		sb.WriteString("pg_catalog.unnest($" + strconv.Itoa(i+1) + "::" + typ + ")")
	}
	sb.WriteString(") AS u (")
	for i := range n + len(extra) {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("c" + strconv.Itoa(i))
	}
	sb.WriteString(")")
	return sb.String()
}

// upsertSQL is the statement writing cols (column indexes, ascending): an INSERT of the cast
// arrays, updating the columns other than the key on conflict.
func (b *batch) upsertSQL(cols []int) string {
	sigKey := fmt.Sprint(cols)
	if sql, ok := b.tbl.sqlCache.Load(sigKey); ok {
		return sql.(string)
	}
	names := make([]string, len(cols))
	exprs := make([]string, len(cols))
	var sets []string
	for j, ci := range cols {
		c := &b.tbl.cols[ci]
		names[j] = pgx.Identifier{c.name}.Sanitize()
		exprs[j] = "CAST(u.c" + strconv.Itoa(j) + " AS " + c.cast + ")"
		if !slices.Contains(b.tbl.key, ci) {
			sets = append(sets, names[j]+" = EXCLUDED."+names[j])
		}
	}
	action := "DO NOTHING"
	if len(sets) > 0 {
		action = "DO UPDATE SET " + strings.Join(sets, ", ")
	}
	sql := "INSERT INTO " + b.a.quoted + " AS t (" + strings.Join(names, ", ") + ") SELECT " +
		strings.Join(exprs, ", ") + " FROM " + rowsFrom(len(cols)) +
		" ON CONFLICT (" + b.keyList() + ") " + action
	b.tbl.sqlCache.Store(sigKey, sql)
	return sql
}

func (b *batch) keyList() string {
	keys := make([]string, len(b.tbl.key))
	for j, ci := range b.tbl.key {
		keys[j] = pgx.Identifier{b.tbl.cols[ci].name}.Sanitize()
	}
	return strings.Join(keys, ", ")
}

// deleteStatement deletes (or marks) the rows of keys, returning how many it reached and the
// sum of their weights (the deletes whose count the database decides).
func (b *batch) deleteStatement(keys []*keyState) *statement {
	nk := len(b.tbl.key)
	s := &statement{what: "delete", n: len(keys), counts: true, keys: keys}
	s.sql = b.deleteSQL()
	for j := range nk {
		arr := make([]pgtype.Text, len(keys))
		for r, k := range keys {
			arr[r] = k.key[j]
		}
		s.arrays = append(s.arrays, arr)
	}
	weights := make([]int32, len(keys))
	for r, k := range keys {
		weights[r] = k.weight
	}
	s.arrays = append(s.arrays, weights)
	return s
}

func (b *batch) deleteSQL() string {
	const cacheKey = "delete"
	if sql, ok := b.tbl.sqlCache.Load(cacheKey); ok {
		return sql.(string)
	}
	nk := len(b.tbl.key)
	conds := make([]string, nk)
	for j, ci := range b.tbl.key {
		c := &b.tbl.cols[ci]
		conds[j] = "t." + pgx.Identifier{c.name}.Sanitize() + " = CAST(u.c" + strconv.Itoa(j) + " AS " + c.cast + ")"
	}
	from := rowsFrom(nk, "pg_catalog.int4[]")
	where := strings.Join(conds, " AND ")
	var change string
	if b.softMode {
		change = "UPDATE " + b.a.quoted + " AS t SET " + pgx.Identifier{b.a.e.SoftDelete}.Sanitize() + " = " + b.softValueSQL() +
			" FROM " + from + " WHERE " + where
	} else {
		change = "DELETE FROM " + b.a.quoted + " AS t USING " + from + " WHERE " + where
	}
	sql := "WITH d AS (" + change + " RETURNING u.c" + strconv.Itoa(nk) + " AS w) " +
		"SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(d.w), 0)::pg_catalog.int8 FROM d"
	b.tbl.sqlCache.Store(cacheKey, sql)
	return sql
}

// culprit finds the event whose value made s fail with a data exception: it bisects the
// statement's rows with probes rolled back to savepoints under parent, then, for a row merged
// from several events, the columns each event gave. -1 when no probe fails alone.
func (b *batch) culprit(ctx context.Context, parent pgx.Tx, s *statement) (int, error) {
	probe := func(p *statement, lo, hi int) (bool, error) {
		sp, err := parent.Begin(ctx)
		if err != nil {
			return false, err
		}
		_, _, err = p.run(ctx, sp, lo, hi)
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return false, rbErr
		}
		if err == nil {
			return false, nil
		}
		var pgErr *pgconn.PgError
		if isDataException(err) {
			return true, nil
		}
		if errors.As(err, &pgErr) {
			return false, nil // another row's problem, not a value's
		}
		return false, err
	}
	lo, hi := 0, s.n
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		bad, err := probe(s, lo, mid)
		if err != nil {
			return -1, err
		}
		if bad {
			hi = mid
		} else {
			lo = mid
		}
	}
	if bad, err := probe(s, lo, hi); err != nil || !bad {
		return -1, err
	}
	if s.rows == nil {
		return s.keys[lo].first, nil
	}
	r := s.rows[lo]
	var srcs []int32
	for _, ci := range s.cols {
		if !slices.Contains(srcs, r.vals[ci].src) {
			srcs = append(srcs, r.vals[ci].src)
		}
	}
	slices.Sort(srcs)
	if len(srcs) == 1 {
		return int(srcs[0]), nil
	}
	// Several events gave this row's values: probe its key alone (which came with the last
	// one), then the key with each event's columns.
	keySrc := r.vals[b.tbl.key[0]].src
	for _, src := range append([]int32{-1}, srcs...) {
		one := &statement{what: "upsert", rows: []*row{r}}
		for _, ci := range s.cols {
			if slices.Contains(b.tbl.key, ci) || r.vals[ci].src == src {
				one.cols = append(one.cols, ci)
			}
		}
		b.fillUpsert(one)
		bad, err := probe(one, 0, 1)
		if err != nil {
			return -1, err
		}
		if bad && src < 0 {
			return int(keySrc), nil
		}
		if bad {
			return int(src), nil
		}
	}
	return int(srcs[len(srcs)-1]), nil
}
