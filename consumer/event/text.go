package event

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/procon-cdc/procon/envelope"
)

// Semantic type names Debezium uses that the producer never writes (the others are envelope.Name*).
const (
	nameYear      = "io.debezium.time.Year"
	namePoint     = "io.debezium.data.geometry.Point"
	nameGeometry  = "io.debezium.data.geometry.Geometry"
	nameGeography = "io.debezium.data.geometry.Geography"
)

// maxArrayDims is PostgreSQL's MAXDIM: no column holds deeper arrays, and nesting deeper in a
// record is refused rather than followed.
const maxArrayDims = 6

// Text returns the PostgreSQL text input for a target column whose type is pgType, as
// format_type(atttypid, atttypmod) prints it ("integer", "numeric(10,2)", "timestamp(3)
// without time zone", "text[]", a user enum's name...); null reports a NULL. With a schema,
// its Connect/Debezium semantic type says how the value is encoded; without one
// (schemaless JSON) the column type and the Decoder's Options say it. Types the column type
// does not know (text, varchar, uuid, inet, enums, ranges, ...) take the value's text as it
// is, for PostgreSQL to parse.
//
// Some encodings lose information, and Text gives back what is left: an
// io.debezium.time.MicroDuration counts a month as 30.4375 days, so it is read as whole such
// months, then days, then time ('1 year 2 mons 3 days 04:05:06' returns as it was, '45 days'
// as '1 mon 14 days 13:30:00'); io.debezium.data.Bits drops a bit varying's leading zeros;
// ZonedTime is in UTC ("10:00:00+00" for '12:00:00+02'); times and timestamps are written
// in UTC, with "+00" for a column with a time zone. Debezium's infinity encodings of dates and
// timestamps (each time.precision.mode's) read as 'infinity' and '-infinity'.
//
// The error of a value that cannot be read as the column's type names the value's kind and
// the column type, never the value (values may be secrets).
func (v Value) Text(pgType string) (text string, null bool, err error) {
	t := parsePGType(pgType)
	text, null, err = textOf(v.settings(), v.Schema, v.Raw, t, 0)
	if err != nil {
		return "", false, fmt.Errorf("%s cannot be read as %s: %w", kindOf(v.Schema, v.Raw), pgType, err)
	}
	return text, null, nil
}

// kindOf describes a value for an error message without its content.
func kindOf(s *envelope.Schema, raw any) string {
	if s != nil {
		if s.Name != "" {
			return fmt.Sprintf("a %s (%s) value", s.Name, s.Type)
		}
		return fmt.Sprintf("a %s value", s.Type)
	}
	switch raw.(type) {
	case nil:
		return "a JSON null"
	case bool:
		return "a JSON boolean"
	case json.Number:
		return "a JSON number"
	case string:
		return "a JSON string"
	case []any:
		return "a JSON array"
	case map[string]any:
		return "a JSON object"
	}
	return fmt.Sprintf("a %T value", raw)
}

var (
	errKind        = errors.New("not a value of that type")
	errDecimalSize = errors.New("a decimal larger than numeric holds")
)

func textOf(c *settings, s *envelope.Schema, raw any, t *pgType, depth int) (string, bool, error) {
	if raw == nil {
		return "", true, nil
	}
	if sv, ok := raw.(*envelope.Value); ok && sv == nil {
		return "", true, nil
	}
	var text string
	var err error
	if s != nil {
		text, err = schemaText(c, s, raw, t, depth)
	} else {
		text, err = jsonText(c, raw, t, depth)
	}
	return text, false, err
}

