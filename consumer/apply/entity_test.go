package apply

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestNewRefusesBadEntities: configuration mistakes are refused before the database is
// asked anything, with the field and what to do.
func TestNewRefusesBadEntities(t *testing.T) {
	key := []KeyColumn{{Column: "id", Field: "id"}}
	for _, tc := range []struct {
		name string
		e    Entity
		want string
	}{
		{"no master key", Entity{Topic: "t", Table: "x"}, "master_key is empty"},
		{"key without field", Entity{Topic: "t", Table: "x", MasterKey: []KeyColumn{{Column: "id"}}}, `master_key ["id", ""] needs a column and a field`},
		{"key column twice", Entity{Topic: "t", Table: "x", MasterKey: []KeyColumn{{"id", "a"}, {"id", "b"}}}, `names column "id" twice`},
		{"soft delete on the key", Entity{Topic: "t", Table: "x", MasterKey: key, SoftDelete: "id"}, `soft_delete column "id" is part of the master key`},
		{"bad on_truncate", Entity{Topic: "t", Table: "x", MasterKey: key, OnTruncate: "drop"}, `on_truncate is "drop"`},
		{"two fields to one column", Entity{Topic: "t", Table: "x", MasterKey: key, Mapping: Mapping{Fields: map[string]string{"a": "c", "b": "c"}}},
			`maps both "a" and "b" to column "c"`},
		{"per-op clash", Entity{Topic: "t", Table: "x", MasterKey: key, Mapping: Mapping{Fields: map[string]string{"a": "c"}, OnUpdate: map[string]string{"b": "c"}}},
			`(on_update) maps both "a" and "b" to column "c"`},
		{"mapping onto the key", Entity{Topic: "t", Table: "x", MasterKey: key, Mapping: Mapping{Fields: map[string]string{"uuid": "id"}}},
			`maps "uuid" to "id", a master key column, which is read from field "id"`},
		{"empty path part", Entity{Topic: "t", Table: "x", MasterKey: key, Mapping: Mapping{Fields: map[string]string{"meta..plan": "plan"}}}, `maps "meta..plan"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), nil, tc.e, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestPlans: per-operation mappings merge over the common one, drops remove fields from one
// operation only, and dotted paths are nested reads.
func TestPlans(t *testing.T) {
	e := Entity{MasterKey: []KeyColumn{{"id", "id"}}, Mapping: Mapping{
		Fields:       map[string]string{"email": "contact", "meta.plan": "plan", "src": "source"},
		OnCreate:     map[string]string{"src": "created_from"},
		DropOnUpdate: []string{"email"},
		Drop:         []string{"secret"},
	}}
	plans, err := e.plans()
	if err != nil {
		t.Fatal(err)
	}
	c, u := plans[opCreate], plans[opUpdate]
	if c.mapped["src"] != "created_from" || u.mapped["src"] != "source" {
		t.Errorf("src maps to %q on create and %q on update, want created_from and source", c.mapped["src"], u.mapped["src"])
	}
	if c.mapped["email"] != "contact" || !u.drop["email"] || u.mapped["email"] != "" {
		t.Errorf("email: create %q, update dropped %v mapped %q; want contact, dropped on update", c.mapped["email"], u.drop["email"], u.mapped["email"])
	}
	if !c.drop["secret"] || !u.drop["secret"] {
		t.Errorf("secret is not dropped on both operations")
	}
	if len(c.nested) != 1 || strings.Join(c.nested[0].path, "/") != "meta/plan" || c.nested[0].column != "plan" {
		t.Errorf("nested: got %+v, want meta/plan → plan", c.nested)
	}
}

func TestKeyStringIsInjective(t *testing.T) {
	a := keyString(texts("a:1", "b"))
	b := keyString(texts("a", "1:b"))
	if a == b {
		t.Errorf("keys (a:1, b) and (a, 1:b) share the map key %q", a)
	}
}

func texts(s ...string) []pgtype.Text {
	out := make([]pgtype.Text, len(s))
	for i, x := range s {
		out[i] = pgtype.Text{String: x, Valid: true}
	}
	return out
}
