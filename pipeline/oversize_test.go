package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// bodyBuilder makes an event per inserted row (key its first column, value its second) on
// topic "t" and per logical message (key its prefix, value its content) on topic "m".
type bodyBuilder struct{ schema *envelope.Schema }

func (b *bodyBuilder) Build(c *replication.Change, out []*envelope.Event) ([]*envelope.Event, error) {
	switch c.Op {
	case replication.OpMessage:
		return append(out, &envelope.Event{Kind: envelope.KindMessage, Topic: "m", KeySchema: b.schema, Key: &envelope.Value{Fields: []any{c.Prefix}},
			ValueSchema: b.schema, Value: &envelope.Value{Fields: []any{string(c.Content)}}}), nil
	case replication.OpInsert:
		return append(out, &envelope.Event{Kind: envelope.KindData, Topic: "t", Relation: "public.docs",
			KeySchema: b.schema, Key: &envelope.Value{Fields: []any{string(c.New[0].Data)}},
			ValueSchema: b.schema, Value: &envelope.Value{Fields: []any{string(c.New[1].Data)}}}), nil
	}
	return out, nil
}

func (b *bodyBuilder) Heartbeat(string) *envelope.Event { return nil }
func (b *bodyBuilder) Retired() []*envelope.Schema      { return nil }

// sameLimit gives every topic the same limit.
type sameLimit int

func (l sameLimit) MaxRecordBytes(context.Context, string) (int, error) { return int(l), nil }

// oversizeStream is three transactions: a small row; a row of body bytes and a message of
// body bytes; a small row.
func oversizeStream(tr *replication.Tracker, body int) ([]*replication.Change, []*replication.Tx) {
	var changes []*replication.Change
	var txs []*replication.Tx
	add := func(cs ...func(tx *replication.Tx, lsn pglogrepl.LSN) *replication.Change) {
		commit := pglogrepl.LSN(1000 * (len(txs) + 1))
		tx := &replication.Tx{XID: uint32(100 + len(txs)), CommitLSN: commit, EndLSN: commit + 8}
		tr.Begin(tx)
		txs = append(txs, tx)
		changes = append(changes, &replication.Change{Op: replication.OpBegin, Tx: tx})
		for i, c := range cs {
			changes = append(changes, c(tx, commit-100+pglogrepl.LSN(i)))
		}
		changes = append(changes, &replication.Change{Op: replication.OpCommit, Tx: tx, LSN: commit})
	}
	row := func(id, value string) func(*replication.Tx, pglogrepl.LSN) *replication.Change {
		return func(tx *replication.Tx, lsn pglogrepl.LSN) *replication.Change {
			return &replication.Change{Op: replication.OpInsert, Tx: tx, LSN: lsn, New: []replication.Datum{
				{Kind: replication.DatumText, Data: []byte(id)}, {Kind: replication.DatumText, Data: []byte(value)}}}
		}
	}
	msg := func(tx *replication.Tx, lsn pglogrepl.LSN) *replication.Change {
		return &replication.Change{Op: replication.OpMessage, Tx: tx, LSN: lsn, Transactional: true, Prefix: "outbox", Content: []byte(strings.Repeat("m", body))}
	}
	add(row("1", "small"))
	add(row("2", strings.Repeat("r", body)), msg)
	add(row("3", "small"))
	return changes, txs
}

func oversizePipeline(t *testing.T, k *fakeKafka, tr *replication.Tracker, rows, messages deadletter.Policy) *Pipeline {
	t.Helper()
	g, err := deadletter.New(deadletter.Config{Limits: sameLimit(4096), Topic: "dlq",
		Policies: [3]deadletter.Policy{deadletter.Row: rows, deadletter.Message: messages, deadletter.Realtime: deadletter.Fail}})
	if err != nil {
		t.Fatal(err)
	}
	p := newTestPipeline(t, k, tr)
	p.cfg.Builder = &bodyBuilder{schema: &envelope.Schema{Type: envelope.Struct}}
	p.cfg.Oversize = g
	return p
}

// Under dlq a reference takes the record's place in its transaction: counted, produced,
// and acknowledged as the record would have been; under skip the record is left out and its
// transaction is confirmed without it. Either way the stream goes on.
func TestTooLargeRecordsSkippedOrDeadLettered(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 1}
	changes, txs := oversizeStream(tr, 5000)
	runAll(t, oversizePipeline(t, k, tr, deadletter.Skip, deadletter.DLQ), changes)

	recs := k.records()
	var got []string
	for _, r := range recs {
		got = append(got, r.Topic+":"+string(r.Key))
	}
	if want := "t:1 dlq: t:3"; strings.Join(got, " ") != want {
		t.Fatalf("produced %q, want %q: the row skipped, a reference in place of the message", strings.Join(got, " "), want)
	}
	ref := recs[1]
	var v deadletter.Reference
	if err := json.Unmarshal(ref.Value, &v); err != nil {
		t.Fatal(err)
	}
	if v.Kind != "message" || v.Prefix != "outbox" || v.Topic != "m" || v.LSN != "0/76D" || v.CommitLSN != "0/7D0" || v.XID != 101 || string(v.Key) != "outbox" {
		t.Fatalf("reference %s", ref.Value)
	}
	if commit, seq := headerPos(t, ref); commit != 2000 || seq != 2 {
		t.Fatalf("reference at position %d/%d, want the message's 2000/2", commit, seq)
	}
	if ref.Ack != txs[1] {
		t.Fatal("the reference does not carry the message's transaction as its acknowledgement")
	}
	k.ackUpTo(2)
	if got := tr.Confirmed(); got != txs[1].EndLSN {
		t.Fatalf("confirmed %s once the reference is acknowledged, want %s: the skipped row must not hold its transaction", got, txs[1].EndLSN)
	}
	k.ackUpTo(3)
	if got := tr.Confirmed(); got != txs[2].EndLSN {
		t.Fatalf("confirmed %s, want %s", got, txs[2].EndLSN)
	}
}

// Under fail the pipeline stops before producing anything of the record, so the tracker can
// never confirm its transaction.
func TestTooLargeRowFails(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 1, ackAtOnce: true}
	changes, txs := oversizeStream(tr, 5000)
	ch := make(chan []*replication.Change, len(changes))
	for _, c := range changes {
		ch <- []*replication.Change{c}
	}
	close(ch)
	err := oversizePipeline(t, k, tr, deadletter.Fail, deadletter.DLQ).Run(context.Background(), ch)
	var tl *deadletter.TooLargeError
	if !errors.As(err, &tl) || tl.Origin.Relation != "public.docs" || tl.Origin.LSN != 0x76C || tl.Origin.XID != 101 {
		t.Fatalf("got %v, want the row's *deadletter.TooLargeError", err)
	}
	if n := len(k.records()); n != 1 {
		t.Fatalf("%d records produced, want only the first transaction's", n)
	}
	if got := tr.Confirmed(); got != txs[0].EndLSN {
		t.Fatalf("confirmed %s, want %s: no further than before the refused row", got, txs[0].EndLSN)
	}
}

// A record that fits is produced as it is, whatever the policies.
func TestRecordsThatFitAreProduced(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 1}
	changes, _ := oversizeStream(tr, 100)
	runAll(t, oversizePipeline(t, k, tr, deadletter.Fail, deadletter.Fail), changes)
	if n := len(k.records()); n != 4 {
		t.Fatalf("%d records, want 4", n)
	}
	for _, r := range k.records() {
		if r.Topic == "dlq" || sink.Size(r) > 4096 {
			t.Fatalf("record %s on %s", r.Key, r.Topic)
		}
	}
}
