package event

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"

	hamba "github.com/hamba/avro/v2"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/registry"
)

var connectTypes = map[string]envelope.Type{
	"boolean": envelope.Boolean, "int8": envelope.Int8, "int16": envelope.Int16, "int32": envelope.Int32,
	"int64": envelope.Int64, "float": envelope.Float32, "double": envelope.Float64, "bytes": envelope.Bytes,
	"string": envelope.String, "array": envelope.Array, "map": envelope.Map, "struct": envelope.Struct,
}

// parseConnectSchema reads a schema as Kafka's JsonConverter writes it.
func parseConnectSchema(raw json.RawMessage) (*envelope.Schema, error) {
	doc, err := decodeJSONDoc(raw)
	if err != nil {
		return nil, err
	}
	return connectSchemaOf(doc, 0)
}

func connectSchemaOf(doc any, depth int) (*envelope.Schema, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("nested more than %d deep", maxSchemaDepth)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("a schema is not an object")
	}
	tn, _ := m["type"].(string)
	typ, ok := connectTypes[tn]
	if !ok {
		return nil, fmt.Errorf("unknown type %q", clip(tn))
	}
	s := &envelope.Schema{Type: typ}
	if o, ok := m["optional"]; ok {
		if s.Optional, ok = o.(bool); !ok {
			return nil, errors.New(`"optional" is not a boolean`)
		}
	}
	if n, ok := m["name"]; ok && n != nil {
		if s.Name, ok = n.(string); !ok {
			return nil, errors.New(`"name" is not a string`)
		}
	}
	if v, ok := m["version"].(json.Number); ok {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return nil, errors.New(`"version" is not an integer`)
		}
		s.Version = n
	}
	s.Doc, _ = m["doc"].(string)
	if p, ok := m["parameters"]; ok && p != nil {
		pm, ok := p.(map[string]any)
		if !ok {
			return nil, errors.New(`"parameters" is not an object`)
		}
		s.Params = params(pm)
	}
	switch typ {
	case envelope.Struct:
		fs, ok := m["fields"].([]any)
		if !ok {
			return nil, errors.New(`struct without a "fields" list`)
		}
		seen := map[string]bool{}
		for i, f := range fs {
			fm, ok := f.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("field %d is not an object", i)
			}
			name, ok := fm["field"].(string)
			if !ok {
				return nil, fmt.Errorf(`field %d has no "field" name`, i)
			}
			if seen[name] {
				return nil, fmt.Errorf("field %q appears twice", clip(name))
			}
			seen[name] = true
			fsch, err := connectSchemaOf(fm, depth+1)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", clip(name), err)
			}
			s.Fields = append(s.Fields, envelope.Field{Name: name, Schema: fsch})
		}
	case envelope.Array:
		items, err := connectSchemaOf(m["items"], depth+1)
		if err != nil {
			return nil, fmt.Errorf("array items: %w", err)
		}
		s.Items = items
	case envelope.Map:
		var err error
		if s.Keys, err = connectSchemaOf(m["keys"], depth+1); err != nil {
			return nil, fmt.Errorf("map keys: %w", err)
		}
		if s.Values, err = connectSchemaOf(m["values"], depth+1); err != nil {
			return nil, fmt.Errorf("map values: %w", err)
		}
	}
	if def, ok := m["default"]; ok && def != nil {
		// A default is data of the schema itself; a struct's default cannot contain a
		// default of the same schema, so this ends.
		v, err := connectFromJSON(s, def, "")
		if err != nil {
			return nil, fmt.Errorf("default: %w", err)
		}
		s.Default, s.HasDefault = v, true
	}
	return s, nil
}

