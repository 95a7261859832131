package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/procon-cdc/procon/replication"
)

// converter turns the text form pgoutput sends into the value a column's schema describes.
type converter func(text []byte) (any, error)

// columnType is how one column is rendered: its Connect schema (required; the caller makes it
// optional for nullable columns) and its converter.
type columnType struct {
	schema *Schema
	conv   converter
	// unknown is set for a type Debezium does not map; the column is rendered as its text
	// when IncludeUnknown is set, else left out.
	unknown bool
}

// Semantic type names used by Debezium.
const (
	nameDecimal       = "org.apache.kafka.connect.data.Decimal"
	nameVarDecimal    = "io.debezium.data.VariableScaleDecimal"
	nameJSON          = "io.debezium.data.Json"
	nameXML           = "io.debezium.data.Xml"
	nameUUID          = "io.debezium.data.Uuid"
	nameEnum          = "io.debezium.data.Enum"
	nameLtree         = "io.debezium.data.Ltree"
	nameBits          = "io.debezium.data.Bits"
	nameTsvector      = "io.debezium.data.Tsvector"
	nameDate          = "io.debezium.time.Date"
	nameTime          = "io.debezium.time.Time"
	nameMicroTime     = "io.debezium.time.MicroTime"
	nameNanoTime      = "io.debezium.time.NanoTime"
	nameTimestamp     = "io.debezium.time.Timestamp"
	nameMicroTS       = "io.debezium.time.MicroTimestamp"
	nameNanoTS        = "io.debezium.time.NanoTimestamp"
	nameZonedTS       = "io.debezium.time.ZonedTimestamp"
	nameZonedTime     = "io.debezium.time.ZonedTime"
	nameMicroDuration = "io.debezium.time.MicroDuration"
	nameInterval      = "io.debezium.time.Interval"
	nameIsoDate       = "io.debezium.time.IsoDate"
	nameIsoTime       = "io.debezium.time.IsoTime"
	nameIsoTimestamp  = "io.debezium.time.IsoTimestamp"
	nameConnectDate   = "org.apache.kafka.connect.data.Date"
	nameConnectTime   = "org.apache.kafka.connect.data.Time"
	nameConnectTS     = "org.apache.kafka.connect.data.Timestamp"
)

func named(t Type, name string, version int, params ...Param) *Schema {
	return &Schema{Type: t, Name: name, Version: version, Params: params}
}

// columnTypeOf maps a column to its schema and converter, following Debezium's
// PostgresValueConverter for the configured modes.
func (o *Options) columnTypeOf(col *replication.Column) (columnType, error) {
	t := col.Type
	typmod := col.TypeMod
	if t == nil {
		return columnType{}, fmt.Errorf("column %s: type %d unknown", col.Name, col.TypeOID)
	}
	// Domains are mapped as their root type; a domain's own typmod (numeric(10,2)) counts.
	if t.Kind == 'd' {
		if typmod < 0 {
			typmod = t.BaseTypeMod
		}
		t = t.Root()
	}
	if t.Category == 'A' && t.Elem != nil {
		return o.arrayType(col.Name, t.Elem)
	}
	return o.scalarType(t, typmod)
}

