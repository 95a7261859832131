package envelope

import (
	"math/big"
	"regexp"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/replication"
)

// fuzzTypes are the type names the converter table (Options.scalarType) knows, plus one it
// does not; "enum" and "range" stand for any type of those kinds.
var fuzzTypes = []string{
	"bool", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "money",
	"text", "varchar", "bpchar", "char", "citext", "isbn", "inet", "cidr", "macaddr", "macaddr8", "name",
	"point", "json", "jsonb", "xml", "uuid", "ltree", "tsvector", "hstore", "bytea", "bit", "varbit",
	"date", "time", "timestamp", "timestamptz", "timetz", "interval",
	"box", "circle", "line", "lseg", "path", "polygon", "refcursor", "geometry", "enum", "range",
}

// fuzzColumn is the column and options one fuzz input selects: sel picks the type and whether
// the column is of the type, an array of it, a domain over it or an array of such a domain;
// modes picks every handling mode. Both are reduced modulo their ranges, so every input is a
// valid selection.
func fuzzColumn(sel uint16, modes uint32, typmod int32) (*replication.Column, Options) {
	name := fuzzTypes[int(sel)%len(fuzzTypes)]
	t := &replication.Type{Name: name, Kind: 'b', Category: 'U'}
	switch name {
	case "enum":
		t.Kind, t.EnumLabels = 'e', []string{"a", "b c"}
	case "range":
		t.Kind = 'r'
	}
	variant := int(sel) / len(fuzzTypes) % 4
	if variant >= 2 {
		t = &replication.Type{Name: "dom", Kind: 'd', Base: t, BaseTypeMod: typmod}
	}
	if variant%2 == 1 {
		t = &replication.Type{Name: "_" + t.Name, Kind: 'b', Category: 'A', Elem: t}
	}
	o := DefaultOptions()
	m := modes
	next := func(n uint32) int { v := m % n; m /= n; return int(v) }
	o.DecimalMode = DecimalMode(next(3))
	o.TimePrecisionMode = TimePrecisionMode(next(6))
	o.BinaryMode = BinaryMode(next(4))
	o.HstoreMode = HstoreMode(next(2))
	o.IntervalMode = IntervalMode(next(2))
	o.IncludeUnknown = next(2) == 1
	o.MoneyFraction = next(21)
	return &replication.Column{Name: "c", TypeMod: typmod, Type: t}, o
}

// heapAllocs is the bytes allocated so far by the process.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// convAllocs converts text and returns the bytes the process allocated meanwhile.
func convAllocs(conv converter, text []byte) (any, uint64, error) {
	before := heapAllocs()
	v, err := conv(text)
	return v, heapAllocs() - before, err
}

// fixedScale is the scale of a Decimal schema (or of an array's Decimal items): every value
// is rescaled to it, so that "1" in a numeric(5,-2) column (scale 2046 to Debezium) becomes
// a number of 2046 digits, about one byte of allocation per digit.
func fixedScale(s *Schema) int {
	if s.Type == Array {
		s = s.Items
	}
	scale, _ := s.Param("scale")
	n, _ := strconv.Atoi(scale)
	return n
}

// Bounds a converter must keep whatever text it is given: its error quotes at most a short
// prefix of the text, and it allocates at most a fixed multiple of the text's size. The
// multiple is what the Connect model costs at worst: each element of a numeric[] ("1,") is
// a VariableScaleDecimal struct of its own, about 100 bytes per byte of text.
const (
	maxConvErrorLen   = 300
	allocsPerTextByte = 160
	allocsSlack       = 64 << 10
)