// params turns a parameters object into ordered Params (sorted: JSON objects decoded into maps
// lose their order, and Connect's readers look parameters up by name).
func params(pm map[string]any) []envelope.Param {
	keys := make([]string, 0, len(pm))
	for k := range pm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]envelope.Param, 0, len(keys))
	for _, k := range keys {
		var v string
		switch x := pm[k].(type) {
		case string:
			v = x
		case json.Number:
			v = x.String()
		case float64:
			v = strconv.FormatFloat(x, 'g', -1, 64)
		default:
			v = fmt.Sprint(x)
		}
		out = append(out, envelope.Param{Key: k, Value: v})
	}
	return out
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func at(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// connectFromJSON turns a JsonConverter payload into the Connect value s describes.
func connectFromJSON(s *envelope.Schema, v any, path string) (any, error) {
	if v == nil {
		if s.HasDefault {
			return s.Default, nil
		}
		if !s.Optional {
			return nil, fmt.Errorf("%snull for a required %s", where(path), s.Type)
		}
		return nil, nil
	}
	bad := func() (any, error) {
		return nil, fmt.Errorf("%sa JSON %s for a %s", where(path), jsonKind(v), s.Type)
	}
	switch s.Type {
	case envelope.Boolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case envelope.Int8, envelope.Int16, envelope.Int32, envelope.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return bad()
		}
		bits := map[envelope.Type]int{envelope.Int8: 8, envelope.Int16: 16, envelope.Int32: 32, envelope.Int64: 64}[s.Type]
		i, err := strconv.ParseInt(string(n), 10, bits)
		if err != nil {
			return nil, fmt.Errorf("%snot a %s", where(path), s.Type)
		}
		switch s.Type {
		case envelope.Int8:
			return int8(i), nil
		case envelope.Int16:
			return int16(i), nil
		case envelope.Int32:
			return int32(i), nil
		}
		return i, nil
	case envelope.Float32, envelope.Float64:
		var f float64
		switch x := v.(type) {
		case json.Number:
			var err error
			if f, err = strconv.ParseFloat(string(x), 64); err != nil && !isRange(err) {
				return nil, fmt.Errorf("%snot a %s", where(path), s.Type)
			}
		case string:
			switch x {
			case "NaN":
				f = math.NaN()
			case "Infinity":
				f = math.Inf(1)
			case "-Infinity":
				f = math.Inf(-1)
			default:
				return bad()
			}
		default:
			return bad()
		}
		if s.Type == envelope.Float32 {
			return float32(f), nil
		}
		return f, nil
	case envelope.String:
		if str, ok := v.(string); ok {
			return str, nil
		}
	case envelope.Bytes:
		if s.Name == envelope.LogicalDecimal {
			scale, err := schemaScale(s)
			if err != nil {
				return nil, fmt.Errorf("%s%w", where(path), err)
			}
			switch x := v.(type) {
			case string:
				b, err := base64.StdEncoding.DecodeString(x)
				if err != nil {
					return nil, fmt.Errorf("%sDecimal is not base64", where(path))
				}
				return decimalFromBytes(b, scale), nil
			case json.Number: // decimal.format=NUMERIC
				if len(x) > 2*maxDecimalBytes || !isDecimalText(string(x)) || strings.ContainsAny(string(x), "eE") {
					return nil, fmt.Errorf("%sDecimal is not a plain number", where(path))
				}
				whole, frac, _ := strings.Cut(string(x), ".")
				b := decimalFromText(whole+frac, int32(len(frac)))
				if b.Unscaled == nil {
					return nil, fmt.Errorf("%sDecimal is not a plain number", where(path))
				}
				return b, nil
			}
			return bad()
		}
		if str, ok := v.(string); ok {
			b, err := base64.StdEncoding.DecodeString(str)
			if err != nil {
				return nil, fmt.Errorf("%sbytes are not base64", where(path))
			}
			return b, nil
		}
	case envelope.Array:
		xs, ok := v.([]any)
		if !ok {
			return bad()
		}
		out := make([]any, len(xs))
		for i, x := range xs {
			c, err := connectFromJSON(s.Items, x, path+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case envelope.Map:
		return mapFromJSON(s, v, path)
	case envelope.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		sv := envelope.NewValue(s)
		for i, f := range s.Fields {
			c, err := connectFromJSON(f.Schema, m[f.Name], at(path, f.Name))
			if err != nil {
				return nil, err
			}
			sv.Fields[i] = c
		}
		return sv, nil
	}
	return bad()
}

func where(path string) string {
	if path == "" {
		return ""
	}
	return "field " + clip(path) + ": "
}

func isRange(err error) bool {
	var ne *strconv.NumError
	return errors.As(err, &ne) && ne.Err == strconv.ErrRange
}

func decimalFromText(digits string, scale int32) envelope.Decimal {
	n, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		return envelope.Decimal{}
	}
	return envelope.Decimal{Unscaled: n, Scale: scale}
}

// mapFromJSON reads a Connect map: an object for string keys, a list of [key, value] pairs
// otherwise (JsonConverter's two forms).
func mapFromJSON(s *envelope.Schema, v any, path string) (any, error) {
	var out []envelope.MapEntry
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			key, err := connectFromJSON(s.Keys, k, path+"{key}")
			if err != nil {
				return nil, err
			}
			val, err := connectFromJSON(s.Values, x[k], path+"{"+clip(k)+"}")
			if err != nil {
				return nil, err
			}
			out = append(out, envelope.MapEntry{Key: key, Value: val})
		}
	case []any:
		for _, e := range x {
			pair, ok := e.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("%smap entry is not a [key, value] pair", where(path))
			}
			key, err := connectFromJSON(s.Keys, pair[0], path+"{key}")
			if err != nil {
				return nil, err
			}
			val, err := connectFromJSON(s.Values, pair[1], path+"{value}")
			if err != nil {
				return nil, err
			}
			out = append(out, envelope.MapEntry{Key: key, Value: val})
		}
	default:
		return nil, fmt.Errorf("%sa JSON %s for a map", where(path), jsonKind(v))
	}
	if out == nil {
		out = []envelope.MapEntry{}
	}
	return out, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// parseAvroSchema parses a writer schema and rebuilds its Connect schema from the properties
