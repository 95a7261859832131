package replication

import (
	"context"
	"log/slog"
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

// FuzzDecode feeds arbitrary pgoutput messages to the decoder: whatever the bytes, it returns
// changes or an error, never panics. (No relation is captured, so no catalog is needed.)
func FuzzDecode(f *testing.F) {
	for _, seed := range [][]byte{
		{'B', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 9},                                 // Begin
		{'C', 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3},                  // Commit
		{'M', 0, 0, 0, 0, 0, 0, 0, 0, 1, 'p', 0, 0, 0, 0, 2, 'h', 'i'},                                    // Message
		{'R', 0, 0, 0, 1, 'p', 0, 't', 0, 'd', 0, 1, 1, 'i', 'd', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff}, // Relation
		{'T', 0, 0, 0, 1, 0, 0, 0, 0, 1},                                                                  // Truncate
		{'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0, 0, 0, 1, 'x'},
		{'Y', 0, 0, 0, 1, 'p', 0, 't', 0},
		{'B', 0, 0, 0, 0, 0, 0, 0, 1}, // truncated
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newDecoder(map[string]RelationSpec{}, &catalog{}, NewTracker(0), slog.New(slog.DiscardHandler))
		for range 2 { // a second pass sees the relations and transaction the first one left
			_ = d.decode(context.Background(), 1, b, func(*Change) error { return nil })
		}
	})
}
