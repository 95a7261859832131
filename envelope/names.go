package envelope

import "strings"

// Name adjustment lives here, not in package avro: like Debezium, it renames the Connect
// schemas and fields themselves, so JSON records carry the adjusted names too.

// adjustSchemaName applies schema.name.adjustment.mode to a dotted schema name: in avro mode
// the name becomes a valid Avro full name as Debezium's SchemaNameAdjuster makes it.
func (o *Options) adjustSchemaName(name string) string {
	if o.SchemaNameAdjust != AdjustAvro {
		return name
	}
	return avroName(name, true)
}

// AvroSchemaName is name as schema.name.adjustment.mode: avro makes it (Debezium's
// SchemaNameAdjuster): a valid Avro full name.
func AvroSchemaName(name string) string { return avroName(name, true) }

// adjustFieldName applies field.name.adjustment.mode to a column name.
func (o *Options) adjustFieldName(name string) string {
	if o.FieldNameAdjust != AdjustAvro {
		return name
	}
	return avroName(name, false)
}

// avroName is Debezium's SchemaNameAdjuster.validFullname with the underscore replacement
// (FieldNameUnderscoreReplacementFunction for field names, where dots are not kept): the whole
// name is scanned in Java chars (UTF-16 units); a first character outside [A-Za-z_] becomes '_'
// (a digit is kept after it, so that "1a" and "2a" stay distinct), later characters outside
// [A-Za-z0-9_] (and '.' in schema names) become '_'.
func avroName(s string, dots bool) string {
	valid := func(i int, c rune) bool {
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			return true
		case i == 0:
			return false
		case c >= '0' && c <= '9':
			return true
		}
		return dots && c == '.'
	}
	ok := true
	for i, c := range s {
		if !valid(i, c) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 1)
	for i, c := range s {
		if valid(i, c) {
			b.WriteRune(c)
			continue
		}
		b.WriteByte('_')
		if c > 0xFFFF {
			b.WriteByte('_') // a surrogate pair is two Java chars
		}
		if i == 0 && c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// AvroFieldName is a field name as field.name.adjustment.mode: avro makes it.
func AvroFieldName(name string) string { return avroName(name, false) }
