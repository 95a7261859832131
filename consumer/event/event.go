// Package event reads the change events of a Kafka record, written by procon-cdc or by
// Debezium (JSON with or without the schema envelope, or Confluent-framed Avro through a schema
// registry), into a typed Event, and turns each field's value back into PostgreSQL's text input
// for a target column: Debezium's semantic types (Decimal, VariableScaleDecimal, the date/time
// types of every time.precision.mode, Json, Uuid, arrays, bytes, intervals) become the literal
// PostgreSQL parses into the column's type.
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
