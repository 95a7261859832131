package envelope

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/replication"
)

// Regression tests for what FuzzConvert and FuzzTemporal found, and for their siblings: text
// pgoutput would never send (a malformed or hostile stream) is an error, never a panic, a
// stack overflow, a silently wrong value or an unbounded allocation; and values PostgreSQL
// does send at the edges of its ranges are converted.

func convOf(t *testing.T, typ string, typmod int32, o Options) converter {
	t.Helper()
	ct, err := o.columnTypeOf(&replication.Column{Name: "c", TypeMod: typmod, Type: &replication.Type{Name: typ, Kind: 'b'}})
	if err != nil {
		t.Fatal(err)
	}
	return ct.conv
}

func TestArrayNestingIsBounded(t *testing.T) {
	six := "{{{{{{1}}}}}}"
	if _, err := parseArray([]byte(six), ',', convInt32); err != nil {
		t.Errorf("six dimensions (PostgreSQL's MAXDIM): %v", err)
	}
	// Each level was a recursive call: megabytes of '{' overflowed the goroutine stack, a
	// fatal error no recover can catch.
	for _, text := range []string{"{" + six + "}", strings.Repeat("{", 1<<20)} {
		if _, err := parseArray([]byte(text), ',', convInt32); err == nil || !strings.Contains(err.Error(), "more than 6 dimensions") {
			t.Errorf("%.20s... (%d bytes): got %v, want an error about dimensions", text, len(text), err)
		}
	}
}

func TestTimetzOffsetFields(t *testing.T) {
	// An offset of four fields indexed past a three-element table: a panic.
	for _, bad := range []string{"10:00:00+01:02:03:04", "10:00:00+16", "10:00:00+01:60", "10:00:00", "10:00:00+", "25:00:00+00"} {
		if v, err := convZonedTime([]byte(bad)); err == nil {
			t.Errorf("timetz %q: got %v, want an error", bad, v)
		}
	}
	if v, err := convZonedTime([]byte("10:15:30.5-02:30:15")); err != nil || v != "12:45:45.5Z" {
		t.Errorf("timetz with seconds in its offset: got %v, %v", v, err)
	}
}

func TestTemporalRefusesWhatPostgresNeverWrites(t *testing.T) {
	for _, bad := range []string{"2023-02-29", "2024-13-01", "2024-04-31", "0000-01-01", "2024-00-10", "4715-01-01 BC", "5874898-01-01", "99999999999999999999-01-01"} {
		if d, err := parseDate([]byte(bad)); err == nil {
			t.Errorf("date %q: got %d days, want an error", bad, d)
		}
	}
	for _, bad := range []string{"10:60:00", "10:00:60", "24:00:01", "24:00:00.5", "99:99:99"} {
		if us, err := parseClock([]byte(bad)); err == nil {
			t.Errorf("time %q: got %d µs, want an error", bad, us)
		}
	}
	for _, bad := range []string{"294277-01-01 00:00:00", "2024-02-30 00:00:00+00", "2024-01-01 00:00:00+16"} {
		if ts, _, err := parseTimestamp([]byte(bad), true); err == nil {
			t.Errorf("timestamp %q: got %+v, want an error", bad, ts)
		}
	}
	for in, want := range map[string]int64{"2024-02-29": 19782, "5874897-12-31": 2145042905, "4714-11-24 BC": -2440588} {
		if got, err := parseDate([]byte(in)); err != nil || got != want {
			t.Errorf("date %q = %d, %v; want %d", in, got, err, want)
		}
	}
}

