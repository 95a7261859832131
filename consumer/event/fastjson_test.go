package event

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/envelope"
)

// fastSeeds exercise what the fast path decodes itself, and the edges where it must hand over
// to the general path.
var fastSeeds = []string{
	`{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}]},"payload":{"id":1}}`,
	// Either order, white space anywhere JSON allows it.
	" {\n\t\"payload\" : { \"id\" : -2147483648 } ,\r\"schema\" :{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\",\"field\":\"id\"}]} } \n",
	// Integer limits, fractions and exponents.
	`{"schema":{"type":"struct","fields":[{"type":"int8","field":"a"},{"type":"int16","field":"b"},{"type":"int64","field":"c"},{"type":"int64","optional":true,"field":"d"}]},"payload":{"a":-128,"b":32767,"c":-9223372036854775808,"d":-0}}`,
	`{"schema":{"type":"struct","fields":[{"type":"int8","field":"a"}]},"payload":{"a":128}}`,
	`{"schema":{"type":"struct","fields":[{"type":"int64","field":"a"}]},"payload":{"a":9223372036854775808}}`,
	`{"schema":{"type":"struct","fields":[{"type":"int32","field":"a"}]},"payload":{"a":1.0}}`,
	`{"schema":{"type":"struct","fields":[{"type":"int32","field":"a"}]},"payload":{"a":01}}`,
	// Strings: escapes, surrogate pairs and lone surrogates, invalid UTF-8, control characters.
	`{"schema":{"type":"struct","fields":[{"type":"string","field":"s"}]},"payload":{"s":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00\ud83d\u0041\ude00x\ud800"}}`,
	"{\"schema\":{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"field\":\"s\"}]},\"payload\":{\"s\":\"a\xffb\xed\xa0\x80\"}}",
	"{\"schema\":{\"type\":\"struct\",\"fields\":[{\"type\":\"string\",\"field\":\"s\"}]},\"payload\":{\"s\":\"a\tb\"}}",
	`{"schema":{"type":"struct","fields":[{"type":"string","field":"s"}]},"payload":{"s":"\'"}}`,
	// Names: escaped, repeated, unknown (skipped, but still checked), missing.
	`{"schema":{"type":"struct","fields":[{"type":"string","field":"id"}]},"payload":{"\u0069d":"x"}}`,
	`{"schema":{"type":"struct","fields":[{"type":"string","field":"id"}]},"payload":{"id":"x","id":"y"}}`,
	`{"schema":{"type":"struct","fields":[{"type":"string","optional":true,"field":"id"}]},"payload":{"x":[1,{"a":[true,false,null,"s",-1.5e3]}]}}`,
	`{"schema":{"type":"struct","fields":[{"type":"string","optional":true,"field":"id"}]},"payload":{"x":[1,}}`,
	`{"schema":{"type":"struct","fields":[{"type":"string","field":"id"}]},"payload":{}}`,
	`{"schema":{"type":"struct","fields":[{"type":"string","default":"dflt","field":"id"}]},"payload":{"id":null}}`,
	`{"s\u0063hema":{"type":"struct","fields":[]},"payload":{}}`,
	`{"schema":{"type":"struct","fields":[]},"payload":{},"schema":{}}`,
	`{"schema":{"type":"struct","fields":[]},"payload":{}} x`,
	// A schema parsed before, then something else.
	`{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}]}}],"payload":{"id":1}}`,
	`{"schema":{"type":"struct","fields":[{"type":"int32","field":"id"}],"optional":true},"payload":{"id":1}}`,
	`{"schema":{"type":"struct","fields":[]},"payload":{}`,
	// Floats, bytes, decimals, arrays, maps, booleans.
	`{"schema":{"type":"struct","fields":[{"type":"double","field":"a"},{"type":"float","field":"b"},{"type":"double","field":"c"},{"type":"double","field":"d"}]},"payload":{"a":"NaN","b":1e40,"c":-1e-400,"d":"-Infinity"}}`,
	`{"schema":{"type":"struct","fields":[{"type":"bytes","field":"a"},{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"b"},{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"c"}]},"payload":{"a":"AQ\u003d=","b":"/w==","c":-12.5}}`,
	`{"schema":{"type":"struct","fields":[{"type":"array","items":{"type":"int32","optional":true},"field":"a"},{"type":"array","items":{"type":"string"},"field":"b"}]},"payload":{"a":[1,null,3],"b":[]}}`,
	`{"schema":{"type":"struct","fields":[{"type":"map","keys":{"type":"string"},"values":{"type":"int32"},"field":"m"},{"type":"boolean","field":"b"}]},"payload":{"m":{"z":1,"a":2},"b":false}}`,
	// Not a struct, null, tombstone.
	`{"schema":{"type":"string"},"payload":"x"}`,
	`{"schema":{"type":"string","optional":true},"payload":null}`,
	`{"schema":null,"payload":null}`,
}

