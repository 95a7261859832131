package envelope

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"

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
	// inArena, when set, is conv writing its value into the Builder's arena (no allocation
	// of its own); it holds only while conv is the converter it was made for (arenaFor), as
	// wrappers may replace conv (columnType.arenaConv).
	inArena  func(a *arena, text []byte) (any, error)
	arenaFor uintptr
}

// withArena returns ct with f as the arena form of its converter.
func (ct columnType) withArena(f func(a *arena, text []byte) (any, error)) columnType {
	ct.inArena, ct.arenaFor = f, reflect.ValueOf(ct.conv).Pointer()
	return ct
}

// arenaConv is the arena form of ct's converter, nil when it has none or conv was replaced
// after it was set.
func (ct *columnType) arenaConv() func(a *arena, text []byte) (any, error) {
	if ct.inArena == nil || reflect.ValueOf(ct.conv).Pointer() != ct.arenaFor {
		return nil
	}
	return ct.inArena
}

// Semantic type names used by Debezium (Kafka Connect's own are in schema.go).
const (
	NameVarDecimal    = "io.debezium.data.VariableScaleDecimal"
	NameJSON          = "io.debezium.data.Json"
	NameXML           = "io.debezium.data.Xml"
	NameUUID          = "io.debezium.data.Uuid"
	NameEnum          = "io.debezium.data.Enum"
	NameLtree         = "io.debezium.data.Ltree"
	NameBits          = "io.debezium.data.Bits"
	NameTsvector      = "io.debezium.data.Tsvector"
	NameDate          = "io.debezium.time.Date"
	NameTime          = "io.debezium.time.Time"
	NameMicroTime     = "io.debezium.time.MicroTime"
	NameNanoTime      = "io.debezium.time.NanoTime"
	NameTimestamp     = "io.debezium.time.Timestamp"
	NameMicroTS       = "io.debezium.time.MicroTimestamp"
	NameNanoTS        = "io.debezium.time.NanoTimestamp"
	NameZonedTS       = "io.debezium.time.ZonedTimestamp"
	NameZonedTime     = "io.debezium.time.ZonedTime"
	NameMicroDuration = "io.debezium.time.MicroDuration"
	NameInterval      = "io.debezium.time.Interval"
	NameIsoDate       = "io.debezium.time.IsoDate"
	NameIsoTime       = "io.debezium.time.IsoTime"
	NameIsoTimestamp  = "io.debezium.time.IsoTimestamp"
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
	var ct columnType
	var err error
	if t.Category == 'A' && t.Elem != nil {
		// The element gets the array column's typmod (numeric(6,2)[], time(3)[]), as
		// Debezium's element column gets its length and scale.
		ct, err = o.arrayType(col.Name, t.Elem, typmod)
	} else {
		ct, err = o.scalarType(t, typmod)
	}
	if err != nil {
		return columnType{}, fmt.Errorf("column %s (%s): %w", col.Name, col.Type.Name, err)
	}
	return ct, nil
}

func (o *Options) scalarType(t *replication.Type, typmod int32) (columnType, error) {
	switch t.Kind {
	case 'e':
		return columnType{schema: named(String, NameEnum, 1, Param{"allowed", strings.Join(t.EnumLabels, ",")}), conv: convString}.withArena(arenaString), nil
	case 'r':
		return columnType{schema: prim(String, false), conv: convString}.withArena(arenaString), nil
	}
	switch t.Name {
	case "bool":
		return columnType{schema: prim(Boolean, false), conv: convBool}, nil
	case "int2":
		return columnType{schema: prim(Int16, false), conv: convInt16}, nil
	case "int4":
		return columnType{schema: prim(Int32, false), conv: convInt32}, nil
	case "int8", "oid":
		return columnType{schema: prim(Int64, false), conv: convInt64}.withArena(arenaInt64), nil
	case "float4":
		return columnType{schema: prim(Float32, false), conv: convFloat32}, nil
	case "float8":
		return columnType{schema: prim(Float64, false), conv: convFloat64}, nil
	case "numeric":
		return o.numericType(typmod)
	case "money":
		return o.moneyType(), nil
	case "text", "varchar", "bpchar", "char", "citext", "isbn", "inet", "cidr", "macaddr", "macaddr8":
		return columnType{schema: prim(String, false), conv: convString}.withArena(arenaString), nil
	case "name":
		if o.IncludeUnknown {
			// Debezium's value resolver reads name only as an "unknown" type's text.
			return columnType{schema: prim(String, false), conv: convString}.withArena(arenaString), nil
		}
		return columnType{schema: prim(String, false), conv: convNull}, nil
	case "point":
		return columnType{schema: pointSchema, conv: convPoint}, nil
	case "json", "jsonb":
		return columnType{schema: named(String, NameJSON, 1), conv: convString}.withArena(arenaString), nil
	case "xml":
		return columnType{schema: named(String, NameXML, 1), conv: convString}.withArena(arenaString), nil
	case "uuid":
		return columnType{schema: named(String, NameUUID, 1), conv: convString}.withArena(arenaString), nil
	case "ltree":
		return columnType{schema: named(String, NameLtree, 1), conv: convString}.withArena(arenaString), nil
	case "tsvector":
		return columnType{schema: named(String, NameTsvector, 1), conv: convString}.withArena(arenaString), nil
	case "hstore":
		return o.hstoreType(), nil
	case "bytea":
		return o.binaryType(), nil
	case "bit", "varbit":
		return bitType(t.Name, typmod), nil
	case "date", "time", "timestamp", "timestamptz", "timetz", "interval":
		return o.temporalType(t.Name, typmod)
	}
	ct := o.unknownType()
	switch t.Name {
	case "box", "circle", "line", "lseg", "path", "polygon":
		if o.IncludeUnknown {
			// pgjdbc parses these into PGbox, PGcircle, ... whose text Debezium sends:
			// every coordinate as a Java double.
			conv := ct.conv
			ct.conv = func(b []byte) (any, error) {
				return conv(geometricNumber.ReplaceAllFunc(b, func(n []byte) []byte {
					f, err := strconv.ParseFloat(string(n), 64)
					if err != nil {
						return n
					}
					return []byte(javaDouble(f))
				}))
			}
		}
	}
	return ct, nil
}

