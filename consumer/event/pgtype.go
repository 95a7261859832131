package event

import (
	"strconv"
	"strings"
)

// category is what a target column's type asks of a value's text.
type category uint8

const (
	catText category = iota // anything read from its text as it is: text, varchar, uuid, inet, enums, ...
	catBool
	catInt
	catFloat
	catNumeric
	catMoney
	catDate
	catTime
	catTimeTZ
	catTimestamp
	catTimestampTZ
	catInterval
	catBytea
	catBit
	catVarbit
	catJSON
	catHstore
	catPoint
	catGeometry
)

// pgType is a target column's type as format_type(atttypid, atttypmod) prints it, parsed.
type pgType struct {
	text string // as given, for messages
	cat  category
	// mods are the type modifiers in parentheses: numeric(10,2) → [10 2], time(3) → [3].
	mods []int
	// float32 is set for real columns.
	float32 bool
	// elem is the element type of an array type ("integer[]").
	elem *pgType
}

// scale returns numeric's scale, -1 when unconstrained.
func (t *pgType) scale() int {
	switch len(t.mods) {
	case 1:
		return 0
	case 2:
		return t.mods[1]
	}
	return -1
}

// precision returns the fractional digits of a time or timestamp type, 6 when unset.
func (t *pgType) precision() int {
	if len(t.mods) == 1 && t.mods[0] >= 0 && t.mods[0] <= 6 {
		return t.mods[0]
	}
	return 6
}

// parsePGType reads format_type's output. Names it does not know are user types (enums,
// domains, extension types), read from their text. It is on the path of every value a
// consumer writes, so the common spellings take no allocation beyond the result.
func parsePGType(s string) *pgType {
	t := &pgType{text: s}
	s = strings.TrimSpace(s)
	if hasUpper(s) {
		s = strings.ToLower(s)
	}
	if base, ok := strings.CutSuffix(s, "[]"); ok {
		for {
			// format_type writes one [] whatever the dimensions; accept more.
			b, more := strings.CutSuffix(strings.TrimSpace(base), "[]")
			if !more {
				break
			}
			base = b
		}
		t.elem = parsePGType(base)
		return t
	}
	name := s
	if i := strings.IndexByte(s, '('); i >= 0 {
		if j := strings.IndexByte(s[i:], ')'); j > 0 {
			mods := s[i+1 : i+j]
			for mods != "" {
				m, rest, _ := strings.Cut(mods, ",")
				n, err := strconv.Atoi(strings.TrimSpace(m))
				if err != nil {
					n = -1
				}
				t.mods = append(t.mods, n)
				mods = rest
			}
			name = strings.TrimSpace(s[:i])
			if rest := strings.TrimSpace(s[i+j+1:]); rest != "" {
				name += " " + rest
			}
		}
	}
	name = strings.TrimPrefix(name, "pg_catalog.")
	switch name {
	case "boolean", "bool":
		t.cat = catBool
	case "smallint", "integer", "bigint", "int", "int2", "int4", "int8", "oid", "smallserial", "serial", "bigserial":
		t.cat = catInt
	case "real", "float4":
		t.cat, t.float32 = catFloat, true
	case "double precision", "float8", "float":
		t.cat = catFloat
	case "numeric", "decimal":
		t.cat = catNumeric
	case "money":
		t.cat = catMoney
	case "date":
		t.cat = catDate
	case "time", "time without time zone":
		t.cat = catTime
	case "timetz", "time with time zone":
		t.cat = catTimeTZ
	case "timestamp", "timestamp without time zone":
		t.cat = catTimestamp
	case "timestamptz", "timestamp with time zone":
		t.cat = catTimestampTZ
	case "interval":
		t.cat = catInterval
	case "bytea":
		t.cat = catBytea
	case "bit":
		t.cat = catBit
		if len(t.mods) == 0 {
			t.mods = []int{1} // bit without a length is bit(1)
		}
	case "bit varying", "varbit":
		t.cat = catVarbit
	case "json", "jsonb":
		t.cat = catJSON
	case "hstore", "public.hstore":
		t.cat = catHstore
	case "point":
		t.cat = catPoint
	case "geometry", "geography", "public.geometry", "public.geography":
		t.cat = catGeometry
	default:
		if strings.HasPrefix(name, "interval") { // interval day to second, ...
			t.cat = catInterval
		}
	}
	return t
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
