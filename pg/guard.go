package pg

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier runs a query: a *pgx.Conn, a pgx.Tx or a *pgxpool.Pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Writes are the statements Procon runs on a table it writes.
type Writes uint8

// The statements of Writes.
const (
	Insert Writes = 1 << iota
	Update
	Delete
)

func (w Writes) String() string {
	if w == Insert|Update|Delete {
		return "writes"
	}
	var verbs []string
	for _, v := range []struct {
		w    Writes
		verb string
	}{{Insert, "inserts into"}, {Update, "updates"}, {Delete, "deletes from"}} {
		if w&v.w != 0 {
			verbs = append(verbs, v.verb)
		}
	}
	return strings.Join(verbs, " and ")
}

// hazardsSQL lists what would run another role's SQL, or hide rows, when Procon's role runs
// the statements of $2 (pg_trigger's tgtype bits: insert 4, delete 8, update 16) on table $1:
// triggers firing on them, enabled or not (the table's owner can enable one at any time);
// rules on them (ev_type in $3); foreign keys of other tables whose ON DELETE ($4) or ON
// UPDATE ($5) action writes there, firing that table's triggers; row security that applies to
// the role (row_security is off on Procon's sessions, so the statement would fail). Internal
// triggers (those of foreign keys) are not listed: they run the catalog's code.
const hazardsSQL = `
WITH t AS (
	SELECT c.oid, c.relowner, c.relrowsecurity, c.relforcerowsecurity
	FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)
)
SELECT 'trigger', tg.tgname::text, tg.tgfoid::pg_catalog.regprocedure::text, tg.tgenabled = 'D'
FROM t JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = t.oid
WHERE NOT tg.tgisinternal AND (tg.tgtype::pg_catalog.int4 & $2::pg_catalog.int4) <> 0
UNION ALL
SELECT 'rule', r.rulename::text, '', false
FROM t JOIN pg_catalog.pg_rewrite r ON r.ev_class = t.oid
WHERE r.ev_type::text = ANY ($3::pg_catalog.text[])
UNION ALL
SELECT 'foreign key', con.conname::text, con.conrelid::pg_catalog.regclass::text, false
FROM t JOIN pg_catalog.pg_constraint con ON con.confrelid = t.oid AND con.contype = 'f'
WHERE ($4 AND con.confdeltype IN ('c', 'n', 'd')) OR ($5 AND con.confupdtype IN ('c', 'n', 'd'))
UNION ALL
SELECT 'row security', '', u.rolname::text, false
FROM t, pg_catalog.pg_roles u
WHERE u.rolname = current_user AND t.relrowsecurity AND NOT (u.rolsuper OR u.rolbypassrls)
	AND (t.relowner <> u.oid OR t.relforcerowsecurity)
ORDER BY 1, 2`

