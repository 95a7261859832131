package event

import (
	"bytes"
	"encoding/base64"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/procon-cdc/procon/envelope"
)

// The fast path of JSON with schemas.
//
// With schemas.enable=true every record repeats its schema, several kilobytes that dwarf the
// payload, and the general path (orderedObject, decodeJSONDoc, connectFromJSON) tokenizes all
// of it, then builds a map[string]any of the payload only to walk it again. The fast path
// reads the common shape {"schema": S, "payload": P} by hand. S is one of the texts it parsed
// last when the record begins with that text (a memory compare; the usual case); otherwise it
// finds S's end, without building anything, and looks the schema up by S's exact bytes in the
// Decoder's cache (parsing and validating it the first time, as the general path does). Then
// it decodes P straight into the Connect value the schema describes.
//
// It must give exactly what the general path gives, or nothing: whatever it does not handle or
// finds wrong (another shape, escaped or duplicate names, malformed JSON, a value that does not
// match its schema, nesting past its bounds) makes it return ok=false, and the general path
// then reads the record, and words its error. So the fast path never needs to explain itself,
// and FuzzDecodeFastPath holds it to the general path's results.

// maxFastDepth bounds the nesting the fast path follows in JSON no schema describes (the
// schema's own span, unknown payload fields); deeper records take the general path, whose
// encoding/json has its own bound.
const maxFastDepth = 256

// fastDocument decodes a JSON object b (starting with '{', ending without white space left
// of it) of exactly "schema" and "payload". ok=false leaves the record to the general path; a
// nil doc with ok is a null value.
func (d *Decoder) fastDocument(b []byte) (dc *doc, ok bool) {
	var s *envelope.Schema
	var value any
	schemaAt, payloadAt, payloadEnd := -1, -1, -1
	i := skipSpace(b, 1)
	for n := 0; n < 2; n++ {
		name, j, ok := plainName(b, i)
		if !ok {
			return nil, false
		}
		if j = skipSpace(b, j); j >= len(b) || b[j] != ':' {
			return nil, false
		}
		j = skipSpace(b, j+1)
		var end int
		switch {
		case string(name) == "schema" && schemaAt < 0:
			if j >= len(b) || b[j] != '{' {
				return nil, false // null (a tombstone, rare), or not a schema
			}
			var size int
			if s, size = d.parsedPrefix(b[j:]); s != nil {
				// A well-formed object ends at its closing brace whatever follows, so
				// encoding/json reads these bytes as this schema, and no more.
				end = j + size
			} else {
				// valueEnd trusts the schema to be well formed: it is, when its bytes
				// are those of a schema parsed before, or when they parse now.
				if end, ok = valueEnd(b, j); !ok {
					return nil, false
				}
				var err error
				if s, err = d.cachedSchema(b[j:end], true); err != nil {
					return nil, false
				}
			}
			schemaAt = j
		case string(name) == "payload" && payloadAt < 0:
			payloadAt = j
			if s != nil {
				r := payloadReader{b: b, i: j}
				if value, ok = r.value(s); !ok {
					return nil, false
				}
				end = r.i
			} else if end, ok = valueEnd(b, j); !ok { // read once the schema is known
				return nil, false
			}
			payloadEnd = end
		default:
			return nil, false
		}
		i = skipSpace(b, end)
		want := byte(',')
		if n == 1 {
			want = '}'
		}
		if i >= len(b) || b[i] != want {
			return nil, false
		}
		i = skipSpace(b, i+1)
	}
	if i != len(b) {
		return nil, false // data after the object
	}
	if payloadAt < schemaAt {
		r := payloadReader{b: b[:payloadEnd], i: payloadAt}
		if value, ok = r.value(s); !ok || r.i != payloadEnd {
			return nil, false
		}
	}
	if value == nil {
		return nil, true
	}
	return &doc{schema: s, value: value}, true
}

