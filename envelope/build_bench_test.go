package envelope

import (
	"context"
	"testing"
	"time"

	"github.com/procon-cdc/procon/replication"
)

// benchRelation is the benchmark table: bigint id, text, text, numeric(12,2), timestamptz, jsonb.
func benchRelation() *replication.Relation {
	typ := func(name string, cat byte) *replication.Type {
		return &replication.Type{Name: name, Kind: 'b', Category: cat}
	}
	return &replication.Relation{
		ID: 1, Schema: "public", Table: "bench", ReplicaIdentity: 'd', Key: []int{0},
		Columns: []replication.Column{
			{Name: "id", NotNull: true, TypeMod: -1, Type: typ("int8", 'N')},
			{Name: "a", TypeMod: -1, Type: typ("text", 'S')},
			{Name: "b", TypeMod: -1, Type: typ("text", 'S')},
			{Name: "amount", TypeMod: (12<<16 | 2) + 4, Type: typ("numeric", 'N')},
			{Name: "ts", TypeMod: -1, Type: typ("timestamptz", 'D')},
			{Name: "doc", TypeMod: -1, Type: typ("jsonb", 'U')},
		},
	}
}

func benchChange(rel *replication.Relation) *replication.Change {
	tx := &replication.Tx{XID: 1234, CommitLSN: 0x1000000, CommitTime: time.Unix(1700000000, 123456000)}
	d := func(s string) replication.Datum { return replication.Datum{Kind: 't', Data: []byte(s)} }
	return &replication.Change{Op: replication.OpInsert, Tx: tx, LSN: 0x0FFFF00, Seq: 1, Rel: rel, New: []replication.Datum{
		d("123456"), d("8f14e45fceea167a5a36dedd4bea25438f14e45fceea167a5a36dedd4bea2543"),
		d("c9f0f895fb98ab9159f51fd0297e236d"), d("1234.56"), d("2026-11-27 03:10:15.123456+00"),
		d(`{"k": 123456, "v": "8f14e45fceea167a5a36dedd4bea2543"}`),
	}}
}

func BenchmarkBuildEncodeJSON(b *testing.B) {
	rel := benchRelation()
	bld := NewBuilder(Config{Name: "bench", Database: "db", Version: "1", Topics: map[string]string{"public.bench": "bench.public.bench"},
		Options: DefaultOptions(), Tombstones: true})
	enc := &JSONEncoder{}
	c := benchChange(rel)
	ctx := context.Background()
	var events []*Event
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if events, err = bld.Build(c, events[:0]); err != nil {
			b.Fatal(err)
		}
		if _, _, err := enc.Encode(ctx, events[0]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONStr(b *testing.B) {
	s := "8f14e45fceea167a5a36dedd4bea25438f14e45fceea167a5a36dedd4bea2543 some text, with \"quotes\" and ünïcödé"
	var w jsonWriter
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		w.buf = w.buf[:0]
		w.str(s)
	}
}

func BenchmarkEncodeJSON(b *testing.B) {
	rel := benchRelation()
	bld := NewBuilder(Config{Name: "bench", Database: "db", Version: "1", Topics: map[string]string{"public.bench": "bench.public.bench"},
		Options: DefaultOptions(), Tombstones: true})
	events, err := bld.Build(benchChange(rel), nil)
	if err != nil {
		b.Fatal(err)
	}
	enc := &JSONEncoder{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := enc.Encode(ctx, events[0]); err != nil {
			b.Fatal(err)
		}
	}
}
