package event

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

func decodeValue(t *testing.T, d *Decoder, key, value string, headers ...sink.Header) (*Event, error) {
	t.Helper()
	var k, v []byte
	if key != "" {
		k = []byte(key)
	}
	if value != "" {
		v = []byte(value)
	}
	return d.Decode(context.Background(), &sink.ConsumedRecord{Topic: "srv.public.t", Partition: 3, Offset: 42, Key: k, Value: v, Headers: headers})
}

func mustDecoder(t *testing.T, o Options) *Decoder {
	t.Helper()
	d, err := NewDecoder(o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDecodeSchemaless(t *testing.T) {
	d := mustDecoder(t, Options{})
	ev, err := decodeValue(t, d, `{"id":1}`,
		`{"before":null,"after":{"zeta":1,"alpha":{"plan":"pro"},"n":null},"source":{"db":"db","table":"t"},"op":"c","ts_ms":1}`)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Op != Create || ev.Before != nil || ev.Tombstone || ev.HasTx {
		t.Fatalf("event = %+v", ev)
	}
	var names []string
	for _, f := range ev.After.Fields {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "zeta,alpha,n" {
		t.Errorf("after fields in order %v, want the document's order zeta,alpha,n", names)
	}
	if id, _ := ev.Key.Get("id"); id.Raw != json.Number("1") {
		t.Errorf("key id = %#v", id.Raw)
	}
	plan, ok := ev.After.Path("alpha", "plan")
	if text, _, _ := plan.Text("text"); !ok || text != "pro" {
		t.Errorf("after.alpha.plan = %q, %v", text, ok)
	}
	if tbl, _ := ev.Source.Get("table"); tbl.Raw != "t" {
		t.Errorf("source.table = %#v", tbl.Raw)
	}
}

func TestDecodeTombstoneAndHeaders(t *testing.T) {
	d := mustDecoder(t, Options{})
	ev, err := decodeValue(t, d, `{"id":1}`, "")
	if err != nil || !ev.Tombstone || ev.Key == nil {
		t.Fatalf("empty value: %+v, %v; want a tombstone with its key", ev, err)
	}
	ev, err = decodeValue(t, d, `{"schema":{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false},"payload":{"id":1}}`, `{"schema":null,"payload":null}`)
	if err != nil || !ev.Tombstone {
		t.Fatalf("null payload: %+v, %v; want a tombstone", ev, err)
	}
	tx := txid.New(mustTime(t), 3, 99)
	hs := txid.AppendHeaders([]sink.Header(nil), []byte("pipe"), tx.AppendText(nil), 7)
	ev, err = decodeValue(t, d, "", `{"op":"t","source":{}}`, hs...)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.HasTx || ev.Tx.Tx != tx || ev.Tx.Seq != 7 || ev.SourceHeader != "pipe" || ev.Op != Truncate {
		t.Errorf("headers read as %+v", ev)
	}
	_, err = decodeValue(t, d, "", `{"op":"t"}`, sink.Header{Key: txid.HeaderTx, Value: []byte("nonsense")}, sink.Header{Key: txid.HeaderSeq, Value: []byte("1")})
	if err == nil || !strings.Contains(err.Error(), "srv.public.t/3@42") {
		t.Errorf("malformed procon.tx: err = %v, want an error naming the record", err)
	}
	_, err = decodeValue(t, d, "", `{"op":"t"}`, sink.Header{Key: txid.HeaderSeq, Value: []byte("1")})
	if err == nil {
		t.Errorf("procon.seq without procon.tx: no error")
	}
}

func TestDecodeMalformed(t *testing.T) {
	d := mustDecoder(t, Options{})
	schemaInt := `{"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":false}`
	cases := []struct{ name, key, value, want string }{
		{"not an object", "", `[1,2]`, "neither a JSON object"},
		{"garbage", "", "\x07abc", "first byte 0x07"},
		{"invalid JSON", "", `{"op":"c",`, "invalid JSON"},
		{"no op", "", `{"after":{"a":1}}`, `no "op"`},
		{"unknown op", "", `{"op":"x","after":{}}`, `unknown op "x"`},
		{"op not a string", "", `{"op":1}`, `"op" is not a string`},
		{"after not an object", "", `{"op":"c","after":[1]}`, `"after" is not an object`},
		{"create without after", "", `{"op":"c","after":null}`, "without an after image"},
		{"delete without before", "", `{"op":"d"}`, "without a before image"},
		{"duplicate field", "", `{"op":"c","op":"d","after":{}}`, "appears twice"},
		{"trailing data", "", `{"op":"t"} {}`, "data after"},
		{"payload mismatch", "", `{"schema":` + schemaInt + `,"payload":{"id":"x"}}`, "does not match its schema"},
		{"required null", "", `{"schema":` + schemaInt + `,"payload":{"id":null}}`, "null for a required int32"},
		{"int out of range", "", `{"schema":{"type":"int8","optional":false},"payload":300}`, "not a int8"},
		{"unknown schema type", "", `{"schema":{"type":"decimal"},"payload":1}`, `unknown type "decimal"`},
		{"value not a struct", "", `{"schema":{"type":"string","optional":false},"payload":"x"}`, "not a struct"},
		{"key not an object", `"k"`, `{"op":"t"}`, "key: neither a JSON object"},
		{"avro without registry", "", "\x00\x00\x00\x00\x01\x02", "no schema registry"},
		{"short framing", "", "\x00\x01", "shorter than its 5-byte header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeValue(t, d, tc.key, tc.value)
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "srv.public.t/3@42") {
				t.Errorf("error %q, want it to contain %q and name the record", err, tc.want)
			}
		})
	}
}

func TestDecodeAvroUnknownSchemaID(t *testing.T) {
	d := mustDecoder(t, Options{})
	reg := &memRegistry{}
	d.schemaByID = reg.SchemaByID
	_, err := decodeValue(t, d, "", "\x00\x00\x00\x00\x09\x02")
	if err == nil || !strings.Contains(err.Error(), "schema id 9") {
		t.Errorf("unknown schema id: err = %v", err)
	}
}

// TestDecodeEvent checks the envelope of each record form: op, key, before, after and
// source, as procon-cdc writes them.
func TestDecodeEvent(t *testing.T) {
	for _, enc := range encodings {
		ev := roundTrip(t, envelope.DefaultOptions(), column{typ: base("text"), typmod: -1}, replication.Datum{Kind: replication.DatumText, Data: []byte("hello")}, enc)
		if ev.Op != Read || ev.Before != nil || ev.After == nil || ev.Source == nil || ev.Key == nil {
			t.Fatalf("%s: event %+v", enc, ev)
		}
		id, _ := ev.Key.Get("id")
		if text, _, err := id.Text("integer"); err != nil || text != "1" {
			t.Errorf("%s: key id = %q, %v", enc, text, err)
		}
		if db, _ := ev.Source.Get("db"); db.Raw != "db" {
			t.Errorf("%s: source.db = %#v", enc, db.Raw)
		}
		if len(ev.After.Fields) != 2 || ev.After.Fields[0].Name != "id" || ev.After.Fields[1].Name != "v" {
			t.Errorf("%s: after fields %+v", enc, ev.After.Fields)
		}
		if enc != jsonSchemaless && ev.After.Fields[1].Value.Schema == nil {
			t.Errorf("%s: no schema for a field", enc)
		}
	}
}

func TestNewDecoderOptions(t *testing.T) {
	if _, err := NewDecoder(Options{TimePrecisionMode: "seconds"}); err == nil || !strings.Contains(err.Error(), "TimePrecisionMode") {
		t.Errorf("bad TimePrecisionMode: err = %v", err)
	}
	if _, err := NewDecoder(Options{Placeholder: "hex:zz"}); err == nil {
		t.Errorf("bad hex placeholder: no error")
	}
}

// TestDecodeConcurrent shares one Decoder, and its cache of Avro schemas, between goroutines
// (run with -race).
func TestDecodeConcurrent(t *testing.T) {
	reg := &memRegistry{}
	seeds := fuzzSeeds(t, reg)
	d := mustDecoder(t, Options{})
	d.schemaByID = reg.SchemaByID
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 20; i++ {
				s := seeds[(g+i)%len(seeds)]
				ev, err := d.Decode(context.Background(), &sink.ConsumedRecord{Topic: "t", Key: s[0], Value: s[1]})
				if err == nil && ev.After == nil {
					err = fmt.Errorf("no after image")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestDecodeAvroLengthClaims checks that a body claiming a string longer than itself is
// refused before it is allocated, whatever the claim below the record size limit.
func TestDecodeAvroLengthClaims(t *testing.T) {
	reg := &memRegistry{}
	id, _ := reg.Register(context.Background(), "s", `{"type":"record","name":"r","fields":[{"name":"s","type":"string"}]}`)
	d := mustDecoder(t, Options{})
	d.schemaByID = reg.SchemaByID
	// Zigzag varint of 50 MiB.
	n := uint64(50<<20) << 1
	body := []byte{0, 0, 0, 0, byte(id)}
	for n >= 0x80 {
		body = append(body, byte(n)|0x80)
		n >>= 7
	}
	body = append(body, byte(n))
	_, err := decodeValue(t, d, "", string(body))
	if err == nil || !strings.Contains(err.Error(), "MaxByteSliceSize") {
		t.Errorf("err = %v, want the claimed length refused (MaxByteSliceSize)", err)
	}
}
