package event

import (
	"strings"
	"testing"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
)

func numericTypmod(p, s int32) int32 { return p<<16 | s + 4 }

type textCase struct {
	name   string
	col    column
	opts   func(*envelope.Options)
	in     string // PostgreSQL's text output of the source value
	pgType string // the target column's type
	want   string // Text's output
	// only limits the case to some encodings (nil: all).
	only []encoding
}

func textCases() []textCase {
	enum := &replication.Type{Name: "mood", Kind: 'e', EnumLabels: []string{"sad", "happy"}}
	decimalString := func(o *envelope.Options) { o.DecimalMode = envelope.DecimalString }
	decimalDouble := func(o *envelope.Options) { o.DecimalMode = envelope.DecimalDouble }
	timeMode := func(m envelope.TimePrecisionMode) func(*envelope.Options) {
		return func(o *envelope.Options) { o.TimePrecisionMode = m }
	}
	binary := func(m envelope.BinaryMode) func(*envelope.Options) {
		return func(o *envelope.Options) { o.BinaryMode = m }
	}
	intervalString := func(o *envelope.Options) { o.IntervalMode = envelope.IntervalString }
	c := func(typ string, typmod int32) column { return column{typ: base(typ), typmod: typmod} }
	return []textCase{
		{name: "int4", col: c("int4", -1), in: "-42", pgType: "integer", want: "-42"},
		{name: "int2", col: c("int2", -1), in: "32767", pgType: "smallint", want: "32767"},
		{name: "int8", col: c("int8", -1), in: "-9223372036854775808", pgType: "bigint", want: "-9223372036854775808"},
		{name: "bool", col: c("bool", -1), in: "t", pgType: "boolean", want: "true"},
		{name: "bool false", col: c("bool", -1), in: "f", pgType: "boolean", want: "false"},
		{name: "float8", col: c("float8", -1), in: "1.5", pgType: "double precision", want: "1.5"},
		{name: "float8 tiny", col: c("float8", -1), in: "5e-324", pgType: "double precision", want: "5e-324"},
		{name: "float8 NaN", col: c("float8", -1), in: "NaN", pgType: "double precision", want: "NaN"},
		{name: "float8 inf", col: c("float8", -1), in: "Infinity", pgType: "double precision", want: "Infinity"},
		{name: "float8 -inf", col: c("float8", -1), in: "-Infinity", pgType: "double precision", want: "-Infinity"},
		{name: "float4", col: c("float4", -1), in: "3.14", pgType: "real", want: "3.14"},
		{name: "decimal", col: c("numeric", numericTypmod(10, 2)), in: "-12.30", pgType: "numeric(10,2)", want: "-12.30"},
		{name: "decimal small", col: c("numeric", numericTypmod(10, 4)), in: "0.0005", pgType: "numeric(10,4)", want: "0.0005"},
		{name: "decimal into integer", col: c("numeric", numericTypmod(10, 2)), in: "12.00", pgType: "integer", want: "12", only: []encoding{jsonSchemas, avroFramed}},
		{name: "variable scale", col: c("numeric", -1), in: "-123456789012345678901234567890.000000001", pgType: "numeric", want: "-123456789012345678901234567890.000000001"},
		{name: "decimal string mode", col: c("numeric", numericTypmod(10, 2)), opts: decimalString, in: "7.50", pgType: "numeric(10,2)", want: "7.50"},
		{name: "decimal string NaN", col: c("numeric", -1), opts: decimalString, in: "NaN", pgType: "numeric", want: "NaN"},
		{name: "decimal string inf", col: c("numeric", -1), opts: decimalString, in: "Infinity", pgType: "numeric", want: "Infinity"},
		{name: "decimal string -inf", col: c("numeric", -1), opts: decimalString, in: "-Infinity", pgType: "numeric", want: "-Infinity"},
		{name: "decimal double", col: c("numeric", numericTypmod(10, 2)), opts: decimalDouble, in: "1.25", pgType: "numeric(10,2)", want: "1.25"},
		{name: "decimal double NaN", col: c("numeric", -1), opts: decimalDouble, in: "NaN", pgType: "numeric", want: "NaN"},
		{name: "money", col: c("money", -1), in: "-$1,234.56", pgType: "money", want: "-1234.56"},
		{name: "text", col: c("text", -1), in: `a"b\c,{}`, pgType: "text", want: `a"b\c,{}`},
		{name: "varchar", col: c("varchar", 24), in: "héllo", pgType: "character varying(20)", want: "héllo"},
		{name: "json", col: c("json", -1), in: `{"a": [1, "x"]}`, pgType: "json", want: `{"a": [1, "x"]}`},
		{name: "jsonb", col: c("jsonb", -1), in: `{"a": 1}`, pgType: "jsonb", want: `{"a": 1}`},
		{name: "uuid", col: c("uuid", -1), in: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", pgType: "uuid", want: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{name: "xml", col: c("xml", -1), in: "<a>1</a>", pgType: "xml", want: "<a>1</a>"},
		{name: "inet", col: c("inet", -1), in: "10.0.0.1/8", pgType: "inet", want: "10.0.0.1/8"},
		{name: "enum", col: column{typ: enum, typmod: -1}, in: "happy", pgType: "mood", want: "happy"},
		{name: "bytea", col: c("bytea", -1), in: `\x00ff7f`, pgType: "bytea", want: `\x00ff7f`},
		{name: "bytea empty", col: c("bytea", -1), in: `\x`, pgType: "bytea", want: `\x`},
		{name: "bytea base64", col: c("bytea", -1), opts: binary(envelope.BinaryBase64), in: `\x00fffe`, pgType: "bytea", want: `\x00fffe`},
		{name: "bytea base64url", col: c("bytea", -1), opts: binary(envelope.BinaryBase64URLSafe), in: `\x00fffe`, pgType: "bytea", want: `\x00fffe`},
		{name: "bytea hex", col: c("bytea", -1), opts: binary(envelope.BinaryHex), in: `\x00fffe`, pgType: "bytea", want: `\x00fffe`},
		{name: "bit(1)", col: c("bit", 1), in: "1", pgType: "bit(1)", want: "1"},
		{name: "bit(10)", col: c("bit", 10), in: "0100000011", pgType: "bit(10)", want: "0100000011"},
		{name: "varbit", col: c("varbit", 16), in: "1011", pgType: "bit varying(16)", want: "1011"},
		{name: "date", col: c("date", -1), in: "2020-02-29", pgType: "date", want: "2020-02-29"},
		{name: "date BC", col: c("date", -1), in: "0044-03-15 BC", pgType: "date", want: "0044-03-15 BC"},
		{name: "date far", col: c("date", -1), in: "20000-01-01", pgType: "date", want: "20000-01-01"},
		{name: "date infinity", col: c("date", -1), in: "infinity", pgType: "date", want: "infinity"},
		{name: "date -infinity", col: c("date", -1), in: "-infinity", pgType: "date", want: "-infinity"},
		{name: "date connect", col: c("date", -1), opts: timeMode(envelope.TimeConnect), in: "1969-12-31", pgType: "date", want: "1969-12-31"},
		{name: "date isostring", col: c("date", -1), opts: timeMode(envelope.TimeISOString), in: "0044-03-15 BC", pgType: "date", want: "0044-03-15 BC"},
		{name: "date isostring infinity", col: c("date", -1), opts: timeMode(envelope.TimeISOString), in: "infinity", pgType: "date", want: "infinity"},
		{name: "time(3)", col: c("time", 3), in: "12:34:56.789", pgType: "time(3) without time zone", want: "12:34:56.789"},
		{name: "time", col: c("time", -1), in: "12:34:56.123456", pgType: "time without time zone", want: "12:34:56.123456"},
		{name: "time 24:00", col: c("time", -1), in: "24:00:00", pgType: "time without time zone", want: "24:00:00"},
		{name: "time adaptive_time_microseconds", col: c("time", 2), opts: timeMode(envelope.TimeAdaptiveTimeMicroseconds), in: "01:02:03.45", pgType: "time(2) without time zone", want: "01:02:03.45"},
		{name: "time micros", col: c("time", 3), opts: timeMode(envelope.TimeMicroseconds), in: "01:02:03.456", pgType: "time(3) without time zone", want: "01:02:03.456"},
		{name: "time nanos", col: c("time", -1), opts: timeMode(envelope.TimeNanoseconds), in: "23:59:59.999999", pgType: "time without time zone", want: "23:59:59.999999"},
		{name: "time connect", col: c("time", -1), opts: timeMode(envelope.TimeConnect), in: "12:34:56.123456", pgType: "time without time zone", want: "12:34:56.123"},
		{name: "time isostring", col: c("time", -1), opts: timeMode(envelope.TimeISOString), in: "12:34:56.5", pgType: "time without time zone", want: "12:34:56.5"},
		{name: "timestamp(3)", col: c("timestamp", 3), in: "2020-01-02 03:04:05.678", pgType: "timestamp(3) without time zone", want: "2020-01-02 03:04:05.678"},
		{name: "timestamp", col: c("timestamp", -1), in: "1969-12-31 23:59:59.999999", pgType: "timestamp without time zone", want: "1969-12-31 23:59:59.999999"},
		{name: "timestamp BC", col: c("timestamp", -1), in: "0044-03-15 12:00:00 BC", pgType: "timestamp without time zone", want: "0044-03-15 12:00:00 BC"},
		{name: "timestamp infinity", col: c("timestamp", -1), in: "infinity", pgType: "timestamp without time zone", want: "infinity"},
		{name: "timestamp -infinity", col: c("timestamp", 3), in: "-infinity", pgType: "timestamp(3) without time zone", want: "-infinity"},
		{name: "timestamp into timestamptz", col: c("timestamp", -1), in: "2020-01-02 03:04:05", pgType: "timestamp with time zone", want: "2020-01-02 03:04:05+00"},
		{name: "timestamp connect", col: c("timestamp", -1), opts: timeMode(envelope.TimeConnect), in: "2020-01-02 03:04:05.678901", pgType: "timestamp without time zone", want: "2020-01-02 03:04:05.678"},
		{name: "timestamp micros", col: c("timestamp", 2), opts: timeMode(envelope.TimeMicroseconds), in: "2020-01-02 03:04:05.67", pgType: "timestamp(2) without time zone", want: "2020-01-02 03:04:05.67"},
		{name: "timestamp nanos", col: c("timestamp", -1), opts: timeMode(envelope.TimeNanoseconds), in: "2200-01-02 03:04:05.000001", pgType: "timestamp without time zone", want: "2200-01-02 03:04:05.000001"},
		{name: "timestamp nanos infinity", col: c("timestamp", -1), opts: timeMode(envelope.TimeNanoseconds), in: "infinity", pgType: "timestamp without time zone", want: "infinity"},
		{name: "timestamp isostring", col: c("timestamp", -1), opts: timeMode(envelope.TimeISOString), in: "2020-01-02 03:04:05.5", pgType: "timestamp without time zone", want: "2020-01-02 03:04:05.5"},
		{name: "timestamp isostring infinity", col: c("timestamp", -1), opts: timeMode(envelope.TimeISOString), in: "-infinity", pgType: "timestamp without time zone", want: "-infinity"},
		{name: "timestamptz", col: c("timestamptz", -1), in: "2020-01-02 03:04:05.123456+00", pgType: "timestamp with time zone", want: "2020-01-02 03:04:05.123456+00"},
		{name: "timestamptz(0)", col: c("timestamptz", 0), in: "2020-01-02 03:04:05+00", pgType: "timestamp(0) with time zone", want: "2020-01-02 03:04:05+00"},
		{name: "timestamptz BC", col: c("timestamptz", -1), in: "0044-03-15 12:00:00+00 BC", pgType: "timestamp with time zone", want: "0044-03-15 12:00:00+00 BC"},
		{name: "timestamptz far", col: c("timestamptz", -1), in: "12000-03-15 12:00:00+00", pgType: "timestamp with time zone", want: "12000-03-15 12:00:00+00"},
		{name: "timestamptz infinity", col: c("timestamptz", -1), in: "infinity", pgType: "timestamp with time zone", want: "infinity"},
		{name: "timetz", col: c("timetz", -1), in: "12:00:00.25+02", pgType: "time with time zone", want: "10:00:00.25+00"},
		{name: "interval", col: c("interval", -1), in: "1 year 2 mons 3 days 04:05:06", pgType: "interval", want: "14 mons 3 days 04:05:06"},
		{name: "interval negative", col: c("interval", -1), in: "-1 days -02:00:00.5", pgType: "interval", want: "-1 days -02:00:00.5"},
		{name: "interval zero", col: c("interval", -1), in: "00:00:00", pgType: "interval", want: "00:00:00"},
		{name: "interval string", col: c("interval", -1), opts: intervalString, in: "1 year 2 mons 3 days 04:05:06.78", pgType: "interval", want: "P1Y2M3DT4H5M6.78S"},
		{name: "int4[]", col: column{typ: arrayOf(base("int4")), typmod: -1}, in: "{1,NULL,-3}", pgType: "integer[]", want: `{"1",NULL,"-3"}`},
		{name: "text[]", col: column{typ: arrayOf(base("text")), typmod: -1}, in: `{"a\"b","c,d",NULL,"NULL","x\\y",""}`, pgType: "text[]", want: `{"a\"b","c,d",NULL,"NULL","x\\y",""}`},
		{name: "numeric(6,2)[]", col: column{typ: arrayOf(base("numeric")), typmod: numericTypmod(6, 2)}, in: "{1.50,-2.25}", pgType: "numeric(6,2)[]", want: `{"1.50","-2.25"}`},
		{name: "date[]", col: column{typ: arrayOf(base("date")), typmod: -1}, in: "{2020-01-01,infinity}", pgType: "date[]", want: `{"2020-01-01","infinity"}`},
		{name: "bytea[]", col: column{typ: arrayOf(base("bytea")), typmod: -1}, in: `{"\\x01",NULL}`, pgType: "bytea[]", want: `{"\\x01",NULL}`},
		{name: "timestamptz[]", col: column{typ: arrayOf(base("timestamptz")), typmod: -1}, in: `{"2020-01-01 00:00:00+00"}`, pgType: "timestamp with time zone[]", want: `{"2020-01-01 00:00:00+00"}`},
		{name: "uuid[]", col: column{typ: arrayOf(base("uuid")), typmod: -1}, in: `{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}`, pgType: "uuid[]", want: `{"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}`},
		{name: "float8[]", col: column{typ: arrayOf(base("float8")), typmod: -1}, in: `{NaN,-Infinity,1.5}`, pgType: "double precision[]", want: `{"NaN","-Infinity","1.5"}`},
		{name: "empty array", col: column{typ: arrayOf(base("int4")), typmod: -1}, in: `{}`, pgType: "integer[]", want: `{}`},
		{name: "point", col: c("point", -1), in: "(1.5,-2)", pgType: "point", want: "(1.5,-2)"},
		{name: "hstore map", col: c("hstore", -1), opts: func(o *envelope.Options) { o.HstoreMode = envelope.HstoreMap }, in: `"a"=>"1", "b\"c"=>NULL`, pgType: "hstore", want: `"a"=>"1", "b\"c"=>NULL`},
		{name: "hstore", col: c("hstore", -1), in: `"a"=>"1", "b\"c"=>NULL`, pgType: "hstore", want: `"a"=>"1", "b\"c"=>NULL`},
	}
}

// TestTextRoundTrip encodes values with procon-cdc's own envelope package, in each record
// form, and checks that Text gives PostgreSQL text input for the original value.
func TestTextRoundTrip(t *testing.T) {
	for _, tc := range textCases() {
		for _, enc := range encodings {
			if tc.only != nil && !strings.Contains(" "+joinEnc(tc.only)+" ", " "+string(enc)+" ") {
				continue
			}
			t.Run(tc.name+"/"+string(enc), func(t *testing.T) {
				opts := envelope.DefaultOptions()
				if tc.opts != nil {
					tc.opts(&opts)
				}
				ev := roundTrip(t, opts, tc.col, replication.Datum{Kind: replication.DatumText, Data: []byte(tc.in)}, enc)
				v, ok := ev.After.Get("v")
				if !ok {
					t.Fatal("no field v in after")
				}
				got, null, err := v.Text(tc.pgType)
				if err != nil {
					t.Fatalf("Text(%q): %v", tc.pgType, err)
				}
				if null || got != tc.want {
					t.Errorf("Text(%q) = %q (null %v), want %q", tc.pgType, got, null, tc.want)
				}
				if v.Unchanged() {
					t.Errorf("a real value reads as the unchanged-TOAST placeholder")
				}
			})
		}
	}
}

func joinEnc(es []encoding) string {
	var s []string
	for _, e := range es {
		s = append(s, string(e))
	}
	return strings.Join(s, " ")
}

func TestTextNull(t *testing.T) {
	for _, enc := range encodings {
		ev := roundTrip(t, envelope.DefaultOptions(), column{typ: base("int4"), typmod: -1}, replication.Datum{Kind: replication.DatumNull}, enc)
		v, _ := ev.After.Get("v")
		got, null, err := v.Text("integer")
		if err != nil || !null || got != "" {
			t.Errorf("%s: NULL reads as %q, null %v, err %v", enc, got, null, err)
		}
	}
}

// TestGeometryText checks io.debezium.data.geometry.Geometry: its WKB as hex EWKB, the SRID
// put into it when set, which PostGIS reads.
func TestGeometryText(t *testing.T) {
	s := &envelope.Schema{Type: envelope.Struct, Name: nameGeometry, Fields: []envelope.Field{
		{Name: "wkb", Schema: &envelope.Schema{Type: envelope.Bytes}},
		{Name: "srid", Schema: &envelope.Schema{Type: envelope.Int32, Optional: true}}}}
	// POINT(1 2), little-endian.
	wkb := []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40}
	v := envelope.NewValue(s)
	v.Fields[0] = wkb
	got, _, err := Value{Schema: s, Raw: v}.Text("geometry")
	if want := "0101000000000000000000f03f0000000000000040"; err != nil || got != want {
		t.Errorf("without SRID: %q, %v; want %q", got, err, want)
	}
	v.Fields[1] = int32(4326)
	got, _, err = Value{Schema: s, Raw: v}.Text("geometry")
	if want := "0101000020e6100000000000000000f03f0000000000000040"; err != nil || got != want {
		t.Errorf("with SRID 4326: %q, %v; want %q", got, err, want)
	}
}
