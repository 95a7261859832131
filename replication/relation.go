package replication

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Relation is one version of a published table's shape, from a pgoutput Relation message and
// the catalog. A schema change yields a new *Relation; changes decoded before it keep the old
// one, so every change is described by the shape it was written with.
type Relation struct {
	ID              uint32
	Schema, Table   string
	ReplicaIdentity byte // 'd' default, 'f' full, 'i' index, 'n' nothing
	Columns         []Column
	// Key lists the indexes in Columns of the record key: the configured pkey, else the
	// primary key. Empty for a keyless relation.
	Key []int
	// Generation counts the Relation messages seen for this ID since the stream started.
	Generation int
	// Captured is false for a published relation that relation_configs does not list.
	Captured bool
}

// QualifiedName is "schema.table".
func (r *Relation) QualifiedName() string { return r.Schema + "." + r.Table }

// ColumnIndex returns the index of the named column, or -1.
func (r *Relation) ColumnIndex(name string) int {
	for i := range r.Columns {
		if r.Columns[i].Name == name {
			return i
		}
	}
	return -1
}

// Column is one column of a Relation.
type Column struct {
	Name    string
	TypeOID uint32 // as pgoutput sends it: a domain column has the domain's OID
	TypeMod int32
	// IdentityKey is set for columns of the replica identity key.
	IdentityKey bool
	// From the catalog; zero when the catalog no longer has the column.
	NotNull bool
	Default string // the DEFAULT expression, "" if none
	Type    *Type
}

// Type describes a PostgreSQL type, with domains and arrays resolved.
type Type struct {
	OID      uint32
	Name     string // typname, e.g. int4, _text, my_enum
	Schema   string
	Kind     byte // typtype: b base, c composite, d domain, e enum, p pseudo, r range, m multirange
	Category byte // typcategory: A array, N numeric, S string, ...
	// Base is the type a domain is defined over (recursively resolved); nil otherwise.
	Base        *Type
	BaseTypeMod int32 // the domain's typmod of its base type (e.g. numeric(10,2))
	// Elem is the element type of an array; nil otherwise.
	Elem       *Type
	EnumLabels []string
	// Operators is the schema of the comparison operators of the type's default btree
	// operator class (the order ORDER BY uses), when that class is for this very type and not
	// the catalog's: citext's operators live where the extension was installed. Empty
	// otherwise; see OperatorSchema.
	Operators string
}

// OperatorSchema is the schema whose =, <, <=, >, >= compare values of t as ORDER BY orders
// them: Operators after resolving domains, else pg_catalog (built-in types, and types compared
// as another: varchar as text, enums, arrays, ranges, composites). Procon's sessions search
// only pg_catalog, so SQL comparing such values names this schema (pg.Operator), or an
// extension type would be compared as text, in another order than its index's.
func (t *Type) OperatorSchema() string {
	if r := t.Root(); r.Operators != "" {
		return r.Operators
	}
	return "pg_catalog"
}

// Root returns the type after resolving domains.
func (t *Type) Root() *Type {
	for t.Kind == 'd' && t.Base != nil {
		t = t.Base
	}
	return t
}

// RelationSpec is what the configuration says about a captured relation.
type RelationSpec struct {
	PKey    []string // overrides the primary key as the record key
	Keyless bool     // the user accepts keyless events
}

// catalog reads table and type details that pgoutput does not send. It is used by the stream
// goroutine only.
type catalog struct {
	conn  *pgx.Conn
	mu    sync.Mutex
	types map[uint32]*Type
}

func newCatalog(conn *pgx.Conn) *catalog {
	return &catalog{conn: conn, types: map[uint32]*Type{}}
}

type tableInfo struct {
	columns map[string]columnInfo
	pkey    []string
}

type columnInfo struct {
	notNull bool
	def     string
}

