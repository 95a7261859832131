package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/avro"
	consumerevent "github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/test/testenv"
)

// eventColumn is a column of the source table and the values (SQL literals) its rows hold.
type eventColumn struct {
	name, decl string
	values     []string
	// compare is the expression, over %s, whose text must match; "%s::text" when empty.
	compare string
}

// consumerEventColumns are the common PostgreSQL types with edge values. Row i holds
// values[i] of each column (NULL past a column's last value).
var consumerEventColumns = []eventColumn{
	{name: "i2", decl: "smallint", values: []string{"-32768", "32767", "0"}},
	{name: "i4", decl: "integer", values: []string{"-2147483648", "42"}},
	{name: "i8", decl: "bigint", values: []string{"9223372036854775807", "-1"}},
	{name: "f4", decl: "real", values: []string{"3.14", "'NaN'", "'-Infinity'", "1e-38", "-0"}},
	{name: "f8", decl: "double precision", values: []string{"'NaN'", "'Infinity'", "1.7976931348623157e308", "5e-324", "0.1"}},
	{name: "n102", decl: "numeric(10,2)", values: []string{"12.30", "-0.05", "99999999.99", "0"}},
	{name: "n3810", decl: "numeric(38,10)", values: []string{"1234567890123456789012345678.0123456789", "-0.0000000001"}},
	{name: "n", decl: "numeric", values: []string{"123456789012345678901234567890.123456789012345678901234567890", "-1e-20", "0", "'NaN'", "'Infinity'", "'-Infinity'"}},
	{name: "nd", decl: "numeric", values: []string{"1.25", "-0.5", "'NaN'", "'-Infinity'", "1e20"}},
	{name: "mo", decl: "money", values: []string{"-1234.56", "0.01"}},
	{name: "b", decl: "boolean", values: []string{"true", "false"}},
	{name: "t", decl: "text", values: []string{`'a"b\c'`, "''", "'NULL'", "'{x,y}'", "E'tab\\there\\nnewline é'"}},
	{name: "vc", decl: "varchar(20)", values: []string{"'héllo'"}},
	{name: "bp", decl: "char(5)", values: []string{"'ab'"}},
	{name: "by", decl: "bytea", values: []string{`'\x00ff7f'`, `'\x'`, `'\x5c22'`}},
	{name: "u", decl: "uuid", values: []string{"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"}},
	{name: "js", decl: "json", values: []string{`'{"a": [1, "x"],  "b":null}'`, "'[]'"}},
	{name: "jb", decl: "jsonb", values: []string{`'{"b": 2, "a": {"c": "d\"e"}}'`, "'\"s\"'"}},
	{name: "x", decl: "xml", values: []string{"'<a>1</a>'"}},
	{name: "d", decl: "date", values: []string{"'2020-02-29'", "'0044-03-15 BC'", "'infinity'", "'-infinity'", "'1969-12-31'", "'10000-01-01'"}},
	{name: "tm", decl: "time", values: []string{"'00:00:00'", "'23:59:59.999999'", "'24:00:00'", "'12:00:00.5'"}},
	{name: "tm3", decl: "time(3)", values: []string{"'12:34:56.789'", "'00:00:00.001'"}},
	{name: "ts", decl: "timestamp", values: []string{"'2020-01-02 03:04:05.123456'", "'infinity'", "'-infinity'", "'1969-12-31 23:59:59.999999'", "'1900-03-01 00:00:00'"}},
	{name: "ts3", decl: "timestamp(3)", values: []string{"'2020-01-02 03:04:05.678'", "'-infinity'"}},
	{name: "tsbc", decl: "timestamp", values: []string{"'0044-03-15 12:00:00 BC'", "'20000-01-01 00:00:00'"}},
	{name: "tz", decl: "timestamptz", values: []string{"'2020-01-02 03:04:05.123456+02'", "'infinity'", "'-infinity'", "'1900-01-01 00:00:00+00'", "'0044-03-15 12:00:00+00 BC'"}},
	// timetz keeps the instant, not the offset: Debezium normalizes it to UTC.
	{name: "ttz", decl: "timetz", values: []string{"'12:00:00+02'", "'23:59:59.5+00'"}, compare: "(%s AT TIME ZONE 'UTC')::text"},
	{name: "iv", decl: "interval", values: []string{"'1 year 2 mons 3 days 04:05:06'", "'-1 days -02:00:00'", "'-3 mons'", "'00:00:00.5'", "'0'"}},
	{name: "ai", decl: "integer[]", values: []string{"'{1,NULL,3}'", "'{}'"}},
	{name: "at", decl: "text[]", values: []string{`'{"a\"b","c,d",NULL,"NULL","","x\\y"}'`}},
	{name: "an", decl: "numeric(6,2)[]", values: []string{"'{1.50,-2.25,NULL}'"}},
	{name: "ad", decl: "date[]", values: []string{"'{2020-01-01,NULL}'"}},
	{name: "atz", decl: "timestamptz[]", values: []string{`'{"2020-01-01 00:00:00+00","2021-06-01 12:30:00.5+02"}'`}},
	{name: "au", decl: "uuid[]", values: []string{"'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}'"}},
	{name: "ajb", decl: "jsonb[]", values: []string{`'{"{\"a\": 1}",NULL}'`}},
	{name: "ab", decl: "boolean[]", values: []string{"'{t,NULL,f}'"}},
	{name: "af", decl: "double precision[]", values: []string{"'{NaN,-Infinity,1.5}'"}},
	{name: "e", decl: "mood", values: []string{"'happy'", "'sad'"}},
	{name: "ae", decl: "mood[]", values: []string{"'{happy,sad}'"}},
	{name: "ip", decl: "inet", values: []string{"'10.0.0.1/8'", "'::1'"}},
	{name: "mac", decl: "macaddr", values: []string{"'08:00:2b:01:02:03'"}},
	{name: "bt", decl: "bit(10)", values: []string{"B'0100000011'"}},
	{name: "vb", decl: "bit varying(16)", values: []string{"B'1011'"}},
	{name: "r", decl: "int4range", values: []string{"'[1,10)'", "'empty'"}},
	{name: "pt", decl: "point", values: []string{"'(1.5,-2)'"}},
}