func (o *Options) scalarType(t *replication.Type, typmod int32) (columnType, error) {
	switch t.Kind {
	case 'e':
		return columnType{schema: named(String, nameEnum, 1, Param{"allowed", strings.Join(t.EnumLabels, ",")}), conv: convString}, nil
	case 'r':
		return columnType{schema: prim(String, false), conv: convString}, nil
	}
	switch t.Name {
	case "bool":
		return columnType{schema: prim(Boolean, false), conv: convBool}, nil
	case "int2":
		return columnType{schema: prim(Int16, false), conv: convInt16}, nil
	case "int4":
		return columnType{schema: prim(Int32, false), conv: convInt32}, nil
	case "int8", "oid":
		return columnType{schema: prim(Int64, false), conv: convInt64}, nil
	case "float4":
		return columnType{schema: prim(Float32, false), conv: convFloat32}, nil
	case "float8":
		return columnType{schema: prim(Float64, false), conv: convFloat64}, nil
	case "numeric":
		return o.numericType(typmod), nil
	case "money":
		return o.moneyType(), nil
	case "text", "varchar", "bpchar", "name", "char", "citext", "isbn", "inet", "cidr", "macaddr", "macaddr8":
		return columnType{schema: prim(String, false), conv: convString}, nil
	case "json", "jsonb":
		return columnType{schema: named(String, nameJSON, 1), conv: convString}, nil
	case "xml":
		return columnType{schema: named(String, nameXML, 1), conv: convString}, nil
	case "uuid":
		return columnType{schema: named(String, nameUUID, 1), conv: convString}, nil
	case "ltree":
		return columnType{schema: named(String, nameLtree, 1), conv: convString}, nil
	case "tsvector":
		return columnType{schema: named(String, nameTsvector, 1), conv: convString}, nil
	case "hstore":
		return o.hstoreType(), nil
	case "bytea":
		return o.binaryType(), nil
	case "bit", "varbit":
		return bitType(t.Name, typmod), nil
	case "date", "time", "timestamp", "timestamptz", "timetz", "interval":
		return o.temporalType(t.Name, typmod)
	}
	return columnType{schema: prim(String, false), conv: convString, unknown: true}, nil
}

func (o *Options) arrayType(col string, elem *replication.Type) (columnType, error) {
	if elem.Kind == 'd' {
		// Debezium does not map arrays of domains.
		return columnType{schema: prim(String, false), conv: convString, unknown: true}, nil
	}
	switch elem.Name {
	case "money", "name", "interval", "varbit", "xml", "point", "refcursor":
		return columnType{schema: prim(String, false), conv: convString, unknown: true}, nil
	}
	et, err := o.scalarType(elem, -1)
	if err != nil || et.unknown {
		return columnType{schema: prim(String, false), conv: convString, unknown: true}, err
	}
	items := et.schema.optional()
	delim := byte(',')
	if elem.Name == "box" {
		delim = ';'
	}
	conv := func(text []byte) (any, error) {
		return parseArray(text, delim, et.conv)
	}
	return columnType{schema: &Schema{Type: Array, Items: items}, conv: conv}, nil
}

func convString(b []byte) (any, error) { return string(b), nil }

func convBool(b []byte) (any, error) {
	switch string(b) {
	case "t", "true":
		return true, nil
	case "f", "false":
		return false, nil
	}
	return nil, fmt.Errorf("invalid boolean %q", b)
}

func convInt16(b []byte) (any, error) {
	n, err := strconv.ParseInt(string(b), 10, 16)
	return int16(n), err
}

func convInt32(b []byte) (any, error) {
	n, err := strconv.ParseInt(string(b), 10, 32)
	return int32(n), err
}

func convInt64(b []byte) (any, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	return n, err
}

func convFloat32(b []byte) (any, error) {
	f, err := strconv.ParseFloat(string(b), 32)
	return float32(f), err
}

func convFloat64(b []byte) (any, error) {
	return strconv.ParseFloat(string(b), 64)
}

func (o *Options) binaryType() columnType {
	switch o.BinaryMode {
	case "base64":
		return columnType{schema: prim(String, false), conv: func(b []byte) (any, error) {
			raw, err := parseBytea(b)
			return base64.StdEncoding.EncodeToString(raw), err
		}}
	case "base64-url-safe":
		return columnType{schema: prim(String, false), conv: func(b []byte) (any, error) {
			raw, err := parseBytea(b)
			return base64.URLEncoding.EncodeToString(raw), err
		}}
	case "hex":
		return columnType{schema: prim(String, false), conv: func(b []byte) (any, error) {
			raw, err := parseBytea(b)
			return hex.EncodeToString(raw), err
		}}
	}
	return columnType{schema: prim(Bytes, false), conv: func(b []byte) (any, error) { return parseBytea(b) }}
}

