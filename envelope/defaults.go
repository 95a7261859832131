package envelope

import (
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/procon-cdc/procon/replication"
)

// Column defaults, as Debezium's PostgresDefaultValueConverter derives them from the DEFAULT
// expression (pg_get_expr) for the field schema: a mapper per type name parses the literal,
// the column's value converter converts it. Kafka's JsonConverter then writes the default in
// place of a null, and Debezium uses it for a required column the server did not send.

var (
	// FUNCTION_DEFAULT_PATTERN: an expression that calls a function gives the type's
	// placeholder (nextval() → 0, now() → the epoch).
	functionDefault = regexp.MustCompile(`^[(]?[A-Za-z0-9_.]+\((?:.+(?:, ?.+)*)?\)`)
	// LITERAL_DEFAULT_PATTERN: the first quoted literal, non-greedy ('it''s' gives "it", as in
	// Debezium).
	literalDefault   = regexp.MustCompile(`'(.*?)'`)
	currentDateTimes = map[string]bool{"current_timestamp": true, "current_time": true, "current_date": true,
		"localtime": true, "localtimestamp": true}
	trimDefaultTypes = map[string]bool{"bit": true, "varbit": true, "bool": true, "numeric": true, "float4": true,
		"float8": true, "int2": true, "int4": true, "serial": true, "int8": true, "bigserial": true, "smallserial": true,
		"uuid": true, "date": true, "time": true, "timestamp": true, "timestamptz": true, "interval": true}
)

// extractDefault is Debezium's extractDefault(value, placeholder): ok is false for a null.
func extractDefault(expr, placeholder string) (string, bool) {
	if functionDefault.MatchString(expr) || currentDateTimes[strings.ToLower(expr)] {
		return placeholder, true
	}
	if !strings.Contains(expr, "'") {
		return expr, !strings.HasPrefix(expr, "NULL::")
	}
	m := literalDefault.FindStringSubmatch(expr)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// parseDefault turns a column's DEFAULT expression into its schema default, or reports none.
func parseDefault(col *replication.Column, ct columnType) (any, bool) {
	if col.Default == "" || ct.unknown || col.Type == nil {
		return nil, false
	}
	// Debezium looks its mapper up by the column's type name: a domain's own name (no mapper),
	// an array's _name (none either).
	typ := col.Type.Name
	expr := col.Default
	if trimDefaultTypes[typ] {
		expr = strings.TrimSpace(expr)
	}
	var text string
	var ok bool
	switch typ {
	case "bool":
		if strings.HasPrefix(expr, "NULL::") {
			return nil, false
		}
		if text, ok = extractDefault(expr, "false"); !ok {
			return nil, false
		}
		if strings.EqualFold(text, "true") {
			text = "t"
		} else {
			text = "f"
		}
	case "bit":
		if text, ok = extractDefault(expr, "00"); !ok {
			return nil, false
		}
	case "varbit":
		text, ok = extractDefault(expr, "0")
	case "bpchar", "varchar", "text", "xml":
		text, ok = extractDefault(expr, "")
	case "json", "jsonb":
		text, ok = extractDefault(expr, "{}")
	case "numeric", "float4", "float8":
		if strings.HasPrefix(expr, "NULL::") {
			return nil, false
		}
		if text, ok = extractDefault(expr, "0.0"); !ok {
			return nil, false
		}
		if typ == "numeric" {
			if _, valid := new(big.Float).SetString(text); !valid {
				return nil, false
			}
		} else if _, err := strconv.ParseFloat(text, 64); err != nil {
			return nil, false
		}
	case "int2", "int4", "int8":
		if strings.HasPrefix(expr, "NULL::") {
			return nil, false
		}
		if text, ok = extractDefault(expr, "0"); !ok {
			return nil, false
		}
		bits := map[string]int{"int2": 16, "int4": 32, "int8": 64}[typ]
		if _, err := strconv.ParseInt(text, 10, bits); err != nil {
			return nil, false
		}
	case "uuid":
		if text, ok = extractDefault(expr, "00000000-0000-0000-0000-000000000000"); ok {
			text = strings.ToLower(text)
		}
	case "date":
		text, ok = extractDefault(expr, "1970-01-01")
		if ok {
			// pgjdbc's toLocalDateTime reads a date or a timestamp; the date part counts.
			text, _, _ = strings.Cut(text, " ")
		}
	case "time":
		text, ok = extractDefault(expr, "00:00")
		if ok && len(text) == 5 {
			text += ":00"
		}
	case "timestamp", "timestamptz":
		text, ok = extractDefault(expr, "1970-01-01")
		if ok && !strings.Contains(text, " ") {
			text += " 00:00:00"
		}
		if ok && typ == "timestamptz" && !hasOffset(text) {
			text += "+00"
		}
	case "interval":
		text, ok = extractDefault(expr, "epoch")
	default:
		if col.Type.Kind != 'e' {
			return nil, false
		}
		// An enum: the literal before the ::<enum type> cast.
		i := strings.LastIndex(expr, "::")
		if i < 0 || !strings.HasPrefix(expr, "'") || !strings.HasSuffix(expr[:i], "'") || i < 2 {
			return nil, false
		}
		cast := strings.Trim(expr[i+2:], `"`)
		if j := strings.LastIndexByte(cast, '.'); j >= 0 {
			cast = strings.Trim(cast[j+1:], `"`)
		}
		if cast != typ {
			return nil, false
		}
		text, ok = expr[1:i-1], true
	}
	if !ok {
		return nil, false
	}
	v, err := ct.conv([]byte(text))
	if err != nil || v == nil {
		return nil, false
	}
	if _, isStruct := v.(*Value); isStruct {
		// Debezium drops struct defaults (KAFKA-12694): VariableScaleDecimal, Point.
		return nil, false
	}
	return v, true
}

// hasOffset reports whether a timestamp text ends with a UTC offset.
func hasOffset(s string) bool {
	_, clock, ok := strings.Cut(s, " ")
	return ok && strings.ContainsAny(clock, "+-Z")
}

// zeroValue is the value Debezium gives a required column that has no value (the columns of
// a delete's before that REPLICA IDENTITY DEFAULT does not send): the schema default, else
// the converter's fallback.
func zeroValue(s *Schema) any {
	if s.HasDefault && s.Default != nil {
		return s.Default
	}
	switch s.Type {
	case Boolean:
		return false
	case Int8:
		return int8(0)
	case Int16:
		return int16(0)
	case Int32:
		return int32(0)
	case Int64:
		return int64(0)
	case Float32:
		return float32(0)
	case Float64:
		return float64(0)
	case String:
		return ""
	case Bytes:
		if s.Name == LogicalDecimal {
			scale, _ := s.Param("scale")
			n, _ := strconv.Atoi(scale)
			return Decimal{Unscaled: bigInt(0), Scale: int32(n)}
		}
		return []byte{}
	case Array:
		return []any{}
	case Map:
		return []MapEntry{}
	}
	return nil
}
