package event

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/procon-cdc/procon/avro"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// memRegistry is an in-memory schema registry: what avro.Encoder registers, the Decoder's
// schemaByID seam reads.
type memRegistry struct {
	mu    sync.Mutex
	texts []string
	ids   map[string]int
}

func (r *memRegistry) Register(_ context.Context, subject, schema string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]int{}
	}
	if id, ok := r.ids[schema]; ok {
		return id, nil
	}
	r.texts = append(r.texts, schema)
	r.ids[schema] = len(r.texts)
	return len(r.texts), nil
}

func (r *memRegistry) SchemaByVersion(context.Context, string, int) (int, string, error) {
	return 0, "", fmt.Errorf("not supported")
}

func (r *memRegistry) SchemaByID(_ context.Context, id int) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id < 1 || id > len(r.texts) {
		return "", fmt.Errorf("schema id %d not found", id)
	}
	return r.texts[id-1], nil
}

// encoding is one of the record forms a consumer reads.
type encoding string

const (
	jsonSchemas    encoding = "json-schemas"
	jsonSchemaless encoding = "json-schemaless"
	avroFramed     encoding = "avro"
)

var encodings = []encoding{jsonSchemas, jsonSchemaless, avroFramed}

// column describes the source column of a round trip.
type column struct {
	typ    *replication.Type
	typmod int32
}

func base(name string) *replication.Type { return &replication.Type{Name: name, Kind: 'b'} }

func arrayOf(elem *replication.Type) *replication.Type {
	return &replication.Type{Name: "_" + elem.Name, Kind: 'b', Category: 'A', Elem: elem}
}

// roundTrip builds the Debezium record of a row (id, v) with procon-cdc's own envelope
// package (forward: PostgreSQL text → Debezium value), encodes it in enc and decodes it with a
// Decoder configured like the producer; it returns the event.
func roundTrip(t *testing.T, opts envelope.Options, col column, datum replication.Datum, enc encoding) *Event {
	t.Helper()
	rel := &replication.Relation{Schema: "public", Table: "t", Columns: []replication.Column{
		{Name: "id", NotNull: true, TypeMod: -1, Type: base("int4")},
		{Name: "v", TypeMod: col.typmod, Type: col.typ},
	}, Key: []int{0}}
	b := envelope.NewBuilder(envelope.Config{Name: "srv", Database: "db", Version: "test",
		Topics: map[string]string{"public.t": "srv.public.t"}, Options: opts})
	r, err := b.Reader(rel)
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	ev, err := r.Read([]replication.Datum{{Kind: replication.DatumText, Data: []byte("1")}, datum}, envelope.ReadSource{})
	if err != nil {
		t.Fatalf("forward: %v", err)
	}
	reg := &memRegistry{}
	var key, value []byte
	switch enc {
	case jsonSchemas, jsonSchemaless:
		e := &envelope.JSONEncoder{Schemas: enc == jsonSchemas}
		key, value, err = e.Encode(context.Background(), ev)
	case avroFramed:
		e := avro.NewEncoder(avro.Config{Registry: reg})
		key, value, err = e.Encode(context.Background(), ev)
	}
	if err != nil {
		t.Fatalf("encode %s: %v", enc, err)
	}
	d, err := NewDecoder(producerOptions(opts))
	if err != nil {
		t.Fatal(err)
	}
	d.schemaByID = reg.SchemaByID
	got, err := d.Decode(context.Background(), &sink.ConsumedRecord{Topic: "srv.public.t", Partition: 0, Offset: 7, Key: key, Value: value})
	if err != nil {
		t.Fatalf("decode %s: %v\nvalue: %s", enc, err, value)
	}
	return got
}

// producerOptions are the consumer Options matching a producer's envelope Options.
func producerOptions(o envelope.Options) Options {
	return Options{Placeholder: o.Placeholder, TimePrecisionMode: o.TimePrecisionMode.String(),
		DecimalHandlingMode: o.DecimalMode.String(), BinaryHandlingMode: o.BinaryMode.String()}
}

func mustTime(t *testing.T) time.Time {
	t.Helper()
	return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
}
