package pg

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// QuoteQualified quotes a relation name as Procon's configuration writes it: "schema.table",
// split at the first dot as config.SplitRelation splits it, so a table name may hold dots and
// a schema name may not. Each part is taken literally, case and quotes included, and quoted as
// one identifier. A name without a dot is one identifier, which PostgreSQL resolves through
// search_path; callers that mean public qualify it first.
func QuoteQualified(name string) string {
	if schema, table, ok := strings.Cut(name, "."); ok {
		return pgx.Identifier{schema, table}.Sanitize()
	}
	return pgx.Identifier{name}.Sanitize()
}

// Operator writes op as the operator of schema, OPERATOR("schema".op), so that no operator
// found through search_path can stand in for it; schema "" is pg_catalog. A row comparison
// takes it too: (a, b) OPERATOR(pg_catalog.>) (x, y) compares with each column's operator of
// that schema.
func Operator(schema, op string) string {
	if schema == "" {
		schema = "pg_catalog"
	}
	return "OPERATOR(" + pgx.Identifier{schema}.Sanitize() + "." + op + ")"
}
