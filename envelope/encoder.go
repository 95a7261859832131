package envelope

import (
	"context"
	"fmt"
	"strconv"
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
	if o := ev.Outbox; o != nil {
		// JsonConverter writes a null key or value that has a schema: "null", or the
		// envelope with a null payload. Only a value without a schema is a tombstone.
		if key, err = e.encode(ev.KeySchema, o.Key); err != nil {
			return nil, nil, fmt.Errorf("key of %s: %w", ev.Topic, err)
		}
		if ev.ValueSchema != nil {
			if value, err = e.encode(ev.ValueSchema, o.Value); err != nil {
				return nil, nil, fmt.Errorf("value of %s: %w", ev.Topic, err)
			}
		}
		return key, value, nil
	}
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
		if buf, err = e.appendJSON(buf, ev.KeySchema, ev.Key, true); err != nil {
			return nil, nil, fmt.Errorf("key of %s: %w", ev.Topic, err)
		}
		k = len(buf)
	}
	if ev.Value != nil {
		if buf, err = e.appendJSON(buf, ev.ValueSchema, ev.Value, true); err != nil {
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

// EncodeValue serializes a value of any schema on its own, as JsonConverter writes a record
// header's value (header.converter). The schema's rendering is not kept: header schemas are
// those of columns, and nothing would tell this encoder when their relation version is gone.
func (e *JSONEncoder) EncodeValue(s *Schema, v any) ([]byte, error) {
	b, err := e.appendJSON(nil, s, v, false)
	if err != nil {
		return nil, err
	}
	return b, nil
}

func (e *JSONEncoder) encode(s *Schema, v any) ([]byte, error) {
	sp := scratch.Get().(*[]byte)
	buf, err := e.appendJSON((*sp)[:0], s, v, true)
	if cap(buf) <= 1<<20 { // do not keep a huge record's buffer around
		*sp = buf[:0]
		scratch.Put(sp)
	}
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), buf...), nil
}

// appendJSON writes v's JSON after dst; with cached, a schema is rendered once (schemaJSON)
// rather than each time.
func (e *JSONEncoder) appendJSON(dst []byte, s *Schema, v any, cached bool) ([]byte, error) {
	w := jsonWriter{buf: dst}
	if e.Schemas {
		w.buf = append(w.buf, `{"schema":`...)
		if !cached {
			if err := w.schema(s, ""); err != nil {
				return w.buf, err
			}
		} else {
			rendered, err := e.schemaJSON(s)
			if err != nil {
				return w.buf, err
			}
			w.buf = append(w.buf, rendered...)
		}
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

// SimpleHeaderValue writes a value as Kafka Connect's SimpleHeaderConverter writes a header
// (Values.convertToString): a string as its UTF-8 bytes, a boolean or a number as Java prints
// it; a null is a nil value. Other types (bytes, decimals, structs, arrays, maps) are an error
// naming them: header.converter: json writes every type.
func SimpleHeaderValue(s *Schema, v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	switch x := v.(type) {
	case string:
		return []byte(x), nil
	case bool:
		return strconv.AppendBool(nil, x), nil
	case int8:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case float32:
		return []byte(javaFloat(float64(x), 32)), nil
	case float64:
		return []byte(javaDouble(x)), nil
	}
	return nil, fmt.Errorf("a %s value (%s) has no plain-text form for a header; write headers as JSON (header.converter: json)", s.Type, s.Name)
}

// SimpleHeaderType reports whether SimpleHeaderValue writes values of s.
func SimpleHeaderType(s *Schema) bool {
	switch s.Type {
	case String, Boolean, Int8, Int16, Int32, Int64, Float32, Float64:
		return s.Name != LogicalDecimal
	}
	return false
}
