package envelope

import "testing"

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
