package event

import (
	"crypto/md5"
	"encoding/hex"
	"strings"

	"github.com/procon-cdc/procon/envelope"
)

// Unchanged reports whether the value is Debezium's unchanged-TOAST placeholder: the column
// kept its value and the producer did not send it, so it must not overwrite the target's.
// It matches each form Debezium (and package envelope) writes the placeholder in: the text
// (strings, json, uuid, ...), its bytes (bytea; base64 in schemaless JSON), a one-element list
// of either (text[], json[], bytea[]), the list of its bytes as numbers (integer[], bigint[],
// date[]), a one-element list of its name-based UUID (uuid[]), and the one-entry hstore
// {placeholder: placeholder} as JSON text or map.
func (v Value) Unchanged() bool {
	c := v.settings()
	switch x := v.Raw.(type) {
	case string:
		return x == c.placeholder || (v.Schema == nil && x == c.placeholderBase64) || x == c.placeholderHstore
	case []byte:
		return string(x) == string(c.placeholderBytes)
	case []any:
		return c.unchangedList(x)
	case []envelope.MapEntry:
		if len(x) != 1 {
			return false
		}
		k, _ := x[0].Key.(string)
		val, _ := x[0].Value.(string)
		return k == c.placeholder && val == c.placeholder
	case map[string]any:
		if len(x) != 1 {
			return false
		}
		val, ok := x[c.placeholder].(string)
		return ok && val == c.placeholder
	}
	return false
}

func (c *settings) unchangedList(xs []any) bool {
	if len(xs) == 1 {
		switch x := xs[0].(type) {
		case string:
			return x == c.placeholder || x == c.placeholderBase64 || x == c.placeholderUUID
		case []byte:
			return string(x) == string(c.placeholderBytes)
		}
	}
	if len(xs) != len(c.placeholderBytes) || len(xs) == 0 {
		return false
	}
	for i, x := range xs {
		n, err := intOf(x)
		if err != nil || n != int64(int8(c.placeholderBytes[i])) {
			return false
		}
	}
	return true
}

// nameUUID3 is java.util.UUID.nameUUIDFromBytes(b).toString(), Debezium's uuid[] placeholder.
func nameUUID3(b []byte) string {
	sum := md5.Sum(b)
	sum[6] = sum[6]&0x0f | 0x30
	sum[8] = sum[8]&0x3f | 0x80
	h := hex.EncodeToString(sum[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Path looks a value up by names: into a struct's fields, into the JSON document of an
// io.debezium.data.Json string (or of any JSON-looking string without a schema), and into
// the objects of schemaless JSON. Values found inside a JSON document have no schema. ok is
// false when a name is missing or a value on the way has no fields; Path() is v itself.
func (v Value) Path(names ...string) (Value, bool) {
	cur := v
	for _, name := range names {
		next, ok := cur.field(name)
		if !ok {
			return Value{}, false
		}
		cur = next
	}
	return cur, true
}

func (v Value) field(name string) (Value, bool) {
	switch x := v.Raw.(type) {
	case *envelope.Value:
		if x == nil {
			return Value{}, false
		}
		i := x.Schema.FieldIndex(name)
		if i < 0 || i >= len(x.Fields) {
			return Value{}, false
		}
		return Value{Schema: x.Schema.Fields[i].Schema, Raw: x.Fields[i], cfg: v.cfg}, true
	case []envelope.MapEntry:
		for _, e := range x {
			if k, ok := e.Key.(string); ok && k == name {
				var vs *envelope.Schema
				if v.Schema != nil {
					vs = v.Schema.Values
				}
				return Value{Schema: vs, Raw: e.Value, cfg: v.cfg}, true
			}
		}
	case map[string]any:
		if y, ok := x[name]; ok {
			return Value{Raw: y, cfg: v.cfg}, true
		}
	case string:
		isJSON := v.Schema != nil && v.Schema.Name == envelope.NameJSON
		if !isJSON && (v.Schema != nil || !strings.HasPrefix(strings.TrimSpace(x), "{")) {
			return Value{}, false
		}
		doc, err := decodeJSONDoc([]byte(x))
		if err != nil {
			return Value{}, false
		}
		return Value{Raw: doc, cfg: v.cfg}.field(name)
	}
	return Value{}, false
}

// Path looks a field of the row up, then names within it (Value.Path): "meta.plan" is
// r.Path("meta", "plan").
func (r *Row) Path(names ...string) (Value, bool) {
	if len(names) == 0 {
		return Value{}, false
	}
	v, ok := r.Get(names[0])
	if !ok {
		return Value{}, false
	}
	return v.Path(names[1:]...)
}
