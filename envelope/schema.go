package envelope

// Type is a Kafka Connect schema type. Debezium describes every key and value with Connect
// schemas; the JSON converter writes them as they are and the Avro converter translates them,
// so one description of a relation serves both serializations.
type Type uint8

// Connect schema types.
const (
	Boolean Type = iota + 1
	Int8
	Int16
	Int32
	Int64
	Float32
	Float64
	Bytes
	String
	Array
	Map
	Struct
)

// Names of Kafka Connect's logical types, which every serialization knows: Avro maps them to
// its own logical types, JSON writes the Connect value underneath.
const (
	LogicalDecimal   = "org.apache.kafka.connect.data.Decimal"   // Bytes: a Decimal; parameter scale
	LogicalDate      = "org.apache.kafka.connect.data.Date"      // Int32: days since the epoch
	LogicalTime      = "org.apache.kafka.connect.data.Time"      // Int32: milliseconds since midnight
	LogicalTimestamp = "org.apache.kafka.connect.data.Timestamp" // Int64: milliseconds since the epoch
)

var typeNames = [...]string{
	Boolean: "boolean", Int8: "int8", Int16: "int16", Int32: "int32", Int64: "int64",
	Float32: "float", Float64: "double", Bytes: "bytes", String: "string",
	Array: "array", Map: "map", Struct: "struct",
}

func (t Type) String() string { return typeNames[t] }

// Schema is a Connect schema. Values described by it are Go values:
//
//	Boolean bool; Int8 int8; Int16 int16; Int32 int32; Int64 int64; Float32 float32;
//	Float64 float64; Bytes []byte (or Decimal for the Decimal logical type); String string;
//	Array []any; Map []MapEntry; Struct *Value; nil for a null.
type Schema struct {
	Type     Type
	Optional bool
	Name     string
	Version  int
	Doc      string
	Params   []Param // ordered, as Connect keeps them
	// Default is the default value when HasDefault; Kafka's converters write it in place of a
	// null value.
	Default    any
	HasDefault bool

	Fields []Field // Struct
	Items  *Schema // Array
	Keys   *Schema // Map
	Values *Schema // Map
}

// Field is a named member of a Struct schema.
type Field struct {
	Name   string
	Schema *Schema
}

// Param is one schema parameter.
type Param struct{ Key, Value string }

// MapEntry is one entry of a Map value.
type MapEntry struct {
	Key   any
	Value any
}

// Param returns the value of a schema parameter.
func (s *Schema) Param(key string) (string, bool) {
	for _, p := range s.Params {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// FieldIndex returns the position of the named field of a Struct schema, or -1.
func (s *Schema) FieldIndex(name string) int {
	for i := range s.Fields {
		if s.Fields[i].Name == name {
			return i
		}
	}
	return -1
}

// Value is a Struct value: one value per field of its schema, in field order.
type Value struct {
	Schema *Schema
	Fields []any
}

// NewValue returns an all-null value of a Struct schema.
func NewValue(s *Schema) *Value {
	return &Value{Schema: s, Fields: make([]any, len(s.Fields))}
}

// Get returns the named field's value (nil when absent).
func (v *Value) Get(name string) any {
	if i := v.Schema.FieldIndex(name); i >= 0 {
		return v.Fields[i]
	}
	return nil
}

// Set sets the named field's value; it panics on an unknown name, which is a programming error.
func (v *Value) Set(name string, x any) *Value {
	i := v.Schema.FieldIndex(name)
	if i < 0 {
		panic("envelope: no field " + name + " in " + v.Schema.Name)
	}
	v.Fields[i] = x
	return v
}

// optional returns a copy of s marked optional.
func (s Schema) optional() *Schema {
	s.Optional = true
	return &s
}

// structSchema builds a Struct schema.
func structSchema(name string, version int, optional bool, fields ...Field) *Schema {
	return &Schema{Type: Struct, Name: name, Version: version, Optional: optional, Fields: fields}
}

func field(name string, s *Schema) Field { return Field{Name: name, Schema: s} }

func prim(t Type, optional bool) *Schema { return &Schema{Type: t, Optional: optional} }