// FuzzDecodeFastPath holds the fast path of JSON with schemas to the general path: whatever it
// decodes, the general path decodes to the same value, with the same schema, into the same
// event (or the same error from the envelope). What the fast path declines is the general
// path's by construction.
func FuzzDecodeFastPath(f *testing.F) {
	for _, s := range fuzzSeeds(f, &memRegistry{}) {
		if len(s[0]) > 0 && s[0][0] == '{' {
			f.Add(s[0])
			f.Add(s[1])
		}
	}
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	// A struct of more fields than a word has bits, some missing: a required one too (f66), or
	// given, or given twice.
	var fields, values []string
	for i := range 70 {
		fields = append(fields, fmt.Sprintf(`{"type":"int32","optional":%t,"field":"f%d"}`, i != 66, i))
		if i%3 == 0 && i != 66 {
			values = append(values, fmt.Sprintf(`"f%d":%d`, i, i))
		}
	}
	wide := `{"schema":{"type":"struct","fields":[` + strings.Join(fields, ",") + `]},"payload":{`
	f.Add([]byte(wide + strings.Join(values, ",") + `}}`))
	f.Add([]byte(wide + strings.Join(values, ",") + `,"f66":1}}`))
	f.Add([]byte(wide + strings.Join(values, ",") + `,"f66":1,"f66":2}}`))
	d, err := NewDecoder(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		b = bytes.TrimLeft(b, " \t\r\n")
		if len(b) == 0 || b[0] != '{' {
			return
		}
		fast, ok := d.fastDocument(b)
		if !ok {
			return
		}
		general, err := d.jsonDocument(b)
		if err != nil {
			t.Fatalf("the fast path decodes what the general path refuses (%v):\n%q", err, b)
		}
		if err := sameDoc(fast, general); err != nil {
			t.Fatalf("fast and general paths differ: %v\n%q", err, b)
		}
		if fast == nil {
			return
		}
		var evFast, evGeneral Event
		errFast, errGeneral := d.envelopeOf(fast, &evFast), d.envelopeOf(general, &evGeneral)
		if fmt.Sprint(errFast) != fmt.Sprint(errGeneral) {
			t.Fatalf("envelope errors differ: fast %v, general %v\n%q", errFast, errGeneral, b)
		}
		if err := sameEvent(&evFast, &evGeneral); err != nil {
			t.Fatalf("events differ: %v\n%q", err, b)
		}
	})
}

// TestFastPathTaken checks that procon-cdc's records with schemas take the fast path, and that
// their schemas are then compared rather than scanned: were it to decline them,
// FuzzDecodeFastPath would compare nothing and the records would be slow.
func TestFastPathTaken(t *testing.T) {
	d := mustDecoder(t, Options{})
	for i, s := range fuzzSeeds(t, &memRegistry{}) {
		for _, b := range s {
			if !bytes.HasPrefix(b, []byte(`{"schema":{`)) {
				continue
			}
			dc, ok := d.fastDocument(b)
			if !ok || dc == nil {
				t.Errorf("seed %d: the fast path declined %.200s...", i, b)
			}
			if s, _ := d.parsedPrefix(b[len(`{"schema":`):]); s == nil || s != dc.schema {
				t.Errorf("seed %d: the schema is not among those parsed last", i)
			}
		}
	}
	for _, s := range fastSeeds[:3] {
		if _, ok := d.fastDocument(bytes.TrimLeft([]byte(s), " \t\r\n")); !ok {
			t.Errorf("the fast path declined %s", s)
		}
	}
}