var geometricNumber = regexp.MustCompile(`-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|-?Infinity|NaN`)

// unknownType renders a type Debezium cannot map. With include.unknown.datatypes, as Debezium
// does: the bytes of its text, per binary.handling.mode. Without, Debezium drops the column;
// Procon sends its text as a string (and warns at start) instead.
func (o *Options) unknownType() columnType {
	if !o.IncludeUnknown {
		return columnType{schema: prim(String, false), conv: convString, unknown: true}.withArena(arenaString)
	}
	bt := o.binaryType()
	return columnType{schema: bt.schema, unknown: true, conv: func(b []byte) (any, error) {
		return o.binaryValue(append([]byte(nil), b...)), nil
	}}
}

func (o *Options) arrayType(col string, elem *replication.Type, typmod int32) (columnType, error) {
	if elem.Kind == 'd' {
		// Debezium does not map arrays of domains.
		return columnType{schema: prim(String, false), conv: convString, unknown: true}.withArena(arenaString), nil
	}
	switch elem.Name {
	case "money", "name", "interval", "varbit", "xml", "point", "refcursor":
		return columnType{schema: prim(String, false), conv: convString, unknown: true}.withArena(arenaString), nil
	}
	et, err := o.arrayElementType(elem, typmod)
	if err != nil || et.unknown {
		return columnType{schema: prim(String, false), conv: convString, unknown: true}.withArena(arenaString), err
	}
	items := et.schema.optional()
	if elem.Kind == 'e' {
		// Debezium builds enum array items without making them optional.
		items = et.schema
	}
	delim := byte(',')
	if elem.Name == "box" {
		delim = ';'
	}
	conv := func(text []byte) (any, error) {
		v, err := parseArray(text, delim, et.conv)
		if err != nil {
			return nil, err
		}
		// Debezium maps only the first dimension: each element of a multi-dimensional
		// array is itself an array, which its element converter cannot read (null; or, for
		// text, the Java array's identity, which Procon does not imitate: null too).
		items := v.([]any)
		for i, x := range items {
			if _, nested := x.([]any); nested {
				items[i] = nil
			}
			if items[i] == nil && elem.Kind == 'e' {
				// Connect refuses a null in a list of required items, and Debezium
				// leaves the field null (TableSchemaBuilder logs the DataException).
				return nil, nil
			}
		}
		return items, nil
	}
	return columnType{schema: &Schema{Type: Array, Items: items}, conv: conv}, nil
}

// arrayElementType is how Debezium renders an array's elements. They come from pgjdbc's
// PgArray as JDBC objects, which changes a few of them: time and timetz elements are
// java.sql.Time, so they keep only milliseconds.
func (o *Options) arrayElementType(elem *replication.Type, typmod int32) (columnType, error) {
	et, err := o.scalarType(elem, typmod)
	if err != nil || et.unknown {
		return et, err
	}
	switch elem.Name {
	case "time":
		conv := et.conv
		et.conv = func(b []byte) (any, error) {
			us, err := parseClock(b)
			if err != nil {
				return nil, err
			}
			return conv([]byte(formatClock(us/1000*1000, 3, false)))
		}
	case "timetz":
		conv := et.conv
		et.conv = func(b []byte) (any, error) {
			us, _, zone, err := splitTimetz(b)
			if err != nil {
				return nil, err
			}
			return conv(append([]byte(formatClock(us/1000*1000, 3, false)), zone...))
		}
	}
	return et, nil
}

