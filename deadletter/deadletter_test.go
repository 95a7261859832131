package deadletter

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// limits gives every topic the same limit, and the dead-letter topic its own.
type limits struct{ topic, dlq int }

func (l limits) MaxRecordBytes(_ context.Context, topic string) (int, error) {
	if topic == "shop.dlq" {
		return l.dlq, nil
	}
	return l.topic, nil
}

type ack struct{ n int }

func (a *ack) Ack() { a.n++ }

func guard(t *testing.T, l limits, rows, messages, realtime Policy) *Guard {
	t.Helper()
	g, err := New(Config{Limits: l, Policies: [kinds]Policy{Row: rows, Message: messages, Realtime: realtime}, Topic: "shop.dlq"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func record(key string, value int) *sink.Record {
	return &sink.Record{
		Topic: "shop.public.docs", Key: []byte(key), Value: []byte(strings.Repeat("v", value)), Partition: 2,
		Headers: []sink.Header{
			{Key: txid.HeaderSource, Value: []byte("7400000000000000001/shop/procon_shop")},
			{Key: txid.HeaderTx, Value: []byte("01HF7YAT000K90000000BB6X6R")},
			{Key: txid.HeaderSeq, Value: []byte("3")},
			{Key: "__debezium.oldkey", Value: []byte(`{"id":1}`)},
		},
		Ack: &ack{},
	}
}

var rowOrigin = Origin{Kind: Row, Relation: "public.docs", LSN: 0x16B3748, CommitLSN: 0x16B3800, XID: 750}

func TestRecordsThatFitPassUnchanged(t *testing.T) {
	r := record(`{"id":2}`, 100)
	g := guard(t, limits{topic: sink.Size(r), dlq: 1 << 20}, Fail, Fail, Fail)
	got, err := g.Check(context.Background(), r, rowOrigin)
	if err != nil || got != r {
		t.Fatalf("got %v, %v; want the record itself: it is exactly as large as the topic takes", got, err)
	}
}

func TestFailNamesTheRecordAndTheFix(t *testing.T) {
	r := record(`{"id":2}`, 100)
	g := guard(t, limits{topic: sink.Size(r) - 1, dlq: 1 << 20}, Fail, DLQ, DLQ)
	got, err := g.Check(context.Background(), r, rowOrigin)
	var tl *TooLargeError
	if got != nil || !errors.As(err, &tl) {
		t.Fatalf("got %v, %v; want a *TooLargeError", got, err)
	}
	want := "relation public.docs: a record for topic shop.public.docs (change at LSN 0/16B3748, transaction xid 750 committed at LSN 0/16B3800) is " +
		strconv.Itoa(sink.Size(r)) + " bytes, over the " + strconv.Itoa(sink.Size(r)-1) + " bytes the topic takes"
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "errors.record_too_large.rows to dlq or skip") ||
		!strings.Contains(err.Error(), "kafka.max_record_bytes") {
		t.Fatalf("got %q, want it to start with %q and name the keys that fix it", err, want)
	}
}

func TestSkipCountsAndProducesNothing(t *testing.T) {
	r := record(`{"id":2}`, 100)
	g := guard(t, limits{topic: 50, dlq: 1 << 20}, Fail, Skip, Fail)
	got, err := g.Check(context.Background(), r, Origin{Kind: Message, Prefix: "outbox", LSN: 0x100})
	if got != nil || err != nil {
		t.Fatalf("got %v, %v; want nothing to produce", got, err)
	}
	if s, d := g.Counts(Message); s != 1 || d != 0 {
		t.Fatalf("counts: skipped %d, dead-lettered %d; want 1, 0", s, d)
	}
	if r.Ack.(*ack).n != 0 {
		t.Fatal("the guard acknowledged a skipped record itself; the caller does, as the record's owner")
	}
}

func TestDeadLetterReference(t *testing.T) {
	r := record(`{"id":2}`, 5000)
	g := guard(t, limits{topic: 4096, dlq: 1 << 20}, DLQ, Fail, Fail)
	ref, err := g.Check(context.Background(), r, rowOrigin)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"reason":"record_too_large","kind":"row","topic":"shop.public.docs","relation":"public.docs",` +
		`"key":"eyJpZCI6Mn0=","key_bytes":8,"record_bytes":` + strconv.Itoa(sink.Size(r)) + `,"max_record_bytes":4096,` +
		`"lsn":"0/16B3748","commit_lsn":"0/16B3800","xid":750}`
	if string(ref.Value) != want {
		t.Fatalf("value\n got %s\nwant %s", ref.Value, want)
	}
	if ref.Topic != "shop.dlq" || ref.Key != nil || ref.Partition != 0 || ref.Ack != r.Ack {
		t.Fatalf("got topic %s, key %q, partition %d, ack %p; want shop.dlq, no key, partition 0 and the record's own acknowledgement %p",
			ref.Topic, ref.Key, ref.Partition, ref.Ack, r.Ack)
	}
	if len(ref.Headers) != 3 {
		t.Fatalf("headers %v; want procon.source, procon.tx and procon.seq of the record", ref.Headers)
	}
	for i, h := range ref.Headers {
		if h.Key != r.Headers[i].Key || string(h.Value) != string(r.Headers[i].Value) {
			t.Fatalf("header %d: %s=%s, want %s=%s", i, h.Key, h.Value, r.Headers[i].Key, r.Headers[i].Value)
		}
	}
	if s, d := g.Counts(Row); s != 0 || d != 1 {
		t.Fatalf("counts: skipped %d, dead-lettered %d; want 0, 1", s, d)
	}
}

// Whatever a message's sender chose for its prefix and key, the reference stays small.
func TestDeadLetterReferenceIsBounded(t *testing.T) {
	prefix := strings.Repeat("é", 400) // 800 bytes, two per character
	r := record(strings.Repeat("k", MaxKey+1), 1<<20)
	g := guard(t, limits{topic: 1 << 20, dlq: 8192}, Fail, DLQ, Fail)
	ref, err := g.Check(context.Background(), r, Origin{Kind: Message, Prefix: prefix, LSN: 0x100})
	if err != nil {
		t.Fatal(err)
	}
	v := string(ref.Value)
	if strings.Contains(v, `"key":`) || !strings.Contains(v, `"key_bytes":1025`) {
		t.Fatalf("value %s: want the key's size only, the key being over %d bytes", v, MaxKey)
	}
	if !strings.Contains(v, `"prefix":"`+strings.Repeat("é", MaxText/2)+`"`) || !utf8.ValidString(v) {
		t.Fatalf("value %s: want the prefix cut to %d bytes at a character boundary", v, MaxText)
	}
	if got := clip(strings.Repeat("a", MaxText-1) + "é"); got != strings.Repeat("a", MaxText-1) {
		t.Fatalf("clip cut inside a character: %q", got[MaxText-3:])
	}
}

func TestDeadLetterTopicTooSmall(t *testing.T) {
	r := record(`{"id":2}`, 5000)
	g := guard(t, limits{topic: 4096, dlq: 200}, DLQ, DLQ, DLQ)
	if _, err := g.Check(context.Background(), r, rowOrigin); err == nil || !strings.Contains(err.Error(), "the dead-letter topic shop.dlq") {
		t.Fatalf("got %v, want an error naming the dead-letter topic", err)
	}
}

func TestNewRefusesMissingPolicies(t *testing.T) {
	if _, err := New(Config{Limits: limits{}, Policies: [kinds]Policy{Fail, Fail}}); err == nil {
		t.Fatal("a kind without a policy was accepted")
	}
	if _, err := New(Config{Limits: limits{}, Policies: [kinds]Policy{Fail, DLQ, Fail}}); err == nil {
		t.Fatal("dlq without a dead-letter topic was accepted")
	}
	for _, s := range []string{"fail", "skip", "dlq"} {
		if p, err := ParsePolicy(s); err != nil || p.String() != s {
			t.Fatalf("ParsePolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePolicy("drop"); err == nil {
		t.Fatal("ParsePolicy accepted drop")
	}
}
