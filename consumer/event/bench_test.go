package event

import (
	"context"
	"testing"

	"github.com/procon-cdc/procon/avro"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// benchRecord is a typical row of an application table as procon-cdc writes it (built with the
// envelope package, as the round trips are): the key and value of its snapshot event in enc.
func benchRecord(b *testing.B, enc encoding, reg *memRegistry) (key, value []byte) {
	b.Helper()
	add := func(name, typ string, typmod int32, notNull bool) replication.Column {
		return replication.Column{Name: name, NotNull: notNull, TypeMod: typmod, Type: base(typ)}
	}
	rel := &replication.Relation{Schema: "public", Table: "orders", Columns: []replication.Column{
		add("id", "int8", -1, true),
		add("customer_id", "int4", -1, true),
		add("email", "text", -1, false),
		add("total", "numeric", numericTypmod(12, 2), false),
		add("created_at", "timestamptz", -1, true),
		add("updated_at", "timestamptz", -1, false),
		add("meta", "jsonb", -1, false),
		add("paid", "bool", -1, false),
	}, Key: []int{0}}
	row := []string{"1234567", "42", "jane.doe@example.com", "1234.56", "2026-01-02 03:04:05.123456+00",
		"2026-01-02 03:04:06.5+00", `{"plan": "pro", "seats": 12, "tags": ["a", "b\"c"]}`, "t"}
	bld := envelope.NewBuilder(envelope.Config{Name: "srv", Database: "db", Version: "test",
		Topics: map[string]string{"public.orders": "srv.public.orders"}, Options: envelope.DefaultOptions()})
	r, err := bld.Reader(rel)
	if err != nil {
		b.Fatal(err)
	}
	var datums []replication.Datum
	for _, text := range row {
		datums = append(datums, replication.Datum{Kind: replication.DatumText, Data: []byte(text)})
	}
	ev, err := r.Read(datums, envelope.ReadSource{})
	if err != nil {
		b.Fatal(err)
	}
	var e envelope.Encoder
	switch enc {
	case jsonSchemas, jsonSchemaless:
		e = &envelope.JSONEncoder{Schemas: enc == jsonSchemas}
	case avroFramed:
		e = avro.NewEncoder(avro.Config{Registry: reg})
	}
	key, value, err = e.Encode(context.Background(), ev)
	if err != nil {
		b.Fatal(err)
	}
	return key, value
}

// BenchmarkDecode decodes one record (key and value) of each form, with the Decoder's schema
// caches warm, as a consumer runs.
func BenchmarkDecode(b *testing.B) {
	for _, enc := range encodings {
		b.Run(string(enc), func(b *testing.B) {
			reg := &memRegistry{}
			key, value := benchRecord(b, enc, reg)
			d, err := NewDecoder(Options{})
			if err != nil {
				b.Fatal(err)
			}
			d.schemaByID = reg.SchemaByID
			rec := &sink.ConsumedRecord{Topic: "srv.public.orders", Key: key, Value: value}
			ctx := context.Background()
			if _, err := d.Decode(ctx, rec); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(key) + len(value)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.Decode(ctx, rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