// schemaText reads a Connect value (envelope.Schema's Go values) described by s.
func schemaText(c *settings, s *envelope.Schema, raw any, t *pgType, depth int) (string, error) {
	switch s.Name {
	case envelope.LogicalDecimal:
		d, err := decimalOf(s, raw)
		if err != nil {
			return "", err
		}
		return numberText(d.String(), t)
	case envelope.NameVarDecimal:
		d, err := varDecimalOf(raw)
		if err != nil {
			return "", err
		}
		return numberText(d.String(), t)
	case envelope.LogicalDate, envelope.NameDate:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return dateText(n)
	case envelope.NameIsoDate:
		str, ok := raw.(string)
		if !ok {
			return "", errKind
		}
		return isoDateText(str)
	case envelope.LogicalTime, envelope.NameTime:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return clockText(n, 1e6, t)
	case envelope.NameMicroTime:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return clockText(n, 1e3, t)
	case envelope.NameNanoTime:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return clockText(n, 1, t)
	case envelope.NameIsoTime, envelope.NameZonedTime:
		str, ok := raw.(string)
		if !ok {
			return "", errKind
		}
		return isoTimeText(str, t)
	case envelope.LogicalTimestamp, envelope.NameTimestamp:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return epochTimestampText(n, 1e6, t)
	case envelope.NameMicroTS:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return epochTimestampText(n, 1e3, t)
	case envelope.NameNanoTS:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return epochTimestampText(n, 1, t)
	case envelope.NameIsoTimestamp, envelope.NameZonedTS:
		str, ok := raw.(string)
		if !ok {
			return "", errKind
		}
		return isoTimestampText(str, t)
	case envelope.NameMicroDuration:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		return intervalText(n), nil
	case envelope.NameBits:
		b, ok := raw.([]byte)
		if !ok {
			return "", errKind
		}
		length := -1
		if p, ok := s.Param("length"); ok {
			if n, err := strconv.Atoi(p); err == nil && n < math.MaxInt32 {
				length = n
			}
		}
		return bitsText(b, length, t)
	case namePoint:
		sv, ok := raw.(*envelope.Value)
		if !ok {
			return "", errKind
		}
		x, okx := sv.Get("x").(float64)
		y, oky := sv.Get("y").(float64)
		if !okx || !oky {
			return "", errKind
		}
		return pointText(x, y), nil
	case nameGeometry, nameGeography:
		sv, ok := raw.(*envelope.Value)
		if !ok {
			return "", errKind
		}
		wkb, ok := sv.Get("wkb").([]byte)
		if !ok {
			return "", errKind
		}
		srid, _ := sv.Get("srid").(int32)
		return ewkbText(wkb, srid), nil
	}
	switch s.Type {
	case envelope.Boolean:
		b, ok := raw.(bool)
		if !ok {
			return "", errKind
		}
		return boolText(b, t)
	case envelope.Int8, envelope.Int16, envelope.Int32, envelope.Int64:
		n, err := intOf(raw)
		if err != nil {
			return "", err
		}
		if t.cat == catBool {
			return boolText(n != 0, t)
		}
		return strconv.FormatInt(n, 10), nil
	case envelope.Float32, envelope.Float64:
		f, bits, err := floatOf(raw)
		if err != nil {
			return "", err
		}
		return floatText(f, bits, t)
	case envelope.String:
		str, ok := raw.(string)
		if !ok {
			return "", errKind
		}
		return stringText(c, str, t, s.Name == envelope.NameJSON)
	case envelope.Bytes:
		b, ok := raw.([]byte)
		if !ok {
			return "", errKind
		}
		return byteaText(b), nil
	case envelope.Array:
		items, ok := raw.([]any)
		if !ok {
			return "", errKind
		}
		if t.elem == nil {
			if t.cat == catJSON || t.cat == catText {
				return jsonOf(s, raw)
			}
			return "", errors.New("an array is not a value of a non-array column")
		}
		return arrayText(c, s.Items, items, t.elem, depth)
	case envelope.Map, envelope.Struct:
		if t.cat == catHstore {
			return hstoreText(plainOf(s, raw))
		}
		if t.cat == catJSON || t.cat == catText {
			return jsonOf(s, raw)
		}
		return "", errKind
	}
	return "", errKind
}

