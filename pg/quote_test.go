package pg_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/pg"
)

func TestQuoteQualified(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"public.accounts", `"public"."accounts"`},
		{"Sales.Orders", `"Sales"."Orders"`}, // case kept: no folding to lower case
		{`my"schema.ta"ble`, `"my""schema"."ta""ble"`},
		{"app.orders.2024", `"app"."orders.2024"`}, // split at the first dot, as the configuration does
		{"accounts", `"accounts"`},                 // resolved through search_path
		{`Robert"); DROP TABLE x; --`, `"Robert""); DROP TABLE x; --"`},
		{"", `""`},
	} {
		if got := pg.QuoteQualified(tc.name); got != tc.want {
			t.Errorf("QuoteQualified(%q) = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestQuoteQualifiedSplitsAsTheConfiguration keeps the quoted name the relation that
// relation_configs names: the configuration's schema and table, each one identifier.
func TestQuoteQualifiedSplitsAsTheConfiguration(t *testing.T) {
	for _, name := range []string{"public.accounts", "a.b.c", "x.", ".y", `"q.s".t`} {
		schema, table := config.SplitRelation(name)
		if got, want := pg.QuoteQualified(name), (pgx.Identifier{schema, table}).Sanitize(); got != want {
			t.Errorf("QuoteQualified(%q) = %s, config.SplitRelation gives %s", name, got, want)
		}
		if !strings.Contains(name, ".") {
			t.Fatalf("%q: only dotted names are compared", name)
		}
	}
}

func TestOperator(t *testing.T) {
	for _, tc := range []struct{ schema, op, want string }{
		{"", ">", `OPERATOR("pg_catalog".>)`},
		{"pg_catalog", "<=", `OPERATOR("pg_catalog".<=)`},
		{"ext", "=", `OPERATOR("ext".=)`},
		{`we"ird`, "=", `OPERATOR("we""ird".=)`},
	} {
		if got := pg.Operator(tc.schema, tc.op); got != tc.want {
			t.Errorf("Operator(%q, %q) = %s, want %s", tc.schema, tc.op, got, tc.want)
		}
	}
}
