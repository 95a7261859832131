package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// The fakes below stand in for PostgreSQL and Kafka; the tracker is the real one, so the tests
// check the acknowledgement rule itself, not a model of it.

// rowBuilder makes one event per inserted row, key {id} and value {lsn}, and one per logical
// message, key {prefix}, on topic "t".
type rowBuilder struct {
	schema *envelope.Schema
}

func (b *rowBuilder) Build(c *replication.Change, out []*envelope.Event) ([]*envelope.Event, error) {
	switch c.Op {
	case replication.OpMessage:
		return append(out, &envelope.Event{Topic: "t", KeySchema: b.schema, Key: &envelope.Value{Fields: []any{c.Prefix}},
			ValueSchema: b.schema, Value: &envelope.Value{Fields: []any{string(c.Content)}}}), nil
	case replication.OpInsert:
	default:
		return out, nil
	}
	id, _ := strconv.Atoi(string(c.New[0].Data))
	return append(out, &envelope.Event{
		Topic:     "t",
		KeySchema: b.schema, Key: &envelope.Value{Fields: []any{id}},
		ValueSchema: b.schema, Value: &envelope.Value{Fields: []any{uint64(c.LSN)}},
	}), nil
}

func (b *rowBuilder) Heartbeat(topic string) *envelope.Event {
	return &envelope.Event{Topic: topic, Value: &envelope.Value{Fields: []any{"heartbeat"}}}
}

func (b *rowBuilder) Retired() []*envelope.Schema { return nil }

// slowEncoder renders keys and values as text, taking a random short time, so that the
// parallel encoders finish out of order.
type slowEncoder struct {
	mu  sync.Mutex
	rnd *rand.Rand
}

func (e *slowEncoder) Encode(_ context.Context, ev *envelope.Event) ([]byte, []byte, error) {
	e.mu.Lock()
	d := time.Duration(e.rnd.IntN(20)) * time.Microsecond
	e.mu.Unlock()
	time.Sleep(d) // jitter, not a wait for a condition
	var key []byte
	if ev.Key != nil {
		key = fmt.Appendf(nil, "%v", ev.Key.Fields[0])
	}
	return key, fmt.Appendf(nil, "%v", ev.Value.Fields[0]), nil
}

func (e *slowEncoder) EncodeKey(_ context.Context, _ *envelope.Schema, v *envelope.Value) ([]byte, error) {
	return fmt.Appendf(nil, "%v", v.Fields[0]), nil
}

func (e *slowEncoder) ForTopic(string) Encoder          { return e }
func (e *slowEncoder) ForEvent(*envelope.Event) Encoder { return e }

func (e *slowEncoder) Forget([]*envelope.Schema) {}

// fakeKafka keeps produced records and acknowledges them when told to, as Kafka would:
// in produce order within a partition.
type fakeKafka struct {
	partitions int32
	tails      map[string]map[int32][]sink.Header
	ackAtOnce  bool // acknowledge inside Produce, as a fast broker's promise can

	mu       sync.Mutex
	produced []*sink.Record
	acked    int // produced[:acked] are acknowledged
}

func (k *fakeKafka) EnsureTopic(context.Context, string) (int32, error) { return k.partitions, nil }

func (k *fakeKafka) Produce(_ context.Context, r *sink.Record) error {
	k.mu.Lock()
	k.produced = append(k.produced, r)
	n := len(k.produced)
	k.mu.Unlock()
	if k.ackAtOnce {
		k.ackUpTo(n)
	}
	return nil
}

func (k *fakeKafka) LastHeaders(_ context.Context, topic string) (map[int32][]sink.Header, error) {
	return k.tails[topic], nil
}

// ackUpTo acknowledges the produced records up to n.
func (k *fakeKafka) ackUpTo(n int) {
	k.mu.Lock()
	recs := k.produced[k.acked:n]
	k.acked = n
	k.mu.Unlock()
	for _, r := range recs {
		if r.Ack != nil {
			r.Ack.Ack()
		}
	}
}

func (k *fakeKafka) records() []*sink.Record {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]*sink.Record(nil), k.produced...)
}

// stream makes the changes of transactions in commit order and begins them in the tracker as
// the replication stream's decoder does. Transaction i commits at LSN 1000*(i+1).
type stream struct {
	tracker *replication.Tracker
	changes []*replication.Change
	txs     []*replication.Tx
	nextID  int
}