// The last years of PostgreSQL's timestamp range overflow int64 microseconds since the epoch:
// they used to wrap around into the distant past.
func TestTimestampAtTheEndOfTheRange(t *testing.T) {
	const text = "294276-12-31 23:59:59.999999"
	o := DefaultOptions()
	if v, err := convOf(t, "timestamp", -1, o)([]byte(text)); err != nil || v != nil {
		t.Errorf("MicroTimestamp: got %v, %v; want null (beyond int64)", v, err)
	}
	if v, err := convOf(t, "timestamp", 3, o)([]byte(text)); err != nil || v != int64(9224318015999999) {
		t.Errorf("Timestamp (milliseconds): got %v, %v", v, err)
	}
	if v, err := convOf(t, "timestamptz", -1, o)([]byte(text + "+00")); err != nil || v != "+294276-12-31T23:59:59.999999Z" {
		t.Errorf("ZonedTimestamp: got %v, %v", v, err)
	}
	o.TimePrecisionMode = TimeISOString
	if v, err := convOf(t, "timestamp", -1, o)([]byte(text)); err != nil || v != "+294276-12-31T23:59:59.999999Z" {
		t.Errorf("IsoTimestamp: got %v, %v", v, err)
	}
	o.TimePrecisionMode = TimeAdaptive
	if v, err := convOf(t, "timestamp", -1, o)([]byte("294247-01-10 04:00:54.775807")); err != nil || v != int64(math.MaxInt64) {
		t.Errorf("the last representable microsecond: got %v, %v", v, err)
	}
}

// A Relation message can claim any typmod: a time precision past 6 indexed past a table.
func TestTypmodsPostgresNeverSends(t *testing.T) {
	o := DefaultOptions()
	if v, err := convOf(t, "timestamptz", 74, o)([]byte("2024-01-01 00:00:00+00")); err != nil || v != "2024-01-01T00:00:00.000000Z" {
		t.Errorf("timestamptz(74): got %v, %v", v, err)
	}
	col := &replication.Column{Name: "amount", TypeMod: 32767<<16 | 32767 + 4, Type: &replication.Type{Name: "numeric", Kind: 'b'}}
	if _, err := o.columnTypeOf(col); err == nil || !strings.Contains(err.Error(), "column amount (numeric)") {
		t.Errorf("numeric(32767,32767): got %v, want an error naming the column", err)
	}
	col.TypeMod = (5<<16 | -2&0x7ff) + 4 // numeric(5,-2), PostgreSQL 15
	if _, err := o.columnTypeOf(col); err != nil {
		t.Errorf("numeric(5,-2): %v", err)
	}
}

// PostgreSQL keeps an interval's time as int64 microseconds; its text can have hours past
// int32, which PGInterval (and so Debezium) cannot parse: the stream stopped on such a value.
func TestIntervalWithHugeHours(t *testing.T) {
	const text = "-2562047788:00:54.775808"
	o := DefaultOptions()
	if v, err := convOf(t, "interval", -1, o)([]byte(text)); err != nil || v != int64(math.MinInt64) {
		t.Errorf("MicroDuration: got %v, %v; want %d", v, err, int64(math.MinInt64))
	}
	o.IntervalMode = IntervalString
	if v, err := convOf(t, "interval", -1, o)([]byte(text)); err != nil || v != "P0Y0M0DT-2562047788H0M-54.775808S" {
		t.Errorf("Interval: got %v, %v", v, err)
	}
	for _, bad := range []string{"00:00:1e300", "00:00:NaN", "00:00:Inf", "00:00:60", "1e300 secs"} {
		if v, err := convOf(t, "interval", -1, o)([]byte(bad)); err == nil {
			t.Errorf("interval %q: got %v, want an error", bad, v)
		}
	}
}

// money has no special values; parsing Infinity left a Decimal without a number, which
// crashed the encoder.
func TestMoneyRefusesSpecialValues(t *testing.T) {
	for _, mode := range []DecimalMode{DecimalPrecise, DecimalDouble, DecimalString} {
		o := DefaultOptions()
		o.DecimalMode = mode
		for _, text := range []string{"Infinity", "-Infinity", "NaN", "$"} {
			if v, err := convOf(t, "money", -1, o)([]byte(text)); err == nil {
				t.Errorf("money %q in %s mode: got %#v, want an error", text, mode, v)
			}
		}
	}
}

