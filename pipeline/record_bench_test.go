package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
)

// BenchmarkBuildRecord is the pipeline's work per event of drain-small, short of the
// producer: a decoded insert (six columns: bigint, two texts, numeric, timestamptz, jsonb)
// built into its Debezium event and encoded into a record with its headers.
func BenchmarkBuildRecord(b *testing.B) {
	typ := func(name string, cat byte) *replication.Type {
		return &replication.Type{Name: name, Kind: 'b', Category: cat}
	}
	rel := &replication.Relation{
		ID: 1, Schema: "public", Table: "bench", ReplicaIdentity: 'd', Key: []int{0}, Captured: true,
		Columns: []replication.Column{
			{Name: "id", NotNull: true, TypeMod: -1, Type: typ("int8", 'N')},
			{Name: "a", TypeMod: -1, Type: typ("text", 'S')},
			{Name: "b", TypeMod: -1, Type: typ("text", 'S')},
			{Name: "amount", TypeMod: (12<<16 | 2) + 4, Type: typ("numeric", 'N')},
			{Name: "ts", TypeMod: -1, Type: typ("timestamptz", 'D')},
			{Name: "doc", TypeMod: -1, Type: typ("jsonb", 'U')},
		},
	}
	tx := &replication.Tx{XID: 1234, CommitLSN: 0x1000000, CommitTime: time.Unix(1700000000, 123456000)}
	d := func(s string) replication.Datum { return replication.Datum{Kind: 't', Data: []byte(s)} }
	c := &replication.Change{Op: replication.OpInsert, Tx: tx, LSN: 0x0FFFF00, Seq: 1, Rel: rel, New: []replication.Datum{
		d("123456"), d("8f14e45fceea167a5a36dedd4bea25438f14e45fceea167a5a36dedd4bea2543"),
		d("c9f0f895fb98ab9159f51fd0297e236d"), d("1234.56"), d("2026-11-27 03:10:15.123456+00"),
		d(`{"k": 123456, "v": "8f14e45fceea167a5a36dedd4bea2543"}`),
	}}
	bld := envelope.NewBuilder(envelope.Config{Name: "bench", Database: "db", Version: "1",
		Topics: map[string]string{"public.bench": "bench.public.bench"}, Options: envelope.DefaultOptions(), Tombstones: true})
	enc := &envelope.JSONEncoder{}
	source, txHdr := []byte("bench"), []byte("01JDQ3Z5Y2W4X6V8T0R2P4N6M8")
	ctx := context.Background()
	var events []*envelope.Event
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if events, err = bld.Build(c, events[:0]); err != nil {
			b.Fatal(err)
		}
		if _, err := NewRecord(ctx, enc, events[0], source, txHdr, 7); err != nil {
			b.Fatal(err)
		}
	}
}