// FuzzConvert gives every converter of the type table, in every handling mode, any text: it
// returns a value that fits the column's schema and that JSON can write, or an error that
// names what is wrong in a few words; it never panics and never allocates out of proportion
// to the text (huge array nesting, numeric exponents, far-away dates, huge interval fields).
// The same text as a column DEFAULT expression (the catalog's pg_get_expr) must not panic
// either.
func FuzzConvert(f *testing.F) {
	seed := func(typ string, variant int, modes uint32, typmod int32, text string) {
		for i, n := range fuzzTypes {
			if n == typ {
				f.Add(uint16(i+variant*len(fuzzTypes)), modes, typmod, []byte(text))
				return
			}
		}
		f.Fatalf("no fuzz type %s", typ)
	}
	for _, c := range []struct {
		typ     string
		variant int
		typmod  int32
		text    string
	}{
		{"bool", 0, -1, "t"}, {"int2", 0, -1, "-32768"}, {"int8", 1, -1, "{1,NULL,-9223372036854775808}"},
		{"float4", 0, -1, "3.4028235e+38"}, {"float8", 0, -1, "-Infinity"},
		{"numeric", 0, -1, "-12345678901234567890.000001"}, {"numeric", 0, 10<<16 | 2 + 4, "12.345"},
		{"numeric", 0, -1, "NaN"}, {"numeric", 0, -1, "1e999999999"}, {"numeric", 1, -1, "{1.5,NULL,Infinity}"},
		{"money", 0, -1, "-$1,234.56"}, {"text", 1, -1, `{"a,b","c\"d",NULL,""}`}, {"point", 0, -1, "(1.5,-2)"},
		{"hstore", 0, -1, `"a"=>"1", "b"=>NULL`}, {"bytea", 0, -1, `\x00ff10`}, {"bit", 0, 1, "1"},
		{"varbit", 0, -1, "0000000100000011"}, {"date", 0, -1, "0044-03-15 BC"}, {"date", 0, -1, "5874897-12-31"},
		{"date", 0, -1, "infinity"}, {"time", 0, -1, "24:00:00"}, {"time", 1, -1, "{13:14:15.123456,NULL}"},
		{"timestamp", 0, -1, "294276-12-31 23:59:59.999999"}, {"timestamp", 0, 3, "2024-03-01 12:00:00.123456"},
		{"timestamptz", 0, -1, "2024-03-01 12:00:00.123456+05:30"}, {"timestamptz", 0, -1, "4713-01-01 00:00:00+00 BC"},
		{"timetz", 0, -1, "10:15:30.5-02"}, {"timetz", 1, -1, "{10:15:30.5-02:30:15}"},
		{"interval", 0, -1, "1 year 2 mons -3 days +04:05:06.5"}, {"interval", 0, -1, "-2562047788:00:54.775808"},
		{"interval", 0, -1, "178956970 years 7 mons 2147483647 days"}, {"box", 1, -1, "{(1,1),(0,0);(2,2),(1,1)}"},
		{"enum", 1, -1, "{a,NULL}"}, {"enum", 2, -1, "b c"}, {"int4", 1, -1, "[0:1]={1,2}"},
		{"int4", 1, -1, "{{{{{{{1}}}}}}}"}, {"uuid", 1, -1, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"},
		{"geometry", 0, -1, "0101000000000000000000F03F0000000000000040"}, {"circle", 0, -1, "<(1,2),3>"},
	} {
		// Default modes; double, connect, base64, string intervals; string, isostring, hex,
		// hstore as a map, include.unknown.datatypes.
		for _, modes := range []uint32{0, 1 + 3*2 + 3*6*1 + 3*6*4*2*1, 2 + 3*3 + 3*6*3 + 3*6*4*1 + 3*6*4*2*2*1} {
			seed(c.typ, c.variant, modes, c.typmod, c.text)
		}
	}
	f.Fuzz(func(t *testing.T, sel uint16, modes uint32, typmod int32, text []byte) {
		col, o := fuzzColumn(sel, modes, typmod)
		ct, err := o.columnTypeOf(col)
		if err != nil {
			return
		}
		schema := ct.schema.optional()
		v, used, err := convAllocs(ct.conv, text)
		if bound := uint64((allocsPerTextByte+fixedScale(ct.schema))*len(text) + allocsSlack); used > bound && !raceEnabled {
			// Measured again: the first call may have refilled a pool (regexp machines) or
			// met the allocations of another goroutine.
			if _, used, _ = convAllocs(ct.conv, text); used > bound {
				t.Fatalf("%s: converting %d bytes allocated %d bytes (bound %d)", col.Type.Name, len(text), used, bound)
			}
		}
		if err != nil {
			if n := len(err.Error()); n > maxConvErrorLen {
				t.Fatalf("%s: an error of %d bytes: %.200s...", col.Type.Name, n, err)
			}
			return
		}
		if !fits(schema, v) {
			t.Fatalf("%s: value %#v does not fit the column's schema %s", col.Type.Name, v, schema.Type)
		}
		var w jsonWriter
		if err := w.value(schema, v); err != nil {
			t.Fatalf("%s: value %#v cannot be written: %v", col.Type.Name, v, err)
		}
		col.Default = string(text)
		_, _ = parseDefault(col, ct)
	})
}

// FuzzTemporal checks the date/time parsers against Go's time package wherever the text is
// one PostgreSQL writes (DateStyle ISO) that time.Parse can also read (years 1 to 9999 AD,
// hours up to 23): both accept it or both refuse it, and give the same instant. Outside that
// range the parsers must still not panic, and a timestamp they accept formats to a date
// whose year is the text's.
func FuzzTemporal(f *testing.F) {
	for _, s := range []string{
		"2024-03-01 12:00:00.123456+05:30", "2024-02-29 00:00:00", "2023-02-29 00:00:00", "2024-13-01 00:00:00",
		"2024-01-31 23:59:60", "2024-01-01 24:00:00", "0001-01-01 00:00:00+00 BC", "294276-12-31 23:59:59.999999",
		"2024-01-01 10:00:00-15:59:59", "2024-01-01 10:00:00+16", "9999-12-31 23:59:59.9999999", "2024-04-31 00:00:00",
		"1969-12-31 23:59:59.999999-00:30", "99999999999999999999-01-01 00:00:00", "5874897-12-31", "2024-01-01",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)
		for _, zone := range []bool{false, true} {
			ts, inf, err := parseTimestampFast(b, zone)
			got, _ := ts.micros()
			ref, refOK := goParseTimestamp(s, zone)
			if refOK && (err != nil || inf != 0 || got != ref) {
				t.Fatalf("%q (zone %v): got %d, %d, %v; time.Parse gives %d", s, zone, got, inf, err, ref)
			}
			if !refOK && err == nil && inf == 0 && goComparable(s, zone) {
				t.Fatalf("%q (zone %v): accepted as %d; time.Parse refuses it", s, zone, got)
			}
		}
		days, err := parseDateFast(b)
		if ref, ok := goParseTimestamp(s+" 00:00:00", false); ok && (err != nil || days*microsPerDay != ref) {
			t.Fatalf("date %q: got %d, %v; time.Parse gives %d days", s, days, err, ref/microsPerDay)
		}
		if err == nil && goComparable(s+" 00:00:00", false) {
			if _, ok := goParseTimestamp(s+" 00:00:00", false); !ok {
				t.Fatalf("date %q: accepted as %d; time.Parse refuses it", s, days)
			}
		}
		us, err := parseClock(b)
		if err == nil && (us < 0 || us > microsPerDay) {
			t.Fatalf("time %q: %d µs is not a time of day", s, us)
		}
	})
}

