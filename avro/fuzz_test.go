package avro

import (
	"context"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"

	hamba "github.com/hamba/avro/v2"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/replication"
)

// fuzzColumns are columns of every kind of type the converters map, with a key, a fixed and
// a variable scale numeric, arrays (of enums too) and a domain.
func fuzzColumns() []replication.Column {
	base := func(name string) *replication.Type { return &replication.Type{Name: name, Kind: 'b', Category: 'U'} }
	arr := func(elem *replication.Type) *replication.Type {
		return &replication.Type{Name: "_" + elem.Name, Kind: 'b', Category: 'A', Elem: elem}
	}
	enum := &replication.Type{Name: "mood", Kind: 'e', EnumLabels: []string{"ok", "sad"}}
	var cols []replication.Column
	add := func(t *replication.Type, typmod int32) {
		cols = append(cols, replication.Column{Name: "c" + string(rune('a'+len(cols)%26)) + strings.Repeat("x", len(cols)/26), TypeMod: typmod, Type: t})
	}
	add(base("int4"), -1) // the key
	for _, name := range []string{"bool", "int2", "int8", "oid", "float4", "float8", "numeric", "money", "text", "json",
		"uuid", "point", "hstore", "bytea", "varbit", "date", "time", "timestamp", "timestamptz", "timetz", "interval", "box", "xml"} {
		add(base(name), -1)
	}
	add(base("numeric"), 10<<16|2+4)
	add(base("bit"), 1)
	add(base("time"), 3)
	add(base("timestamp"), 3)
	add(enum, -1)
	for _, name := range []string{"int4", "text", "numeric", "float8", "date", "timestamptz", "bool", "bytea", "uuid"} {
		add(arr(base(name)), -1)
	}
	add(arr(enum), -1)
	add(&replication.Type{Name: "positive", Kind: 'd', Base: base("int8")}, -1)
	cols[0].NotNull = true
	return cols
}

// FuzzEncode converts a row whose column col (of fuzzColumns) has the fuzzed text, in the
// handling modes the fuzzed number picks, and encodes its event as Avro and as JSON: whenever
// the builder accepts the row, both encoders must accept its event, and the Avro body read
// back with the registered schema must be the JSON value. (One column at a time: a row of
// fuzzed texts would almost always fail on its first bad column.)
func FuzzEncode(f *testing.F) {
	cols := fuzzColumns()
	samples := []string{"1", "t", "-32768", "9223372036854775807", "4294967295", "1.5", "-Infinity", "-12.345", "-$1,234.56",
		"text\n\"q\"", `{"a": [1, 2]}`, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "(1.5,-2)", `"k"=>"v", "n"=>NULL`, `\x00ff`, "0101",
		"0044-03-15 BC", "24:00:00", "294276-12-31 23:59:59.999999", "2024-03-01 12:00:00.123456+00", "10:15:30.5-02",
		"-2562047788:00:54.775808", "(1,1),(0,0)", "<a/>", "12.34", "1", "13:14:15.123", "2024-03-01 12:00:00.123", "sad",
		"{1,NULL,{2}}", `{"a,b",NULL,""}`, "{1.5,NULL,-0.001}", "{1e308,NaN,-Infinity}", "{2024-02-29,infinity}",
		"{\"2024-03-01 12:00:00+00\"}", "{t,f,NULL}", `{"\\x00ff"}`, "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "{ok,NULL}", "42"}
	if len(samples) != len(cols) {
		f.Fatalf("%d samples for %d columns", len(samples), len(cols))
	}
	for i, text := range samples {
		for _, modes := range []uint16{0, 1 + 3*2 + 3*6*1 + 3*6*4*1, 2 + 3*3 + 3*6*2 + 3*6*4*2*1*2} {
			f.Add(modes, uint8(i), []byte(text))
		}
	}

	type pair struct {
		b      *envelope.Builder
		enc    *Encoder
		reg    *fakeRegistry
		parsed map[int]hamba.Schema // registry.ParseRaw of the registered schemas
		// rel is one relation version for all inputs: a new one per input would make a new
		// schema, a new Avro writer and a registration each time.
		rel *replication.Relation
	}
	byModes := map[uint16]pair{}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, modes uint16, col uint8, text []byte) {
		m := modes % (3 * 6 * 4 * 2 * 2 * 2)
		p, ok := byModes[m]
		if !ok {
			o := envelope.DefaultOptions()
			next := func(n uint16) int { v := m % n; m /= n; return int(v) }
			o.DecimalMode = envelope.DecimalMode(next(3))
			o.TimePrecisionMode = envelope.TimePrecisionMode(next(6))
			o.BinaryMode = envelope.BinaryMode(next(4))
			o.HstoreMode = envelope.HstoreMode(next(2))
			o.IntervalMode = envelope.IntervalMode(next(2))
			o.IncludeUnknown = next(2) == 1
			o.SchemaNameAdjust, o.FieldNameAdjust = envelope.AdjustAvro, envelope.AdjustAvro
			p.reg, p.parsed = newFakeRegistry(), map[int]hamba.Schema{}
			p.enc = NewEncoder(Config{Registry: p.reg})
			p.b = envelope.NewBuilder(envelope.Config{Name: "fz", Database: "db", Version: "3.6.1.Final",
				Topics: map[string]string{"public.t": "fz.public.t"}, Options: o, Tombstones: true,
				Now: func() time.Time { return time.Unix(1700000000, 0) }})
			p.rel = &replication.Relation{ID: 1, Schema: "public", Table: "t", ReplicaIdentity: 'd', Columns: cols, Key: []int{0}, Captured: true}
			byModes[modes%(3*6*4*2*2*2)] = p
		}
		tuple := make([]replication.Datum, len(cols))
		for i := range tuple {
			tuple[i] = replication.Datum{Kind: replication.DatumNull}
		}
		tuple[0] = replication.Datum{Kind: replication.DatumText, Data: []byte("1")}
		tuple[int(col)%len(cols)] = replication.Datum{Kind: replication.DatumText, Data: text}
		tx := &replication.Tx{XID: 1, CommitLSN: 0x10, CommitTime: time.Unix(1700000000, 0)}
		events, err := p.b.Build(&replication.Change{Op: replication.OpInsert, Tx: tx, LSN: 0x8, Rel: p.rel, New: tuple}, nil)
		if err != nil {
			return
		}
		js := &envelope.JSONEncoder{}
		for _, ev := range events {
			ak, av, err := p.enc.Encode(ctx, ev)
			if err != nil {
				t.Fatalf("Avro refuses an event the builder made: %v", err)
			}
			jk, jv, err := js.Encode(ctx, ev)
			if err != nil {
				t.Fatalf("JSON refuses an event the builder made: %v", err)
			}
			for _, c := range []struct{ avro, json []byte }{{ak, jk}, {av, jv}} {
				if c.avro == nil {
					continue
				}
				id := int(binary.BigEndian.Uint32(c.avro[1:5]))
				s, ok := p.parsed[id]
				if !ok {
					if s, err = registry.ParseRaw(p.reg.texts[id]); err != nil {
						t.Fatalf("schema %d: %v", id, err)
					}
					p.parsed[id] = s
				}
				out, err := registry.DecodeJSON(s, c.avro[5:])
				if err != nil {
					t.Fatalf("the Avro body does not decode with its schema: %v", err)
				}
				if got, want := jsonCanon(t, out), jsonCanon(t, c.json); !reflect.DeepEqual(got, want) {
					t.Fatalf("Avro and JSON differ:\navro %v\njson %v", got, want)
				}
			}
		}
	})
}
