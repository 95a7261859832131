package eventrouter

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/procon-cdc/procon/envelope"
)

// TestExpand holds the expansion to what Debezium 3.6.1's EventRouter wrote for the same
// payloads (the payload field of its records in the differential test, JsonConverter with
// schemas): field order, duplicate keys, number sizes, nulls, empty arrays, nested and merged
// structs; and to giving up where Debezium keeps the payload as it is, or stops its task.
func TestExpand(t *testing.T) {
	cases := []struct {
		name, text    string
		optionalBytes bool
		want          string // JsonConverter rendering of the expanded payload; "" = not expanded
	}{
		{name: "duplicate keys keep their first place and last value", text: `{"z": 1, "a": 2, "z": 3, "s": "dup keys keep the first place"}`,
			want: `{"schema":{"type":"struct","fields":[{"type":"int32","optional":true,"field":"z"},{"type":"int32","optional":true,"field":"a"},{"type":"string","optional":true,"field":"s"}],"optional":true,"name":"payload"},"payload":{"z":3,"a":2,"s":"dup keys keep the first place"}}`},
		{name: "what follows the first value is ignored", text: `{"t": 1} and more`,
			want: `{"schema":{"type":"struct","fields":[{"type":"int32","optional":true,"field":"t"}],"optional":true,"name":"payload"},"payload":{"t":1}}`},
		{name: "nested, a null left out", text: `{"id": 1, "note": null, "lines": [{"qty": 2, "sku": "a"}, {"qty": 1, "sku": "b"}], "total": 12.5}`,
			want: `{"schema":{"type":"struct","fields":[{"type":"int32","optional":true,"field":"id"},{"type":"array","items":{"type":"struct","fields":[{"type":"int32","optional":true,"field":"qty"},{"type":"string","optional":true,"field":"sku"}],"optional":true,"name":"payload.lines"},"optional":true,"field":"lines"},{"type":"double","optional":true,"field":"total"}],"optional":true,"name":"payload"},"payload":{"id":1,"lines":[{"qty":2,"sku":"a"},{"qty":1,"sku":"b"}],"total":12.5}}`},
		{name: "number sizes", text: `{"id": 2, "big": 9007199254740993, "neg": -0.5, "tags": ["x", "y"], "ratio": 100}`,
			want: `{"schema":{"type":"struct","fields":[{"type":"int32","optional":true,"field":"id"},{"type":"int64","optional":true,"field":"big"},{"type":"double","optional":true,"field":"neg"},{"type":"array","items":{"type":"string","optional":true},"optional":true,"field":"tags"},{"type":"int32","optional":true,"field":"ratio"}],"optional":true,"name":"payload"},"payload":{"id":2,"big":9007199254740993,"neg":-0.5,"tags":["x","y"],"ratio":100}}`},
		{name: "empty arrays left out, nested arrays, merged objects required", text: `{"a": {"b": []}, "m": [null, 4], "n": [[1, 2], [3]], "objs": [{"k": 1}, {"k": 2, "extra": "e"}]}`,
			want: `{"schema":{"type":"struct","fields":[{"type":"struct","fields":[],"optional":true,"name":"payload.a","field":"a"},{"type":"array","items":{"type":"int32","optional":true},"optional":true,"field":"m"},{"type":"array","items":{"type":"array","items":{"type":"int32","optional":true},"optional":true},"optional":true,"field":"n"},{"type":"array","items":{"type":"struct","fields":[{"type":"int32","optional":true,"field":"k"},{"type":"string","optional":true,"field":"extra"}],"optional":false,"name":"payload.objs"},"optional":true,"field":"objs"}],"optional":true,"name":"payload"},"payload":{"a":{},"m":[null,4],"n":[[1,2],[3]],"objs":[{"k":1,"extra":null},{"k":2,"extra":"e"}]}}`},
		{name: "optional_bytes keeps nulls", text: `{"a": null, "b": 1}`, optionalBytes: true,
			want: `{"schema":{"type":"struct","fields":[{"type":"bytes","optional":true,"field":"a"},{"type":"int32","optional":true,"field":"b"}],"optional":true,"name":"payload"},"payload":{"a":null,"b":1}}`},
		{name: "empty object", text: `{}`, want: `{"schema":{"type":"struct","fields":[],"optional":true,"name":"payload"},"payload":{}}`},
		{name: "not JSON", text: `hello, not JSON`},
		{name: "blank", text: `   `},
		{name: "empty", text: ``},
		{name: "leading space", text: ` {"lead": "space"}`},
		{name: "array of mixed kinds", text: `{"mixed": [1, "a"]}`},
		{name: "array of mixed number sizes", text: `{"i": [1, 2147483648]}`},
		{name: "array of nulls", text: `{"n": [null]}`},
		{name: "unparsable", text: `{"a": }`},
		// Where Debezium 3.6.1 stops its task (its schema replaced, its payload not):
		{name: "root array", text: `[1, 2, 3]`},
		{name: "integer beyond 64 bits", text: `{"n": 123456789012345678901234567890}`},
		{name: "merged field of another type", text: `{"o": [{"k": 1}, {"k": "x"}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := &expander{fieldName: func(s string) string { return s }, optionalBytes: c.optionalBytes}
			s, v, err := x.expand("payload", c.text)
			if c.want == "" {
				if !errors.Is(err, errExpand) {
					t.Fatalf("expand(%q) = %v, %v; want errExpand", c.text, s, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("expand(%q): %v", c.text, err)
			}
			got, err := (&envelope.JSONEncoder{Schemas: true}).EncodeValue(s, v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("expand(%q)\n got %s\nwant %s", c.text, got, c.want)
			}
		})
	}
}

// FuzzExpand: whatever an outbox row's payload holds, the expansion gives up or makes a
// schema and a value that the encoders write as valid JSON, and it never panics.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{`{"a": 1}`, `{"a": [{"b": null}, {"b": 2}]}`, `[1]`, `{"n": 1e400}`, `{"x": [[[]]]}`, `{`} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, text string, optionalBytes bool) {
		x := &expander{fieldName: envelope.AvroFieldName, optionalBytes: optionalBytes}
		s, v, err := x.expand("payload", text)
		if err != nil {
			if !errors.Is(err, errExpand) {
				t.Fatalf("expand(%q): an error that is not a give-up: %v", text, err)
			}
			return
		}
		for _, schemas := range []bool{false, true} {
			b, err := (&envelope.JSONEncoder{Schemas: schemas}).EncodeValue(s, v)
			if err != nil {
				t.Fatalf("expand(%q): the expanded value does not encode: %v", text, err)
			}
			if !json.Valid(b) {
				t.Fatalf("expand(%q): invalid JSON %s", text, b)
			}
		}
	})
}