func (s *stream) tx(rows int) *replication.Tx {
	commit := pglogrepl.LSN(1000 * (len(s.txs) + 1))
	tx := &replication.Tx{XID: uint32(100 + len(s.txs)), CommitLSN: commit, EndLSN: commit + 8, CommitTime: time.UnixMilli(1_700_000_000_000)}
	s.tracker.Begin(tx)
	s.txs = append(s.txs, tx)
	s.changes = append(s.changes, &replication.Change{Op: replication.OpBegin, Tx: tx, LSN: commit - 999})
	for i := range rows {
		s.nextID++
		s.changes = append(s.changes, &replication.Change{Op: replication.OpInsert, Tx: tx, Seq: i + 1,
			LSN: commit - 998 + pglogrepl.LSN(i), New: []replication.Datum{{Kind: replication.DatumText, Data: []byte(strconv.Itoa(s.nextID))}}})
	}
	s.changes = append(s.changes, &replication.Change{Op: replication.OpCommit, Tx: tx, LSN: commit})
	return tx
}

func newTestPipeline(t *testing.T, k *fakeKafka, tr *replication.Tracker) *Pipeline {
	seed := rand.Uint64()
	t.Logf("encoder jitter seed %d", seed)
	return New(Config{
		Builder:        &rowBuilder{schema: &envelope.Schema{Type: envelope.Struct}},
		Encoders:       &slowEncoder{rnd: rand.New(rand.NewPCG(seed, seed))},
		Producer:       k,
		Tails:          k,
		Tracker:        tr,
		Instance:       7,
		Source:         []byte(testSource),
		WALAtOpen:      1 << 40,
		HeartbeatTopic: "hb",
	})
}

const testSource = "7400000000000000001/shop/procon_shop"

// runAll feeds every change through a channel, closes it, and waits for Run.
func runAll(t *testing.T, p *Pipeline, changes []*replication.Change) {
	t.Helper()
	ch := make(chan []*replication.Change, len(changes))
	for _, c := range changes {
		ch <- []*replication.Change{c}
	}
	close(ch)
	if err := p.Run(context.Background(), ch); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func headerPos(t *testing.T, r *sink.Record) (commit uint64, seq int) {
	t.Helper()
	k, err := txid.FromRecordHeaders(r.Headers)
	if err != nil {
		t.Fatalf("record %s/%s: %v", r.Key, r.Value, err)
	}
	return k.Tx.CommitLSN(), k.Seq
}

// Records leave in stream order with their positions, whatever order the parallel encoders
// finish in, and the confirmed LSN moves only over transactions Kafka holds whole.
func TestRecordsAndAcknowledgementsInStreamOrder(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 3}
	s := &stream{tracker: tr}
	for i := range 40 {
		s.tx(1 + i%17) // transactions of 1 to 17 rows: batches of 256 changes cut through them
	}
	runAll(t, newTestPipeline(t, k, tr), s.changes)

	recs := k.records()
	if len(recs) != s.nextID {
		t.Fatalf("got %d records, want %d", len(recs), s.nextID)
	}
	var lastCommit uint64
	lastSeq := 0
	for i, r := range recs {
		if want := strconv.Itoa(i + 1); string(r.Key) != want {
			t.Fatalf("record %d has key %s, want %s: records left out of stream order", i, r.Key, want)
		}
		commit, seq := headerPos(t, r)
		if commit != lastCommit {
			lastCommit, lastSeq = commit, 0
		}
		if seq != lastSeq+1 {
			t.Fatalf("record %d: procon.seq %d after %d in transaction at %d", i, seq, lastSeq, commit)
		}
		lastSeq = seq
		if r.Ack == nil || r.Ack.(*replication.Tx).CommitLSN != pglogrepl.LSN(commit) {
			t.Fatalf("record %d: its acknowledgement is not its transaction (%v)", i, r.Ack)
		}
		if want := sink.Partition(r.Key, 3); r.Partition != want {
			t.Fatalf("record %d: partition %d, want %d (Kafka's murmur2)", i, r.Partition, want)
		}
	}
	if got := tr.Confirmed(); got != 10 {
		t.Fatalf("nothing acknowledged yet, but confirmed moved to %s", got)
	}
	// Acknowledge record by record: confirmed must always be the end of the last transaction
	// whose records are all acknowledged.
	for n := 1; n <= len(recs); n++ {
		k.ackUpTo(n)
		want := pglogrepl.LSN(10)
		for _, tx := range s.txs {
			last := 0
			for i, r := range recs {
				if r.Ack.(*replication.Tx) == tx {
					last = i + 1
				}
			}
			if last > n {
				break
			}
			want = tx.EndLSN
		}
		if got := tr.Confirmed(); got != want {
			t.Fatalf("after %d acknowledgements confirmed is %s, want %s", n, got, want)
		}
	}
}

