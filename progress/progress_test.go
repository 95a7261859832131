package progress

import (
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	in := &State{Source: "7345/db/slot", Instance: 3, Stream: &Position{CommitLSN: 0x16B3748, Seq: 4},
		Snapshot: &Snapshot{ID: "initial", Kind: "initial", LSN: 0x16B0000,
			Ranges: []Range{{Relation: "public.t", Part: 0, Last: []string{"42", "a"}, Rows: 42}, {Relation: "public.u", Part: 1, Done: true}}}}
	out, err := Decode(Encode(in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
}

func TestCovers(t *testing.T) {
	p := Position{CommitLSN: 100, Seq: 3}
	for _, c := range []struct {
		q    Position
		want bool
	}{
		{Position{99, 9}, true}, {Position{100, 3}, true}, {Position{100, 2}, true},
		{Position{100, 4}, false}, {Position{101, 0}, false},
	} {
		if got := p.Covers(c.q); got != c.want {
			t.Errorf("%v covers %v = %v, want %v", p, c.q, got, c.want)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"version":2,"source":"s"}`, "version 2"},
		{`{"version":1}`, "without a source"},
		{`{"version":1,"source":"s","stream":{"commit_lsn":0,"seq":1}}`, "impossible position"},
		{`{"version":1,"source":"s","stream":{"commit_lsn":5,"seq":-1}}`, "impossible position"},
		{`{"version":1,"source":"s","extra":1}`, "unknown field"},
		{`{"version":1,"source":"s"} {}`, "after the JSON"},
		{`{"version":1,"source":"s","snapshot":{"ranges":[]}}`, "without an id"},
		{`{"version":1,"source":"s","snapshot":{"id":"x","ranges":[{"relation":"","part":0,"rows":0}]}}`, "impossible snapshot range"},
		{`[`, "progress record"},
	} {
		_, err := Decode([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Decode(%s) = %v, want an error with %q", c.in, err, c.want)
		}
	}
}

// FuzzDecode: whatever is in the progress topic, Decode returns a state that encodes and
// decodes to itself, or an error; it never panics.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(&State{Source: "s", Stream: &Position{CommitLSN: 1, Seq: 2}}))
	f.Add(Encode(&State{Source: "s", Snapshot: &Snapshot{ID: "initial", Ranges: []Range{{Relation: "r", Last: []string{"1"}}}}}))
	f.Add([]byte(`{"version":1,"source":"s","stream":{"commit_lsn":18446744073709551615,"seq":9223372036854775807}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(Encode(s))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(s, again) {
			t.Fatalf("not stable: %+v != %+v", s, again)
		}
	})
}
