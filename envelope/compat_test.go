package envelope

import (
	"math"
	"reflect"
	"testing"

	"github.com/procon-cdc/procon/replication"
)

// Values observed from Debezium 3.6.1.Final (test/compat) and pinned here so that a change to
// the type mapping shows up without the services.

func TestJavaHashMapOrder(t *testing.T) {
	kv, err := parseHstore([]byte(`"k"=>"v", "☃"=>"𝄞", "emptyval"=>""`))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range javaHashMapOrder(kv) {
		keys = append(keys, e.key)
	}
	if want := []string{"☃", "k", "emptyval"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("HashMap order = %q, want %q", keys, want)
	}
	if h := javaStringHash("public.ri_index"); h != javaStringHash("public.ri_index") || javaStringHash("a") != 97 {
		t.Errorf("String.hashCode")
	}
	// 13 keys resize the table to 32 buckets.
	many := javaHashMapKeyOrder([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "q"})
	if many[0] != "a" || many[len(many)-1] != "q" {
		t.Errorf("13 keys: %q", many)
	}
}

func TestPlaceholders(t *testing.T) {
	o := DefaultOptions()
	col := func(name string) *replication.Column {
		return &replication.Column{Name: "c", Type: &replication.Type{Name: name}}
	}
	if got := o.placeholder(col("_uuid"), &Schema{Type: Array, Items: prim(String, true)}); !reflect.DeepEqual(got, []any{"b68a35a7-17ad-35b3-af2a-ae46edb4545a"}) {
		t.Errorf("uuid[] placeholder = %v", got)
	}
	ints := o.placeholder(col("_int4"), &Schema{Type: Array, Items: prim(Int32, true)}).([]any)
	if len(ints) != 28 || ints[0] != int32('_') {
		t.Errorf("int4[] placeholder = %v", ints)
	}
	if got := o.placeholder(col("hstore"), named(String, NameJSON, 1)); got != `{"__debezium_unavailable_value":"__debezium_unavailable_value"}` {
		t.Errorf("hstore placeholder = %v", got)
	}
	o.BinaryMode = BinaryBase64
	if got := o.placeholder(col("bytea"), prim(String, true)); got != nil {
		t.Errorf("bytea placeholder in base64 mode = %v, want null", got)
	}
	o.Placeholder = "hex:00ff5e"
	if got := o.placeholder(col("text"), prim(String, true)); got != "\x00\uFFFD^" {
		t.Errorf("hex placeholder as text = %q", got)
	}
	if fits(&Schema{Type: Array, Items: prim(String, true)}, []any{int32(1)}) {
		t.Error("a list of ints fits an array of strings")
	}
}

func TestDefaults(t *testing.T) {
	o := DefaultOptions()
	cases := []struct {
		typ, expr string
		want      any
	}{
		{"int4", "nextval('t_id_seq'::regclass)", int32(0)},
		{"int4", "'-1'::integer", int32(-1)},
		{"int8", "'9223372036854775807'::bigint", int64(math.MaxInt64)},
		{"text", "'it''s'::text", "it"}, // Debezium's non-greedy literal match
		{"text", "NULL::text", nil},
		{"bool", "true", true},
		{"timestamptz", "now()", "1970-01-01T00:00:00.000000Z"},
		{"timestamp", "'2020-01-02 03:04:05.678'::timestamp without time zone", int64(1577934245678000)},
		{"date", "CURRENT_DATE", int32(0)},
		{"uuid", "gen_random_uuid()", "00000000-0000-0000-0000-000000000000"},
		{"interval", "'1 day 02:00:00'::interval", int64(93_600_000_000)},
		{"bytea", `'\x00'::bytea`, nil},
		{"numeric", "3.14", nil}, // VariableScaleDecimal: a struct, which Debezium drops
	}
	for _, c := range cases {
		col := &replication.Column{Name: "c", TypeMod: -1, Default: c.expr, Type: &replication.Type{Name: c.typ, Kind: 'b'}}
		ct, err := o.columnTypeOf(col)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseDefault(col, ct)
		if c.want == nil {
			if ok {
				t.Errorf("%s DEFAULT %s = %v, want none", c.typ, c.expr, got)
			}
			continue
		}
		if !ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s DEFAULT %s = %#v (%v), want %#v", c.typ, c.expr, got, ok, c.want)
		}
	}
}

func TestJacksonSupplementary(t *testing.T) {
	var w jsonWriter
	w.str("a𝄞b")
	if got := string(w.buf); got != `"a\uD834\uDD1Eb"` {
		t.Errorf("got %s", got)
	}
	w = jsonWriter{text: true}
	w.str("𝄞")
	if got := string(w.buf); got != `"𝄞"` {
		t.Errorf("text mode: got %s", got)
	}
}

func TestArraysAsDebezium(t *testing.T) {
	o := DefaultOptions()
	elem := &replication.Type{Name: "time", Kind: 'b'}
	ct, err := o.arrayType("a", elem, -1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ct.conv([]byte(`{13:14:15.123456,NULL}`))
	if err != nil || !reflect.DeepEqual(v, []any{int64(47655123000), nil}) {
		t.Errorf("time[] = %v, %v (java.sql.Time keeps milliseconds)", v, err)
	}
	ct, _ = o.arrayType("a", &replication.Type{Name: "int4", Kind: 'b'}, -1)
	if v, _ := ct.conv([]byte(`{{1,2},{3,4}}`)); !reflect.DeepEqual(v, []any{nil, nil}) {
		t.Errorf("int4[][] = %v, want each sub-array null", v)
	}
	days, _ := o.dateType(TimeAdaptive).conv([]byte("infinity"))
	if days != int32(-2147472692) {
		t.Errorf("date infinity = %v", days)
	}
}

func TestFillUnchangedToast(t *testing.T) {
	rel := &replication.Relation{Schema: "public", Table: "t", Columns: []replication.Column{
		{Name: "id", NotNull: true, TypeMod: -1, Type: &replication.Type{Name: "int4", Kind: 'b'}},
		{Name: "body", TypeMod: -1, Type: &replication.Type{Name: "text", Kind: 'b'}},
	}, Key: []int{0}}
	o := DefaultOptions()
	rs, err := newRelSchema(rel, &Config{Topics: map[string]string{rel.QualifiedName(): "p.public.t"}, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	newRow := []replication.Datum{{Kind: replication.DatumText, Data: []byte("1")}, {Kind: replication.DatumUnchanged}}
	oldRow := []replication.Datum{{Kind: replication.DatumText, Data: []byte("1")}, {Kind: replication.DatumText, Data: []byte("long text")}}
	// REPLICA IDENTITY FULL: the old image has the value, and Debezium takes it from there.
	v, err := rs.row(nil, newRow, oldRow, &o)
	if err != nil || v.Fields[1] != "long text" {
		t.Errorf("filled = %v, %v; want the old image's value", v.Fields[1], err)
	}
	o.FillUnchangedToast = false
	if v, _ := rs.row(nil, newRow, oldRow, &o); v.Fields[1] != "__debezium_unavailable_value" {
		t.Errorf("fill_unchanged_toast: false gave %v, want the placeholder", v.Fields[1])
	}
	if v, _ := rs.row(nil, newRow, nil, &o); v.Fields[1] != "__debezium_unavailable_value" {
		t.Errorf("without an old image: %v, want the placeholder", v.Fields[1])
	}
}