// consumerEventMode is a producer configuration and the columns it is checked on.
type consumerEventMode struct {
	name    string
	opts    func(*envelope.Options)
	columns []string // nil: all
	// lossy lists the values ("column/row") the mode's encoding loses, as Debezium's does.
	lossy []string
}

var consumerEventModes = []consumerEventMode{
	{name: "defaults"},
	{name: "decimal_string", opts: func(o *envelope.Options) { o.DecimalMode = envelope.DecimalString }, columns: []string{"n102", "n3810", "n", "nd", "mo", "an"}},
	// Doubles hold only some decimals exactly.
	{name: "decimal_double", opts: func(o *envelope.Options) { o.DecimalMode = envelope.DecimalDouble }, columns: []string{"nd"}},
	// Connect's types keep milliseconds.
	{name: "time_connect", opts: func(o *envelope.Options) { o.TimePrecisionMode = envelope.TimeConnect }, columns: []string{"d", "tm3", "ts3"}},
	{name: "time_isostring", opts: func(o *envelope.Options) { o.TimePrecisionMode = envelope.TimeISOString }, columns: []string{"d", "tm", "tm3", "ts", "ts3", "tsbc", "ad"},
		lossy: []string{"tm/2"}}, // IsoTime of 24:00:00 is 00:00:00Z (a java.time.LocalTime)
	{name: "time_micro", opts: func(o *envelope.Options) { o.TimePrecisionMode = envelope.TimeMicroseconds }, columns: []string{"tm", "tm3", "ts", "ts3"}},
	{name: "time_adaptive_micro", opts: func(o *envelope.Options) { o.TimePrecisionMode = envelope.TimeAdaptiveTimeMicroseconds }, columns: []string{"tm", "tm3", "ts", "ts3"}},
	// Nanoseconds since the epoch reach only 1677 to 2262.
	{name: "time_nano", opts: func(o *envelope.Options) { o.TimePrecisionMode = envelope.TimeNanoseconds }, columns: []string{"d", "tm", "tm3", "ts", "ts3"}},
	{name: "binary_base64", opts: func(o *envelope.Options) { o.BinaryMode = envelope.BinaryBase64 }, columns: []string{"by"}},
	{name: "binary_base64url", opts: func(o *envelope.Options) { o.BinaryMode = envelope.BinaryBase64URLSafe }, columns: []string{"by"}},
	{name: "binary_hex", opts: func(o *envelope.Options) { o.BinaryMode = envelope.BinaryHex }, columns: []string{"by"}},
	{name: "interval_string", opts: func(o *envelope.Options) { o.IntervalMode = envelope.IntervalString }, columns: []string{"iv"}},
}

