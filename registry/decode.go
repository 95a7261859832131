package registry

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/hamba/avro/v2"
)

// IsFramed reports whether b looks like Confluent's wire format: a zero magic byte and a
// 4-byte schema id before the body. JSON never starts with a zero byte.
func IsFramed(b []byte) bool { return len(b) >= 5 && b[0] == 0 }

// Decoder turns Confluent-framed Avro records back into JSON, in the form Kafka's
// JsonConverter writes without schemas: records as objects in field order, bytes as base64,
// logical types as the numbers or bytes underneath (as Debezium's JSON carries them). Each
// schema is fetched by id once. A Decoder is safe for concurrent use.
type Decoder struct {
	c       *Client
	mu      sync.Mutex
	schemas map[int]avro.Schema
}

// NewDecoder returns a Decoder that fetches schemas through c.
func NewDecoder(c *Client) *Decoder { return &Decoder{c: c, schemas: map[int]avro.Schema{}} }

// Decode returns the JSON text of a framed record and the id of its schema.
func (d *Decoder) Decode(ctx context.Context, b []byte) (json.RawMessage, int, error) {
	if !IsFramed(b) {
		return nil, 0, errors.New("registry: not a Confluent-framed Avro record")
	}
	id := int(binary.BigEndian.Uint32(b[1:5]))
	d.mu.Lock()
	s := d.schemas[id]
	d.mu.Unlock()
	if s == nil {
		text, err := d.c.SchemaByID(ctx, id)
		if err != nil {
			return nil, id, err
		}
		if s, err = ParseRaw(text); err != nil {
			return nil, id, fmt.Errorf("registry: schema id %d: %w", id, err)
		}
		d.mu.Lock()
		d.schemas[id] = s
		d.mu.Unlock()
	}
	out, err := DecodeJSON(s, b[5:])
	return out, id, err
}

// ParseRaw parses an Avro schema with its logical types removed, so that values decode to the
// numbers and bytes the wire carries rather than to time.Time or *big.Rat.
//
// Names are read as Java's Avro reads them (see Parse): Debezium's records under a topic or
// topic.prefix with a '-' carry such a namespace.
func ParseRaw(text string) (avro.Schema, error) {
	doc, err := decodeSchemaJSON(text)
	if err != nil {
		return nil, err
	}
	stripLogical(doc)
	var r nameRewriter
	s, err := parseDoc(r.typ(doc))
	if err != nil {
		return nil, err
	}
	if name := recursiveType(s, map[avro.Schema]bool{}); name != "" {
		// Connect schemas never refer to themselves. A record that does can be nested as
		// deep as a body is long, and decoding it recurses that deep: a megabyte overflows
		// the goroutine stack, which kills the process.
		return nil, fmt.Errorf("type %s refers to itself; recursive schemas are not supported", name)
	}
	return s, nil
}

// recursiveType returns the name of a named type that s contains within itself, or "".
// open holds the named types being walked.
func recursiveType(s avro.Schema, open map[avro.Schema]bool) string {
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	switch x := s.(type) {
	case *avro.RecordSchema:
		if open[x] {
			return x.FullName()
		}
		open[x] = true
		defer delete(open, x)
		for _, f := range x.Fields() {
			if name := recursiveType(f.Type(), open); name != "" {
				return name
			}
		}
	case *avro.UnionSchema:
		for _, t := range x.Types() {
			if name := recursiveType(t, open); name != "" {
				return name
			}
		}
	case *avro.ArraySchema:
		return recursiveType(x.Items(), open)
	case *avro.MapSchema:
		return recursiveType(x.Values(), open)
	}
	return ""
}

func stripLogical(v any) {
	switch x := v.(type) {
	case map[string]any:
		delete(x, "logicalType")
		for _, y := range x {
			stripLogical(y)
		}
	case []any:
		for _, y := range x {
			stripLogical(y)
		}
	}
}

// decoding bounds what a body from Kafka can make the decoder allocate: a few bytes can claim
// a string or an array of any length. A record is at most Kafka's message size (procon-cdc
// writes up to kafka.max_record_bytes), so a string or bytes value is bounded by it, and an
// array or map by a million entries.
var decoding = avro.Config{MaxByteSliceSize: 64 << 20, MaxSliceAllocSize: 1 << 20}.Freeze()

// DecodeJSON decodes an Avro body (no framing) written with schema s into JSON text.
func DecodeJSON(s avro.Schema, body []byte) (json.RawMessage, error) {
	var v any
	if err := decoding.Unmarshal(s, body, &v); err != nil {
		return nil, err
	}
	var w jsonOut
	if err := w.value(s, v); err != nil {
		return nil, err
	}
	return w.buf, nil
}