// parseBytea decodes bytea's hex text output (\x0102...).
func parseBytea(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, []byte(`\x`)) {
		return nil, fmt.Errorf("bytea value is not in hex format (set bytea_output = hex): %.20q", b)
	}
	out := make([]byte, hex.DecodedLen(len(b)-2))
	_, err := hex.Decode(out, b[2:])
	return out, err
}

// bitType maps bit(1) to a boolean and longer bit strings to io.debezium.data.Bits, whose
// bytes hold the bits least-significant first, as Java's BitSet.toByteArray writes them.
func bitType(name string, typmod int32) columnType {
	if typmod == 1 {
		return columnType{schema: prim(Boolean, false), conv: func(b []byte) (any, error) { return string(b) == "1", nil }}
	}
	length := "2147483647"
	if typmod > 0 {
		length = strconv.Itoa(int(typmod))
	}
	return columnType{schema: named(Bytes, nameBits, 1, Param{"length", length}), conv: convBits}
}

func convBits(b []byte) (any, error) {
	n := len(b)
	out := make([]byte, (n+7)/8)
	for i := 0; i < n; i++ {
		// The last character of the text is bit 0.
		switch b[n-1-i] {
		case '1':
			out[i/8] |= 1 << (i % 8)
		case '0':
		default:
			return nil, fmt.Errorf("invalid bit string %q", b)
		}
	}
	// BitSet.toByteArray drops trailing zero bytes.
	for len(out) > 0 && out[len(out)-1] == 0 {
		out = out[:len(out)-1]
	}
	return out, nil
}

func (o *Options) hstoreType() columnType {
	if o.HstoreMode == "map" {
		s := &Schema{Type: Map, Keys: prim(String, false), Values: prim(String, true)}
		return columnType{schema: s, conv: func(b []byte) (any, error) {
			kv, err := parseHstore(b)
			if err != nil {
				return nil, err
			}
			entries := make([]MapEntry, len(kv))
			for i, e := range kv {
				entries[i] = MapEntry{Key: e.key}
				if e.value != nil {
					entries[i].Value = *e.value.(*string)
				}
			}
			return entries, nil
		}}
	}
	return columnType{schema: named(String, nameJSON, 1), conv: func(b []byte) (any, error) {
		kv, err := parseHstore(b)
		if err != nil {
			return nil, err
		}
		var w jsonWriter
		w.buf = append(w.buf, '{')
		for i, e := range kv {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.str(e.key)
			w.buf = append(w.buf, ':')
			if e.value == nil {
				w.buf = append(w.buf, "null"...)
			} else {
				w.str(*e.value.(*string))
			}
		}
		w.buf = append(w.buf, '}')
		return string(w.buf), nil
	}}
}

type hstoreEntry struct {
	key   string
	value any // *string or nil
}

// parseHstore parses hstore's text output: "k"=>"v", "k2"=>NULL.
func parseHstore(b []byte) ([]hstoreEntry, error) {
	var out []hstoreEntry
	i := 0
	readQuoted := func() (string, error) {
		if i >= len(b) || b[i] != '"' {
			return "", fmt.Errorf("invalid hstore %q", b)
		}
		i++
		var s []byte
		for i < len(b) && b[i] != '"' {
			if b[i] == '\\' && i+1 < len(b) {
				i++
			}
			s = append(s, b[i])
			i++
		}
		i++
		return string(s), nil
	}
	for i < len(b) {
		for i < len(b) && (b[i] == ' ' || b[i] == ',') {
			i++
		}
		if i >= len(b) {
			break
		}
		k, err := readQuoted()
		if err != nil {
			return nil, err
		}
		if !bytes.HasPrefix(b[i:], []byte("=>")) {
			return nil, fmt.Errorf("invalid hstore %q", b)
		}
		i += 2
		if bytes.HasPrefix(b[i:], []byte("NULL")) {
			out = append(out, hstoreEntry{key: k})
			i += 4
			continue
		}
		v, err := readQuoted()
		if err != nil {
			return nil, err
		}
		out = append(out, hstoreEntry{key: k, value: &v})
	}
	return out, nil
}