// goComparable reports whether s has the shape of PostgreSQL's ISO output with a four-digit
// year AD, an hour below 24 and an offset within ±15:59:59, the texts whose validity
// time.Parse decides the same way.
func goComparable(s string, zone bool) bool {
	m := pgTimestampShape.FindStringSubmatch(s)
	if m == nil || m[1] == "24" || (zone != (m[2] != "")) {
		return false
	}
	if !zone {
		return true
	}
	// time.Parse takes offset minutes and seconds of 60 and more, PostgreSQL does not.
	for i, f := range strings.Split(m[2][1:], ":") {
		if f > [3]string{"15", "59", "59"}[i] {
			return false
		}
	}
	return true
}

var pgTimestampShape = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2} ([0-9]{2}):[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?([+-][0-9]{2}(?::[0-9]{2}(?::[0-9]{2})?)?)?$`)

// goParseTimestamp parses PostgreSQL's ISO timestamp text with time.Parse, in microseconds
// since the epoch; ok is false when time.Parse refuses it.
func goParseTimestamp(s string, zone bool) (int64, bool) {
	if !goComparable(s, zone) {
		return 0, false
	}
	layout := "2006-01-02 15:04:05"
	body := s
	if zone {
		i := strings.LastIndexAny(s, "+-")
		body = s[:i]
		switch len(s) - i {
		case 3:
			layout += "-07"
		case 6:
			layout += "-07:00"
		case 9:
			layout += "-07:00:00"
		default:
			return 0, false
		}
	}
	if dot := strings.IndexByte(body, '.'); dot >= 0 {
		if dot != 19 || len(body) == 20 {
			return 0, false
		}
		layout = layout[:19] + "." + strings.Repeat("9", len(body)-20) + layout[19:]
	}
	tm, err := time.Parse(layout, s)
	if err != nil || tm.Year() < 1 {
		return 0, false
	}
	return tm.UnixMicro(), true
}

// FuzzNumeric checks numeric text against math/big: a text parseDecimal accepts is the number
// big.Rat reads, its String is the text again (PostgreSQL writes numerics in plain notation,
// which String reproduces), and rescaling keeps the value within half a unit of the new scale.
func FuzzNumeric(f *testing.F) {
	for _, s := range []string{"0", "-0.5", "12345678901234567890.1234567890", "1e5", "-", ".", "1.2.3", "+5", "-.5", "5.", "NaN", "00012.3400"} {
		f.Add([]byte(s), int16(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, scale int16) {
		d, special, err := parseDecimal(b)
		if err != nil || special != "" {
			return
		}
		want, ok := new(big.Rat).SetString(string(b))
		if !ok {
			t.Fatalf("%q: parsed as %s, which big.Rat refuses", b, d)
		}
		got := new(big.Rat).SetFrac(d.Unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.Scale)), nil))
		if got.Cmp(want) != 0 {
			t.Fatalf("%q: parsed as %s", b, d)
		}
		if s := string(b); isPlainDecimal(s) && d.Unscaled.Sign() != 0 && d.String() != s {
			t.Fatalf("%q: String gives %s", s, d.String())
		}
		sc := int32(scale) % 40
		if sc < 0 {
			sc = -sc
		}
		r := d.rescale(sc)
		diff := new(big.Rat).Sub(new(big.Rat).SetFrac(r.Unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(sc)), nil)), want)
		half := new(big.Rat).SetFrac(big.NewInt(1), new(big.Int).Mul(big.NewInt(2), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(sc)), nil)))
		if diff.Abs(diff).Cmp(half) > 0 {
			t.Fatalf("%q rescaled to %d: %s", b, sc, r)
		}
	})
}

// isPlainDecimal reports whether s is numeric text as PostgreSQL writes it: an optional minus,
// digits without superfluous leading zeros, and an optional point with digits after it.
func isPlainDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasPoint := strings.Cut(s, ".")
	if intPart == "" || (len(intPart) > 1 && intPart[0] == '0') || (hasPoint && frac == "") {
		return false
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
