package snapshot

import (
	"context"
	"fmt"
	"testing"

	"github.com/procon-cdc/procon/replication"
)

// Each reconnect and each DDL makes new relation versions: the Controller keeps the name of
// the latest version of each relation only.
func TestControllerKeepsOneVersionPerRelation(t *testing.T) {
	c := NewController(ControllerConfig{SignalTable: "public.signals"})
	tx := &replication.Tx{XID: 1, CommitLSN: 100}
	for i := range 100 {
		for id := uint32(1); id <= 3; id++ {
			rel := &replication.Relation{ID: id, Schema: "public", Table: fmt.Sprint("t", id)}
			if _, _, err := c.Observe(context.Background(), &replication.Change{Op: replication.OpInsert, Tx: tx, Rel: rel}); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(c.names); n != 3 {
			t.Fatalf("after %d versions of 3 relations the Controller keeps %d names, want 3", i+1, n)
		}
	}
}