// jsonText reads a schemaless JSON value (encoding/json's with UseNumber) for the column type.
func jsonText(c *settings, raw any, t *pgType, depth int) (string, error) {
	switch x := raw.(type) {
	case bool:
		return boolText(x, t)
	case json.Number:
		return jsonNumberText(c, x, t)
	case string:
		return jsonStringText(c, x, t)
	case []any:
		if t.elem == nil {
			if t.cat == catJSON || t.cat == catText {
				return marshal(x)
			}
			return "", errors.New("an array is not a value of a non-array column")
		}
		return arrayText(c, nil, x, t.elem, depth)
	case map[string]any:
		switch t.cat {
		case catNumeric, catMoney, catFloat, catInt:
			// io.debezium.data.VariableScaleDecimal: {"scale":..., "value": base64}.
			d, err := jsonVarDecimal(x)
			if err != nil {
				return "", err
			}
			return numberText(d.String(), t)
		case catPoint:
			px, okx := x["x"].(json.Number)
			py, oky := x["y"].(json.Number)
			if !okx || !oky {
				return "", errKind
			}
			fx, errx := strconv.ParseFloat(string(px), 64)
			fy, erry := strconv.ParseFloat(string(py), 64)
			if errx != nil || erry != nil {
				return "", errKind
			}
			return pointText(fx, fy), nil
		case catGeometry:
			w, ok := x["wkb"].(string)
			if !ok {
				return "", errKind
			}
			wkb, err := base64.StdEncoding.DecodeString(w)
			if err != nil {
				return "", errors.New("wkb is not base64")
			}
			var srid int32
			if n, ok := x["srid"].(json.Number); ok {
				v, err := strconv.ParseInt(string(n), 10, 32)
				if err != nil {
					return "", errKind
				}
				srid = int32(v)
			}
			return ewkbText(wkb, srid), nil
		case catHstore:
			return hstoreText(x)
		case catJSON, catText:
			return marshal(x)
		}
		return "", errKind
	}
	return "", errKind
}

func jsonNumberText(c *settings, n json.Number, t *pgType) (string, error) {
	switch t.cat {
	case catFloat:
		// The producer's Java spelling (4.9E-324) as the shortest Go one, the same double.
		bits := 64
		if t.float32 {
			bits = 32
		}
		f, err := strconv.ParseFloat(string(n), bits)
		if err != nil && !isRange(err) {
			return "", errKind
		}
		return floatText(f, bits, t)
	case catInt, catNumeric, catMoney:
		return numberText(n.String(), t)
	case catBool:
		switch n.String() {
		case "0":
			return "false", nil
		case "1":
			return "true", nil
		}
		return "", errKind
	case catDate:
		days, err := n.Int64()
		if err != nil {
			return "", errKind
		}
		return dateText(days)
	case catTime, catTimeTZ:
		v, err := n.Int64()
		if err != nil {
			return "", errKind
		}
		return clockText(v, c.timeUnit(t), t)
	case catTimestamp, catTimestampTZ:
		v, err := n.Int64()
		if err != nil {
			return "", errKind
		}
		return epochTimestampText(v, c.timestampUnit(t), t)
	case catInterval:
		v, err := n.Int64()
		if err != nil {
			return "", errKind
		}
		return intervalText(v), nil
	case catBytea, catBit, catVarbit, catPoint, catGeometry, catHstore:
		return "", errKind
	}
	return n.String(), nil
}

func jsonStringText(c *settings, s string, t *pgType) (string, error) {
	switch t.cat {
	case catNumeric, catMoney:
		scale := t.scale()
		if t.cat == catMoney {
			scale = 2 // money.fraction.digits' default
		}
		if c.decimalMode == "precise" && scale >= 0 {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return "", errors.New("not a base64 Decimal (decimal.handling.mode=precise)")
			}
			if len(b) > maxDecimalBytes {
				return "", errDecimalSize
			}
			return numberText(decimalFromBytes(b, int32(scale)).String(), t)
		}
		return specialNumber(s, t)
	case catFloat:
		return specialNumber(s, t)
	case catBytea:
		b, err := c.decodeBinary(s)
		if err != nil {
			return "", err
		}
		return byteaText(b), nil
	case catBit, catVarbit:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return "", errors.New("not a base64 io.debezium.data.Bits")
		}
		return bitsText(b, -1, t)
	case catDate:
		if strings.HasSuffix(s, "Z") {
			return isoDateText(s)
		}
	case catTime, catTimeTZ:
		if strings.HasSuffix(s, "Z") {
			return isoTimeText(s, t)
		}
	case catTimestamp, catTimestampTZ:
		if strings.HasSuffix(s, "Z") {
			return isoTimestampText(s, t)
		}
	case catHstore:
		if strings.HasPrefix(s, "{") {
			return hstoreFromJSON(s)
		}
	}
	return s, nil
}