// parsedPrefix returns one of the schemas parsed last whose text b begins with, and that
// text's length: with a stable set of tables, the usual case, the schema's several kilobytes
// are compared, not scanned.
func (d *Decoder) parsedPrefix(b []byte) (*envelope.Schema, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.parsedJSON {
		if p.schema != nil && len(b) >= len(p.text) && string(b[:len(p.text)]) == p.text {
			return p.schema, len(p.text)
		}
	}
	return nil, 0
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// isSpace is JSON's white space.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// plainName reads the member name at b[i:] when it has no escapes, the only names the fast
// path compares as bytes; it returns the name and the index after its closing quote.
func plainName(b []byte, i int) (name []byte, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	end := bytes.IndexByte(b[i+1:], '"')
	if end < 0 {
		return nil, 0, false
	}
	name = b[i+1 : i+1+end]
	if bytes.IndexByte(name, '\\') >= 0 {
		return nil, 0, false
	}
	return name, i + end + 2, true
}

// valueEnd finds the end of the JSON value at b[i:] without checking it: strings, nesting and
// the ends of scalars only. The caller proves the span well formed before relying on it.
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			end, ok := stringEnd(b, i)
			if !ok {
				return 0, false
			}
			i = end
			if depth == 0 {
				return i, true
			}
			continue
		case '{', '[':
			if depth++; depth > maxFastDepth {
				return 0, false
			}
		case '}', ']':
			if depth == 0 { // the end of a scalar
				return i, true
			}
			if depth--; depth == 0 {
				return i + 1, true
			}
		case ' ', '\t', '\r', '\n', ',', ':':
			if depth == 0 {
				return i, true
			}
		}
		i++
	}
	return 0, false
}

// stringEnd returns the index after the string whose opening quote is at b[i], stepping over
// escapes. (A plain loop: a schema's strings are too short for bytes.IndexByte to pay.)
func stringEnd(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return j + 1, true
		case '\\':
			j++
		}
	}
	return 0, false
}

// payloadReader decodes a payload against its Connect schema. Unlike valueEnd it checks
// everything, as encoding/json's scanner does: a record the general path would refuse must
// not decode here.
type payloadReader struct {
	b []byte
	i int
}

func (r *payloadReader) space() { r.i = skipSpace(r.b, r.i) }

// value reads the value of schema s at r.i, as connectFromJSON(s, decodeJSONDoc(...)) would.
func (r *payloadReader) value(s *envelope.Schema) (any, bool) {
	r.space()
	if r.i >= len(r.b) {
		return nil, false
	}
	c := r.b[r.i]
	if c == 'n' {
		if !r.literal("null") {
			return nil, false
		}
		return nullValue(s)
	}
	switch s.Type {
	case envelope.Boolean:
		switch {
		case c == 't' && r.literal("true"):
			return true, true
		case c == 'f' && r.literal("false"):
			return false, true
		}
		return nil, false
	case envelope.Int8, envelope.Int16, envelope.Int32, envelope.Int64:
		return r.integer(s.Type)
	case envelope.String:
		if c != '"' {
			return nil, false
		}
		raw, plain, ok := r.str()
		if !ok {
			return nil, false
		}
		if plain {
			return string(raw), true
		}
		return string(unquoteJSON(raw)), true
	case envelope.Float32, envelope.Float64:
		return r.float(s.Type)
	case envelope.Bytes:
		if c != '"' {
			break // a Decimal's number (decimal.format=NUMERIC), or a mismatch
		}
		raw, plain, ok := r.str()
		if !ok {
			return nil, false
		}
		if !plain {
			raw = unquoteJSON(raw)
		}
		// base64.StdEncoding.DecodeString, without the string.
		out := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
		n, err := base64.StdEncoding.Decode(out, raw)
		if err != nil {
			return nil, false
		}
		if s.Name == envelope.LogicalDecimal {
			scale, err := schemaScale(s)
			if err != nil {
				return nil, false
			}
			return decimalFromBytes(out[:n], scale), true
		}
		return out[:n], true
	case envelope.Struct:
		if c != '{' {
			return nil, false
		}
		return r.object(s)
	case envelope.Array:
		if c != '[' {
			return nil, false
		}
		return r.array(s)
	}
	// The rest (numeric decimals, maps, mismatches) are rarer: their JSON is read as the general path
	// reads it, then turned into Connect's value by the same code.
	return r.general(s)
}

// nullValue is what a null (or a missing struct field) is for s.
func nullValue(s *envelope.Schema) (any, bool) {
	if s.HasDefault {
		return s.Default, true
	}
	return nil, s.Optional
}

func (r *payloadReader) literal(lit string) bool {
	if len(r.b)-r.i < len(lit) || string(r.b[r.i:r.i+len(lit)]) != lit {
		return false
	}
	r.i += len(lit)
	return true
}

