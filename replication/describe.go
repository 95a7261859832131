package replication

import (
	"context"
	"fmt"
	"strings"

	"github.com/procon-cdc/procon/pg"
)

// Describe reads a captured relation's current shape from the catalog, as the next Relation
// message will describe it (columns in attribute order, without dropped or generated ones), so
// that a configuration can be checked against the table before streaming starts. It must be
// called before Run, from the goroutine that opened the stream.
func (s *Stream) Describe(ctx context.Context, name string) (*Relation, error) {
	spec, ok := s.cfg.Relations[name]
	if !ok {
		return nil, fmt.Errorf("relation %s is not captured", name)
	}
	var relid uint32
	var ident string
	err := s.sql.QueryRow(ctx, `SELECT c.oid, c.relreplident::text FROM pg_catalog.pg_class c WHERE c.oid = $1::pg_catalog.regclass`,
		pg.QuoteQualified(name)).Scan(&relid, &ident)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	rows, err := s.sql.Query(ctx, `SELECT attname, atttypid, atttypmod FROM pg_catalog.pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum`, relid)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", name, err)
	}
	schema, table, _ := strings.Cut(name, ".")
	rel := &Relation{ID: relid, Schema: schema, Table: table, ReplicaIdentity: ident[0], Captured: true}
	for rows.Next() {
		var c Column
		if err := rows.Scan(&c.Name, &c.TypeOID, &c.TypeMod); err != nil {
			rows.Close()
			return nil, err
		}
		rel.Columns = append(rel.Columns, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", name, err)
	}
	cat := s.dec.cat
	info, err := cat.table(ctx, relid)
	if err != nil {
		return nil, err
	}
	for i := range rel.Columns {
		col := &rel.Columns[i]
		ci := info.columns[col.Name]
		col.NotNull, col.Default = ci.notNull, ci.def
		if col.Type, err = cat.typ(ctx, col.TypeOID); err != nil {
			return nil, fmt.Errorf("relation %s column %s: %w", name, col.Name, err)
		}
	}
	if rel.Key, err = keyColumns(rel, spec, info.pkey); err != nil {
		return nil, err
	}
	return rel, nil
}