// A stop cancels Run between changes: the transaction being produced is not sealed, so the
// tracker never confirms past it, even once every record it got is acknowledged.
func TestCancelledRunLeavesTheOpenTransactionUnsealed(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 1}
	s := &stream{tracker: tr}
	first := s.tx(2)
	s.tx(3)
	open := s.changes[:len(s.changes)-1] // the second transaction without its Commit

	p := newTestPipeline(t, k, tr)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan []*replication.Change, len(open))
	for _, c := range open {
		ch <- []*replication.Change{c}
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, ch) }()
	waitFor(t, func() bool { return len(k.records()) == 5 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	k.ackUpTo(5)
	if got := tr.Confirmed(); got != first.EndLSN {
		t.Fatalf("confirmed %s, want %s: the end of the only sealed transaction", got, first.EndLSN)
	}
	if got := tr.Open(); got != 1 {
		t.Fatalf("%d transactions open, want the unsealed one", got)
	}
}

// When the stream closes the channel (a stop at a transaction boundary), Run hands over every
// change it was given, seals every transaction, and returns nil. The records are acknowledged
// as soon as they are produced: each must have been counted before.
func TestClosedStreamIsHandedOverWhole(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 2, ackAtOnce: true}
	s := &stream{tracker: tr}
	for range 300 {
		s.tx(1)
	}
	runAll(t, newTestPipeline(t, k, tr), s.changes)
	if got, want := tr.Confirmed(), s.txs[len(s.txs)-1].EndLSN; got != want {
		t.Fatalf("confirmed %s, want %s: every transaction handed over and sealed", got, want)
	}
}

// Replayed records that Kafka already holds are skipped per partition, but only where the
// partition's last record is this pipeline's own: another pipeline's record, or one whose
// headers claim a position ahead of the server's WAL, must not make real changes be skipped.
func TestResumeSkipsOnlyWhatThisPipelineWrote(t *testing.T) {
	tr := replication.NewTracker(10)
	s := &stream{tracker: tr}
	for range 5 {
		s.tx(8) // ids 1-8 commit at 1000, 9-16 at 2000, ... 33-40 at 5000
	}
	tail := func(source string, instance uint16, commit uint64, seq int) []sink.Header {
		tx := txid.New(time.UnixMilli(0), instance, commit).AppendText(nil)
		var src []byte
		if source != "" {
			src = []byte(source)
		}
		return txid.AppendHeaders([]sink.Header{{Key: "other", Value: []byte("x")}}, src, tx, seq)
	}
	const wal = 10_000
	never := progress.Position{CommitLSN: 1<<64 - 1, Seq: 1<<31 - 1}
	cases := []struct {
		what   string
		tail   []sink.Header
		skipTo progress.Position // records at or before it are skipped
	}{
		{"own tail in the middle of the stream", tail(testSource, 7, 3000, 2), progress.Position{CommitLSN: 3000, Seq: 2}},
		{"own tail past the replayed stream", tail(testSource, 7, 9000, 1), never},
		{"a record without Procon's headers", []sink.Header{{Key: "written-by", Value: []byte("someone else")}}, progress.Position{}},
		{"another pipeline's record with maximal positions", tail("7400000000000000002/other/procon_other", 7, 1<<64-1, 1<<31-1), progress.Position{}},
		{"this pipeline's source and a position ahead of the WAL", tail(testSource, 7, wal+1, 1), progress.Position{}},
		{"another instance_num", tail(testSource, 8, 4000, 1), progress.Position{}},
		{"no procon.source (written before it existed)", tail("", 7, 4000, 1), progress.Position{}},
	}
	n := int32(len(cases))
	tails := map[int32][]sink.Header{}
	for i, c := range cases {
		tails[int32(i)] = c.tail
	}
	k := &fakeKafka{partitions: n, tails: map[string]map[int32][]sink.Header{"t": tails}}
	p := newTestPipeline(t, k, tr)
	p.resume.walAtOpen = wal
	runAll(t, p, s.changes)

	written := map[string]bool{}
	for _, r := range k.records() {
		written[string(r.Key)] = true
	}
	seen := make([]struct{ written, skipped int }, n)
	for id := 1; id <= s.nextID; id++ {
		key := []byte(strconv.Itoa(id))
		part := sink.Partition(key, n)
		c := cases[part]
		pos := progress.Position{CommitLSN: uint64(1000 * ((id-1)/8 + 1)), Seq: (id-1)%8 + 1}
		if want := !c.skipTo.Covers(pos); written[string(key)] != want {
			t.Errorf("%s (partition %d): record %d at %v written = %v, want %v", c.what, part, id, pos, written[string(key)], want)
		}
		if written[string(key)] {
			seen[part].written++
		} else {
			seen[part].skipped++
		}
	}
	if seen[0].written == 0 || seen[0].skipped == 0 {
		t.Fatalf("partition 0 got %+v: the workload must put records on both sides of its tail", seen[0])
	}
	for i := range cases[1:] {
		if seen[i+1].written+seen[i+1].skipped == 0 {
			t.Fatalf("no record went to partition %d (%s): the case tests nothing", i+1, cases[i+1].what)
		}
	}
	// Skipped records are not counted: the tracker confirms everything once the written ones
	// are acknowledged.
	k.ackUpTo(len(k.records()))
	if got, want := tr.Confirmed(), s.txs[len(s.txs)-1].EndLSN; got != want {
		t.Fatalf("confirmed %s, want %s", got, want)
	}
}

