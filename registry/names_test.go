package registry

import (
	"testing"

	"github.com/hamba/avro/v2"
)

// Schemas as Confluent's AvroData registers Debezium's records under the topic orders-v1 and
// the topic.prefix my-app (schema.name.adjustment.mode none): Java's Avro checks only the
// last part of a name, hamba every part.
func TestParseJavaNames(t *testing.T) {
	text := `{"type":"record","name":"Envelope","namespace":"orders-v1","fields":[` +
		`{"name":"before","type":["null",{"type":"record","name":"Value","fields":[{"name":"id","type":"long","default":5}]}],"default":null},` +
		`{"name":"after","type":["null","Value"],"default":null},` +
		`{"name":"other","type":["null",{"type":"record","name":"Key","namespace":"my-app.public.t","fields":[{"name":"v","type":"orders-v1.Value"}]}],"default":null},` +
		`{"name":"again","type":["null","my-app.public.t.Key"],"default":null}],"connect.name":"orders-v1.Envelope"}`
	if _, err := avro.ParseWithCache(text, "", &avro.SchemaCache{}); err == nil {
		t.Fatal("hamba now parses dashed namespaces; Parse's rewriting may be unnecessary")
	}
	s, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	rec := s.(*avro.RecordSchema)
	if rec.Name() != "Envelope" || rec.Prop("connect.name") != "orders-v1.Envelope" {
		t.Errorf("got name %s, connect.name %v", rec.Name(), rec.Prop("connect.name"))
	}
	before := rec.Fields()[0].Type().(*avro.UnionSchema).Types()[1].(*avro.RecordSchema)
	b, err := avro.Marshal(s, map[string]any{"before": nil, "after": map[string]any{before.FullName(): map[string]any{"id": int64(7)}}, "other": nil, "again": nil})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRaw(text); err != nil {
		t.Fatalf("ParseRaw: %v", err)
	}
	out, err := DecodeJSON(s, b)
	if err != nil || string(out) != `{"before":null,"after":{"id":7},"other":null,"again":null}` {
		t.Errorf("decoded %s, %v", out, err)
	}
	// A last part Java refuses stays refused.
	if _, err := Parse(`{"type":"record","name":"a.my-Value","fields":[]}`); err == nil {
		t.Error("an invalid simple name was accepted")
	}
}
