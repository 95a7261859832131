package event

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
)

// TestUnchanged writes the unchanged-TOAST placeholder with the envelope package for each
// column type it has a form for, and checks that Unchanged recognizes it in every encoding.
func TestUnchanged(t *testing.T) {
	cols := map[string]column{
		"text":    {typ: base("text"), typmod: -1},
		"varchar": {typ: base("varchar"), typmod: -1},
		"json":    {typ: base("json"), typmod: -1},
		"jsonb":   {typ: base("jsonb"), typmod: -1},
		"uuid":    {typ: base("uuid"), typmod: -1},
		"bytea":   {typ: base("bytea"), typmod: -1},
		"text[]":  {typ: arrayOf(base("text")), typmod: -1},
		"jsonb[]": {typ: arrayOf(base("jsonb")), typmod: -1},
		"bytea[]": {typ: arrayOf(base("bytea")), typmod: -1},
		"int4[]":  {typ: arrayOf(base("int4")), typmod: -1},
		"int8[]":  {typ: arrayOf(base("int8")), typmod: -1},
		"date[]":  {typ: arrayOf(base("date")), typmod: -1},
		"uuid[]":  {typ: arrayOf(base("uuid")), typmod: -1},
		"hstore":  {typ: base("hstore"), typmod: -1},
	}
	placeholders := []string{"", "__custom_marker", "hex:00ff41"}
	for name, col := range cols {
		for _, ph := range placeholders {
			for _, enc := range encodings {
				t.Run(name+"/"+ph+"/"+string(enc), func(t *testing.T) {
					opts := envelope.DefaultOptions()
					if ph != "" {
						opts.Placeholder = ph
					}
					ev := roundTrip(t, opts, col, replication.Datum{Kind: replication.DatumUnchanged}, enc)
					v, _ := ev.After.Get("v")
					if v.Raw == nil {
						t.Skip("envelope writes null for this placeholder") // e.g. a hex placeholder that is no UTF-8 in a uuid[]
					}
					if !v.Unchanged() {
						t.Errorf("placeholder %#v not recognized", v.Raw)
					}
				})
			}
		}
	}
	// The hstore map form.
	opts := envelope.DefaultOptions()
	opts.HstoreMode = envelope.HstoreMap
	for _, enc := range encodings {
		ev := roundTrip(t, opts, column{typ: base("hstore"), typmod: -1}, replication.Datum{Kind: replication.DatumUnchanged}, enc)
		if v, _ := ev.After.Get("v"); !v.Unchanged() {
			t.Errorf("hstore map/%s: placeholder %#v not recognized", enc, v.Raw)
		}
	}
}

func TestNotUnchanged(t *testing.T) {
	for _, v := range []Value{
		{Raw: "__debezium_unavailable_valuex"},
		{Raw: []any{"a", "__debezium_unavailable_value"}},
		{Raw: []any{json.Number("95")}},
		{Raw: json.Number("1")},
		{Raw: nil},
		{Raw: map[string]any{"__debezium_unavailable_value": "x"}},
	} {
		if v.Unchanged() {
			t.Errorf("%#v reads as the placeholder", v.Raw)
		}
	}
}

func TestPath(t *testing.T) {
	meta := &envelope.Schema{Type: envelope.String, Name: envelope.NameJSON, Optional: true}
	inner := &envelope.Schema{Type: envelope.Struct, Name: "inner", Fields: []envelope.Field{{Name: "plan", Schema: &envelope.Schema{Type: envelope.String}}}}
	s := &envelope.Schema{Type: envelope.Struct, Name: "row", Fields: []envelope.Field{{Name: "meta", Schema: meta}, {Name: "in", Schema: inner}}}
	sv := envelope.NewValue(s)
	sv.Fields[0] = `{"plan":{"tier":"gold","seats":5},"list":[1]}`
	iv := envelope.NewValue(inner)
	iv.Fields[0] = "basic"
	sv.Fields[1] = iv
	v := Value{Schema: s, Raw: sv}
	cases := []struct {
		path []string
		want string
		ok   bool
	}{
		{[]string{"meta", "plan", "tier"}, "gold", true},
		{[]string{"meta", "plan", "seats"}, "5", true},
		{[]string{"in", "plan"}, "basic", true},
		{[]string{"meta", "nope"}, "", false},
		{[]string{"meta", "list", "x"}, "", false},
		{[]string{"in", "plan", "deeper"}, "", false},
	}
	for _, tc := range cases {
		got, ok := v.Path(tc.path...)
		if ok != tc.ok {
			t.Errorf("Path(%v) ok = %v", tc.path, ok)
			continue
		}
		if !ok {
			continue
		}
		text, _, err := got.Text("text")
		if err != nil || text != tc.want {
			t.Errorf("Path(%v) = %q, %v; want %q", tc.path, text, err, tc.want)
		}
	}
	// Schemaless: a nested object, and a plain string that is not JSON is not looked into.
	doc := Value{Raw: map[string]any{"meta": map[string]any{"plan": "pro"}, "note": "plan"}}
	if got, ok := doc.Path("meta", "plan"); !ok || got.Raw != "pro" {
		t.Errorf("schemaless Path = %#v, %v", got.Raw, ok)
	}
	if _, ok := doc.Path("note", "plan"); ok {
		t.Errorf("Path into a plain string succeeded")
	}
}

