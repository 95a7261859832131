package avro

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/procon-cdc/procon/envelope"
)

// SchemaOf renders a Connect schema as the Avro schema that Confluent's AvroConverter
// derives from it (AvroData.fromConnectSchema with connect.meta.data=true, the default), in the
// text Avro's Schema.toString writes:
//
//   - a struct is a record whose name is split at the last dot into namespace and name; a
//     record already written is referred to by name, as short as the enclosing namespace allows;
//   - an optional type is the union ["null", T] with field default null, or [T, "null"] with
//     the field default being the schema's default when it has one;
//   - the Connect metadata travels as connect.doc, connect.version, connect.parameters,
//     connect.default, connect.name and connect.type (int8 and int16 become Avro int);
//   - Connect's Decimal, Date, Time and Timestamp become the Avro logical types decimal, date,
//     time-millis and timestamp-millis.
//
// The JSON and Avro encodings render the same *Schema; this is the second rendering.
// Names Avro does not accept are an error that says which adjustment mode fixes them.
func SchemaOf(s *envelope.Schema) (string, error) {
	return schemaText(s, nil)
}

// AdjustedSchemaOf is SchemaOf with every schema name (record names and connect.name) as
// schema.name.adjustment.mode: avro makes it: the schema Debezium registers with that mode.
func AdjustedSchemaOf(s *envelope.Schema) (string, error) {
	return schemaText(s, envelope.AvroSchemaName)
}

func schemaText(s *envelope.Schema, rename func(string) string) (string, error) {
	w := schemaWriter{seen: map[string]bool{}, rename: rename}
	if err := w.typ(s, "", false); err != nil {
		return "", err
	}
	return string(w.buf), nil
}

// namespaceOutsideSpec reports whether some record of s has a namespace the Avro
// specification refuses (which Java's Avro before 1.12 took, and 1.12's parser refuses).
func namespaceOutsideSpec(s *envelope.Schema) bool {
	if s == nil {
		return false
	}
	if s.Type == envelope.Struct {
		space, _ := splitName(s.Name)
		if space != "" && envelope.AvroSchemaName(space) != space {
			return true
		}
		for _, f := range s.Fields {
			if namespaceOutsideSpec(f.Schema) {
				return true
			}
		}
	}
	return namespaceOutsideSpec(s.Items) || namespaceOutsideSpec(s.Keys) || namespaceOutsideSpec(s.Values)
}

const (
	connectNamespace = "io.confluent.connect.avro"
	defaultName      = "ConnectDefault"
	mapEntryName     = "MapEntry"
	// precision AvroData gives a Decimal without connect.decimal.precision (money).
	defaultDecimalPrecision = 64
)

// schemaWriter writes the schema text; Avro's Schema.toString writes JSON through Jackson, as
// Kafka's JsonConverter does, so strings and default values come out as envelope writes them.
type schemaWriter struct {
	buf      []byte
	seen     map[string]bool // full names of the records written so far
	nameless int             // ConnectDefault, ConnectDefault2, ...
	rename   func(string) string
}

// name is a schema's name as written: renamed for AdjustedSchemaOf.
func (w *schemaWriter) name(s string) string {
	if w.rename == nil || s == "" {
		return s
	}
	return w.rename(s)
}

func (w *schemaWriter) str(s string) { w.buf = envelope.AppendJSONString(w.buf, s) }

// defaultValue writes the default of s as AvroData.defaultValueFromConnect converts it.
func (w *schemaWriter) defaultValue(s *envelope.Schema) (err error) {
	w.buf, err = envelope.AppendAvroDefault(w.buf, s, s.Default)
	return err
}

// typ writes s; ns is the namespace of the enclosing record.
func (w *schemaWriter) typ(s *envelope.Schema, ns string, ignoreOptional bool) error {
	if s.Type == envelope.Struct && s.Optional && !ignoreOptional {
		// AvroData: an optional struct is ["null", record], whatever its default.
		w.buf = append(w.buf, `["null",`...)
		if err := w.typ(s, ns, true); err != nil {
			return err
		}
		w.buf = append(w.buf, ']')
		return nil
	}
	optional := s.Optional && !ignoreOptional
	withDefault := s.HasDefault && s.Default != nil
	if optional {
		if withDefault {
			w.buf = append(w.buf, '[')
		} else {
			w.buf = append(w.buf, `["null",`...)
		}
	}
	if err := w.base(s, ns); err != nil {
		return err
	}
	if optional {
		if withDefault {
			w.buf = append(w.buf, `,"null"]`...)
		} else {
			w.buf = append(w.buf, ']')
		}
	}
	return nil
}

