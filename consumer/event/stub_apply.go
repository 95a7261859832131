package event

// TEMPORARY: a minimal stand-in for the decoding helpers that consumer/apply calls, so that
// it compiles and its tests run before the real implementation lands. Dropped at merge.

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/procon-cdc/procon/envelope"
)

const unavailable = "__debezium_unavailable_value"

// Text returns the JSON scalar as text: strings as they are, numbers as written, booleans as
// true/false, nil as null. pgType is ignored.
func (v Value) Text(pgType string) (text string, null bool, err error) {
	switch x := v.Raw.(type) {
	case nil:
		return "", true, nil
	case string:
		return x, false, nil
	case json.Number:
		return x.String(), false, nil
	case bool:
		return strconv.FormatBool(x), false, nil
	case int, int8, int16, int32, int64, float32, float64:
		return fmt.Sprint(x), false, nil
	}
	return "", false, fmt.Errorf("event: stub cannot read %T as %s", v.Raw, pgType)
}

// Unchanged reports whether the value is the unchanged-TOAST placeholder.
func (v Value) Unchanged() bool {
	s, ok := v.Raw.(string)
	return ok && s == unavailable
}

// Path descends into nested structs (maps of schemaless JSON, *envelope.Value of Avro).
func (v Value) Path(names ...string) (Value, bool) {
	for _, name := range names {
		switch x := v.Raw.(type) {
		case map[string]any:
			raw, ok := x[name]
			if !ok {
				return Value{}, false
			}
			v = Value{Raw: raw}
		case *envelope.Value:
			i := x.Schema.FieldIndex(name)
			if i < 0 {
				return Value{}, false
			}
			v = Value{Schema: x.Schema.Fields[i].Schema, Raw: x.Fields[i]}
		case *Row:
			f, ok := x.Get(name)
			if !ok {
				return Value{}, false
			}
			v = f
		default:
			return Value{}, false
		}
	}
	return v, true
}

// ColumnType returns text for every schema.
func ColumnType(s *envelope.Schema) (string, error) { return "text", nil }