// fakeSnapshots emits two chunk rows at a watermark message, and takes the message itself.
type fakeSnapshots struct{ schema *envelope.Schema }

func (f *fakeSnapshots) Progress() *progress.Snapshot { return nil }

func (f *fakeSnapshots) Observe(_ context.Context, c *replication.Change, out []*envelope.Event) ([]*envelope.Event, bool, error) {
	if c.Op != replication.OpMessage || c.Prefix != "watermark" {
		return out, false, nil
	}
	for _, id := range []int{901, 902} {
		out = append(out, &envelope.Event{Topic: "t", KeySchema: f.schema, Key: &envelope.Value{Fields: []any{id}},
			ValueSchema: f.schema, Value: &envelope.Value{Fields: []any{"snapshot"}}})
	}
	return out, true, nil
}

// Rows a snapshot emits at a watermark are records of the watermark's transaction, at their
// place in it: acknowledged through it and positioned in it.
func TestSnapshotRowsBelongToTheWatermarkTransaction(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 1}
	s := &stream{tracker: tr}
	tx := s.tx(2)
	commit := s.changes[len(s.changes)-1]
	msg := &replication.Change{Op: replication.OpMessage, Tx: tx, Prefix: "watermark", Transactional: true, LSN: commit.LSN - 1}
	changes := append(append(append([]*replication.Change(nil), s.changes[:2]...), msg), s.changes[2:]...)

	p := newTestPipeline(t, k, tr)
	p.cfg.Snapshots = &fakeSnapshots{schema: &envelope.Schema{Type: envelope.Struct}}
	runAll(t, p, changes)

	var got []string
	for _, r := range k.records() {
		_, seq := headerPos(t, r)
		if r.Ack != tx {
			t.Fatalf("record %s is not acknowledged through its transaction", r.Key)
		}
		got = append(got, fmt.Sprintf("%s@%d", r.Key, seq))
	}
	if want := "[1@1 901@2 902@3 2@4]"; fmt.Sprint(got) != want {
		t.Fatalf("records %v, want %s", got, want)
	}
	k.ackUpTo(4)
	if tr.Confirmed() != tx.EndLSN {
		t.Fatalf("confirmed %s, want %s", tr.Confirmed(), tx.EndLSN)
	}
}

// A heartbeat record belongs to no transaction: it has no acknowledgement and no Procon
// position, and it goes to partition 0 of the heartbeat topic.
func TestHeartbeatRecord(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 4}
	p := newTestPipeline(t, k, tr)
	p.Heartbeat()
	p.Heartbeat() // coalesced with the first
	ch := make(chan []*replication.Change)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, ch) }()
	waitFor(t, func() bool { return len(k.records()) == 1 })
	close(ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cancel()
	r := k.records()[0]
	if r.Topic != "hb" || r.Partition != 0 || r.Ack != nil || len(r.Headers) != 0 {
		t.Fatalf("heartbeat record %+v", r)
	}
	if got := len(k.records()); got != 1 {
		t.Fatalf("%d heartbeat records, want 1", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
