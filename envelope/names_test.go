package envelope

import (
	"testing"

	"github.com/procon-cdc/procon/replication"
)

// TestNameAdjustment: schema.name.adjustment.mode and field.name.adjustment.mode rename the
// Connect schemas and fields themselves, so the JSON output carries the adjusted names too.
func TestNameAdjustment(t *testing.T) {
	o := Options{SchemaNameAdjust: AdjustAvro, FieldNameAdjust: AdjustAvro}
	for in, want := range map[string]string{
		"srv-1.public.my-table.Value": "srv_1.public.my_table.Value",
		"1srv.public.t":               "_1srv.public.t",
		"ok.name_1":                   "ok.name_1",
		"café.t":                      "caf_.t",
		"x😀.t":                        "x__.t",
	} {
		if got := o.adjustSchemaName(in); got != want {
			t.Errorf("schema name %q: got %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"my col": "my_col", "a.b": "a_b", "9lives": "_9lives", "ok": "ok"} {
		if got := o.adjustFieldName(in); got != want {
			t.Errorf("field name %q: got %q, want %q", in, got, want)
		}
	}
}

// TestSchemaNamesApartFromTopic: relation_configs.*.schema_name names a relation's schemas
// when it is not its topic (Kafka Connect's RegexRouter moves the topic, not the names), and
// schema.name.adjustment.mode applies to it.
func TestSchemaNamesApartFromTopic(t *testing.T) {
	int4 := &replication.Type{Name: "int4", Schema: "pg_catalog", Kind: 'b', Category: 'N'}
	rel := &replication.Relation{ID: 1, Schema: "public", Table: "orders", ReplicaIdentity: 'd', Captured: true,
		Columns: []replication.Column{{Name: "id", NotNull: true, TypeMod: -1, Type: int4}}, Key: []int{0}}
	for _, tc := range []struct {
		names  map[string]string
		adjust NameAdjustment
		want   string
	}{
		{nil, AdjustNone, "orders-v1"},
		{map[string]string{"public.orders": "shop-1.public.orders"}, AdjustNone, "shop-1.public.orders"},
		{map[string]string{"public.orders": "shop-1.public.orders"}, AdjustAvro, "shop_1.public.orders"},
	} {
		b := NewBuilder(Config{Name: "shop-1", Topics: map[string]string{"public.orders": "orders-v1"}, SchemaNames: tc.names,
			Options: Options{SchemaNameAdjust: tc.adjust}})
		key, env, err := b.Schemas(rel)
		if err != nil {
			t.Fatal(err)
		}
		if key.Name != tc.want+".Key" || env.Name != tc.want+".Envelope" || env.Fields[0].Schema.Name != tc.want+".Value" {
			t.Errorf("%v %v: names %s, %s, %s; want the prefix %s", tc.names, tc.adjust, key.Name, env.Name, env.Fields[0].Schema.Name, tc.want)
		}
	}
}