// integer reads an integer of type t as strconv.ParseInt of the number's text would: a
// fraction, an exponent or a value out of range is for the general path to refuse.
func (r *payloadReader) integer(t envelope.Type) (any, bool) {
	start := r.i
	if !r.number() {
		return nil, false
	}
	digits := r.b[start:r.i]
	neg := digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	bits := uint(64)
	switch t {
	case envelope.Int8:
		bits = 8
	case envelope.Int16:
		bits = 16
	case envelope.Int32:
		bits = 32
	}
	limit := uint64(1) << (bits - 1) // -limit is the smallest value, limit-1 the largest
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' || n > limit/10 {
			return nil, false
		}
		n = n*10 + uint64(c-'0')
		if n > limit {
			return nil, false
		}
	}
	if !neg && n == limit {
		return nil, false
	}
	i := int64(n) // -limit wraps to itself for 64 bits
	if neg {
		i = -i
	}
	switch t {
	case envelope.Int8:
		return int8(i), true
	case envelope.Int16:
		return int16(i), true
	case envelope.Int32:
		return int32(i), true
	}
	return i, true
}

// float reads a float as the general path does: a number, or one of the strings JsonConverter
// writes for NaN and the infinities.
func (r *payloadReader) float(t envelope.Type) (any, bool) {
	var f float64
	if r.b[r.i] == '"' {
		raw, plain, ok := r.str()
		if !ok || !plain {
			return nil, false
		}
		switch string(raw) {
		case "NaN":
			f = math.NaN()
		case "Infinity":
			f = math.Inf(1)
		case "-Infinity":
			f = math.Inf(-1)
		default:
			return nil, false
		}
	} else {
		start := r.i
		if !r.number() {
			return nil, false
		}
		var err error
		if f, err = strconv.ParseFloat(string(r.b[start:r.i]), 64); err != nil && !isRange(err) {
			return nil, false
		}
	}
	if t == envelope.Float32 {
		return float32(f), true
	}
	return f, true
}

// number reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (r *payloadReader) number() bool {
	b, i := r.b, r.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = skipDigits(b, i)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = skipDigits(b, i)
	}
	r.i = i
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// str reads a string and returns what is between its quotes; plain says it needs no
// unquoting (no escapes, valid UTF-8), so that it is the string's bytes as they are.
func (r *payloadReader) str() (raw []byte, plain, ok bool) {
	b := r.b
	start := r.i + 1
	plain, ascii := true, true
	for i := start; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			raw = b[start:i]
			r.i = i + 1
			return raw, plain && (ascii || utf8.Valid(raw)), true
		case c == '\\':
			plain = false
			if i+1 >= len(b) {
				return nil, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return nil, false, false
				}
				i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			if c >= utf8.RuneSelf {
				ascii = false
			}
			i++
		}
	}
	return nil, false, false
}

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// object reads a struct. A name the schema does not have is skipped (its value still has to be
// well formed); a repeated name is left to the general path, where the last one wins.
func (r *payloadReader) object(s *envelope.Schema) (any, bool) {
	sv := envelope.NewValue(s)
	var seenSmall uint64
	var seenMore []bool
	if len(s.Fields) > 64 {
		seenMore = make([]bool, len(s.Fields))
	}
	next := 0 // fields usually come in schema order
	r.i++
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
	} else {
		for {
			r.space()
			if r.i >= len(r.b) || r.b[r.i] != '"' {
				return nil, false
			}
			raw, plain, ok := r.str()
			if !ok {
				return nil, false
			}
			if !plain {
				raw = unquoteJSON(raw)
			}
			f := -1
			if next < len(s.Fields) && s.Fields[next].Name == string(raw) {
				f = next
			} else {
				for k := range s.Fields {
					if s.Fields[k].Name == string(raw) {
						f = k
						break
					}
				}
			}
			r.space()
			if r.i >= len(r.b) || r.b[r.i] != ':' {
				return nil, false
			}
			r.i++
			if f < 0 {
				if !r.skip(0) {
					return nil, false
				}
			} else {
				if f < 64 {
					if seenSmall&(1<<f) != 0 {
						return nil, false
					}
					seenSmall |= 1 << f
				} else {
					if seenMore[f] {
						return nil, false
					}
					seenMore[f] = true
				}
				v, ok := r.value(s.Fields[f].Schema)
				if !ok {
					return nil, false
				}
				sv.Fields[f] = v
				next = f + 1
			}
			r.space()
			if r.i >= len(r.b) {
				return nil, false
			}
			if r.b[r.i] == '}' {
				r.i++
				break
			}
			if r.b[r.i] != ',' {
				return nil, false
			}
			r.i++
		}
	}
	// A field the object lacks reads as a null, as a missing map key does in the general path.
	for f := range s.Fields {
		if f < 64 && seenSmall&(1<<f) != 0 || f >= 64 && seenMore[f] {
			continue
		}
		v, ok := nullValue(s.Fields[f].Schema)
		if !ok {
			return nil, false
		}
		sv.Fields[f] = v
	}
	return sv, true
}

