package replication

import (
	"context"
	"encoding/binary"
	"log/slog"
	"testing"
)

// relationMessage is pgoutput's Relation message for relation id named public.<table>, with
// one int4 column.
func relationMessage(id uint32, table string) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, "public"...)
	b = append(b, 0)
	b = append(b, table...)
	b = append(b, 0, 'd', 0, 1, 1, 'i', 'd', 0, 0, 0, 0, 23, 0xff, 0xff, 0xff, 0xff)
	return b
}

// A table dropped and created again under its name gets a new ID each time: the decoder keeps
// the relation of the latest only. A table renamed away gives its name up.
func TestDecoderForgetsReplacedRelations(t *testing.T) {
	d := newDecoder(map[string]RelationSpec{}, &catalog{}, NewTracker(0), slog.New(slog.DiscardHandler))
	decode := func(msg []byte) {
		t.Helper()
		if err := d.decode(context.Background(), 1, msg, func(*Change) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		decode(relationMessage(uint32(1000+i), "staging")) // created again: a new ID
		decode(relationMessage(7, "kept"))                 // a reconnect: the same ID again
		if len(d.rels) != 2 || len(d.gens) != 2 || len(d.byName) != 2 {
			t.Fatalf("after %d tables named staging: %d relations, %d generations, %d names; want 2 each", i+1, len(d.rels), len(d.gens), len(d.byName))
		}
	}
	decode(relationMessage(7, "renamed")) // kept renamed: its old name is free
	decode(relationMessage(8, "kept"))    // and taken by another table
	if d.rels[7] == nil || d.rels[7].Table != "renamed" || d.rels[8] == nil || len(d.rels) != 3 || len(d.byName) != 3 {
		t.Fatalf("after a rename: relations %v, names %v", d.rels, d.byName)
	}
}