type jsonOut struct{ buf []byte }

func (w *jsonOut) value(s avro.Schema, v any) error {
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	if v == nil {
		w.buf = append(w.buf, "null"...)
		return nil
	}
	switch s := s.(type) {
	case *avro.UnionSchema:
		return w.union(s, v)
	case *avro.RecordSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("record %s decoded as %T", s.FullName(), v)
		}
		w.buf = append(w.buf, '{')
		for i, f := range s.Fields() {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.str(f.Name())
			w.buf = append(w.buf, ':')
			if err := w.value(f.Type(), m[f.Name()]); err != nil {
				return err
			}
		}
		w.buf = append(w.buf, '}')
		return nil
	case *avro.ArraySchema:
		items, ok := v.([]any)
		if !ok {
			return fmt.Errorf("array decoded as %T", v)
		}
		w.buf = append(w.buf, '[')
		for i, x := range items {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			if err := w.value(s.Items(), x); err != nil {
				return err
			}
		}
		w.buf = append(w.buf, ']')
		return nil
	case *avro.MapSchema:
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("map decoded as %T", v)
		}
		w.buf = append(w.buf, '{')
		first := true
		for k, x := range m {
			if !first {
				w.buf = append(w.buf, ',')
			}
			first = false
			w.str(k)
			w.buf = append(w.buf, ':')
			if err := w.value(s.Values(), x); err != nil {
				return err
			}
		}
		w.buf = append(w.buf, '}')
		return nil
	}
	switch x := v.(type) {
	case []byte:
		w.buf = append(w.buf, '"')
		w.buf = base64.StdEncoding.AppendEncode(w.buf, x)
		w.buf = append(w.buf, '"')
	case string:
		w.str(x)
	case bool:
		w.buf = strconv.AppendBool(w.buf, x)
	case int:
		w.buf = strconv.AppendInt(w.buf, int64(x), 10)
	case int32:
		w.buf = strconv.AppendInt(w.buf, int64(x), 10)
	case int64:
		w.buf = strconv.AppendInt(w.buf, x, 10)
	case float32:
		w.float(float64(x), 32)
	case float64:
		w.float(x, 64)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return err
		}
		w.buf = append(w.buf, b...)
	}
	return nil
}

// union unwraps hamba's generic union values: a value of a primitive branch comes as itself,
// one of a named or complex branch as {"<branch name>": value}.
func (w *jsonOut) union(u *avro.UnionSchema, v any) error {
	var nonNull []avro.Schema
	for _, b := range u.Types() {
		if b.Type() != avro.Null {
			nonNull = append(nonNull, b)
		}
	}
	if m, ok := v.(map[string]any); ok && len(m) == 1 {
		for k, x := range m {
			for _, b := range nonNull {
				if branchName(b) == k {
					return w.value(b, x)
				}
			}
		}
	}
	if len(nonNull) == 1 {
		return w.value(nonNull[0], v)
	}
	for _, b := range nonNull {
		if _, ok := b.(*avro.PrimitiveSchema); ok && primitiveMatches(b.Type(), v) {
			return w.value(b, v)
		}
	}
	return fmt.Errorf("cannot tell which branch of %s holds a %T", u.String(), v)
}

func branchName(s avro.Schema) string {
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}

func primitiveMatches(t avro.Type, v any) bool {
	switch v.(type) {
	case string:
		return t == avro.String
	case []byte:
		return t == avro.Bytes
	case bool:
		return t == avro.Boolean
	case int, int32:
		return t == avro.Int
	case int64:
		return t == avro.Long
	case float32:
		return t == avro.Float
	case float64:
		return t == avro.Double
	}
	return false
}

func (w *jsonOut) str(s string) {
	b, _ := json.Marshal(s)
	w.buf = append(w.buf, b...)
}

// float writes a number; NaN and the infinities are quoted as Jackson writes them (and so
// Procon's JSON serialization), "Infinity" rather than Go's "+Inf".
func (w *jsonOut) float(f float64, bits int) {
	switch {
	case math.IsNaN(f):
		w.buf = append(w.buf, `"NaN"`...)
		return
	case math.IsInf(f, 1):
		w.buf = append(w.buf, `"Infinity"`...)
		return
	case math.IsInf(f, -1):
		w.buf = append(w.buf, `"-Infinity"`...)
		return
	}
	w.buf = strconv.AppendFloat(w.buf, f, 'g', -1, bits)
}