// base writes the non-union form of s with its properties.
func (w *schemaWriter) base(s *envelope.Schema, ns string) error {
	var prim string
	switch s.Type {
	case envelope.Boolean:
		prim = "boolean"
	case envelope.Int8, envelope.Int16, envelope.Int32:
		prim = "int"
	case envelope.Int64:
		prim = "long"
	case envelope.Float32:
		prim = "float"
	case envelope.Float64:
		prim = "double"
	case envelope.String:
		prim = "string"
	case envelope.Bytes:
		prim = "bytes"
	case envelope.Array:
		w.buf = append(w.buf, `{"type":"array","items":`...)
		if err := w.typ(s.Items, ns, false); err != nil {
			return err
		}
		if err := w.props(s); err != nil {
			return err
		}
		w.buf = append(w.buf, '}')
		return nil
	case envelope.Map:
		if s.Keys.Type == envelope.String && !s.Keys.Optional {
			w.buf = append(w.buf, `{"type":"map","values":`...)
			if err := w.typ(s.Values, ns, false); err != nil {
				return err
			}
		} else {
			// Avro maps have string keys only: an array of key/value records instead.
			w.buf = append(w.buf, `{"type":"array","items":`...)
			entry := &envelope.Schema{Type: envelope.Struct, Name: connectNamespace + "." + mapEntryName, Fields: []envelope.Field{
				{Name: "key", Schema: s.Keys}, {Name: "value", Schema: s.Values},
			}}
			if s.Name != "" {
				return fmt.Errorf("named map %s with non-string keys is not supported in Avro", s.Name)
			}
			if err := w.record(entry, ns, false); err != nil {
				return err
			}
		}
		if err := w.props(s); err != nil {
			return err
		}
		w.buf = append(w.buf, '}')
		return nil
	case envelope.Struct:
		return w.record(s, ns, true)
	default:
		return fmt.Errorf("unknown schema type %d", s.Type)
	}
	if !hasProps(s) {
		w.buf = append(w.buf, '"')
		w.buf = append(w.buf, prim...)
		w.buf = append(w.buf, '"')
		return nil
	}
	w.buf = append(w.buf, `{"type":"`...)
	w.buf = append(w.buf, prim...)
	w.buf = append(w.buf, '"')
	precision, scale, isDecimal, err := decimalParams(s)
	if err != nil {
		return err
	}
	if isDecimal {
		w.buf = append(w.buf, `,"scale":`...)
		w.buf = strconv.AppendInt(w.buf, int64(scale), 10)
		w.buf = append(w.buf, `,"precision":`...)
		w.buf = strconv.AppendInt(w.buf, int64(precision), 10)
	}
	if err := w.props(s); err != nil {
		return err
	}
	w.buf = append(w.buf, '}')
	return nil
}

func hasProps(s *envelope.Schema) bool {
	return s.Doc != "" || s.Version != 0 || len(s.Params) > 0 || (s.HasDefault && s.Default != nil) ||
		s.Name != "" || s.Type == envelope.Int8 || s.Type == envelope.Int16
}

// decimalParams reads the precision and scale of a Connect Decimal.
func decimalParams(s *envelope.Schema) (precision, scale int, ok bool, err error) {
	if s.Type != envelope.Bytes || !strings.EqualFold(s.Name, envelope.LogicalDecimal) {
		return 0, 0, false, nil
	}
	sc, _ := s.Param("scale")
	if scale, err = strconv.Atoi(sc); err != nil {
		return 0, 0, false, fmt.Errorf("decimal scale %q: %v", sc, err)
	}
	precision = defaultDecimalPrecision
	if p, has := s.Param("connect.decimal.precision"); has {
		if precision, err = strconv.Atoi(p); err != nil {
			return 0, 0, false, fmt.Errorf("decimal precision %q: %v", p, err)
		}
	}
	return precision, scale, true, nil
}