func (r *payloadReader) array(s *envelope.Schema) (any, bool) {
	out := []any{}
	r.i++
	r.space()
	if r.i < len(r.b) && r.b[r.i] == ']' {
		r.i++
		return out, true
	}
	for {
		v, ok := r.value(s.Items)
		if !ok {
			return nil, false
		}
		out = append(out, v)
		r.space()
		if r.i >= len(r.b) {
			return nil, false
		}
		if r.b[r.i] == ']' {
			r.i++
			return out, true
		}
		if r.b[r.i] != ',' {
			return nil, false
		}
		r.i++
	}
}

// general reads a value as the general path does: checked here, then decoded by encoding/json
// and converted by connectFromJSON.
func (r *payloadReader) general(s *envelope.Schema) (any, bool) {
	start := r.i
	if !r.skip(0) {
		return nil, false
	}
	j, err := decodeJSONDoc(r.b[start:r.i])
	if err != nil {
		return nil, false
	}
	v, err := connectFromJSON(s, j, "")
	if err != nil {
		return nil, false
	}
	return v, true
}

// skip reads past one well-formed JSON value.
func (r *payloadReader) skip(depth int) bool {
	r.space()
	if r.i >= len(r.b) {
		return false
	}
	switch c := r.b[r.i]; c {
	case '"':
		_, _, ok := r.str()
		return ok
	case 't':
		return r.literal("true")
	case 'f':
		return r.literal("false")
	case 'n':
		return r.literal("null")
	case '{', '[':
		if depth >= maxFastDepth {
			return false
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		r.i++
		r.space()
		if r.i < len(r.b) && r.b[r.i] == end {
			r.i++
			return true
		}
		for {
			if c == '{' {
				r.space()
				if r.i >= len(r.b) || r.b[r.i] != '"' {
					return false
				}
				if _, _, ok := r.str(); !ok {
					return false
				}
				r.space()
				if r.i >= len(r.b) || r.b[r.i] != ':' {
					return false
				}
				r.i++
			}
			if !r.skip(depth + 1) {
				return false
			}
			r.space()
			if r.i >= len(r.b) {
				return false
			}
			if r.b[r.i] == end {
				r.i++
				return true
			}
			if r.b[r.i] != ',' {
				return false
			}
			r.i++
		}
	}
	return r.number()
}

// unquoteJSON decodes a string's contents that str accepted, as encoding/json does: escapes,
// surrogate pairs (a lone surrogate becomes U+FFFD) and invalid UTF-8 (each bad byte becomes
// U+FFFD).
func unquoteJSON(s []byte) []byte {
	out := make([]byte, 0, len(s)+utf8.UTFMax)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			switch s[i+1] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				rr := hex4(s[i+2:])
				i += 6
				if rr >= 0xD800 && rr < 0xE000 {
					// A surrogate is only valid as the first of a pair.
					lo := rune(-1)
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						lo = hex4(s[i+2:])
					}
					if rr < 0xDC00 && lo >= 0xDC00 && lo < 0xE000 {
						rr = (rr-0xD800)<<10 | (lo - 0xDC00) + 0x10000
						i += 6
					} else {
						rr = utf8.RuneError
					}
				}
				out = utf8.AppendRune(out, rr)
				continue
			default: // '"', '\\', '/'
				out = append(out, s[i+1])
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			rr, size := utf8.DecodeRune(s[i:])
			out = utf8.AppendRune(out, rr)
			i += size
		}
	}
	return out
}

// hex4 reads four hex digits that str checked.
func hex4(s []byte) rune {
	var r rune
	for _, c := range s[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}
