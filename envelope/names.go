package envelope

import "strings"

// adjustSchemaName applies schema.name.adjustment.mode to a dotted schema name: in avro mode
// every part becomes a valid Avro name (characters outside [A-Za-z0-9_] replaced by '_', and a
// leading digit prefixed with '_'), as Debezium's SchemaNameAdjuster does.
func (o *Options) adjustSchemaName(name string) string {
	if o.SchemaNameAdjust != "avro" {
		return name
	}
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = avroName(p)
	}
	return strings.Join(parts, ".")
}

// adjustFieldName applies field.name.adjustment.mode to a column name.
func (o *Options) adjustFieldName(name string) string {
	if o.FieldNameAdjust != "avro" {
		return name
	}
	return avroName(name)
}

func avroName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')) {
			if i == 0 && c >= '0' && c <= '9' {
				continue
			}
			b[i] = '_'
		}
	}
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}