// props writes AvroData's metadata properties, then the logical type, in the order Avro keeps
// them (insertion order).
func (w *schemaWriter) props(s *envelope.Schema) error {
	if s.Doc != "" {
		w.buf = append(w.buf, `,"connect.doc":`...)
		w.str(s.Doc)
	}
	if s.Version != 0 {
		w.buf = append(w.buf, `,"connect.version":`...)
		w.buf = strconv.AppendInt(w.buf, int64(s.Version), 10)
	}
	if len(s.Params) > 0 {
		w.buf = append(w.buf, `,"connect.parameters":{`...)
		for i, p := range s.Params {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.str(p.Key)
			w.buf = append(w.buf, ':')
			w.str(p.Value)
		}
		w.buf = append(w.buf, '}')
	}
	if s.HasDefault && s.Default != nil {
		w.buf = append(w.buf, `,"connect.default":`...)
		if err := w.defaultValue(s); err != nil {
			return fmt.Errorf("default of %s: %w", s.Type, err)
		}
	}
	if s.Name != "" {
		w.buf = append(w.buf, `,"connect.name":`...)
		w.str(w.name(s.Name))
	}
	switch s.Type {
	case envelope.Int8:
		w.buf = append(w.buf, `,"connect.type":"int8"`...)
	case envelope.Int16:
		w.buf = append(w.buf, `,"connect.type":"int16"`...)
	}
	switch {
	case s.Type == envelope.Bytes && strings.EqualFold(s.Name, envelope.LogicalDecimal):
		w.buf = append(w.buf, `,"logicalType":"decimal"`...)
	case strings.EqualFold(s.Name, envelope.LogicalTime):
		w.buf = append(w.buf, `,"logicalType":"time-millis"`...)
	case strings.EqualFold(s.Name, envelope.LogicalTimestamp):
		w.buf = append(w.buf, `,"logicalType":"timestamp-millis"`...)
	case strings.EqualFold(s.Name, envelope.LogicalDate):
		w.buf = append(w.buf, `,"logicalType":"date"`...)
	}
	return nil
}

// record writes a struct as a record, or as a reference to it when it was written before.
func (w *schemaWriter) record(s *envelope.Schema, ns string, meta bool) error {
	full := w.name(s.Name)
	if full == "" {
		w.nameless++
		full = connectNamespace + "." + defaultName
		if w.nameless > 1 {
			full += strconv.Itoa(w.nameless)
		}
	}
	space, name := splitName(full)
	if err := checkFullName(full); err != nil {
		return err
	}
	if w.seen[full] {
		if space == "" || space == ns {
			w.str(name)
		} else {
			w.str(full)
		}
		return nil
	}
	w.seen[full] = true
	w.buf = append(w.buf, `{"type":"record","name":`...)
	w.str(name)
	switch {
	case space != "" && space != ns:
		w.buf = append(w.buf, `,"namespace":`...)
		w.str(space)
	case space == "" && ns != "":
		w.buf = append(w.buf, `,"namespace":""`...)
	}
	w.buf = append(w.buf, `,"fields":[`...)
	for i, f := range s.Fields {
		if err := checkName(f.Name); err != nil {
			return fmt.Errorf("field %q of %s: %w (set debezium.field.name.adjustment.mode: avro)", f.Name, full, err)
		}
		if i > 0 {
			w.buf = append(w.buf, ',')
		}
		w.buf = append(w.buf, `{"name":`...)
		w.str(f.Name)
		w.buf = append(w.buf, `,"type":`...)
		if err := w.typ(f.Schema, space, false); err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		switch {
		case f.Schema.HasDefault && f.Schema.Default != nil:
			w.buf = append(w.buf, `,"default":`...)
			if err := w.defaultValue(f.Schema); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		case f.Schema.Optional:
			w.buf = append(w.buf, `,"default":null`...)
		}
		w.buf = append(w.buf, '}')
	}
	w.buf = append(w.buf, ']')
	if meta {
		if err := w.props(s); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, '}')
	return nil
}

// splitName splits a full name at its last dot into namespace and name.
func splitName(full string) (space, name string) {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "", full
}

// checkName checks one Avro name: [A-Za-z_][A-Za-z0-9_]*.
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("an Avro name cannot be empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return fmt.Errorf("%q is not a valid Avro name (letters, digits and '_', not starting with a digit)", name)
	}
	return nil
}

// checkFullName checks a record's full name as Java's Avro (Schema.Name) does, and with it
// AvroData and the registries: only the part after the last dot must be an Avro name. The
// namespace is written as it is: Debezium's schemas under a topic such as orders-v1 or a
// topic.prefix such as my-app are registered with such namespaces, and procon-cdc registers
// the same text (registry.Parse reads it back).
func checkFullName(full string) error {
	_, name := splitName(full)
	if err := checkName(name); err != nil {
		return fmt.Errorf("schema name %q: %w; set debezium.schema.name.adjustment.mode: avro", full, err)
	}
	return nil
}
