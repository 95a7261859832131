package convert

import (
	"context"

	"github.com/procon-cdc/procon/pg"
)

// Database lists the tables of the database at DSN, as Debezium sees them for its include
// lists: ordinary tables and partitions (whose changes pgoutput sends under their own names),
// outside the system schemas.
type Database struct{ DSN string }

// ListTables implements TableLister.
func (d Database) ListTables(ctx context.Context) ([]string, error) {
	conn, err := pg.Connect(ctx, d.DSN, "procon-cdc convert")
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `
SELECT n.nspname || '.' || c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
 ORDER BY n.nspname, c.relname`)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
