// Package event reads the change events of a Kafka record, written by procon-cdc or by
// Debezium (JSON with or without the schema envelope, or Confluent-framed Avro through a schema
// registry), into a typed Event, and turns each field's value back into PostgreSQL's text input
// for a target column: Debezium's semantic types (Decimal, VariableScaleDecimal, the date/time
// types of every time.precision.mode, Json, Uuid, arrays, bytes, intervals) become the literal
// PostgreSQL parses into the column's type.
//
// A Decoder (NewDecoder) reads each record in the form it finds: a zero first byte is
// Confluent's framing, whose writer schema it fetches from the registry once per id and whose
// connect.* properties give back the Connect schema; a JSON object of exactly "schema" and
// "payload" is Kafka's JsonConverter with schemas; any other JSON object is a schemaless
// payload. Keys are read the same way. A null value is a tombstone. Every field's Value keeps
// its Connect schema (nil without one), which Value.Text follows; without a schema the target
// column's type and the Decoder's Options (the producer's time.precision.mode,
// decimal.handling.mode, binary.handling.mode) say how a JSON value reads.
//
// Value.Unchanged recognizes the unchanged-TOAST placeholder, which must never overwrite a
// stored value; Value.Path and Row.Path look into structs and JSON documents (keys_mapping's
// "meta.plan"); ColumnType chooses the column type for a field when a table is created.
//
// What Debezium's encodings lose stays lost: MicroDuration's average months, Connect's
// millisecond times, Bits' leading zeros of a bit varying, isostring's 24:00:00 (00:00:00),
// timetz offsets (the instant is kept, in UTC). Text documents each.
//
// Records come from outside: a malformed one is an error naming its topic, partition and
// offset and what is wrong, never a panic; sizes and nesting are bounded (a key or value of at
// most 64 MiB, schemas 32 deep, arrays 6 dimensions, decimals of what numeric holds).
//
// Concurrency: a Decoder is safe for concurrent use; an Event and its Values are read by one
// goroutine at a time.
package event

import (
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/txid"
)

// Op is an event's operation, Debezium's op letter.
type Op byte

// Operations.
const (
	Create   Op = 'c'
	Update   Op = 'u'
	Delete   Op = 'd'
	Read     Op = 'r' // a snapshot row
	Truncate Op = 't'
)

// Event is one change event.
type Event struct {
	Op Op
	// Key is the record key's fields (nil for a record without a key).
	Key *Row
	// Before and After are the row images; nil when the event has none.
	Before, After *Row
	// Source is the event's source block (nil when absent).
	Source *Row
	// Tombstone: the record's value is null (Kafka's deletion marker for compaction). A
	// tombstone has no Op and no rows.
	Tombstone bool
	// Tx is the record's procon.tx/procon.seq idempotency key; HasTx says whether the record
	// carried both headers. SourceHeader is its procon.source header ("" when absent).
	Tx           txid.Key
	HasTx        bool
	SourceHeader string
}

// Row is a struct value: a row image, a key or the source block. Fields keep the order of the
// schema (or of the JSON document when there is none).
type Row struct {
	Fields []Field
}

// Field is one named value of a Row.
type Field struct {
	Name  string
	Value Value
}

// Get returns the value of the named field.
func (r *Row) Get(name string) (Value, bool) {
	if r == nil {
		return Value{}, false
	}
	for i := range r.Fields {
		if r.Fields[i].Name == name {
			return r.Fields[i].Value, true
		}
	}
	return Value{}, false
}

// Value is one field's value with what is known of its type: its Connect schema when the
// record had one (JSON with schemas, Avro), nil when it had none (schemaless JSON, where the
// target column's type decides how the value reads).
type Value struct {
	// Schema is the field's Connect schema, nil for schemaless JSON.
	Schema *envelope.Schema
	// Raw is the value as decoded: with a schema (JSON with schemas, Avro), the Connect value
	// (envelope.Schema's Go values: a Decimal for Connect's Decimal, *envelope.Value for a
	// struct); without one, what encoding/json's UseNumber decoding gives (nil, bool,
	// json.Number, string, []any, map[string]any).
	Raw any

	// cfg is the Decoder's settings (placeholder, modes); nil reads as the defaults.
	cfg *settings
}
