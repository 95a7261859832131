package envelope

import (
	"context"
	"testing"
	"time"

	"github.com/procon-cdc/procon/replication"
)

// Each reconnect and each DDL gives a relation a new version (a new *Relation); a table
// dropped and created again gets a new ID under its name. The Builder keeps one version per
// table and hands the schemas of the replaced ones over once, for the encoders to forget: the
// caches stay the same size however many versions the stream goes through.
func TestReplacedVersionsAreRetired(t *testing.T) {
	i4 := &replication.Type{Name: "int4", Schema: "pg_catalog", Kind: 'b', Category: 'N'}
	version := func(id uint32, table string) *replication.Relation {
		return &replication.Relation{ID: id, Schema: "public", Table: table, Key: []int{0},
			Columns: []replication.Column{{Name: "id", Type: i4, TypeOID: 23, TypeMod: -1, NotNull: true}}}
	}
	b := NewBuilder(Config{Name: "srv", Database: "db", Version: "v", Options: DefaultOptions(),
		Topics: map[string]string{"public.a": "srv.public.a", "public.b": "srv.public.b"}})
	enc := &JSONEncoder{Schemas: true}
	tx := &replication.Tx{XID: 1, CommitLSN: 100, CommitTime: time.Unix(1, 0)}
	insert := func(rel *replication.Relation) {
		t.Helper()
		evs, err := b.Build(&replication.Change{Op: replication.OpInsert, Tx: tx, Rel: rel,
			New: []replication.Datum{{Kind: replication.DatumText, Data: []byte("1")}}}, nil)
		if err != nil || len(evs) != 1 {
			t.Fatalf("build: %v, %d events", err, len(evs))
		}
		if _, _, err := enc.Encode(context.Background(), evs[0]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Build(&replication.Change{Op: replication.OpBegin, Tx: tx}, nil); err != nil {
		t.Fatal(err)
	}
	insert(version(1, "a"))
	insert(version(2, "b"))
	var retired []*Schema
	for i := range 50 {
		insert(version(1, "a"))             // a reconnect or a DDL: a new version of a
		insert(version(uint32(100+i), "b")) // b dropped and created again: a new ID
		r := b.Retired()                    // the pipeline takes them once the batch is encoded
		if len(r) != 4 {
			t.Fatalf("after %d new versions: %d schemas retired, want 4 (key and envelope of the two replaced)", i+1, len(r))
		}
		enc.Forget(r)
		retired = append(retired, r...)
		if n := len(b.rels); n != 2 {
			t.Fatalf("after %d new versions the builder caches %d, want 2 (one per table)", i+1, n)
		}
		if n := len(enc.schemas); n != 4 {
			t.Fatalf("after %d new versions the JSON encoder caches %d schemas, want 4 (key and envelope of each table)", i+1, n)
		}
	}
	if len(retired) != 200 {
		t.Fatalf("%d schemas retired, want 200 (key and envelope of 100 replaced versions)", len(retired))
	}
	if len(b.Retired()) != 0 {
		t.Fatal("Retired returns the same schemas twice")
	}
	seen := map[*Schema]bool{}
	for _, s := range retired {
		if seen[s] {
			t.Fatalf("schema %s retired twice", s.Name)
		}
		seen[s] = true
	}
	for _, rs := range b.rels {
		if seen[rs.key] || seen[rs.envelope] {
			t.Fatal("a schema still in use was retired")
		}
	}
}