func (c *catalog) table(ctx context.Context, relid uint32) (*tableInfo, error) {
	rows, err := c.conn.Query(ctx, `
		SELECT a.attname, a.attnotnull, coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
		FROM pg_catalog.pg_attribute a
		LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, relid)
	if err != nil {
		return nil, fmt.Errorf("read columns of relation %d: %w", relid, err)
	}
	info := &tableInfo{columns: map[string]columnInfo{}}
	for rows.Next() {
		var name string
		var ci columnInfo
		if err := rows.Scan(&name, &ci.notNull, &ci.def); err != nil {
			return nil, err
		}
		info.columns[name] = ci
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of relation %d: %w", relid, err)
	}
	info.pkey, err = c.primaryKey(ctx, relid)
	return info, err
}

func (c *catalog) primaryKey(ctx context.Context, relid uint32) ([]string, error) {
	rows, err := c.conn.Query(ctx, `
		SELECT a.attname
		FROM pg_catalog.pg_index i
		CROSS JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisprimary
		ORDER BY k.ord`, relid)
	if err != nil {
		return nil, fmt.Errorf("read primary key of relation %d: %w", relid, err)
	}
	pk, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read primary key of relation %d: %w", relid, err)
	}
	return pk, nil
}

// maxCachedTypes bounds the catalog's cache of types.
const maxCachedTypes = 4096

// typ resolves a type OID, following domains and array elements.
func (c *catalog) typ(ctx context.Context, oid uint32) (*Type, error) {
	c.mu.Lock()
	t, ok := c.types[oid]
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	var (
		base, elem uint32
		baseMod    int32
		kind, cat  string
		labels     []string
	)
	t = &Type{OID: oid}
	err := c.conn.QueryRow(ctx, `
		SELECT t.typname, n.nspname, t.typtype, t.typcategory, t.typbasetype, t.typtypmod,
		       CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0 END,
		       CASE WHEN t.typtype = 'e' THEN array(SELECT e.enumlabel FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) END,
		       coalesce((SELECT opn.nspname
		                 FROM pg_catalog.pg_opclass oc
		                 JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree'
		                 JOIN pg_catalog.pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 3
		                      AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
		                 JOIN pg_catalog.pg_operator o ON o.oid = ao.amopopr
		                 JOIN pg_catalog.pg_namespace opn ON opn.oid = o.oprnamespace
		                 WHERE oc.opcdefault AND oc.opcintype = t.oid AND opn.nspname <> 'pg_catalog'), '')
		FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
		WHERE t.oid = $1`, oid).Scan(&t.Name, &t.Schema, &kind, &cat, &base, &baseMod, &elem, &labels, &t.Operators)
	if err != nil {
		return nil, fmt.Errorf("read type %d: %w", oid, err)
	}
	t.Kind, t.Category, t.BaseTypeMod, t.EnumLabels = kind[0], cat[0], baseMod, labels
	c.mu.Lock()
	if len(c.types) >= maxCachedTypes {
		// Types created and dropped (each version of an enum or domain a DDL makes is a new
		// OID) would otherwise stay; relations keep the *Type they were described with.
		clear(c.types)
	}
	c.types[oid] = t // before recursing: a type cannot contain itself, but be safe
	c.mu.Unlock()
	if t.Kind == 'd' && base != 0 {
		if t.Base, err = c.typ(ctx, base); err != nil {
			return nil, err
		}
	}
	if elem != 0 {
		if t.Elem, err = c.typ(ctx, elem); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// forget drops cached types, e.g. after a Type message says one changed.
func (c *catalog) forget(oid uint32) {
	c.mu.Lock()
	delete(c.types, oid)
	c.mu.Unlock()
}

// keyColumns picks the record key of a relation: the configured pkey, else the primary key,
// else (when the user allowed keyless events) none.
func keyColumns(rel *Relation, spec RelationSpec, pkey []string) ([]int, error) {
	names := spec.PKey
	if len(names) == 0 {
		names = pkey
	}
	if len(names) == 0 {
		if spec.Keyless {
			return nil, nil
		}
		return nil, fmt.Errorf("relation %s has no primary key: set relation_configs.%s.pkey to the key columns, or keyless: true for events without a key",
			rel.QualifiedName(), rel.QualifiedName())
	}
	idx := make([]int, len(names))
	for i, n := range names {
		idx[i] = rel.ColumnIndex(n)
		if idx[i] < 0 {
			return nil, fmt.Errorf("relation %s: key column %q does not exist (columns: %s)",
				rel.QualifiedName(), n, strings.Join(columnNames(rel), ", "))
		}
	}
	return idx, nil
}

func columnNames(rel *Relation) []string {
	out := make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		out[i] = c.Name
	}
	return out
}
