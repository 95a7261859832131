package envelope

import (
	"encoding/base64"
	"math"
	"math/big"
	"reflect"
	"testing"
)

func TestJavaDouble(t *testing.T) {
	cases := map[float64]string{
		0: "0.0", 1: "1.0", 1.5: "1.5", -2.25: "-2.25", 1e7: "1.0E7", 1.0e-3: "0.001",
		1.0e-4: "1.0E-4", 123456789.0: "1.23456789E8", 9999999: "9999999.0", 0.1: "0.1",
		math.Inf(1): "Infinity", math.NaN(): "NaN", 1e21: "1.0E21", -1.25e-10: "-1.25E-10",
		// One-digit shortest forms become the closest two-digit decimal, as in Java.
		math.SmallestNonzeroFloat64: "4.9E-324", 1e23: "1.0E23", 0.5: "0.5", 100: "100.0",
	}
	for in, want := range cases {
		if got := javaDouble(in); got != want {
			t.Errorf("javaDouble(%v) = %q, want %q", in, got, want)
		}
	}
	if got := javaFloat(float64(float32(1.1)), 32); got != "1.1" {
		t.Errorf("float32 1.1 = %q, want 1.1", got)
	}
	if got := javaFloat(float64(float32(math.SmallestNonzeroFloat32)), 32); got != "1.4E-45" {
		t.Errorf("Float.MIN_VALUE = %q, want 1.4E-45", got)
	}
}

func TestJacksonEscapes(t *testing.T) {
	var w jsonWriter
	w.str("a\"b\\c\n\t\x01/é<>&\u2028")
	want := `"a\"b\\c\n\t\u0001/é<>&` + "\u2028" + `"`
	if string(w.buf) != want {
		t.Errorf("got %s, want %s", w.buf, want)
	}
}

func TestTwosComplement(t *testing.T) {
	cases := map[int64]string{0: "AA==", 1: "AQ==", 127: "fw==", 128: "AIA=", -1: "/w==", -128: "gA==", -129: "/38=", 1050: "BBo="}
	for n, want := range cases {
		if got := base64.StdEncoding.EncodeToString(twosComplement(big.NewInt(n))); got != want {
			t.Errorf("%d: got %s, want %s", n, got, want)
		}
	}
}

func TestDecimalRescaleAndString(t *testing.T) {
	d, _, err := parseDecimal([]byte("-12.345"))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.rescale(2).String(); got != "-12.35" {
		t.Errorf("rescale(2) = %s, want -12.35 (half up)", got)
	}
	if got := d.rescale(5).String(); got != "-12.34500" {
		t.Errorf("rescale(5) = %s", got)
	}
	if got := (Decimal{Unscaled: big.NewInt(5), Scale: 3}).String(); got != "0.005" {
		t.Errorf("got %s, want 0.005", got)
	}
}

func TestTemporal(t *testing.T) {
	days := map[string]int64{"1970-01-01": 0, "2000-03-01": 11017, "1969-12-31": -1, "0001-01-01": -719162, "0044-03-15 BC": -735160, "10000-01-01": 2932897}
	for in, want := range days {
		got, err := parseDate([]byte(in))
		if err != nil || got != want {
			t.Errorf("parseDate(%s) = %d, %v; want %d", in, got, err, want)
		}
		if y, m, d := CivilFromDays(want); daysFromCivil(y, m, d) != want {
			t.Errorf("civilFromDays(%d) does not round-trip", want)
		}
	}
	ts, inf, err := parseTimestamp([]byte("2024-03-01 12:00:00.123456+05:30"), true)
	if err != nil || inf != 0 {
		t.Fatal(err)
	}
	if got := formatISOInstant(ts, 6); got != "2024-03-01T06:30:00.123456Z" {
		t.Errorf("got %s", got)
	}
	if got := formatISOInstant(ts, 3); got != "2024-03-01T06:30:00.123Z" {
		t.Errorf("got %s", got)
	}
	if got, _ := convZonedTime([]byte("10:15:30.5-02")); got != "12:15:30.5Z" {
		t.Errorf("timetz: got %v", got)
	}
	if got, _ := parseClock([]byte("24:00:00")); got != 86_400_000_000 {
		t.Errorf("24:00:00 = %d", got)
	}
	iv, err := parseInterval("1 year 2 mons -3 days +04:05:06.5")
	if err != nil {
		t.Fatal(err)
	}
	if got := iv.isoString(); got != "P1Y2M-3DT4H5M6.5S" {
		t.Errorf("interval iso = %s", got)
	}
	if got := (interval{days: 1, microSeconds: 500_000}).microDuration(); got != 86_400_500_000 {
		t.Errorf("1 day 0.5s = %d µs", got)
	}
	// Past the int64 range, Java's (long) cast saturates.
	iv, _ = parseInterval("178000000 years 11 mons 30 days 23:59:59.999999")
	if got := iv.microDuration(); got != math.MaxInt64 {
		t.Errorf("huge interval = %d µs, want %d", got, int64(math.MaxInt64))
	}
	iv, _ = parseInterval("-00:00:00.5")
	if got := iv.isoString(); got != "P0Y0M0DT0H0M-0.5S" {
		t.Errorf("negative seconds iso = %s", got)
	}
}

