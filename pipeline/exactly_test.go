package pipeline

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// txnKafka is fakeKafka with Kafka transactions: records wait in the open transaction, and a
// commit makes them (and the progress record) visible and acknowledges them. The commit
// numbered crashAt fails as a crash would: its transaction is lost (aborted).
type txnKafka struct {
	fakeKafka
	crashAt int

	open      bool
	openedAt  time.Time
	from      int              // produced[from:] are in the open transaction
	committed []*sink.Record   // what a read_committed consumer sees, progress records included
	txns      [][]*sink.Record // the committed transactions' records, without progress records
	commits   int
}

var errCrash = errors.New("crash")

func (k *txnKafka) Produce(ctx context.Context, r *sink.Record) error {
	if !k.open {
		k.open, k.openedAt, k.from = true, time.Now(), len(k.records())
	}
	return k.fakeKafka.Produce(ctx, r)
}

func (k *txnKafka) TxnOpen() (time.Time, int, bool) {
	return k.openedAt, len(k.records()) - k.from, k.open
}

func (k *txnKafka) Commit(_ context.Context, prog *sink.Record) error {
	if !k.open {
		return nil
	}
	k.commits++
	if k.commits == k.crashAt {
		return errCrash
	}
	recs := k.records()[k.from:]
	k.txns = append(k.txns, recs)
	k.committed = append(append(k.committed, recs...), prog)
	k.ackUpTo(len(k.records()))
	k.open = false
	return nil
}

// lastProgress is the stream position of the last committed progress record.
func (k *txnKafka) lastProgress(t *testing.T) *progress.Position {
	for i := len(k.committed) - 1; i >= 0; i-- {
		if r := k.committed[i]; r.Topic == "progress" {
			st, err := progress.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			return st.Stream
		}
	}
	return nil
}

func newExactlyPipeline(t *testing.T, k *txnKafka, tr *replication.Tracker, maxRecords int, resume *progress.Position) *Pipeline {
	p := newTestPipeline(t, &k.fakeKafka, tr)
	p.cfg.Producer = k
	p.eos = newExactly(&ExactlyOnce{
		Transactions: k, ProgressTopic: "progress",
		// Commits by size only, so that the test is the same on every run.
		CommitInterval: time.Hour, CommitRecords: 7, MaxRecords: maxRecords, SplitAge: time.Hour,
		Resume: resume,
	})
	return p
}

// Each Kafka transaction holds whole source transactions (or, past max_records, parts of one),
// ends with a progress record naming its last record's position; a crash at any commit and a
// restart from the last progress record write every record exactly once, in order.
func TestExactlyOnceCrashAtEveryCommit(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))
	changes := func(tr *replication.Tracker) (*stream, []*replication.Change) {
		s := &stream{tracker: tr}
		r := rand.New(rand.NewPCG(seed, 2)) // the same stream each time it is replayed
		for range 60 {
			s.tx(1 + r.IntN(12))
		}
		return s, s.changes
	}
	const maxRecords = 9 // a source transaction of 10 or more rows is split
	full := &txnKafka{}
	full.partitions = 3
	tr := replication.NewTracker(10)
	s, all := changes(tr)
	runAll(t, newExactlyPipeline(t, full, tr, maxRecords, nil), all)
	if len(full.committed)-len(full.txns) != s.nextID {
		t.Fatalf("%d records committed, want %d", len(full.committed)-len(full.txns), s.nextID)
	}
	if got, want := tr.Confirmed(), s.txs[len(s.txs)-1].EndLSN; got != want {
		t.Fatalf("confirmed %s after every commit, want %s", got, want)
	}
	// Transactions end at source transaction boundaries, except splits of large ones.
	rows := map[*replication.Tx]int{}
	for _, txn := range full.txns {
		for _, r := range txn {
			rows[r.Ack.(*replication.Tx)]++
		}
	}
	splits := 0
	for i := 0; i+1 < len(full.txns); i++ {
		last, next := full.txns[i][len(full.txns[i])-1].Ack.(*replication.Tx), full.txns[i+1][0].Ack.(*replication.Tx)
		if last == next {
			if rows[last] <= maxRecords {
				t.Fatalf("Kafka transaction %d ends inside source transaction %d of %d rows", i, last.XID, rows[last])
			}
			splits++
		}
	}
	if splits == 0 {
		t.Fatal("no source transaction was split: the test does not test splits")
	}

	for _, crashAt := range []int{1, 2, 3, 1 + rnd.IntN(full.commits), 1 + rnd.IntN(full.commits), full.commits} {
		k := &txnKafka{crashAt: crashAt}
		k.partitions = 3
		tr := replication.NewTracker(10)
		_, changes1 := changes(tr)
		p := newExactlyPipeline(t, k, tr, maxRecords, nil)
		ch := make(chan []*replication.Change, len(changes1))
		for _, c := range changes1 {
			ch <- []*replication.Change{c}
		}
		close(ch)
		if err := p.Run(context.Background(), ch); !errors.Is(err, errCrash) {
			t.Fatalf("crash at commit %d: Run returned %v", crashAt, err)
		}
		// The restart replays everything (the slot may be far behind) from the last
		// committed position, into the same topic.
		k2 := &txnKafka{}
		k2.partitions = 3
		k2.committed = k.committed
		tr2 := replication.NewTracker(10)
		_, changes2 := changes(tr2)
		runAll(t, newExactlyPipeline(t, k2, tr2, maxRecords, k.lastProgress(t)), changes2)
		var got []string
		for _, r := range k2.committed {
			if r.Topic != "progress" {
				got = append(got, string(r.Key))
			}
		}
		if len(got) != s.nextID {
			t.Fatalf("crash at commit %d: %d records after the restart, want %d", crashAt, len(got), s.nextID)
		}
		for i, key := range got {
			if want := strconv.Itoa(i + 1); key != want {
				t.Fatalf("crash at commit %d: record %d is %s, want %s (each once, in order)", crashAt, i, key, want)
			}
		}
	}
}

// A source transaction split over Kafka transactions, cut by a lost replication connection after
// its first part committed, comes again whole from the server: the part already handed over is
// not written again (a fault test found it written twice).
func TestExactlyOnceReplayAfterSplit(t *testing.T) {
	k := &txnKafka{}
	k.partitions = 3
	tr := replication.NewTracker(10)
	s := &stream{tracker: tr}
	s.tx(3)
	cut := len(s.changes)
	big := s.tx(12)
	const maxRecords = 5
	p := newExactlyPipeline(t, k, tr, maxRecords, nil)
	// The first run of the big transaction stops after 7 of its rows: one split committed 5.
	first := append([]*replication.Change(nil), s.changes[:cut+1+7]...)
	// The server sends it again from its Begin, as a new transaction of the decoder.
	again := *big
	tr.Begin(&again)
	for _, c := range s.changes[cut:] {
		c2 := *c
		c2.Tx = &again
		first = append(first, &c2)
	}
	runAll(t, p, first)
	var got []string
	for _, r := range k.committed {
		if r.Topic != "progress" {
			got = append(got, string(r.Key))
		}
	}
	if len(got) != s.nextID {
		t.Fatalf("%d records committed, want %d (each row once): %v", len(got), s.nextID, got)
	}
	for i, key := range got {
		if want := strconv.Itoa(i + 1); key != want {
			t.Fatalf("record %d is %s, want %s (each once, in order): %v", i, key, want, got)
		}
	}
}