func convString(b []byte) (any, error) { return string(b), nil }

func arenaString(a *arena, b []byte) (any, error) { return a.str(b), nil }

// quoteText quotes a value's text for an error message: at most its first 40 bytes, so that
// the error about a huge value stays short (and shows little of what may be private data).
func quoteText(b []byte) string {
	const limit = 40
	if len(b) <= limit {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:limit])) + "... (" + strconv.Itoa(len(b)) + " bytes)"
}

// numberError is the error of a number strconv refused, which quotes the whole text.
func numberError(what string, b []byte, err error) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%s %s is out of range", what, quoteText(b))
	}
	return fmt.Errorf("invalid %s %s", what, quoteText(b))
}

// convNull is the converter of a type whose value Debezium never reads from pgoutput (name:
// its replication value resolver has no case for it): always null.
func convNull([]byte) (any, error) { return nil, nil }

func convBool(b []byte) (any, error) {
	switch string(b) {
	case "t", "true":
		return true, nil
	case "f", "false":
		return false, nil
	}
	return nil, fmt.Errorf("invalid boolean %s", quoteText(b))
}

func convInt16(b []byte) (any, error) {
	n, err := strconv.ParseInt(string(b), 10, 16)
	if err != nil {
		return nil, numberError("16-bit integer", b, err)
	}
	return int16(n), nil
}

func convInt32(b []byte) (any, error) {
	n, err := strconv.ParseInt(string(b), 10, 32)
	if err != nil {
		return nil, numberError("32-bit integer", b, err)
	}
	return int32(n), nil
}

func convInt64(b []byte) (any, error) {
	n, err := parseInt64(b)
	if err != nil {
		return nil, err
	}
	return n, nil
}

func arenaInt64(a *arena, b []byte) (any, error) {
	n, err := parseInt64(b)
	if err != nil {
		return nil, err
	}
	return a.int64(n), nil
}

func parseInt64(b []byte) (int64, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, numberError("64-bit integer", b, err)
	}
	return n, nil
}

func convFloat32(b []byte) (any, error) {
	f, err := strconv.ParseFloat(string(b), 32)
	if err != nil {
		return nil, numberError("float4", b, err)
	}
	return float32(f), nil
}

func convFloat64(b []byte) (any, error) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return nil, numberError("float8", b, err)
	}
	return f, nil
}

func (o *Options) binaryType() columnType {
	schema := prim(String, false)
	if o.BinaryMode == BinaryBytes {
		schema = prim(Bytes, false)
	}
	return columnType{schema: schema, conv: func(b []byte) (any, error) {
		raw, err := parseBytea(b)
		if err != nil {
			return nil, err
		}
		return o.binaryValue(raw), nil
	}}
}

// binaryValue renders bytes per binary.handling.mode.
func (o *Options) binaryValue(raw []byte) any {
	switch o.BinaryMode {
	case BinaryBase64:
		return base64.StdEncoding.EncodeToString(raw)
	case BinaryBase64URLSafe:
		return base64.URLEncoding.EncodeToString(raw)
	case BinaryHex:
		return hex.EncodeToString(raw)
	}
	return raw
}

// parseBytea decodes bytea's hex text output (\x0102...).
func parseBytea(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, []byte(`\x`)) {
		return nil, fmt.Errorf("bytea value is not in hex format (set bytea_output = hex): %s", quoteText(b))
	}
	out := make([]byte, hex.DecodedLen(len(b)-2))
	if _, err := hex.Decode(out, b[2:]); err != nil {
		return nil, fmt.Errorf("invalid bytea: %w", err)
	}
	return out, nil
}

// bitType maps bit(1) to a boolean and longer bit strings to io.debezium.data.Bits, whose
// bytes hold the bits least-significant first, as Java's BitSet.toByteArray writes them.
func bitType(name string, typmod int32) columnType {
	if typmod == 1 {
		return columnType{schema: prim(Boolean, false), conv: func(b []byte) (any, error) {
			switch string(b) {
			case "1":
				return true, nil
			case "0":
				return false, nil
			}
			return nil, fmt.Errorf("invalid bit(1) %s", quoteText(b))
		}}
	}
	length := "2147483647"
	if typmod > 0 {
		length = strconv.Itoa(int(typmod))
	}
	return columnType{schema: named(Bytes, NameBits, 1, Param{"length", length}), conv: convBits}
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
			return nil, fmt.Errorf("invalid bit string %s", quoteText(b))
		}
	}
	// BitSet.toByteArray drops trailing zero bytes.
	for len(out) > 0 && out[len(out)-1] == 0 {
		out = out[:len(out)-1]
	}
	return out, nil
}

