package replication

import (
	"reflect"
	"testing"
)

func TestParseRow(t *testing.T) {
	// Update of relation 16384 with a 'K' old tuple (1 column) and a new tuple (3 columns:
	// text "42", null, unchanged TOAST).
	msg := []byte{'U', 0, 0, 0x40, 0,
		'K', 0, 1, 't', 0, 0, 0, 2, '4', '1',
		'N', 0, 3, 't', 0, 0, 0, 2, '4', '2', 'n', 'u'}
	m, err := parseRow(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := rowMessage{relID: 16384, oldKind: 'K',
		old: []Datum{{Kind: 't', Data: []byte("41")}},
		new: []Datum{{Kind: 't', Data: []byte("42")}, {Kind: 'n'}, {Kind: 'u'}}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if _, err := parseRow(msg[:len(msg)-4]); err == nil {
		t.Fatal("a truncated message must be an error")
	}
}

func FuzzParseRow(f *testing.F) {
	f.Add([]byte{'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0, 0, 0, 1, 'x'})
	f.Add([]byte{'D', 0, 0, 0, 1, 'O', 0, 2, 'n', 'u'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		_, _ = parseRow(b) // must not panic
	})
}