// Confluent's AvroData writes (connect.name, connect.version, connect.parameters,
// connect.doc, connect.type).
func parseAvroSchema(text string) (*avroSchema, error) {
	if len(text) > maxRecordBytes {
		return nil, errors.New("schema text too long")
	}
	// registry.ParseRaw drops the logical types, so that values decode to the numbers and
	// bytes underneath, and refuses recursive types.
	as, err := registry.ParseRaw(text)
	if err != nil {
		return nil, err
	}
	cs, err := connectOfAvro(as, 0)
	if err != nil {
		return nil, err
	}
	return &avroSchema{avro: as, connect: cs}, nil
}

type propSchema interface {
	Prop(name string) any
}

func connectOfAvro(as hamba.Schema, depth int) (*envelope.Schema, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("nested more than %d deep", maxSchemaDepth)
	}
	if r, ok := as.(*hamba.RefSchema); ok {
		as = r.Schema()
	}
	s := &envelope.Schema{}
	switch x := as.(type) {
	case *hamba.UnionSchema:
		var other []hamba.Schema
		for _, t := range x.Types() {
			if t.Type() != hamba.Null {
				other = append(other, t)
			}
		}
		if len(other) != 1 {
			return nil, fmt.Errorf("union %s: only unions of null and one type are Connect's", clip(x.String()))
		}
		inner, err := connectOfAvro(other[0], depth+1)
		if err != nil {
			return nil, err
		}
		c := *inner
		c.Optional = len(other) < len(x.Types())
		return &c, nil
	case *hamba.RecordSchema:
		s.Type = envelope.Struct
		s.Name = x.FullName()
		for _, f := range x.Fields() {
			fs, err := connectOfAvro(f.Type(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name(), err)
			}
			s.Fields = append(s.Fields, envelope.Field{Name: f.Name(), Schema: fs})
		}
	case *hamba.ArraySchema:
		s.Type = envelope.Array
		items, err := connectOfAvro(x.Items(), depth+1)
		if err != nil {
			return nil, err
		}
		s.Items = items
	case *hamba.MapSchema:
		s.Type = envelope.Map
		s.Keys = &envelope.Schema{Type: envelope.String}
		values, err := connectOfAvro(x.Values(), depth+1)
		if err != nil {
			return nil, err
		}
		s.Values = values
	case *hamba.EnumSchema:
		s.Type = envelope.String
	case *hamba.FixedSchema:
		s.Type = envelope.Bytes
	case *hamba.PrimitiveSchema:
		switch x.Type() {
		case hamba.Boolean:
			s.Type = envelope.Boolean
		case hamba.Int:
			s.Type = envelope.Int32
			switch x.Prop("connect.type") {
			case "int8":
				s.Type = envelope.Int8
			case "int16":
				s.Type = envelope.Int16
			}
		case hamba.Long:
			s.Type = envelope.Int64
		case hamba.Float:
			s.Type = envelope.Float32
		case hamba.Double:
			s.Type = envelope.Float64
		case hamba.Bytes:
			s.Type = envelope.Bytes
		case hamba.String:
			s.Type = envelope.String
		default:
			return nil, fmt.Errorf("Avro type %s has no Connect type", x.Type())
		}
	default:
		return nil, fmt.Errorf("Avro type %s has no Connect type", as.Type())
	}
	if p, ok := as.(propSchema); ok {
		if n, ok := p.Prop("connect.name").(string); ok {
			s.Name = n
		}
		if d, ok := p.Prop("connect.doc").(string); ok {
			s.Doc = d
		}
		switch v := p.Prop("connect.version").(type) {
		case float64:
			s.Version = int(v)
		case json.Number:
			n, _ := v.Int64()
			s.Version = int(n)
		case int:
			s.Version = v
		}
		if pm, ok := p.Prop("connect.parameters").(map[string]any); ok {
			s.Params = params(pm)
		}
		// A decimal from a producer that is not Kafka Connect: its logical type is gone,
		// its scale property stays.
		if s.Type == envelope.Bytes && s.Name == "" {
			if sc := p.Prop("scale"); sc != nil {
				s.Name = envelope.LogicalDecimal
				s.Params = append(s.Params, envelope.Param{Key: "scale", Value: fmt.Sprint(sc)})
			}
		}
	}
	if s.Type == envelope.Struct && s.Name == "" {
		s.Name = as.(*hamba.RecordSchema).FullName()
	}
	return s, nil
}

