package sink

import (
	"strings"
	"testing"
)

// Size follows Kafka's record encoding byte for byte: the batch header, and per record its
// length, attributes, deltas, key, value and headers with zig-zag varint lengths.
func TestSize(t *testing.T) {
	cases := []struct {
		name string
		r    Record
		want int
	}{
		// attributes, timestamp delta, offset delta, key length, value length, header count
		// (1 byte each) and the record's length (1 byte) after the 65 of the batch.
		{"empty", Record{}, 65 + 1 + 6},
		{"key and value", Record{Key: []byte("k"), Value: []byte("v")}, 65 + 1 + 8},
		// A length up to 63 is a one-byte zig-zag varint (126), 64 takes two (128): the value's
		// length, and the record's own (6 + 57 = 63 and 6 + 58 = 64).
		{"57-byte value", Record{Value: make([]byte, 57)}, 65 + 1 + 6 + 57},
		{"58-byte value", Record{Value: make([]byte, 58)}, 65 + 2 + 6 + 58},
		{"64-byte value", Record{Value: make([]byte, 64)}, 65 + 2 + 7 + 64},
		{"headers", Record{Headers: []Header{{Key: "procon.seq", Value: []byte("12")}, {Key: "h"}}}, 65 + 1 + 6 + (1 + 10 + 1 + 2) + (1 + 1 + 1)},
		// A 1 MiB value: its length, zig-zagged 2^21, takes 4 bytes of 7 bits, so does the record's.
		{"1 MiB value", Record{Value: make([]byte, 1<<20)}, 65 + 4 + 5 + 4 + 1<<20},
	}
	for _, tc := range cases {
		if got := Size(&tc.r); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	// Null key and value take as many bytes as empty ones (-1 and 0 are both one byte).
	if a, b := Size(&Record{Key: nil}), Size(&Record{Key: []byte{}}); a != b {
		t.Errorf("null key %d, empty key %d", a, b)
	}
	if got := Size(&Record{Key: []byte(strings.Repeat("k", 300))}); got != 65+2+6+1+300 {
		t.Errorf("300-byte key: got %d", got)
	}
}
