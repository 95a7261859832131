package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TableText reads a table's rows as PostgreSQL prints them (expr::text, the whole row r when
// expr is empty), ordered by orderBy: two tables of the same columns compare row for row and
// column for column.
func TableText(t testing.TB, pool *pgxpool.Pool, table, expr, orderBy string) []string {
	t.Helper()
	if expr == "" {
		expr = "r"
	}
	rows, err := pool.Query(context.Background(), `SELECT `+expr+`::text FROM `+table+` r ORDER BY `+orderBy)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// DiffRows describes the first difference between a table's rows in a source and a target
// ("" when they are equal).
func DiffRows(table string, src, dst []string) string {
	for i := 0; i < len(src) || i < len(dst); i++ {
		switch {
		case i >= len(src):
			return fmt.Sprintf("%s: the target has %d rows more than the source, first %s", table, len(dst)-len(src), dst[i])
		case i >= len(dst):
			return fmt.Sprintf("%s: the target lacks %d rows, first %s", table, len(src)-len(dst), src[i])
		case src[i] != dst[i]:
			return fmt.Sprintf("%s row %d:\n source %.600s\n target %.600s", table, i, src[i], dst[i])
		}
	}
	return ""
}

// AppliedOffsets is the sum of a consumer group's stored offsets in a target database
// (procon-cdc consume's table): it grows with every committed batch; 0 before the table exists.
func AppliedOffsets(pool *pgxpool.Pool, group string) int64 {
	var n int64
	err := pool.QueryRow(context.Background(), `SELECT coalesce(sum(next_offset), 0)::bigint
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
		LEFT JOIN procon.procon_consumer_offsets o ON o.consumer_group = $1
		WHERE ns.nspname = 'procon' AND c.relname = 'procon_consumer_offsets'`, group).Scan(&n)
	if err != nil {
		return 0 // not created yet
	}
	return n
}

// LastLines is the last n lines of s (a process's output, for a failure message).
func LastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
