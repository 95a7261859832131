package eventrouter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/procon-cdc/procon/envelope"
)

// The expansion of a JSON payload (table.expand.json.payload) as Debezium's JsonSchemaData does
// it: the text is read as Jackson's ObjectMapper.readTree reads it, a Connect schema is inferred
// from the tree (toConnectSchema) and the tree becomes a value of that schema
// (toConnectData). Where Debezium's expansion throws, it logs a warning and keeps the payload
// as it was; so does this one, and for the same documents.

// node is a parsed JSON value, as Jackson's tree model has it.
type node struct {
	kind   nodeKind
	str    string // string
	b      bool
	i      int64   // int (fits int32) and long
	f      float64 // double
	items  []*node
	fields []objField // in the order of their first occurrence; a repeated key keeps its place and takes the last value
}

type objField struct {
	name string
	val  *node
}

type nodeKind uint8

const (
	nNull nodeKind = iota
	nBool
	nInt    // Jackson's IntNode: an integer that fits 32 bits
	nLong   // LongNode
	nBigInt // BigIntegerNode: larger than 64 bits
	nDouble // DoubleNode: any number with a fraction or an exponent
	nString
	nArray
	nObject
)

// maxDepth bounds the nesting of an expanded payload (Jackson's default limit is 1000); a
// deeper document is not expanded.
const maxDepth = 1000

// parseJSON reads the first JSON value of text; what follows it is ignored, as readTree does
// by default (FAIL_ON_TRAILING_TOKENS is off).
func parseJSON(text string) (*node, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	return readNode(dec, 0)
}

func readNode(dec *json.Decoder, depth int) (*node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	return tokenNode(dec, tok, depth)
}

func tokenNode(dec *json.Decoder, tok json.Token, depth int) (*node, error) {
	switch t := tok.(type) {
	case nil:
		return &node{kind: nNull}, nil
	case bool:
		return &node{kind: nBool, b: t}, nil
	case string:
		return &node{kind: nString, str: t}, nil
	case json.Number:
		return numberNode(string(t))
	case json.Delim:
		if depth >= maxDepth {
			return nil, fmt.Errorf("nested deeper than %d", maxDepth)
		}
		switch t {
		case '[':
			n := &node{kind: nArray}
			for dec.More() {
				item, err := readNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, item)
			}
			_, err := dec.Token() // ]
			return n, err
		case '{':
			n := &node{kind: nObject}
			index := map[string]int{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				name, _ := kt.(string)
				val, err := readNode(dec, depth+1)
				if err != nil {
					return nil, err
				}
				if i, ok := index[name]; ok {
					n.fields[i].val = val
					continue
				}
				index[name] = len(n.fields)
				n.fields = append(n.fields, objField{name, val})
			}
			_, err := dec.Token() // }
			return n, err
		}
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// numberNode classifies a number as Jackson's parser does: an integer is an int, a long or a
// big integer by its size; anything with a fraction or an exponent is a double.
func numberNode(text string) (*node, error) {
	if strings.ContainsAny(text, ".eE") {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range: ±Infinity or 0, as Java's parseDouble
			return nil, err
		}
		return &node{kind: nDouble, f: f}, nil
	}
	i, err := strconv.ParseInt(text, 10, 64)
	switch {
	case err != nil:
		return &node{kind: nBigInt, str: text}, nil
	case i >= math.MinInt32 && i <= math.MaxInt32:
		return &node{kind: nInt, i: i}, nil
	}
	return &node{kind: nLong, i: i}, nil
}

// expander infers schemas from trees. Field names pass through the adjustment (identity, or
// field.name.adjustment.mode: avro); optionalBytes is table.json.payload.null.behavior:
// optional_bytes.
type expander struct {
	fieldName     func(string) string
	optionalBytes bool
}

var (
	optString  = &envelope.Schema{Type: envelope.String, Optional: true}
	optBoolean = &envelope.Schema{Type: envelope.Boolean, Optional: true}
	optInt32   = &envelope.Schema{Type: envelope.Int32, Optional: true}
	optInt64   = &envelope.Schema{Type: envelope.Int64, Optional: true}
	optFloat64 = &envelope.Schema{Type: envelope.Float64, Optional: true}
	optBytes   = &envelope.Schema{Type: envelope.Bytes, Optional: true}
)

