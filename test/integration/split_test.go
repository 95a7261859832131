package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/test/testenv"
	"github.com/procon-cdc/procon/txid"
)

// TestSplitPipeline splits a running pipeline's two relations over two pipelines as the
// README's "Splitting a database over several pipelines" says: the second pipeline's
// publication is created while the first still runs, the first is stopped, its slot copied for
// the second, and both start, the first on its own relation only and the second writing the
// topic the first wrote. Every change reaches Kafka exactly once, those written while no
// pipeline ran included; a transaction that writes both relations afterwards arrives in both
// pipelines' topics with the same commit LSN and commit time in procon.tx.
func TestSplitPipeline(t *testing.T) {
	a := newSetup(t, "public.sa: {}\npublic.sb: {}", "")
	a.db.Exec(t, `CREATE TABLE sa (id int PRIMARY KEY, note text)`)
	a.db.Exec(t, `CREATE TABLE sb (id int PRIMARY KEY, note text)`)
	both := func(id int) {
		a.db.Exec(t, fmt.Sprintf(`BEGIN; INSERT INTO sa VALUES (%d, 'a'); INSERT INTO sb VALUES (%d, 'b'); COMMIT`, id, id))
	}
	inKafka := func(n int64) {
		t.Helper()
		testenv.WaitFor(t, time.Minute, fmt.Sprintf("%d records in each topic", n), func() (bool, error) {
			return a.countIfExists(t, a.topic("sa")) >= n && a.countIfExists(t, a.topic("sb")) >= n, nil
		})
	}

	old := a.startEngine(t)
	a.waitSlot(t)
	both(1)
	inKafka(1)

	// The new pipeline's publication exists before the position its slot will start from.
	b := &setup{env: a.env, db: a.db, name: a.name + "-b", slot: a.slot + "_b"}
	a.db.Exec(t, `CREATE PUBLICATION `+b.slot+` FOR TABLE public.sb`)
	both(2)
	inKafka(2)
	old.cancel()
	if err := old.wait(t, time.Minute); err != nil {
		t.Fatalf("stopping the pipeline before the split: %v", err)
	}
	a.waitSlotReleased(t)
	both(3) // while no pipeline runs
	a.db.Exec(t, `SELECT pg_copy_logical_replication_slot($1, $2)`, a.slot, b.slot)

	a.config = strings.Replace(a.config, "  public.sb: {}\n", "", 1)
	b.config = b.configFor("public.sb: {topic: "+a.topic("sb")+"}", "instance_num: 2\n")
	a.startEngine(t)
	b.startEngine(t)
	a.waitSlot(t)
	b.waitSlot(t)
	both(4)
	end := a.currentLSN(t)
	testenv.WaitFor(t, time.Minute, "both slots confirmed past the last transaction", func() (bool, error) {
		return a.confirmedLSN(t) >= end && b.confirmedLSN(t) >= end, nil
	})

	for _, table := range []string{"sa", "sb"} {
		topic := a.topic(table)
		if n := a.countIfExists(t, topic); n != 4 {
			t.Errorf("%s holds %d records, want 4 (one per transaction)", topic, n)
		}
		var ids []string
		for _, e := range decode(t, a.env.ReadN(t, topic, 4, time.Minute)) {
			ids = append(ids, fmt.Sprint(e.after()["id"]))
		}
		if !slices.Equal(ids, []string{"1", "2", "3", "4"}) {
			t.Errorf("%s holds ids %v, want [1 2 3 4] in commit order", topic, ids)
		}
	}

	// The last transaction's two parts: each pipeline's own instance_num, the same commit.
	last := func(topic string) txid.Key {
		recs := a.env.ReadN(t, topic, 4, time.Minute)
		k, err := txid.FromRecordHeaders(recs[3].Headers)
		if err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		return k
	}
	ka, kb := last(a.topic("sa")), last(a.topic("sb"))
	if ka.Tx.CommitLSN() != kb.Tx.CommitLSN() || !ka.Tx.Time().Equal(kb.Tx.Time()) {
		t.Errorf("one transaction's parts: procon.tx %s (commit %X, %s) and %s (commit %X, %s), want the same commit LSN and time",
			ka.Tx, ka.Tx.CommitLSN(), ka.Tx.Time(), kb.Tx, kb.Tx.CommitLSN(), kb.Tx.Time())
	}
	if ka.Tx.Instance() != 1234 || kb.Tx.Instance() != 2 {
		t.Errorf("instances %d and %d, want 1234 (the default) and 2", ka.Tx.Instance(), kb.Tx.Instance())
	}
	if ka.Seq != 1 || kb.Seq != 1 {
		t.Errorf("procon.seq %d and %d: each pipeline numbers its own part from 1", ka.Seq, kb.Seq)
	}
}