// CheckWrites refuses a table on which Procon's writes would run SQL that another role wrote,
// with Procon's role and rights, or would miss rows: triggers that fire on them, rules on
// them, foreign keys of other tables whose actions write there, and row security that applies
// to Procon's role. The error names each and says how to remove it; nil when there is none or
// the table does not exist. table is "schema.table" as the configuration writes it.
func CheckWrites(ctx context.Context, q Querier, table string, writes Writes) error {
	var bits int32
	var events []string
	if writes&Insert != 0 {
		bits |= 4
		events = append(events, "3")
	}
	if writes&Update != 0 {
		bits |= 16
		events = append(events, "2")
	}
	if writes&Delete != 0 {
		bits |= 8
		events = append(events, "4")
	}
	quoted := QuoteQualified(table)
	rows, err := q.Query(ctx, hazardsSQL, quoted, bits, events, writes&Delete != 0, writes&Update != 0)
	if err != nil {
		return fmt.Errorf("look for triggers and rules on %s: %w", table, err)
	}
	var found []string
	for rows.Next() {
		var kind, name, detail string
		var disabled bool
		if err := rows.Scan(&kind, &name, &detail, &disabled); err != nil {
			return fmt.Errorf("look for triggers and rules on %s: %w", table, err)
		}
		ident := pgx.Identifier{name}.Sanitize()
		switch kind {
		case "trigger":
			state := ""
			if disabled {
				state = ", disabled for now"
			}
			found = append(found, fmt.Sprintf("trigger %s (%s%s): DROP TRIGGER %s ON %s", ident, detail, state, ident, quoted))
		case "rule":
			found = append(found, fmt.Sprintf("rule %s: DROP RULE %s ON %s", ident, ident, quoted))
		case "foreign key":
			found = append(found, fmt.Sprintf("foreign key %s of %s, whose action writes that table: ALTER TABLE %s DROP CONSTRAINT %s, or make it NO ACTION",
				ident, detail, detail, ident))
		case "row security":
			found = append(found, fmt.Sprintf("row level security, which applies to role %s: ALTER TABLE %s DISABLE ROW LEVEL SECURITY, or ALTER ROLE %s BYPASSRLS",
				detail, quoted, pgx.Identifier{detail}.Sanitize()))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look for triggers and rules on %s: %w", table, err)
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("table %s: procon-cdc %s it, and code another role wrote would run then with procon-cdc's role: %s",
		table, writes, strings.Join(found, "; "))
}

// ours is true for a role (r) whose objects Procon trusts as its own: procon's role (u)
// itself, a role whose privileges it has (not counting a superuser's, which it has of every
// role), or a superuser.
const ours = `(r.rolsuper OR r.oid = u.oid OR (NOT u.rolsuper AND pg_catalog.pg_has_role(u.oid, r.oid, 'USAGE')))`

// CheckOwnSchema refuses a schema for Procon's own tables unless only Procon's roles (its
// role, a role whose privileges it has, a superuser) own it or may create in it: then no other
// role can put a table there before Procon does, or drop and replace Procon's. It reports
// whether the schema exists.
func CheckOwnSchema(ctx context.Context, q Querier, schema string) (bool, error) {
	rows, err := q.Query(ctx, `
		SELECT a.owner, a.grantee = 0, coalesce(r.rolname::text, ''), coalesce(`+ours+`, false)
		FROM pg_catalog.pg_namespace n
		CROSS JOIN pg_catalog.pg_roles u
		CROSS JOIN LATERAL (
			SELECT true AS owner, n.nspowner AS grantee
			UNION ALL
			SELECT false, x.grantee FROM pg_catalog.aclexplode(n.nspacl) x WHERE x.privilege_type = 'CREATE'
		) a
		LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
		WHERE n.nspname = $1 AND u.rolname = current_user`, schema)
	if err != nil {
		return false, fmt.Errorf("look up schema %s: %w", schema, err)
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	exists := false
	var problems []string
	for rows.Next() {
		var owner, public, trusted bool
		var role string
		if err := rows.Scan(&owner, &public, &role, &trusted); err != nil {
			return false, fmt.Errorf("look up schema %s: %w", schema, err)
		}
		exists = true
		switch {
		case trusted:
		case public:
			problems = append(problems, fmt.Sprintf("every role may create in it: REVOKE CREATE ON SCHEMA %s FROM PUBLIC", quoted))
		case owner:
			problems = append(problems, fmt.Sprintf("role %s owns it: ALTER SCHEMA %s OWNER TO procon-cdc's role", role, quoted))
		default:
			problems = append(problems, fmt.Sprintf("role %s may create in it: REVOKE CREATE ON SCHEMA %s FROM %s", role, quoted, pgx.Identifier{role}.Sanitize()))
		}
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("look up schema %s: %w", schema, err)
	}
	if len(problems) > 0 {
		return true, fmt.Errorf("schema %s holds procon-cdc's own tables, but a role other than procon-cdc's can change what is there: %s",
			schema, strings.Join(problems, "; "))
	}
	return exists, nil
}

// CheckOwnTable refuses one of Procon's own tables unless one of Procon's roles (see
// CheckOwnSchema) owns it: any other owner could add a trigger at any time, and Procon writes
// the table without looking again. It also refuses what CheckWrites refuses for every kind
// of write. A table that does not exist is not checked.
func CheckOwnTable(ctx context.Context, q Querier, table string) error {
	rows, err := q.Query(ctx, `
		SELECT r.rolname::text, `+ours+`
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
		CROSS JOIN pg_catalog.pg_roles u
		WHERE c.oid = pg_catalog.to_regclass($1) AND u.rolname = current_user`, QuoteQualified(table))
	if err != nil {
		return fmt.Errorf("look up the owner of %s: %w", table, err)
	}
	var owner string
	var trusted bool
	found := false
	for rows.Next() {
		if err := rows.Scan(&owner, &trusted); err != nil {
			return fmt.Errorf("look up the owner of %s: %w", table, err)
		}
		found = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("look up the owner of %s: %w", table, err)
	}
	if found && !trusted {
		return fmt.Errorf("table %s is procon-cdc's own, but role %s owns it and could make procon-cdc's writes run its code: drop the table if procon-cdc did not make it, or ALTER TABLE %s OWNER TO procon-cdc's role",
			table, owner, QuoteQualified(table))
	}
	return CheckWrites(ctx, q, table, Insert|Update|Delete)
}