func TestColumnType(t *testing.T) {
	opts := envelope.DefaultOptions()
	cases := []struct {
		col  column
		want string
	}{
		{column{base("int2"), -1}, "smallint"},
		{column{base("int4"), -1}, "integer"},
		{column{base("int8"), -1}, "bigint"},
		{column{base("float4"), -1}, "real"},
		{column{base("float8"), -1}, "double precision"},
		{column{base("bool"), -1}, "boolean"},
		{column{base("numeric"), numericTypmod(10, 2)}, "numeric(10,2)"},
		{column{base("numeric"), -1}, "numeric"},
		{column{base("text"), -1}, "text"},
		{column{base("jsonb"), -1}, "jsonb"},
		{column{base("uuid"), -1}, "uuid"},
		{column{base("bytea"), -1}, "bytea"},
		{column{base("date"), -1}, "date"},
		{column{base("time"), 3}, "time(3) without time zone"},
		{column{base("time"), -1}, "time without time zone"},
		{column{base("timestamp"), 3}, "timestamp(3) without time zone"},
		{column{base("timestamp"), -1}, "timestamp without time zone"},
		{column{base("timestamptz"), -1}, "timestamp with time zone"},
		{column{base("timetz"), -1}, "time with time zone"},
		{column{base("interval"), -1}, "interval"},
		{column{base("bit"), 5}, "bit varying(5)"},
		{column{base("point"), -1}, "point"},
		{column{arrayOf(base("text")), -1}, "text[]"},
		{column{arrayOf(base("numeric")), numericTypmod(6, 2)}, "numeric(6,2)[]"},
	}
	for _, tc := range cases {
		for _, enc := range []encoding{jsonSchemas, avroFramed} {
			ev := roundTrip(t, opts, tc.col, replication.Datum{Kind: replication.DatumNull}, enc)
			v, _ := ev.After.Get("v")
			got, err := ColumnType(v.Schema)
			if err != nil || got != tc.want {
				t.Errorf("%s/%s: ColumnType = %q, %v; want %q", tc.col.typ.Name, enc, got, err, tc.want)
			}
		}
	}
}

// TestTextErrors checks that values that cannot be read as the column's type are errors
// naming the value's kind and the column type, and never the value.
func TestTextErrors(t *testing.T) {
	secret := "s3cr3t-value"
	cases := []struct {
		v      Value
		pgType string
	}{
		{Value{Raw: secret}, "numeric(10,2)"},
		{Value{Raw: secret}, "bytea"},
		{Value{Raw: json.Number("1.5")}, "integer"},
		{Value{Raw: []any{secret}}, "integer"},
		{Value{Raw: map[string]any{"k": secret}}, "date"},
		{Value{Raw: true}, "interval"},
		{Value{Schema: &envelope.Schema{Type: envelope.String, Name: envelope.NameZonedTS}, Raw: secret}, "timestamp with time zone"},
		{Value{Schema: &envelope.Schema{Type: envelope.Int32, Name: envelope.NameDate}, Raw: "x"}, "date"},
		{Value{Schema: &envelope.Schema{Type: envelope.Float64}, Raw: 1.5}, "bigint"},
		{Value{Schema: &envelope.Schema{Type: envelope.String}, Raw: secret}, "double precision"},
	}
	for _, tc := range cases {
		_, _, err := tc.v.Text(tc.pgType)
		if err == nil {
			t.Errorf("%#v as %s: no error", tc.v.Raw, tc.pgType)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "1.5") {
			t.Errorf("error %q shows the value", err)
		}
		if !strings.Contains(err.Error(), tc.pgType) {
			t.Errorf("error %q does not name the column type %s", err, tc.pgType)
		}
	}
}