func (o *Options) hstoreType() columnType {
	if o.HstoreMode == HstoreMap {
		s := &Schema{Type: Map, Keys: prim(String, false), Values: prim(String, true)}
		return columnType{schema: s, conv: func(b []byte) (any, error) {
			kv, err := parseHstore(b)
			if err != nil {
				return nil, err
			}
			kv = javaHashMapOrder(kv)
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
	return columnType{schema: named(String, NameJSON, 1), conv: func(b []byte) (any, error) {
		kv, err := parseHstore(b)
		if err != nil {
			return nil, err
		}
		kv = javaHashMapOrder(kv)
		w := jsonWriter{text: true}
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
			return "", fmt.Errorf("invalid hstore %s", quoteText(b))
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
		if i >= len(b) {
			return "", fmt.Errorf("invalid hstore %s: unterminated quoted string", quoteText(b))
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
			return nil, fmt.Errorf("invalid hstore %s", quoteText(b))
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

// javaHashMapOrder puts hstore entries in the order Debezium emits them: the iteration order
// of the java.util.HashMap that pgjdbc's HStoreConverter.fromString fills, in text order.
// That order is by bucket (the spread String.hashCode masked by the table size, which starts
// at 16 and doubles past a load of 0.75), then by insertion within a bucket.
func javaHashMapOrder(kv []hstoreEntry) []hstoreEntry {
	if len(kv) < 2 {
		return kv
	}
	// A later duplicate key replaces the value and keeps the first position.
	index := map[string]int{}
	uniq := make([]hstoreEntry, 0, len(kv))
	for _, e := range kv {
		if i, ok := index[e.key]; ok {
			uniq[i].value = e.value
			continue
		}
		index[e.key] = len(uniq)
		uniq = append(uniq, e)
	}
	capacity := 16
	for float64(len(uniq)) > 0.75*float64(capacity) {
		capacity *= 2
	}
	bucket := func(key string) int {
		h := javaStringHash(key)
		h ^= int32(uint32(h) >> 16)
		return int(h) & (capacity - 1)
	}
	out := make([]hstoreEntry, len(uniq))
	copy(out, uniq)
	sort.SliceStable(out, func(i, j int) bool { return bucket(out[i].key) < bucket(out[j].key) })
	return out
}

// javaHashMapKeyOrder is the iteration order of a java.util.HashMap<String, ?> filled with
// keys in the given order.
func javaHashMapKeyOrder(keys []string) []string {
	entries := make([]hstoreEntry, len(keys))
	for i, k := range keys {
		entries[i].key = k
	}
	entries = javaHashMapOrder(entries)
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.key
	}
	return out
}

// javaStringHash is java.lang.String.hashCode: s[0]*31^(n-1) + ... over UTF-16 code units.
func javaStringHash(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			hi, lo := utf16.EncodeRune(r)
			h = 31*h + int32(hi)
			h = 31*h + int32(lo)
			continue
		}
		h = 31*h + int32(r)
	}
	return h
}

// pointSchema is io.debezium.data.geometry.Point: x, y, and the point as WKB.
var pointSchema = func() *Schema {
	s := structSchema("io.debezium.data.geometry.Point", 1, false,
		field("x", prim(Float64, false)),
		field("y", prim(Float64, false)),
		field("wkb", prim(Bytes, true)),
		field("srid", prim(Int32, true)))
	s.Doc = "Geometry (POINT)"
	return s
}()

// convPoint parses point's text (x,y) as pgjdbc's PGpoint does, into Debezium's Point value,
// whose wkb is a little-endian 2-D WKB point and whose srid is null.
func convPoint(b []byte) (any, error) {
	s := strings.TrimSpace(string(b))
	s = strings.TrimSuffix(strings.TrimPrefix(s, "("), ")")
	xs, ys, ok := strings.Cut(s, ",")
	if !ok {
		return nil, fmt.Errorf("invalid point %s", quoteText(b))
	}
	x, err1 := strconv.ParseFloat(strings.TrimSpace(xs), 64)
	y, err2 := strconv.ParseFloat(strings.TrimSpace(ys), 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("invalid point %s", quoteText(b))
	}
	wkb := make([]byte, 21)
	wkb[0] = 1
	binary.LittleEndian.PutUint32(wkb[1:], 1)
	binary.LittleEndian.PutUint64(wkb[5:], math.Float64bits(x))
	binary.LittleEndian.PutUint64(wkb[13:], math.Float64bits(y))
	v := NewValue(pointSchema)
	v.Fields[0], v.Fields[1], v.Fields[2] = x, y, wkb
	return v, nil
}