// stringText reads a Connect string: the text itself, except where Debezium's string modes
// encode something else (decimal.handling.mode=string specials, binary.handling.mode text).
func stringText(c *settings, s string, t *pgType, isJSON bool) (string, error) {
	switch t.cat {
	case catNumeric, catMoney, catFloat:
		return specialNumber(s, t)
	case catBytea:
		if c.binaryMode == "bytes" {
			return s, nil // a string column's text: bytea's own input
		}
		b, err := c.decodeBinary(s)
		if err != nil {
			return "", err
		}
		return byteaText(b), nil
	case catHstore:
		if isJSON {
			return hstoreFromJSON(s)
		}
	}
	return s, nil
}

// specialNumber maps decimal.handling.mode=string's NAN, POSITIVE_INFINITY and
// NEGATIVE_INFINITY to PostgreSQL's spellings; other text is a number as it is.
func specialNumber(s string, t *pgType) (string, error) {
	switch s {
	case "NAN", "NaN":
		s = "NaN"
	case "POSITIVE_INFINITY", "Infinity":
		s = "Infinity"
	case "NEGATIVE_INFINITY", "-Infinity":
		s = "-Infinity"
	default:
		return numberText(s, t)
	}
	if t.cat == catInt || t.cat == catMoney {
		return "", errors.New("not a finite number")
	}
	return s, nil
}

