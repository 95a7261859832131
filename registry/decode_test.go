package registry

import (
	"strings"
	"testing"
)

// fuzzSchema has every kind of value a Debezium record's Avro schema holds.
const fuzzSchema = `{"type":"record","name":"V","fields":[
 {"name":"s","type":"string"},
 {"name":"b","type":["null","bytes"],"default":null},
 {"name":"a","type":{"type":"array","items":["null","long"]}},
 {"name":"m","type":{"type":"map","values":"double"}},
 {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
 {"name":"r","type":["null",{"type":"record","name":"R","fields":[{"name":"x","type":"int"}]}],"default":null}]}`

// A few bytes from a Kafka topic must not make tail allocate without bound: a body that
// claims a huge array or string is refused.
func TestDecodeJSONBoundsAllocations(t *testing.T) {
	s, err := ParseRaw(fuzzSchema)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"string of 2^62 bytes": {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f},
		"array of 2^40 items":  {0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40},
	} {
		if _, err := DecodeJSON(s, body); err == nil {
			t.Errorf("%s: decoded, want an error", name)
		}
	}
}

// tail shows an Avro double as the JSON serialization writes it: Jackson's "Infinity", not
// Go's "+Inf" (avro.FuzzEncode compares the two).
func TestDecodeJSONNonFiniteDoubles(t *testing.T) {
	s, err := ParseRaw(`{"type":"array","items":"double"}`)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte{0x06,
		0, 0, 0, 0, 0, 0, 0xf0, 0x7f, // +Inf
		0, 0, 0, 0, 0, 0, 0xf0, 0xff, // -Inf
		1, 0, 0, 0, 0, 0, 0xf8, 0x7f, // NaN
		0}
	got, err := DecodeJSON(s, body)
	if want := `["Infinity","-Infinity","NaN"]`; err != nil || string(got) != want {
		t.Errorf("got %s, %v; want %s", got, err, want)
	}
}

// A schema whose record refers to itself is refused: with it, a 1 MB body of nested records
// made the decoder recurse a million deep and overflow the goroutine stack (a fatal error
// of procon-cdc tail).
func TestParseRawRefusesRecursiveSchemas(t *testing.T) {
	for _, text := range []string{
		`{"type":"record","name":"R","fields":[{"name":"r","type":["null","R"]}]}`,
		`{"type":"record","name":"A","fields":[{"name":"b","type":{"type":"record","name":"B","fields":[{"name":"a","type":{"type":"array","items":"A"}}]}}]}`,
	} {
		if _, err := ParseRaw(text); err == nil || !strings.Contains(err.Error(), "refers to itself") {
			t.Errorf("%s: got %v, want an error", text, err)
		}
	}
	// A named type used twice, side by side, is no recursion.
	if _, err := ParseRaw(`{"type":"record","name":"P","fields":[{"name":"a","type":{"type":"record","name":"Q","fields":[]}},{"name":"b","type":"Q"}]}`); err != nil {
		t.Errorf("a type used twice: %v", err)
	}
	if _, err := ParseRaw(fuzzSchema); err != nil {
		t.Error(err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	s, err := ParseRaw(fuzzSchema)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0x02, 'x', 0x00, 0x02, 0x02, 0x04, 0x00, 0x00, 0x04, 0x01, 0x02, 0x00})
	f.Add([]byte{0x00, 0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = DecodeJSON(s, body) // an error or JSON, never a panic or an unbounded allocation
	})
}
