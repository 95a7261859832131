package envelope

import (
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonWriter renders Connect schemas and values byte for byte as Kafka's JsonConverter does
// (through Jackson): no whitespace, Jackson's string escapes, Java's number formatting, bytes
// as padded base64, and a null replaced by its schema's default.
type jsonWriter struct {
	buf []byte
	// text is set for JSON that becomes the text of a string value (Debezium's hstore as
	// JSON): Jackson's writer-based generator leaves supplementary characters as they are.
	text bool
	// avro is set for default values in Avro schemas (AppendAvroDefault), which differ from
	// JsonConverter's values only where Avro's types do.
	avro bool
}

const hexDigits = "0123456789ABCDEF"

// jsonPlain holds the bytes str copies as they are whatever the writer: not an escape, not
// the start of a 4-byte UTF-8 sequence.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0xF0; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str writes a JSON string with Jackson's escapes: the two mandatory ones, short forms for
// \b \t \n \f \r, \u00XX for other control characters, characters outside the Basic
// Multilingual Plane as their two UTF-16 surrogates (\uD834\uDD1E: Jackson's UTF-8
// generator escapes each surrogate), everything else as UTF-8.
func (w *jsonWriter) str(s string) {
	w.buf = append(w.buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if jsonPlain[c] {
			continue
		}
		if c >= 0xF0 && !w.text {
			// A 4-byte UTF-8 sequence: a supplementary character.
			r, size := utf8.DecodeRuneInString(s[i:])
			if size == 4 {
				w.buf = append(w.buf, s[start:i]...)
				hi, lo := utf16.EncodeRune(r)
				for _, u := range [2]rune{hi, lo} {
					w.buf = append(w.buf, '\\', 'u', hexDigits[u>>12&0xf], hexDigits[u>>8&0xf], hexDigits[u>>4&0xf], hexDigits[u&0xf])
				}
				i += size - 1
				start = i + 1
			}
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		w.buf = append(w.buf, s[start:i]...)
		switch c {
		case '"', '\\':
			w.buf = append(w.buf, '\\', c)
		case '\b':
			w.buf = append(w.buf, '\\', 'b')
		case '\t':
			w.buf = append(w.buf, '\\', 't')
		case '\n':
			w.buf = append(w.buf, '\\', 'n')
		case '\f':
			w.buf = append(w.buf, '\\', 'f')
		case '\r':
			w.buf = append(w.buf, '\\', 'r')
		default:
			w.buf = append(w.buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	w.buf = append(w.buf, s[start:]...)
	w.buf = append(w.buf, '"')
}

// javaDouble formats a float64 as Java's Double.toString.
func javaDouble(f float64) string { return javaFloat(f, 64) }

func javaFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	// The shortest decimal that rounds to f; when that has a single digit, Java picks the
	// closest decimal of one or two digits (Double.MIN_VALUE is 4.9E-324, not 5.0E-324).
	sci := strconv.FormatFloat(f, 'e', -1, bits)
	mant, exp, _ := strings.Cut(sci, "e")
	if len(strings.TrimPrefix(mant, "-")) == 1 {
		mant, exp, _ = strings.Cut(strconv.FormatFloat(f, 'e', 1, bits), "e")
	}
	neg := strings.HasPrefix(mant, "-")
	digits := strings.TrimRight(strings.ReplaceAll(strings.TrimPrefix(mant, "-"), ".", ""), "0")
	if digits == "" {
		digits = "0"
	}
	e, _ := strconv.Atoi(exp)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	if abs := math.Abs(f); abs >= 1e-3 && abs < 1e7 {
		// Plain notation, at least one digit after the point.
		if e >= 0 {
			if len(digits) <= e+1 {
				b.WriteString(digits + strings.Repeat("0", e+1-len(digits)) + ".0")
			} else {
				b.WriteString(digits[:e+1] + "." + digits[e+1:])
			}
		} else {
			b.WriteString("0." + strings.Repeat("0", -e-1) + digits)
		}
		return b.String()
	}
	// Computerized scientific notation: d.dddE[-]n, at least one fraction digit.
	frac := digits[1:]
	if frac == "" {
		frac = "0"
	}
	b.WriteString(digits[:1] + "." + frac + "E" + strconv.Itoa(e))
	return b.String()
}

// number writes a Java-formatted float; NaN and the infinities are quoted, as Jackson does by
// default (QUOTE_NON_NUMERIC_NUMBERS).
func (w *jsonWriter) number(f float64, bits int) {
	s := javaFloat(f, bits)
	if s == "NaN" || s == "Infinity" || s == "-Infinity" {
		w.buf = append(w.buf, '"')
		w.buf = append(w.buf, s...)
		w.buf = append(w.buf, '"')
		return
	}
	w.buf = append(w.buf, s...)
}

// AppendJSONString appends s as a JSON string the way Jackson's UTF-8 generator writes it
// (see jsonWriter.str). Avro's schema text is written by Jackson too.
func AppendJSONString(dst []byte, s string) []byte {
	w := jsonWriter{buf: dst}
	w.str(s)
	return w.buf
}

// AppendAvroDefault appends a default value as Avro schemas carry it (Confluent's
// AvroData.defaultValueFromConnect): the JSON that JSONEncoder writes, except that bytes are a
// string of one ISO-8859-1 character per byte, and that a map whose keys are not required
// strings is a list of [key, value] pairs, as it is an array of records in Avro.
func AppendAvroDefault(dst []byte, s *Schema, v any) ([]byte, error) {
	w := jsonWriter{buf: dst, avro: true}
	err := w.value(s, v)
	return w.buf, err
}

// value writes v as described by s.
func (w *jsonWriter) value(s *Schema, v any) error {
	if sv, ok := v.(*Value); ok && sv == nil {
		v = nil // a nil *Value stored in an interface
	}
	if v == nil {
		if s.HasDefault && s.Default != nil {
			return w.value(s, s.Default)
		}
		if !s.Optional {
			return fmt.Errorf("null value for a required %s field", s.Type)
		}
		w.buf = append(w.buf, "null"...)
		return nil
	}
	switch s.Type {
	case Boolean:
		x, ok := v.(bool)
		if !ok {
			return mismatch(s, v)
		}
		w.buf = strconv.AppendBool(w.buf, x)
	case Int8:
		x, ok := v.(int8)
		if !ok {
			return mismatch(s, v)
		}
		w.buf = strconv.AppendInt(w.buf, int64(x), 10)
	case Int16:
		x, ok := v.(int16)
		if !ok {
			return mismatch(s, v)
		}
		w.buf = strconv.AppendInt(w.buf, int64(x), 10)
	case Int32:
		x, ok := v.(int32)
		if !ok {
			return mismatch(s, v)
		}
		w.buf = strconv.AppendInt(w.buf, int64(x), 10)
	case Int64:
		x, ok := v.(int64)
		if !ok {
			return mismatch(s, v)
		}
		w.buf = strconv.AppendInt(w.buf, x, 10)
	case Float32:
		x, ok := v.(float32)
		if !ok {
			return mismatch(s, v)
		}
		w.number(float64(x), 32)
	case Float64:
		x, ok := v.(float64)
		if !ok {
			return mismatch(s, v)
		}
		w.number(x, 64)
	case String:
		x, ok := v.(string)
		if !ok {
			return mismatch(s, v)
		}
		w.str(x)
	case Bytes:
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case Decimal:
			var scratch [16]byte
			b = x.appendBytes(scratch[:0])
		default:
			return fmt.Errorf("bytes field holds %T", v)
		}
		if w.avro {
			w.latin1(b)
			return nil
		}
		w.buf = append(w.buf, '"')
		w.buf = base64.StdEncoding.AppendEncode(w.buf, b)
		w.buf = append(w.buf, '"')
	case Array:
		items, ok := v.([]any)
		if !ok {
			return mismatch(s, v)
		}
		w.buf = append(w.buf, '[')
		for i, x := range items {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			if err := w.value(s.Items, x); err != nil {
				return err
			}
		}
		w.buf = append(w.buf, ']')
	case Map:
		entries, ok := v.([]MapEntry)
		if !ok {
			return mismatch(s, v)
		}
		if s.Keys.Type == String && !(w.avro && s.Keys.Optional) {
			w.buf = append(w.buf, '{')
			for i, e := range entries {
				if i > 0 {
					w.buf = append(w.buf, ',')
				}
				k, ok := e.Key.(string)
				if !ok {
					return mismatch(s.Keys, e.Key)
				}
				w.str(k)
				w.buf = append(w.buf, ':')
				if err := w.value(s.Values, e.Value); err != nil {
					return err
				}
			}
			w.buf = append(w.buf, '}')
			return nil
		}
		w.buf = append(w.buf, '[')
		for i, e := range entries {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.buf = append(w.buf, '[')
			if err := w.value(s.Keys, e.Key); err != nil {
				return err
			}
			w.buf = append(w.buf, ',')
			if err := w.value(s.Values, e.Value); err != nil {
				return err
			}
			w.buf = append(w.buf, ']')
		}
		w.buf = append(w.buf, ']')
	case Struct:
		sv, ok := v.(*Value)
		if !ok {
			return mismatch(s, v)
		}
		w.buf = append(w.buf, '{')
		for i, f := range s.Fields {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			w.str(f.Name)
			w.buf = append(w.buf, ':')
			if err := w.value(f.Schema, sv.Fields[i]); err != nil {
				return fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		w.buf = append(w.buf, '}')
	default:
		return fmt.Errorf("unknown schema type %d", s.Type)
	}
	return nil
}

// latin1 writes bytes as a string of the characters U+0000 to U+00FF, one per byte.
func (w *jsonWriter) latin1(b []byte) {
	text := make([]byte, 0, 2*len(b))
	for _, c := range b {
		text = utf8.AppendRune(text, rune(c))
	}
	w.str(string(text))
}

// mismatch is the error for a value that its schema cannot describe (Connect's DataException
// "Invalid Java object for schema").
func mismatch(s *Schema, v any) error {
	return fmt.Errorf("a %T value for a %s schema", v, s.Type)
}

// schema writes s as JsonConverter.asJsonSchema does; fieldName, when not empty, is appended
// last as a struct member's "field".
func (w *jsonWriter) schema(s *Schema, fieldName string) error {
	w.buf = append(w.buf, `{"type":`...)
	w.str(s.Type.String())
	switch s.Type {
	case Struct:
		w.buf = append(w.buf, `,"fields":[`...)
		for i, f := range s.Fields {
			if i > 0 {
				w.buf = append(w.buf, ',')
			}
			if err := w.schema(f.Schema, f.Name); err != nil {
				return err
			}
		}
		w.buf = append(w.buf, ']')
	case Array:
		w.buf = append(w.buf, `,"items":`...)
		if err := w.schema(s.Items, ""); err != nil {
			return err
		}
	case Map:
		w.buf = append(w.buf, `,"keys":`...)
		if err := w.schema(s.Keys, ""); err != nil {
			return err
		}
		w.buf = append(w.buf, `,"values":`...)
		if err := w.schema(s.Values, ""); err != nil {
			return err
		}
	}
	w.buf = append(w.buf, `,"optional":`...)
	w.buf = strconv.AppendBool(w.buf, s.Optional)
	if s.Name != "" {
		w.buf = append(w.buf, `,"name":`...)
		w.str(s.Name)
	}
	if s.Version != 0 {
		w.buf = append(w.buf, `,"version":`...)
		w.buf = strconv.AppendInt(w.buf, int64(s.Version), 10)
	}
	if s.Doc != "" {
		w.buf = append(w.buf, `,"doc":`...)
		w.str(s.Doc)
	}
	if len(s.Params) > 0 {
		w.buf = append(w.buf, `,"parameters":{`...)
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
		w.buf = append(w.buf, `,"default":`...)
		if err := w.value(s, s.Default); err != nil {
			return fmt.Errorf("default: %w", err)
		}
	}
	if fieldName != "" {
		w.buf = append(w.buf, `,"field":`...)
		w.str(fieldName)
	}
	w.buf = append(w.buf, '}')
	return nil
}

// AppendSchemaJSON appends s as JsonConverter renders a schema: a schema's identity by its
// content, for those made per event (an expanded outbox payload's).
func AppendSchemaJSON(dst []byte, s *Schema) ([]byte, error) {
	w := jsonWriter{buf: dst}
	err := w.schema(s, "")
	return w.buf, err
}
