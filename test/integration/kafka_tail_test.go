package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/test/testenv"
	"github.com/procon-cdc/procon/txid"
)

// txnProducer is another writer of a topic, with transactions: each ends with a control
// record (its marker) in every partition it wrote to.
type txnProducer struct {
	t  *testing.T
	cl *kgo.Client
}

func newTxnProducer(t *testing.T, env *testenv.Env) *txnProducer {
	return &txnProducer{t: t, cl: env.Kafka(t,
		kgo.TransactionalID(testenv.Name(t, "txn")),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)}
}

// txn writes one transaction of records (topic, partition, id header each) and commits or
// aborts it.
func (p *txnProducer) txn(commit bool, recs ...*kgo.Record) {
	p.t.Helper()
	ctx := testenv.Context(p.t, 30*time.Second)
	if err := p.cl.BeginTransaction(); err != nil {
		p.t.Fatal(err)
	}
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		p.t.Fatal(err)
	}
	if err := p.cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		p.t.Fatal(err)
	}
}

func idRecord(topic string, partition int32, id string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Value: []byte(id), Headers: []kgo.RecordHeader{{Key: "id", Value: []byte(id)}}}
}

func produceIDs(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(testenv.Context(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestLastHeadersPastTransactionMarkers: the last offsets of a partition written by a
// transactional producer are control records (commit or abort markers), records of aborted
// transactions or of an open one. The tail read must find the last record a consumer of
// committed records sees, and return within its deadline; it used to wait forever for a record
// at the last offset.
func TestLastHeadersPastTransactionMarkers(t *testing.T) {
	env := testenv.Get(t)
	topic := env.Topic(t, 7)
	plain := env.Kafka(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	txn := newTxnProducer(t, env)

	// 0: a committed transaction last: its record, then its commit marker.
	produceIDs(t, plain, idRecord(topic, 0, "p0-plain"))
	txn.txn(true, idRecord(topic, 0, "p0-committed"))
	// 1: an aborted transaction last: three records nobody sees, then the abort marker.
	produceIDs(t, plain, idRecord(topic, 1, "p1-plain"))
	txn.txn(false, idRecord(topic, 1, "p1-aborted"), idRecord(topic, 1, "p1-aborted"), idRecord(topic, 1, "p1-aborted"))
	// 2: committed, then aborted.
	produceIDs(t, plain, idRecord(topic, 2, "p2-plain"))
	txn.txn(true, idRecord(topic, 2, "p2-committed"))
	txn.txn(false, idRecord(topic, 2, "p2-aborted"))
	// 3: nothing but an aborted transaction.
	txn.txn(false, idRecord(topic, 3, "p3-aborted"))
	// 4: empty.
	// 5: more aborted transactions than the first window of offsets read back.
	produceIDs(t, plain, idRecord(topic, 5, "p5-plain"))
	for range 30 {
		txn.txn(false, idRecord(topic, 5, "p5-aborted"))
	}
	// 6: an open transaction last, whose record may still be aborted.
	produceIDs(t, plain, idRecord(topic, 6, "p6-plain"))
	if err := txn.cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceIDs(t, txn.cl, idRecord(topic, 6, "p6-open"))
	t.Cleanup(func() { _ = txn.cl.EndTransaction(context.Background(), kgo.TryAbort) })

	ctx := testenv.Context(t, 2*sink.TailReadTimeout)
	w, err := sink.New(ctx, sink.Config{Brokers: env.Brokers, MaxRecordBytes: 1 << 20, MaxBufferedRecords: 100}, func(string) sink.TopicSpec { return sink.TopicSpec{} })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	start := time.Now()
	tails, err := w.LastHeaders(ctx, topic)
	if err != nil {
		t.Fatalf("LastHeaders after %s: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if took := time.Since(start); took > sink.TailReadTimeout {
		t.Fatalf("LastHeaders took %s, past its deadline %s", took, sink.TailReadTimeout)
	}
	want := map[int32]string{0: "p0-committed", 1: "p1-plain", 2: "p2-committed", 5: "p5-plain", 6: "p6-plain"}
	got := map[int32]string{}
	for part, hs := range tails {
		got[part] = "(no id header)"
		for _, h := range hs {
			if h.Key == "id" {
				got[part] = string(h.Value)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("last visible records by partition: got %v, want %v", got, want)
	}
}

// TestResumePastTransactionMarkers: after another producer's transactions in the engine's
// topics (one topic ends with a commit marker, the other with an aborted batch and its abort
// marker), a restart that replays what Kafka already has starts, resumes and loses nothing;
// where its own record is the last one a consumer sees (the aborted topic), the replay is not
// written twice. It used to wait forever for a record at the last offset.
func TestResumePastTransactionMarkers(t *testing.T) {
	s := newSetup(t, "public.committed: {}\npublic.aborted: {}", "")
	for _, table := range []string{"committed", "aborted"} {
		s.db.Exec(t, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY)`, table))
	}
	// A copy of the slot from before the rows below: restored, it makes the last run replay them.
	r := s.startEngine(t)
	s.waitSlot(t)
	r.stop(t)
	old := s.slot + "_old"
	s.db.Exec(t, `SELECT pg_copy_logical_replication_slot($1, $2)`, s.slot, old)
	t.Cleanup(func() {
		_, _ = s.db.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, old)
	})

	insert := func(from, to int) {
		for _, table := range []string{"committed", "aborted"} {
			s.db.Exec(t, fmt.Sprintf(`INSERT INTO %s SELECT generate_series(%d, %d)`, table, from, to))
		}
	}
	ids := func(topic string) map[int]int {
		recs, _ := s.env.ReadUntil(topic, 5*time.Second, func([]*kgo.Record) bool { return false },
			kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		seen := map[int]int{}
		for _, rec := range recs {
			if _, ok := txid.HeaderValue(rec.Headers, txid.HeaderSource); !ok {
				continue // the other producer's
			}
			id, _ := decode(t, []*kgo.Record{rec})[0].after()["id"].(json.Number).Int64()
			seen[int(id)]++
		}
		return seen
	}
	waitIDs := func(topic string, n int) {
		testenv.WaitFor(t, sink.TailReadTimeout, fmt.Sprintf("ids 1 to %d in %s", n, topic), func() (bool, error) {
			seen := ids(topic)
			for id := 1; id <= n; id++ {
				if seen[id] == 0 {
					return false, nil
				}
			}
			return true, nil
		})
	}

	insert(1, 5)
	r = s.startEngine(t)
	waitIDs(s.topic("committed"), 5)
	waitIDs(s.topic("aborted"), 5)
	r.stop(t)

	txn := newTxnProducer(t, s.env)
	txn.txn(true, idRecord(s.topic("committed"), 0, "foreign"))
	txn.txn(false, idRecord(s.topic("aborted"), 0, "foreign"), idRecord(s.topic("aborted"), 0, "foreign"))

	s.db.Exec(t, `SELECT pg_drop_replication_slot($1)`, s.slot)
	s.db.Exec(t, `SELECT pg_copy_logical_replication_slot($1, $2)`, old, s.slot)
	insert(6, 10)
	r = s.startEngine(t)
	waitIDs(s.topic("committed"), 10)
	waitIDs(s.topic("aborted"), 10)
	r.stop(t)

	// The committed topic's last visible record is the other producer's: nothing to resume
	// from there, so the replay may repeat records; the aborted one's is the engine's own.
	for id, n := range ids(s.topic("aborted")) {
		if n != 1 {
			t.Errorf("id %d written %d times to the topic whose last batch was aborted, want once", id, n)
		}
	}
}

// TestTailPastTransactionMarkers: procon-cdc tail reads on past another producer's
// transaction markers, and shows an aborted transaction's records only with
// --read-uncommitted (it reads as a read_committed consumer by default).
func TestTailPastTransactionMarkers(t *testing.T) {
	env := testenv.Get(t)
	topic := env.Topic(t, 1)
	plain := env.Kafka(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	txn := newTxnProducer(t, env)
	produceIDs(t, plain, idRecord(topic, 0, "first"))
	txn.txn(true, idRecord(topic, 0, "committed"))
	txn.txn(false, idRecord(topic, 0, "aborted"))
	produceIDs(t, plain, idRecord(topic, 0, "last"))

	config := writeConfig(t, fmt.Sprintf("name: tail\npostgres:\n  dsn: postgres://nobody@127.0.0.1:1/none\nkafka:\n  brokers: %s\nrelation_configs:\n  public.accounts: {}\n",
		strings.Join(env.Brokers, ",")))
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{nil, "first committed last"},
		{[]string{"--read-uncommitted"}, "first committed aborted last"},
	} {
		sc, stderr := startTail(t, append([]string{"--config", config, "--topic", topic, "--from-beginning"}, c.flags...)...)
		var seen []string
		for sc.Scan() {
			var line struct{ Headers map[string]string }
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("tail printed %q: %v", sc.Text(), err)
			}
			seen = append(seen, line.Headers["id"])
			if line.Headers["id"] == "last" {
				break
			}
		}
		if got := strings.Join(seen, " "); got != c.want {
			t.Fatalf("tail %v printed %q, want %q; stderr: %s", c.flags, got, c.want, stderr.String())
		}
	}
}
