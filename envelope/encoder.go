package envelope

import (
	"context"
	"fmt"
	"sync"
)

// Encoder serializes events. JSONEncoder writes Kafka Connect's JsonConverter forms; package
// avro's Encoder writes Confluent's wire format through a schema registry. Implementations are
// safe for concurrent use.
type Encoder interface {
	// Encode returns the key and value bytes of ev; a nil value is a tombstone, a nil key a
	// record without key. It may block while a schema registry is unreachable, until ctx ends.
	Encode(ctx context.Context, ev *Event) (key, value []byte, err error)
	// EncodeKey serializes a key struct on its own, as the __debezium.oldkey/newkey headers
	// carry it.
	EncodeKey(ctx context.Context, s *Schema, v *Value) ([]byte, error)
}

// JSONEncoder writes JSON as Kafka Connect's JsonConverter does, with the {"schema",
// "payload"} wrapper when Schemas is set (schemas.enable=true) and the bare payload otherwise.
// The zero value is ready; a JSONEncoder is safe for concurrent use once Schemas is set.
type JSONEncoder struct {
	Schemas bool

	mu      sync.Mutex
	schemas map[*Schema][]byte // rendered schemas, computed once per schema object
}

// Encode implements Encoder.
func (e *JSONEncoder) Encode(ctx context.Context, ev *Event) (key, value []byte, err error) {
	// Key and value are written into one scratch buffer and copied out together: one
	// allocation per record, the key and the value sharing it.
	sp := scratch.Get().(*[]byte)
	buf := (*sp)[:0]
	defer func() {
		if cap(buf) <= 1<<20 { // do not keep a huge record's buffer around
			*sp = buf[:0]
			scratch.Put(sp)
		}
	}()
	k := -1
	if ev.Key != nil {
		if buf, err = e.append(buf, ev.KeySchema, ev.Key); err != nil {
			return nil, nil, fmt.Errorf("key of %s: %w", ev.Topic, err)
		}
		k = len(buf)
	}
	if ev.Value != nil {
		if buf, err = e.append(buf, ev.ValueSchema, ev.Value); err != nil {
			return nil, nil, fmt.Errorf("value of %s: %w", ev.Topic, err)
		}
	}
	out := append([]byte(nil), buf...)
	if k >= 0 {
		key = out[:k:k]
	}
	if ev.Value != nil {
		value = out[max(k, 0):]
	}
	return key, value, nil
}

// EncodeKey implements Encoder.
func (e *JSONEncoder) EncodeKey(_ context.Context, s *Schema, v *Value) ([]byte, error) {
	return e.encode(s, v)
}

// scratch buffers for encoding: the result is copied out at its exact size, so each record
// costs one allocation of the size it needs, whatever it grew through.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (e *JSONEncoder) encode(s *Schema, v *Value) ([]byte, error) {
	sp := scratch.Get().(*[]byte)
	buf, err := e.append((*sp)[:0], s, v)
	if cap(buf) <= 1<<20 { // do not keep a huge record's buffer around
		*sp = buf[:0]
		scratch.Put(sp)
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), buf...), nil
}

// append writes v's JSON after dst.
func (e *JSONEncoder) append(dst []byte, s *Schema, v *Value) ([]byte, error) {
	w := jsonWriter{buf: dst}
	if e.Schemas {
		w.buf = append(w.buf, `{"schema":`...)
		rendered, err := e.schemaJSON(s)
		if err != nil {
			return w.buf, err
		}
		w.buf = append(w.buf, rendered...)
		w.buf = append(w.buf, `,"payload":`...)
	}
	if err := w.value(s, v); err != nil {
		return w.buf, err
	}
	if e.Schemas {
		w.buf = append(w.buf, '}')
	}
	return w.buf, nil
}

func (e *JSONEncoder) schemaJSON(s *Schema) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if b, ok := e.schemas[s]; ok {
		return b, nil
	}
	var w jsonWriter
	if err := w.schema(s, ""); err != nil {
		return nil, err
	}
	if e.schemas == nil {
		e.schemas = map[*Schema][]byte{}
	}
	e.schemas[s] = w.buf
	return w.buf, nil
}

// Forget drops what the encoder keeps of schemas that no event will use again
// (Builder.Retired).
func (e *JSONEncoder) Forget(schemas []*Schema) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range schemas {
		delete(e.schemas, s)
	}
}

// CachedSchemas is the number of schemas whose JSON rendering the encoder keeps, for tests and
// diagnostics.
func (e *JSONEncoder) CachedSchemas() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.schemas)
}