// errExpand is an expansion that Debezium's would abandon too (its ConnectException and
// DataException): the payload stays as it is.
var errExpand = errors.New("cannot expand")

// schema is toConnectSchema: nil where Debezium's returns null (a null without
// optional_bytes, an empty array), which leaves the field out.
func (x *expander) schema(key string, n *node) (*envelope.Schema, error) {
	switch n.kind {
	case nString:
		return optString, nil
	case nBool:
		return optBoolean, nil
	case nInt:
		return optInt32, nil
	case nLong:
		return optInt64, nil
	case nDouble, nBigInt:
		return optFloat64, nil
	case nArray:
		if len(n.items) == 0 {
			return nil, nil
		}
		items, err := x.arrayItems(key, n)
		if err != nil {
			return nil, err
		}
		return &envelope.Schema{Type: envelope.Array, Optional: true, Items: items}, nil
	case nObject:
		s := &envelope.Schema{Type: envelope.Struct, Optional: true, Name: key}
		for _, f := range n.fields {
			name := x.fieldName(f.name)
			fieldKey := name
			if strings.TrimSpace(key) != "" {
				fieldKey = key + "." + name
			}
			fs, err := x.schema(fieldKey, f.val)
			if err != nil {
				return nil, err
			}
			if fs != nil && s.FieldIndex(name) < 0 {
				s.Fields = append(s.Fields, envelope.Field{Name: name, Schema: fs})
			}
		}
		return s, nil
	case nNull:
		if x.optionalBytes {
			return optBytes, nil
		}
	}
	return nil, nil
}

// arrayItems is toConnectSchemaWithCycles: the items' schema from the first non-null item;
// every non-null item must be of its kind (and numbers of its size); objects' schemas are
// merged.
func (x *expander) arrayItems(key string, n *node) (*envelope.Schema, error) {
	var sample *node
	for _, it := range n.items {
		if it.kind == nNull {
			continue
		}
		if sample == nil {
			sample = it
		}
		if kindClass(it.kind) != kindClass(sample.kind) {
			return nil, fmt.Errorf("%w: not a homogenous array", errExpand)
		}
		if kindClass(sample.kind) == nInt && numberSchema(it.kind) != numberSchema(sample.kind) {
			return nil, fmt.Errorf("%w: not a homogenous array, different number types", errExpand)
		}
	}
	if sample == nil {
		sample = &node{kind: nNull}
	}
	if sample.kind == nObject {
		// Debezium merges the distinct schemas of the objects in the order of a HashSet
		// (which differs between JVM runs when they differ); here, in the order they come.
		var merged *envelope.Schema
		var seen [][]byte
		for _, it := range n.items {
			if it.kind != nObject {
				continue
			}
			s, err := x.schema(key, it)
			if err != nil {
				return nil, err
			}
			text, err := envelope.AppendSchemaJSON(nil, s)
			if err != nil {
				return nil, err
			}
			dup := false
			for _, t := range seen {
				if bytes.Equal(t, text) {
					dup = true
				}
			}
			if dup {
				continue
			}
			seen = append(seen, text)
			merged = mergeSchema(merged, s)
		}
		return merged, nil
	}
	s, err := x.schema("", sample)
	if err != nil {
		return nil, err
	}
	if s == nil {
		return nil, fmt.Errorf("%w: array has unrecognized member schema", errExpand)
	}
	return s, nil
}

// kindClass is the JSON node type (Jackson's JsonNodeType): all numbers are one.
func kindClass(k nodeKind) nodeKind {
	switch k {
	case nInt, nLong, nBigInt, nDouble:
		return nInt
	}
	return k
}

func numberSchema(k nodeKind) *envelope.Schema {
	switch k {
	case nInt:
		return optInt32
	case nLong:
		return optInt64
	}
	return optFloat64
}