// numberText checks a decimal number's text for the column: an integer column takes only
// integral values, written without a fraction.
func numberText(s string, t *pgType) (string, error) {
	if !isDecimalText(s) {
		return "", errors.New("not a number")
	}
	if t.cat != catInt {
		return s, nil
	}
	if strings.ContainsAny(s, "eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<63 {
			return "", errors.New("not an integer")
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	whole, frac, _ := strings.Cut(s, ".")
	if strings.Trim(frac, "0") != "" {
		return "", errors.New("not an integer")
	}
	if whole == "" || whole == "-" {
		whole += "0"
	}
	return whole, nil
}

// isDecimalText accepts [-]digits[.digits][e[+-]digits], what JSON numbers and
// BigDecimal.toPlainString write.
func isDecimalText(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	digits := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		start := i
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

func floatText(f float64, bits int, t *pgType) (string, error) {
	switch {
	case math.IsNaN(f):
		return specialNumber("NaN", t)
	case math.IsInf(f, 1):
		return specialNumber("Infinity", t)
	case math.IsInf(f, -1):
		return specialNumber("-Infinity", t)
	}
	if t.cat == catInt {
		if f != math.Trunc(f) {
			return "", errors.New("not an integer")
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	return strconv.FormatFloat(f, 'g', -1, bits), nil
}

func pointText(x, y float64) string {
	return "(" + strconv.FormatFloat(x, 'g', -1, 64) + "," + strconv.FormatFloat(y, 'g', -1, 64) + ")"
}

func boolText(b bool, t *pgType) (string, error) {
	switch t.cat {
	case catBit, catVarbit:
		if b {
			return "1", nil
		}
		return "0", nil
	case catBool, catText, catJSON:
		if b {
			return "true", nil
		}
		return "false", nil
	}
	return "", errKind
}

func byteaText(b []byte) string {
	out := make([]byte, 2+hex.EncodedLen(len(b)))
	out[0], out[1] = '\\', 'x'
	hex.Encode(out[2:], b)
	return string(out)
}

// bitsText writes io.debezium.data.Bits (bit i in byte i/8 at 1<<(i%8), as Java's
// BitSet.toByteArray, trailing zero bytes dropped) as a bit string: bit(n) columns get n
// digits, bit varying ones the digits up to the highest set bit.
func bitsText(b []byte, length int, t *pgType) (string, error) {
	n := -1
	if t.cat == catBit && len(t.mods) == 1 {
		n = t.mods[0]
	} else if t.cat != catVarbit && length >= 0 {
		n = length
	}
	if n < 0 {
		n = 1
		for i := len(b)*8 - 1; i >= 0; i-- {
			if b[i/8]&(1<<(i%8)) != 0 {
				n = i + 1
				break
			}
		}
	}
	if n > maxBits {
		return "", errors.New("bit string longer than PostgreSQL allows")
	}
	out := make([]byte, n)
	for i := 0; i < n; i++ {
		bit := i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0
		out[n-1-i] = '0'
		if bit {
			out[n-1-i] = '1'
		}
	}
	// Set bits past the column's length would be lost silently.
	for i := n; i < len(b)*8; i++ {
		if b[i/8]&(1<<(i%8)) != 0 {
			return "", errors.New("more bits than the column holds")
		}
	}
	return string(out), nil
}

// ewkbText writes a WKB geometry as hex EWKB, which PostGIS reads, with the SRID when set.
func ewkbText(wkb []byte, srid int32) string {
	if srid == 0 || len(wkb) < 5 {
		return hex.EncodeToString(wkb)
	}
	out := make([]byte, 0, len(wkb)+4)
	out = append(out, wkb[:5]...)
	le := wkb[0] == 1
	var sr [4]byte
	if le {
		out[4] |= 0x20
		sr = [4]byte{byte(srid), byte(srid >> 8), byte(srid >> 16), byte(srid >> 24)}
	} else {
		out[1] |= 0x20
		sr = [4]byte{byte(srid >> 24), byte(srid >> 16), byte(srid >> 8), byte(srid)}
	}
	out = append(out, sr[:]...)
	out = append(out, wkb[5:]...)
	return hex.EncodeToString(out)
}

// arrayText writes a PostgreSQL array literal: every element quoted (valid for every element
// type), NULL for nulls, nested arrays for more dimensions.
func arrayText(c *settings, items *envelope.Schema, xs []any, elem *pgType, depth int) (string, error) {
	if depth >= maxArrayDims {
		return "", fmt.Errorf("more than %d array dimensions", maxArrayDims)
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, x := range xs {
		if i > 0 {
			b.WriteByte(',')
		}
		if nested, ok := x.([]any); ok && (items == nil || items.Type != envelope.Array) {
			s, err := arrayText(c, items, nested, elem, depth+1)
			if err != nil {
				return "", err
			}
			b.WriteString(s)
			continue
		}
		s, null, err := textOf(c, items, x, elem, depth+1)
		if err != nil {
			return "", fmt.Errorf("element %d: %w", i+1, err)
		}
		if null {
			b.WriteString("NULL")
			continue
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String(), nil
}

// hstoreText writes a map of strings (or nulls) as hstore input, keys sorted.
func hstoreText(x any) (string, error) {
	m, ok := x.(map[string]any)
	if !ok {
		return "", errKind
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	quote := func(s string) {
		b.WriteByte('"')
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[i])
		}
		b.WriteByte('"')
	}
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		quote(k)
		b.WriteString("=>")
		switch v := m[k].(type) {
		case nil:
			b.WriteString("NULL")
		case string:
			quote(v)
		default:
			return "", errors.New("an hstore value is not a string")
		}
	}
	return b.String(), nil
}

func hstoreFromJSON(s string) (string, error) {
	m, err := decodeJSONDoc([]byte(s))
	if err != nil {
		return "", errors.New("not a JSON object")
	}
	return hstoreText(m)
}

// decimalOf reads a Connect Decimal: envelope.Decimal, or its bytes with the schema's scale.
func decimalOf(s *envelope.Schema, raw any) (envelope.Decimal, error) {
	switch x := raw.(type) {
	case envelope.Decimal:
		if x.Unscaled == nil {
			return envelope.Decimal{}, errKind
		}
		if x.Unscaled.BitLen() > 8*maxDecimalBytes || x.Scale < -maxScale || x.Scale > maxScale {
			return envelope.Decimal{}, errDecimalSize
		}
		return x, nil
	case []byte:
		if len(x) > maxDecimalBytes {
			return envelope.Decimal{}, errDecimalSize
		}
		scale, err := schemaScale(s)
		if err != nil {
			return envelope.Decimal{}, err
		}
		return decimalFromBytes(x, scale), nil
	}
	return envelope.Decimal{}, errKind
}

func schemaScale(s *envelope.Schema) (int32, error) {
	p, _ := s.Param("scale")
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil || n < -maxScale || n > maxScale {
		return 0, errors.New("Decimal schema without a valid scale parameter")
	}
	return int32(n), nil
}

// maxBits is PostgreSQL's longest bit string (MaxAttrSize in bits).
const maxBits = 83886080

// maxDecimalBytes bounds a Decimal's unscaled value: numeric holds at most 131072 digits
// before the point and 16383 after, about 61 KB as binary; a larger value is no numeric, and
// its text would cost quadratic time to write.
const maxDecimalBytes = 64 << 10

// maxScale bounds decimal scales: PostgreSQL's numeric allows 16383 digits after the point,
// and a huge scale would have String build a huge text.
const maxScale = 16383

// decimalFromBytes reads a big-endian two's-complement unscaled value.
func decimalFromBytes(b []byte, scale int32) envelope.Decimal {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return envelope.Decimal{Unscaled: n, Scale: scale}
}

// varDecimalOf reads an io.debezium.data.VariableScaleDecimal struct.
func varDecimalOf(raw any) (envelope.Decimal, error) {
	sv, ok := raw.(*envelope.Value)
	if !ok {
		return envelope.Decimal{}, errKind
	}
	scale, ok := sv.Get("scale").(int32)
	b, okb := sv.Get("value").([]byte)
	if !ok || !okb || scale < -maxScale || scale > maxScale {
		return envelope.Decimal{}, errKind
	}
	if len(b) > maxDecimalBytes {
		return envelope.Decimal{}, errDecimalSize
	}
	return decimalFromBytes(b, scale), nil
}

func jsonVarDecimal(m map[string]any) (envelope.Decimal, error) {
	sn, ok := m["scale"].(json.Number)
	vs, okv := m["value"].(string)
	if !ok || !okv {
		return envelope.Decimal{}, errKind
	}
	scale, err := strconv.ParseInt(string(sn), 10, 32)
	if err != nil || scale < -maxScale || scale > maxScale {
		return envelope.Decimal{}, errKind
	}
	b, err := base64.StdEncoding.DecodeString(vs)
	if err != nil {
		return envelope.Decimal{}, errKind
	}
	if len(b) > maxDecimalBytes {
		return envelope.Decimal{}, errDecimalSize
	}
	return decimalFromBytes(b, int32(scale)), nil
}

func intOf(raw any) (int64, error) {
	switch x := raw.(type) {
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return 0, errKind
		}
		return n, nil
	}
	return 0, errKind
}

func floatOf(raw any) (float64, int, error) {
	switch x := raw.(type) {
	case float32:
		return float64(x), 32, nil
	case float64:
		return x, 64, nil
	}
	return 0, 0, errKind
}

// jsonOf writes a Connect struct, map or array as JSON text for a json column.
func jsonOf(s *envelope.Schema, raw any) (string, error) {
	return marshal(plainOf(s, raw))
}

func marshal(x any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return "", errors.New("cannot be written as JSON")
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// plainOf turns a Connect value into what encoding/json writes as the JsonConverter would:
// structs and string-keyed maps as objects, bytes as base64, decimals as their number.
func plainOf(s *envelope.Schema, raw any) any {
	switch x := raw.(type) {
	case *envelope.Value:
		if x == nil {
			return nil
		}
		m := make(map[string]any, len(x.Fields))
		for i, f := range x.Schema.Fields {
			if i < len(x.Fields) {
				m[f.Name] = plainOf(f.Schema, x.Fields[i])
			}
		}
		return m
	case []envelope.MapEntry:
		m := make(map[string]any, len(x))
		var vs *envelope.Schema
		if s != nil {
			vs = s.Values
		}
		for _, e := range x {
			m[fmt.Sprint(e.Key)] = plainOf(vs, e.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		var is *envelope.Schema
		if s != nil {
			is = s.Items
		}
		for i, e := range x {
			out[i] = plainOf(is, e)
		}
		return out
	case envelope.Decimal:
		if x.Unscaled == nil {
			return nil
		}
		return json.Number(x.String())
	case float32, float64:
		f := reflect.ValueOf(x).Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return javaSpecial(f)
		}
	}
	return raw
}

func javaSpecial(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case f > 0:
		return "Infinity"
	}
	return "-Infinity"
}
