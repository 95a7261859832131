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