type consumerEventEncoding struct {
	name string
	enc  envelope.Encoder
}

// TestConsumerEventRoundTrip inserts values of every common type into a real table, builds
// each row's Debezium record the way procon-cdc does (the table as the catalog describes it,
// its values as PostgreSQL's text output, through package envelope), encodes it as JSON with
// and without schemas and as Avro through the real schema registry, decodes it with
// consumer/event and checks that PostgreSQL reads Text's output for the column's type back to
// the original value.
func TestConsumerEventRoundTrip(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	ctx := testenv.Context(t, 5*time.Minute)
	prefix := testenv.Name(t, "ce")
	registryClient(t, env, prefix)

	rows := 0
	var decls []string
	for _, c := range consumerEventColumns {
		decls = append(decls, c.name+" "+c.decl)
		rows = max(rows, len(c.values)+1) // and a row of NULLs
	}
	db.Exec(t, "CREATE TYPE mood AS ENUM ('sad', 'happy')")
	db.Exec(t, "CREATE TABLE src (id integer PRIMARY KEY, "+strings.Join(decls, ", ")+")")
	for i := 0; i < rows; i++ {
		names, vals := []string{"id"}, []string{fmt.Sprint(i)}
		for _, c := range consumerEventColumns {
			if i < len(c.values) {
				names, vals = append(names, c.name), append(vals, c.values[i])
			}
		}
		db.Exec(t, fmt.Sprintf("INSERT INTO src (%s) VALUES (%s)", strings.Join(names, ", "), strings.Join(vals, ", ")))
	}

	conn := db.Conn(t)
	// The session settings of procon-cdc's replication connection, which fix the text forms.
	for _, set := range []string{"SET TimeZone = 'UTC'", "SET DateStyle = 'ISO'", "SET IntervalStyle = 'postgres'", "SET bytea_output = 'hex'", "SET lc_monetary = 'C'", "SET extra_float_digits = 1"} {
		if _, err := conn.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	rel, _, err := replication.DescribeTable(ctx, conn, "public.src", replication.RelationSpec{})
	if err != nil {
		t.Fatal(err)
	}
	// Each row's text and each column's format_type.
	texts := make([][]*string, rows)
	for i := range texts {
		texts[i] = make([]*string, len(rel.Columns))
		var cols []string
		for _, c := range rel.Columns {
			cols = append(cols, c.Name+"::text")
		}
		ptrs := make([]any, len(cols))
		for j := range ptrs {
			ptrs[j] = &texts[i][j]
		}
		if err := conn.QueryRow(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM src WHERE id = $1", i).Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
	}
	pgTypes := map[string]string{}
	trows, err := conn.Query(ctx, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'src'::regclass AND attnum > 0")
	if err != nil {
		t.Fatal(err)
	}
	for trows.Next() {
		var n, typ string
		if err := trows.Scan(&n, &typ); err != nil {
			t.Fatal(err)
		}
		pgTypes[n] = typ
	}
	if err := trows.Err(); err != nil {
		t.Fatal(err)
	}

	// Compare in another zone than the UTC the values were read in: a timestamptz read
	// without its zone would then come back shifted.
	if _, err := conn.Exec(ctx, "SET TimeZone = 'Asia/Kolkata'"); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Config{URL: env.RegistryURL})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, mode := range consumerEventModes {
		opts := envelope.DefaultOptions()
		if mode.opts != nil {
			mode.opts(&opts)
		}
		dec, err := consumerevent.NewDecoder(consumerevent.Options{Registry: reg, Placeholder: opts.Placeholder,
			TimePrecisionMode: opts.TimePrecisionMode.String(), DecimalHandlingMode: opts.DecimalMode.String(),
			BinaryHandlingMode: opts.BinaryMode.String()})
		if err != nil {
			t.Fatal(err)
		}
		encodings := []consumerEventEncoding{
			{"json_schemas", &envelope.JSONEncoder{Schemas: true}},
			{"json_schemaless", &envelope.JSONEncoder{}},
			{"avro", avro.NewEncoder(avro.Config{Registry: reg})},
		}
		for _, col := range consumerEventColumns {
			if mode.columns != nil && !contains(mode.columns, col.name) {
				continue
			}
			j := rel.ColumnIndex(col.name)
			// A relation of the key and this column alone, on a topic of its own, so that a
			// value Debezium cannot encode in this mode fails only its own record.
			sub := &replication.Relation{Schema: "public", Table: "src_" + col.name,
				Columns: []replication.Column{rel.Columns[0], rel.Columns[j]}, Key: []int{0}}
			topic := prefix + "." + mode.name + "." + col.name
			b := envelope.NewBuilder(envelope.Config{Name: prefix, Database: db.Name, Version: "test",
				Topics: map[string]string{sub.QualifiedName(): topic}, Options: opts})
			reader, err := b.Reader(sub)
			if err != nil {
				t.Fatalf("%s/%s: %v", mode.name, col.name, err)
			}
			compare := col.compare
			if compare == "" {
				compare = "%s::text"
			}
			for i := 0; i < rows; i++ {
				if contains(mode.lossy, fmt.Sprintf("%s/%d", col.name, i)) {
					continue
				}
				datum := replication.Datum{Kind: replication.DatumNull}
				if s := texts[i][j]; s != nil {
					datum = replication.Datum{Kind: replication.DatumText, Data: []byte(*s)}
				}
				ev, err := reader.Read([]replication.Datum{{Kind: replication.DatumText, Data: []byte(*texts[i][0])}, datum}, envelope.ReadSource{Time: time.Now()})
				if err != nil {
					if strings.Contains(err.Error(), "cannot be represented") {
						continue // numeric NaN/Infinity in decimal.handling.mode=precise: Debezium fails too
					}
					t.Fatalf("%s/%s row %d: forward: %v", mode.name, col.name, i, err)
				}
				var want *string
				if err := conn.QueryRow(ctx, "SELECT "+fmt.Sprintf(compare, "c")+" FROM (SELECT "+col.name+" AS c FROM src WHERE id = $1) s", i).Scan(&want); err != nil {
					t.Fatal(err)
				}
				for _, e := range encodings {
					key, value, err := e.enc.Encode(ctx, ev)
					if err != nil {
						t.Fatalf("%s/%s/%s row %d: encode: %v", mode.name, col.name, e.name, i, err)
					}
					got, err := dec.Decode(ctx, &sink.ConsumedRecord{Topic: topic, Partition: 0, Offset: int64(i), Key: key, Value: value})
					if err != nil {
						t.Fatalf("%s/%s/%s row %d: decode: %v", mode.name, col.name, e.name, i, err)
					}
					v, ok := got.After.Get(col.name)
					if !ok {
						t.Fatalf("%s/%s/%s row %d: no field %s", mode.name, col.name, e.name, i, col.name)
					}
					text, null, err := v.Text(pgTypes[col.name])
					if err != nil {
						t.Errorf("%s/%s/%s row %d: Text(%s): %v", mode.name, col.name, e.name, i, pgTypes[col.name], err)
						continue
					}
					var back *string
					if !null {
						q := "SELECT " + fmt.Sprintf(compare, "($1::text)::"+pgTypes[col.name])
						if err := conn.QueryRow(ctx, q, text).Scan(&back); err != nil {
							t.Errorf("%s/%s/%s row %d: PostgreSQL refuses Text's %q as %s: %v", mode.name, col.name, e.name, i, text, pgTypes[col.name], err)
							continue
						}
					}
					if (back == nil) != (want == nil) || (back != nil && *back != *want) {
						t.Errorf("%s/%s/%s row %d: %s comes back as %s (Text gave %q, null %v)", mode.name, col.name, e.name, i, show(want), show(back), text, null)
					}
					checked++
				}
			}
		}
	}
	t.Logf("%d values checked", checked)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *s)
}