// Debezium's enum array items are required: Connect refuses a list holding a null and
// Debezium leaves the field null. The list used to reach the encoder, which refused it: the
// stream stopped on a row any writer of the table can insert.
func TestEnumArrayWithNull(t *testing.T) {
	o := DefaultOptions()
	enum := &replication.Type{Name: "mood", Kind: 'e', EnumLabels: []string{"a", "b"}}
	ct, err := o.columnTypeOf(&replication.Column{Name: "c", TypeMod: -1, Type: &replication.Type{Name: "_mood", Kind: 'b', Category: 'A', Elem: enum}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ct.conv([]byte("{a,NULL}")); err != nil || v != nil {
		t.Errorf("{a,NULL}: got %#v, %v; want null", v, err)
	}
	v, err := ct.conv([]byte("{a,b}"))
	var w jsonWriter
	if err != nil || w.value(ct.schema.optional(), v) != nil || string(w.buf) != `["a","b"]` {
		t.Errorf("{a,b}: got %s, %v", w.buf, err)
	}
}

func TestBit1RefusesOtherText(t *testing.T) {
	conv := convOf(t, "bit", 1, DefaultOptions())
	if v, err := conv([]byte("x")); err == nil {
		t.Errorf("bit(1) 'x': got %v, want an error", v)
	}
	if v, err := conv([]byte("0")); err != nil || v != false {
		t.Errorf("bit(1) '0': got %v, %v", v, err)
	}
}

// Errors quote at most a short prefix of the text: strconv and %q quoted all of it, so a
// 100 MB value made a 100 MB error (and log line).
func TestConverterErrorsAreShort(t *testing.T) {
	huge := bytes.Repeat([]byte("x"), 1<<20)
	o := DefaultOptions()
	for _, typ := range []string{"bool", "int2", "int4", "int8", "float4", "float8", "numeric", "money", "hstore", "point", "bit", "varbit", "date", "time", "timestamp", "timestamptz", "timetz", "interval", "bytea"} {
		text := huge
		if typ == "interval" {
			text = append(huge[:len(huge):len(huge)], " years"...)
		}
		if _, err := convOf(t, typ, -1, o)(text); err == nil {
			t.Errorf("%s: no error", typ)
		} else if len(err.Error()) > maxConvErrorLen {
			t.Errorf("%s: an error of %d bytes (%.80s...)", typ, len(err.Error()), err)
		}
	}
}

// A row's conversion error names the column and its type.
func TestRowErrorNamesColumnAndType(t *testing.T) {
	rel := &replication.Relation{Schema: "public", Table: "t", Columns: []replication.Column{
		{Name: "qty", TypeMod: -1, Type: &replication.Type{Name: "int4", Kind: 'b'}},
	}}
	o := DefaultOptions()
	rs, err := newRelSchema(rel, &Config{Topics: map[string]string{rel.QualifiedName(): "p.public.t"}, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rs.row(nil, []replication.Datum{{Kind: replication.DatumText, Data: []byte("many")}}, nil, &o)
	if err == nil || !strings.Contains(err.Error(), `column qty (int4): invalid 32-bit integer "many"`) {
		t.Errorf("got %v", err)
	}
}

// Converting a numeric[] allocated a new VariableScaleDecimal schema per element: hundreds of
// bytes for each two bytes of text.
func TestNumericArrayAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not measured under the race detector")
	}
	o := DefaultOptions()
	ct, err := o.columnTypeOf(&replication.Column{Name: "c", TypeMod: -1, Type: &replication.Type{Name: "_numeric", Kind: 'b', Category: 'A', Elem: &replication.Type{Name: "numeric", Kind: 'b'}}})
	if err != nil {
		t.Fatal(err)
	}
	text := []byte("{" + strings.Repeat("1,", 9999) + "1}")
	before := heapAllocs()
	if _, err := ct.conv(text); err != nil {
		t.Fatal(err)
	}
	if used := heapAllocs() - before; used > uint64(allocsPerTextByte*len(text)) {
		t.Errorf("%d bytes of numeric[] text allocated %d bytes (%d per byte)", len(text), used, used/uint64(len(text)))
	}
}

// big.Int's SetString took a sign after the point: ".-5" was -0.05.
func TestNumericRefusesMisplacedSigns(t *testing.T) {
	for _, bad := range []string{".-5", ".+0", "+5", "1.-5", "-", ".", "1e5", "12345678901234567890.-1"} {
		if d, special, err := parseDecimal([]byte(bad)); err == nil {
			t.Errorf("numeric %q: got %v%s, want an error", bad, d, special)
		}
	}
}
