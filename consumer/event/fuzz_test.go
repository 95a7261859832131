package event

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/procon-cdc/procon/avro"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// fuzzColumns are the source columns of the fuzz seeds: one of each kind of schema.
func fuzzColumns() []replication.Column {
	enum := &replication.Type{Name: "mood", Kind: 'e', EnumLabels: []string{"sad", "happy"}}
	cols := []replication.Column{{Name: "id", NotNull: true, TypeMod: -1, Type: base("int4")}}
	add := func(name string, typ *replication.Type, typmod int32) {
		cols = append(cols, replication.Column{Name: name, TypeMod: typmod, Type: typ})
	}
	add("i2", base("int2"), -1)
	add("i8", base("int8"), -1)
	add("f4", base("float4"), -1)
	add("f8", base("float8"), -1)
	add("b", base("bool"), -1)
	add("dec", base("numeric"), numericTypmod(10, 2))
	add("num", base("numeric"), -1)
	add("m", base("money"), -1)
	add("t", base("text"), -1)
	add("j", base("jsonb"), -1)
	add("u", base("uuid"), -1)
	add("e", enum, -1)
	add("by", base("bytea"), -1)
	add("bits", base("bit"), 12)
	add("d", base("date"), -1)
	add("tm3", base("time"), 3)
	add("tm", base("time"), -1)
	add("ts3", base("timestamp"), 3)
	add("ts", base("timestamp"), -1)
	add("tz", base("timestamptz"), -1)
	add("ttz", base("timetz"), -1)
	add("iv", base("interval"), -1)
	add("ai", arrayOf(base("int4")), -1)
	add("at", arrayOf(base("text")), -1)
	add("p", base("point"), -1)
	add("h", base("hstore"), -1)
	return cols
}

var fuzzRow = []string{"1", "-2", "3", "1.5", "NaN", "t", "12.30", "-1.000000001", "$1.00", `a"b`, `{"a": {"b": 1}}`,
	"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "happy", `\x00ff`, "101000000001", "0044-03-15 BC", "12:34:56.789",
	"24:00:00", "2020-01-02 03:04:05.678", "infinity", "2020-01-02 03:04:05.123456+00", "12:00:00+02",
	"-1 days -02:00:00", `{1,NULL,3}`, `{"a\"b",NULL}`, "(1.5,2)", `"k"=>"v"`}

// fuzzSeeds encodes the seed row in every form; reg receives the Avro schemas.
func fuzzSeeds(tb testing.TB, reg *memRegistry) [][2][]byte {
	cols := fuzzColumns()
	rel := &replication.Relation{Schema: "public", Table: "t", Columns: cols, Key: []int{0}}
	var seeds [][2][]byte
	for _, opts := range []envelope.Options{envelope.DefaultOptions(), func() envelope.Options {
		o := envelope.DefaultOptions()
		o.TimePrecisionMode, o.DecimalMode, o.BinaryMode, o.IntervalMode = envelope.TimeISOString, envelope.DecimalString, envelope.BinaryHex, envelope.IntervalString
		return o
	}()} {
		b := envelope.NewBuilder(envelope.Config{Name: "srv", Database: "db", Version: "test",
			Topics: map[string]string{"public.t": "srv.public.t"}, Options: opts})
		r, err := b.Reader(rel)
		if err != nil {
			tb.Fatal(err)
		}
		if len(fuzzRow) != len(cols) {
			tb.Fatalf("%d seed values for %d columns", len(fuzzRow), len(cols))
		}
		row := []replication.Datum{}
		for _, text := range fuzzRow {
			row = append(row, replication.Datum{Kind: replication.DatumText, Data: []byte(text)})
		}
		ev, err := r.Read(row, envelope.ReadSource{})
		if err != nil {
			tb.Fatal(err)
		}
		for _, enc := range []envelope.Encoder{&envelope.JSONEncoder{Schemas: true}, &envelope.JSONEncoder{}, avro.NewEncoder(avro.Config{Registry: reg})} {
			k, v, err := enc.Encode(context.Background(), ev)
			if err != nil {
				tb.Fatal(err)
			}
			seeds = append(seeds, [2][]byte{k, v})
		}
	}
	return seeds
}

// fuzzTypes are the target column types every decoded value is read as.
var fuzzTypes = []string{"integer", "bigint", "real", "double precision", "numeric(10,2)", "numeric", "money", "text",
	"boolean", "date", "time(3) without time zone", "time with time zone", "timestamp(3) without time zone",
	"timestamp with time zone", "interval", "bytea", "bit(12)", "bit varying", "jsonb", "hstore", "point",
	"geometry", "integer[]", "text[]", "numeric(6,2)[]", "timestamp without time zone[]"}

// FuzzDecode feeds records to a Decoder whose Avro schemas come from a fixed in-memory
// registry (the seeds' schemas), then reads every field of what it decodes as every column
// type: nothing may panic or run away, whatever the bytes.
func FuzzDecode(f *testing.F) {
	reg := &memRegistry{}
	for _, s := range fuzzSeeds(f, reg) {
		f.Add(s[0], s[1])
	}
	f.Add([]byte(nil), []byte(`{"op":"d","before":{"a":[[1,[2]]],"b":{"scale":3,"value":"AQ=="}}}`))
	f.Add([]byte(`{"schema":{"type":"struct","fields":[{"type":"bytes","name":"io.debezium.data.Bits","parameters":{"length":"2147483646"},"field":"x"}]},"payload":{"x":"AQ=="}}`), []byte(nil))
	// The decoders are shared, as a consumer shares one: their Avro schemas are parsed once.
	var decoders []*Decoder
	for _, opts := range []Options{{}, {TimePrecisionMode: "nanoseconds", DecimalHandlingMode: "string", BinaryHandlingMode: "hex"}} {
		d, err := NewDecoder(opts)
		if err != nil {
			f.Fatal(err)
		}
		d.schemaByID = reg.SchemaByID
		decoders = append(decoders, d)
	}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		for _, d := range decoders {
			ev, err := d.Decode(context.Background(), &sink.ConsumedRecord{Topic: "t", Key: key, Value: value})
			if err != nil {
				continue
			}
			for _, r := range []*Row{ev.Key, ev.Before, ev.After, ev.Source} {
				if r == nil {
					continue
				}
				for _, fl := range r.Fields {
					v := fl.Value
					v.Unchanged()
					v.Path("a", "b")
					if v.Schema != nil {
						_, _ = ColumnType(v.Schema)
					}
					for _, typ := range fuzzTypes {
						_, _, _ = v.Text(typ)
					}
				}
			}
		}
	})
}

// TestWriteFuzzCorpus writes the seeds as files under testdata/fuzz/FuzzDecode when
// PROCON_WRITE_FUZZ_CORPUS is set (after the encodings change).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("PROCON_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set PROCON_WRITE_FUZZ_CORPUS=1 to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t, &memRegistry{}) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", s[0], s[1])
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzSeedsDecode keeps the seeds meaningful: each decodes, so the fuzzer starts from
// records that reach Text.
func TestFuzzSeedsDecode(t *testing.T) {
	reg := &memRegistry{}
	for i, s := range fuzzSeeds(t, reg) {
		d := mustDecoder(t, Options{})
		d.schemaByID = reg.SchemaByID
		ev, err := d.Decode(context.Background(), &sink.ConsumedRecord{Topic: "t", Key: s[0], Value: s[1]})
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if ev.After == nil || len(ev.After.Fields) != len(fuzzRow) {
			t.Fatalf("seed %d: after %+v", i, ev.After)
		}
	}
}
