package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/pg"
)

// Publication modes, as in the publication_autocreate setting.
const (
	PublicationFiltered  = "filtered"   // exactly the captured relations
	PublicationAllTables = "all_tables" // FOR ALL TABLES; uncaptured relations are ignored
	PublicationDisabled  = "disabled"   // must exist and include the captured relations
)

// ErrSlotActive is returned when another process streams from the slot.
var ErrSlotActive = errors.New("replication slot is in use by another process")

// checkServer verifies the settings logical replication needs, with the fix for each.
func checkServer(ctx context.Context, conn *pgx.Conn) error {
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return fmt.Errorf("read wal_level: %w", err)
	}
	if walLevel != "logical" {
		return fmt.Errorf("wal_level is %q: set wal_level = logical in postgresql.conf and restart PostgreSQL", walLevel)
	}
	var canReplicate bool
	err := conn.QueryRow(ctx, `SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&canReplicate)
	if err != nil {
		return fmt.Errorf("read role attributes: %w", err)
	}
	if !canReplicate {
		return errors.New("the connecting role lacks the REPLICATION attribute: ALTER ROLE <user> REPLICATION")
	}
	return nil
}

// checkRelations verifies that every captured relation exists. It changes nothing.
func checkRelations(ctx context.Context, conn *pgx.Conn, names []string) error {
	var errs []error
	for _, name := range names {
		schema, table, _ := strings.Cut(name, ".")
		var kind string
		err := conn.QueryRow(ctx, `SELECT c.relkind::text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = $1 AND c.relname = $2`, schema, table).Scan(&kind)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			errs = append(errs, fmt.Errorf("relation_configs.%s: table %s does not exist in this database", name, name))
		case err != nil:
			return fmt.Errorf("look up %s: %w", name, err)
		case kind != "r" && kind != "p":
			errs = append(errs, fmt.Errorf("relation_configs.%s: %s is not a table (relkind %s); only tables can be published", name, name, kind))
		}
	}
	return errors.Join(errs...)
}

// checkKeys verifies that each captured relation has a record key, without changing anything.
func checkKeys(ctx context.Context, cat *catalog, specs map[string]RelationSpec) error {
	var errs []error
	for _, name := range sortedKeys(specs) {
		spec := specs[name]
		var relid uint32
		if err := cat.conn.QueryRow(ctx, `SELECT $1::pg_catalog.regclass::pg_catalog.oid`, pg.QuoteQualified(name)).Scan(&relid); err != nil {
			return fmt.Errorf("look up %s: %w", name, err)
		}
		info, err := cat.table(ctx, relid)
		if err != nil {
			return err
		}
		rel := &Relation{Schema: strings.SplitN(name, ".", 2)[0], Table: strings.SplitN(name, ".", 2)[1]}
		for col := range info.columns {
			rel.Columns = append(rel.Columns, Column{Name: col})
		}
		slices.SortFunc(rel.Columns, func(a, b Column) int { return strings.Compare(a.Name, b.Name) })
		if _, err := keyColumns(rel, spec, info.pkey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ensurePublication creates or updates the publication according to mode.
func ensurePublication(ctx context.Context, conn *pgx.Conn, name, mode string, relations []string) error {
	var allTables bool
	err := conn.QueryRow(ctx, `SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1`, name).Scan(&allTables)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look up publication %s: %w", name, err)
	}
	pub := pgx.Identifier{name}.Sanitize()
	tables := make([]string, len(relations))
	for i, r := range relations {
		tables[i] = pg.QuoteQualified(r)
	}
	const with = ` WITH (publish = 'insert, update, delete, truncate')`
	switch {
	case !exists && mode == PublicationDisabled:
		return fmt.Errorf("publication %s does not exist and publication_autocreate is disabled: CREATE PUBLICATION %s FOR TABLE %s, or set publication_autocreate: filtered",
			name, pub, strings.Join(tables, ", "))
	case !exists && mode == PublicationAllTables:
		_, err = conn.Exec(ctx, "CREATE PUBLICATION "+pub+" FOR ALL TABLES"+with)
	case !exists:
		_, err = conn.Exec(ctx, "CREATE PUBLICATION "+pub+" FOR TABLE "+strings.Join(tables, ", ")+with)
	case allTables:
		return nil
	default:
		have, err := publishedTables(ctx, conn, name)
		if err != nil {
			return err
		}
		missing := diff(relations, have)
		if mode == PublicationFiltered && (len(missing) > 0 || len(diff(have, relations)) > 0) {
			_, err = conn.Exec(ctx, "ALTER PUBLICATION "+pub+" SET TABLE "+strings.Join(tables, ", "))
		} else if len(missing) > 0 {
			return fmt.Errorf("publication %s does not include %s: ALTER PUBLICATION %s ADD TABLE ..., or set publication_autocreate: filtered",
				name, strings.Join(missing, ", "), pub)
		}
		if err != nil {
			return fmt.Errorf("update publication %s: %w", name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("create publication %s: %w", name, err)
	}
	return nil
}

func publishedTables(ctx context.Context, conn *pgx.Conn, pub string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_catalog.pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return nil, fmt.Errorf("list tables of publication %s: %w", pub, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