// mergeSchema is JsonSchemaData.mergeSchema: right's fields join left's, a field both have
// keeps left's schema unless that was the bytes of a null and right's is not.
func mergeSchema(left, right *envelope.Schema) *envelope.Schema {
	if left == nil {
		return right
	}
	// Connect's SchemaUtil.copySchemaBasics copies the name, version, doc and parameters of
	// the left schema, not its optionality: a merged struct is required.
	out := *left
	out.Optional = false
	out.Fields = append([]envelope.Field(nil), left.Fields...)
	for _, f := range right.Fields {
		i := out.FieldIndex(f.Name)
		switch {
		case i < 0:
			out.Fields = append(out.Fields, f)
		case out.Fields[i].Schema.Type == envelope.Bytes && f.Schema.Type != envelope.Bytes:
			out.Fields[i] = f
		}
	}
	return &out
}

// value is toConnectData for a tree and the schema inferred from it (or merged), checked as
// Connect's Struct.put validates each value.
func (x *expander) value(n *node, s *envelope.Schema) (any, error) {
	if s.Type != envelope.Struct {
		return nil, fmt.Errorf("%w: the payload is not an object", errExpand)
	}
	return x.structValue(n, s)
}

func (x *expander) structValue(n *node, s *envelope.Schema) (*envelope.Value, error) {
	if s.Type != envelope.Struct {
		return nil, fmt.Errorf("%w: an object for a %s field", errExpand, s.Type)
	}
	v := envelope.NewValue(s)
	for i, f := range s.Fields {
		child := n.field(f.Name)
		if child == nil {
			continue
		}
		fv, err := x.fieldValue(child, f.Schema)
		if err != nil {
			return nil, err
		}
		v.Fields[i] = fv
	}
	return v, nil
}

// field is the member named name (after the adjustment of its key, as the schema has it).
func (n *node) field(name string) *node {
	if n.kind != nObject {
		return nil
	}
	for _, f := range n.fields {
		if f.name == name {
			return f.val
		}
	}
	return nil
}

// fieldValue is getStructFieldValue, with the type check of Struct.put.
func (x *expander) fieldValue(n *node, s *envelope.Schema) (any, error) {
	var v any
	switch n.kind {
	case nNull:
		return nil, nil // every inferred schema is optional
	case nString:
		v = n.str
	case nBool:
		v = n.b
	case nInt:
		v = int32(n.i)
	case nLong:
		v = n.i
	case nDouble:
		v = n.f
	case nBigInt:
		return nil, fmt.Errorf("%w: %s is larger than a long, and a BigDecimal is not a double", errExpand, n.str)
	case nArray:
		if s.Type != envelope.Array {
			return nil, fmt.Errorf("%w: an array for a %s field", errExpand, s.Type)
		}
		items := make([]any, len(n.items))
		for i, it := range n.items {
			iv, err := x.fieldValue(it, s.Items)
			if err != nil {
				return nil, err
			}
			items[i] = iv
		}
		return items, nil
	case nObject:
		return x.structValue(n, s)
	}
	if !fits(v, s) {
		return nil, fmt.Errorf("%w: a %T for a %s field", errExpand, v, s.Type)
	}
	return v, nil
}

func fits(v any, s *envelope.Schema) bool {
	switch v.(type) {
	case string:
		return s.Type == envelope.String
	case bool:
		return s.Type == envelope.Boolean
	case int32:
		return s.Type == envelope.Int32
	case int64:
		return s.Type == envelope.Int64
	case float64:
		return s.Type == envelope.Float64
	}
	return false
}

// expand returns the schema and value of a JSON payload, or an error when Debezium's
// expansion would give up (the caller keeps the payload as it is). Debezium expands only a
// text that starts with { or [.
func (x *expander) expand(payloadField, text string) (*envelope.Schema, any, error) {
	if !strings.HasPrefix(text, "{") && !strings.HasPrefix(text, "[") {
		c := ""
		if text != "" {
			c = text[:1]
		}
		return nil, nil, fmt.Errorf("%w: unable to parse payload starting with %q", errExpand, c)
	}
	tree, err := parseJSON(text)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errExpand, err)
	}
	s, err := x.schema(payloadField, tree)
	if err != nil {
		return nil, nil, err
	}
	if s == nil {
		return nil, nil, fmt.Errorf("%w: no schema for the payload", errExpand)
	}
	v, err := x.value(tree, s)
	if err != nil {
		return nil, nil, err
	}
	return s, v, nil
}