func sameDoc(a, b *doc) error {
	if a == nil || b == nil {
		if a != b {
			return fmt.Errorf("doc %v and %v", a, b)
		}
		return nil
	}
	if a.schema != b.schema || a.fields != nil || b.fields != nil {
		return fmt.Errorf("schemas %p and %p, fields %v and %v", a.schema, b.schema, a.fields, b.fields)
	}
	return sameValue("payload", a.value, b.value)
}

func sameEvent(a, b *Event) error {
	if a.Op != b.Op || a.Tombstone != b.Tombstone || a.HasTx != b.HasTx || a.Tx != b.Tx || a.SourceHeader != b.SourceHeader {
		return fmt.Errorf("%+v and %+v", a, b)
	}
	for i, pair := range [][2]*Row{{a.Key, b.Key}, {a.Before, b.Before}, {a.After, b.After}, {a.Source, b.Source}} {
		x, y := pair[0], pair[1]
		if x == nil || y == nil {
			if x != y {
				return fmt.Errorf("row %d: %v and %v", i, x, y)
			}
			continue
		}
		if len(x.Fields) != len(y.Fields) {
			return fmt.Errorf("row %d: %d and %d fields", i, len(x.Fields), len(y.Fields))
		}
		for j := range x.Fields {
			fx, fy := x.Fields[j], y.Fields[j]
			if fx.Name != fy.Name || fx.Value.Schema != fy.Value.Schema || fx.Value.cfg != fy.Value.cfg {
				return fmt.Errorf("row %d field %d: %+v and %+v", i, j, fx, fy)
			}
			if err := sameValue(fx.Name, fx.Value.Raw, fy.Value.Raw); err != nil {
				return fmt.Errorf("row %d: %w", i, err)
			}
		}
	}
	return nil
}

// sameValue compares Connect values as reflect.DeepEqual does, except that a NaN equals a NaN
// and a struct's schema must be the very same (both paths take it from the Decoder's cache).
func sameValue(path string, a, b any) error {
	differ := fmt.Errorf("%s: %#v and %#v", path, a, b)
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok || x != y && (x == x || y == y) || x == y && 1/x != 1/y {
			return differ
		}
	case float32:
		y, ok := b.(float32)
		if !ok || x != y && (x == x || y == y) || x == y && 1/x != 1/y {
			return differ
		}
	case envelope.Decimal:
		y, ok := b.(envelope.Decimal)
		if !ok || x.Scale != y.Scale || (x.Unscaled == nil) != (y.Unscaled == nil) || x.Unscaled != nil && x.Unscaled.Cmp(y.Unscaled) != 0 {
			return differ
		}
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return differ
		}
		for i := range x {
			if err := sameValue(fmt.Sprintf("%s[%d]", path, i), x[i], y[i]); err != nil {
				return err
			}
		}
	case []envelope.MapEntry:
		y, ok := b.([]envelope.MapEntry)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return differ
		}
		for i := range x {
			if err := sameValue(path+"{key}", x[i].Key, y[i].Key); err != nil {
				return err
			}
			if err := sameValue(path+"{value}", x[i].Value, y[i].Value); err != nil {
				return err
			}
		}
	case *envelope.Value:
		y, ok := b.(*envelope.Value)
		if !ok || (x == nil) != (y == nil) {
			return differ
		}
		if x == nil {
			return nil
		}
		if x.Schema != y.Schema || len(x.Fields) != len(y.Fields) {
			return differ
		}
		for i := range x.Fields {
			if err := sameValue(path+"."+x.Schema.Fields[i].Name, x.Fields[i], y.Fields[i]); err != nil {
				return err
			}
		}
	default:
		if !reflect.DeepEqual(a, b) {
			return differ
		}
	}
	return nil
}
