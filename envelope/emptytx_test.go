package envelope

import (
	"testing"
	"time"

	"github.com/procon-cdc/procon/replication"
)

// A transaction made only of operations Debezium's publication leaves out (skipped.operations
// set) never reaches Debezium's connector from PostgreSQL 15, which skips empty transactions;
// before 15 it arrives as Begin and Commit, and Debezium's transaction events and lsn_commit
// count it (the differential test on 13 pins this against Debezium itself).
func TestEmptyTransactionsOfDebeziumsPublication(t *testing.T) {
	i4 := &replication.Type{Name: "int4", Schema: "pg_catalog", Kind: 'b', Category: 'N'}
	rel := &replication.Relation{ID: 1, Schema: "public", Table: "a", Key: []int{0},
		Columns: []replication.Column{{Name: "id", Type: i4, TypeOID: 23, TypeMod: -1, NotNull: true}}}
	for _, tc := range []struct {
		name      string
		empty     bool
		wantTx    []string // transaction events of the update-only transaction
		wantMoved bool     // whether lsn_commit moved to its end
	}{
		{"PostgreSQL 15 and newer", false, nil, false},
		{"before 15", true, []string{"BEGIN", "END"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder(Config{Name: "srv", Database: "db", Version: "v", Options: DefaultOptions(),
				Topics: map[string]string{"public.a": "srv.public.a"}, TxMetadata: true,
				Publish: map[string]bool{"c": true, "d": true, "t": true}, EmptyTransactions: tc.empty})
			tx := &replication.Tx{XID: 7, CommitLSN: 100, EndLSN: 120, CommitTime: time.Unix(1, 0)}
			var evs []*Event
			for _, c := range []*replication.Change{
				{Op: replication.OpBegin, Tx: tx},
				{Op: replication.OpUpdate, Tx: tx, Rel: rel, New: []replication.Datum{{Kind: replication.DatumText, Data: []byte("1")}}},
				{Op: replication.OpCommit, Tx: tx},
			} {
				var err error
				if evs, err = b.Build(c, evs); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, ev := range evs {
				if ev.Value == nil || len(ev.Value.Fields) == 0 {
					t.Fatalf("an event without a value: %+v", ev)
				}
				status, ok := ev.Value.Fields[0].(string)
				if !ok {
					t.Fatalf("an event other than a transaction event: %+v", ev)
				}
				got = append(got, status)
			}
			if len(got) != len(tc.wantTx) || (len(got) > 0 && (got[0] != tc.wantTx[0] || got[1] != tc.wantTx[1])) {
				t.Fatalf("transaction events %v, want %v", got, tc.wantTx)
			}
			if moved := b.LastCommit() == 120; moved != tc.wantMoved {
				t.Fatalf("lsn_commit %d, moved to the transaction's end: %v, want %v", b.LastCommit(), moved, tc.wantMoved)
			}
		})
	}
}