func TestParseArray(t *testing.T) {
	v, err := parseArray([]byte(`{{1,2},{NULL,"4"}}`), ',', convInt32)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{[]any{int32(1), int32(2)}, []any{nil, int32(4)}}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got %#v, want %#v", v, want)
	}
	v, err = parseArray([]byte(`{"a,b","c\"d",NULL,""}`), ',', convString)
	if err != nil || !reflect.DeepEqual(v, []any{"a,b", `c"d`, nil, ""}) {
		t.Errorf("got %#v, %v", v, err)
	}
	if v, _ := parseArray([]byte(`{}`), ',', convString); !reflect.DeepEqual(v, []any{}) {
		t.Errorf("empty array: got %#v", v)
	}
}

func TestBitsAndHstore(t *testing.T) {
	b, _ := convBits([]byte("0000000100000011"))
	if !reflect.DeepEqual(b, []byte{0x03, 0x01}) {
		t.Errorf("bits: got %x, want 0301 (least significant byte first)", b)
	}
	kv, err := parseHstore([]byte(`"a"=>"1", "b\"x"=>NULL`))
	if err != nil || len(kv) != 2 || kv[0].key != "a" || *kv[0].value.(*string) != "1" || kv[1].key != `b"x` || kv[1].value != nil {
		t.Errorf("hstore: got %+v, %v", kv, err)
	}
}

func TestSchemaJSON(t *testing.T) {
	s := structSchema("t.Key", 0, false, field("id", &Schema{Type: Int32, HasDefault: true, Default: int32(0)}))
	var w jsonWriter
	if err := w.schema(s, ""); err != nil {
		t.Fatal(err)
	}
	want := `{"type":"struct","fields":[{"type":"int32","optional":false,"default":0,"field":"id"}],"optional":false,"name":"t.Key"}`
	if string(w.buf) != want {
		t.Errorf("got  %s\nwant %s", w.buf, want)
	}
}

// TestAvroDefault pins the default values of Avro schemas: JsonConverter's JSON except bytes
// (ISO-8859-1 text) and maps whose keys are not required strings (lists of pairs).
func TestAvroDefault(t *testing.T) {
	optStringKeys := &Schema{Type: Map, Keys: prim(String, true), Values: prim(Int32, false)}
	point := structSchema("p", 0, false, field("x", &Schema{Type: Int32, HasDefault: true, Default: int32(5)}), field("y", prim(String, true)))
	for _, c := range []struct {
		s          *Schema
		v          any
		avro, json string
	}{
		{prim(Bytes, false), []byte{0, 0x7f, 0x80, 0xff}, `"\u0000` + "\x7f\u0080ÿ" + `"`, `"AH+A/w=="`},
		{named(Bytes, LogicalDecimal, 1, Param{"scale", "2"}), Decimal{Unscaled: big.NewInt(314), Scale: 2}, `"\u0001:"`, `"ATo="`},
		{optStringKeys, []MapEntry{{"a", int32(1)}}, `[["a",1]]`, `{"a":1}`},
		{&Schema{Type: Map, Keys: prim(String, false), Values: prim(Int32, true)}, []MapEntry{{"a", int32(1)}, {"b", nil}}, `{"a":1,"b":null}`, `{"a":1,"b":null}`},
		{&Schema{Type: Map, Keys: prim(Int16, false), Values: prim(Int32, false)}, []MapEntry{{int16(-1), int32(1)}}, `[[-1,1]]`, `[[-1,1]]`},
		{&Schema{Type: Array, Items: prim(Float64, false)}, []any{1.0, math.NaN()}, `[1.0,"NaN"]`, `[1.0,"NaN"]`},
		{point, &Value{Schema: point, Fields: []any{nil, nil}}, `{"x":5,"y":null}`, `{"x":5,"y":null}`},
	} {
		got, err := AppendAvroDefault(nil, c.s, c.v)
		if err != nil || string(got) != c.avro {
			t.Errorf("Avro default of %v: got %s, %v; want %s", c.v, got, err, c.avro)
		}
		var w jsonWriter
		if err := w.value(c.s, c.v); err != nil || string(w.buf) != c.json {
			t.Errorf("JSON of %v: got %s, %v; want %s", c.v, w.buf, err, c.json)
		}
	}
}

// FuzzParseHstore: hstore text of any shape parses or is refused; it never panics.
func FuzzParseHstore(f *testing.F) {
	for _, s := range []string{`"a"=>"1", "b"=>NULL`, `"k\"q"=>"v\\"`, `"`, `"a"=>`, `"a`, ``, `  ,  `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseHstore(b)
	})
}
