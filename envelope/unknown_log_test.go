package envelope

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/replication"
)

// A column of a type Debezium cannot map is logged once, not again for each new version of
// its relation (every reconnect and DDL makes one); another column of that type is logged.
func TestUnknownTypeLoggedOnce(t *testing.T) {
	var logs bytes.Buffer
	i4 := &replication.Type{Name: "int4", Schema: "pg_catalog", Kind: 'b', Category: 'N'}
	odd := &replication.Type{Name: "odd", Schema: "public", Kind: 'b', Category: 'U'}
	version := func(cols ...string) *replication.Relation {
		rel := &replication.Relation{ID: 1, Schema: "public", Table: "a", Key: []int{0},
			Columns: []replication.Column{{Name: "id", Type: i4, TypeOID: 23, TypeMod: -1, NotNull: true}}}
		for _, c := range cols {
			rel.Columns = append(rel.Columns, replication.Column{Name: c, Type: odd, TypeOID: 90000, TypeMod: -1})
		}
		return rel
	}
	b := NewBuilder(Config{Name: "srv", Database: "db", Version: "v", Options: DefaultOptions(),
		Topics: map[string]string{"public.a": "srv.public.a"}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	tx := &replication.Tx{XID: 1, CommitLSN: 100, CommitTime: time.Unix(1, 0)}
	if _, err := b.Build(&replication.Change{Op: replication.OpBegin, Tx: tx}, nil); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []*replication.Relation{version("x"), version("x"), version("x", "y"), version("x", "y")} {
		row := make([]replication.Datum, len(rel.Columns))
		for i := range row {
			row[i] = replication.Datum{Kind: replication.DatumText, Data: []byte("1")}
		}
		if _, err := b.Build(&replication.Change{Op: replication.OpInsert, Tx: tx, Rel: rel, New: row}, nil); err != nil {
			t.Fatal(err)
		}
	}
	text := logs.String()
	if n := strings.Count(text, "column=x"); n != 1 {
		t.Errorf("column x logged %d times over four versions of its relation, want once:\n%s", n, text)
	}
	if n := strings.Count(text, "column=y"); n != 1 {
		t.Errorf("column y logged %d times, want once:\n%s", n, text)
	}
}