// connectFromAvro turns hamba's generic decoding of a body into the Connect value cs describes.
func connectFromAvro(as hamba.Schema, cs *envelope.Schema, v any, path string) (any, error) {
	if r, ok := as.(*hamba.RefSchema); ok {
		as = r.Schema()
	}
	if u, ok := as.(*hamba.UnionSchema); ok {
		if v == nil {
			return nil, nil
		}
		var branch hamba.Schema
		for _, t := range u.Types() {
			if t.Type() != hamba.Null {
				branch = t
			}
		}
		// A value of a named or complex branch comes as {"<branch name>": value}.
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			if x, ok := m[branchName(branch)]; ok {
				v = x
			}
		}
		as = branch
		if r, ok := as.(*hamba.RefSchema); ok {
			as = r.Schema()
		}
	}
	if v == nil {
		return nil, nil
	}
	bad := func() (any, error) {
		return nil, fmt.Errorf("%sAvro decoded a %T for a %s", where(path), v, cs.Type)
	}
	switch cs.Type {
	case envelope.Struct:
		rec, ok := as.(*hamba.RecordSchema)
		m, okm := v.(map[string]any)
		if !ok || !okm {
			return bad()
		}
		sv := envelope.NewValue(cs)
		for i, f := range rec.Fields() {
			c, err := connectFromAvro(f.Type(), cs.Fields[i].Schema, m[f.Name()], at(path, f.Name()))
			if err != nil {
				return nil, err
			}
			sv.Fields[i] = c
		}
		return sv, nil
	case envelope.Array:
		arr, ok := as.(*hamba.ArraySchema)
		xs, okx := v.([]any)
		if !ok || !okx {
			return bad()
		}
		out := make([]any, len(xs))
		for i, x := range xs {
			c, err := connectFromAvro(arr.Items(), cs.Items, x, path+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case envelope.Map:
		ms, ok := as.(*hamba.MapSchema)
		m, okm := v.(map[string]any)
		if !ok || !okm {
			return bad()
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([]envelope.MapEntry, 0, len(keys))
		for _, k := range keys {
			c, err := connectFromAvro(ms.Values(), cs.Values, m[k], path+"{"+clip(k)+"}")
			if err != nil {
				return nil, err
			}
			out = append(out, envelope.MapEntry{Key: k, Value: c})
		}
		return out, nil
	case envelope.Boolean:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case envelope.Int8, envelope.Int16, envelope.Int32:
		n, ok := v.(int)
		if !ok {
			return bad()
		}
		switch cs.Type {
		case envelope.Int8:
			if n < math.MinInt8 || n > math.MaxInt8 {
				return nil, fmt.Errorf("%s%d is out of int8's range", where(path), n)
			}
			return int8(n), nil
		case envelope.Int16:
			if n < math.MinInt16 || n > math.MaxInt16 {
				return nil, fmt.Errorf("%sout of int16's range", where(path))
			}
			return int16(n), nil
		}
		return int32(n), nil
	case envelope.Int64:
		if n, ok := v.(int64); ok {
			return n, nil
		}
	case envelope.Float32:
		if f, ok := v.(float32); ok {
			return f, nil
		}
	case envelope.Float64:
		if f, ok := v.(float64); ok {
			return f, nil
		}
	case envelope.String:
		if str, ok := v.(string); ok {
			return str, nil
		}
	case envelope.Bytes:
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		default:
			rv := reflect.ValueOf(v)
			if rv.Kind() != reflect.Array || rv.Type().Elem().Kind() != reflect.Uint8 {
				return bad()
			}
			b = make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
		}
		if cs.Name == envelope.LogicalDecimal {
			scale, err := schemaScale(cs)
			if err != nil {
				return nil, fmt.Errorf("%s%w", where(path), err)
			}
			return decimalFromBytes(b, scale), nil
		}
		return b, nil
	}
	return bad()
}

func branchName(s hamba.Schema) string {
	if r, ok := s.(*hamba.RefSchema); ok {
		s = r.Schema()
	}
	if n, ok := s.(hamba.NamedSchema); ok {
		return n.FullName()
	}
	return string(s.Type())
}
