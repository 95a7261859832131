package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/test/testenv"
	"github.com/procon-cdc/procon/txid"
)

// withMaxRecordBytes sets kafka.max_record_bytes in the test's configuration.
func withMaxRecordBytes(s *setup, n int) {
	s.config = strings.Replace(s.config, "kafka:\n", fmt.Sprintf("kafka:\n  max_record_bytes: %d\n", n), 1)
}

// unprivilegedRole creates a role without any privilege of its own: what every database user
// has (PUBLIC's) is all it can use.
func unprivilegedRole(t *testing.T, s *setup) string {
	t.Helper()
	role := testenv.Name(t, "r")
	s.db.Exec(t, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" NOLOGIN")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.db.Pool.Exec(ctx, "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		_, _ = s.db.Pool.Exec(ctx, "DROP ROLE "+pgx.Identifier{role}.Sanitize())
	})
	return role
}

// emitted is what the sender of a logical message knows of it.
type emitted struct {
	xid       uint32
	end       pglogrepl.LSN // the end of its WAL record
	commitEnd pglogrepl.LSN // the WAL position after its transaction committed
}

// emitAs emits a transactional logical message as role, in a transaction of its own.
func emitAs(t *testing.T, s *setup, role, prefix string, content string) emitted {
	t.Helper()
	s.env.RequireServer(t, engine.MessagesSince, "a logical decoding message becomes an event only where pgoutput decodes it")
	ctx := testenv.Context(t, time.Minute)
	conn := s.db.Conn(t)
	var e emitted
	var end string
	var xid int64
	tx, err := conn.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize())
	}
	if err == nil {
		err = tx.QueryRow(ctx, `SELECT txid_current(), pg_logical_emit_message(true, $1, $2)::text`, prefix, content).Scan(&xid, &end)
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		t.Fatalf("emit a logical message as %s: %v", role, err)
	}
	e.xid = uint32(xid)
	e.end, _ = pglogrepl.ParseLSN(end)
	e.commitEnd = s.currentLSN(t)
	return e
}

// topicConfig reads a topic's configuration value.
func topicConfig(t *testing.T, s *setup, topic, key string) string {
	t.Helper()
	rcs, err := kadm.NewClient(s.env.Kafka(t)).DescribeTopicConfigs(testenv.Context(t, 30*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe %s: %v %v", topic, err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

// dlqReference reads the one record of the dead-letter topic, checks that its commit_lsn is
// its procon.tx's and not before its lsn, and returns it without lsn and commit_lsn (for an
// exact comparison of the rest), with lsn.
func dlqReference(t *testing.T, s *setup) (map[string]any, pglogrepl.LSN, *kgo.Record) {
	t.Helper()
	rec := s.env.ReadN(t, s.name+".dlq", 1, time.Minute)[0]
	if rec.Key != nil || rec.Partition != 0 {
		t.Fatalf("dead-letter record has key %q, partition %d; want no key, partition 0", rec.Key, rec.Partition)
	}
	var v map[string]any
	if err := json.Unmarshal(rec.Value, &v); err != nil {
		t.Fatalf("dead-letter record %s: %v", rec.Value, err)
	}
	key, err := txid.FromRecordHeaders(rec.Headers)
	if err != nil {
		t.Fatalf("dead-letter record: %v", err)
	}
	lsn, _ := pglogrepl.ParseLSN(fmt.Sprint(v["lsn"]))
	commit, _ := pglogrepl.ParseLSN(fmt.Sprint(v["commit_lsn"]))
	if uint64(commit) != key.Tx.CommitLSN() || commit < lsn || lsn == 0 {
		t.Fatalf("dead-letter lsn %v, commit_lsn %v; want its procon.tx's commit position %s, not before lsn",
			v["lsn"], v["commit_lsn"], pglogrepl.LSN(key.Tx.CommitLSN()))
	}
	delete(v, "lsn")
	delete(v, "commit_lsn")
	return v, lsn, rec
}

// heldBefore checks that the slot was not confirmed past the transaction refused with err
// (a *deadletter.TooLargeError), which committed after before. (Other databases' WAL moves an
// idle slot's position, so before itself is no bound.)
func (s *setup) heldBefore(t *testing.T, err error, before pglogrepl.LSN) {
	t.Helper()
	var tl *deadletter.TooLargeError
	if !errors.As(err, &tl) || tl.Origin.CommitLSN <= before {
		t.Fatalf("got %v, want a *deadletter.TooLargeError of a transaction committed after %s", err, before)
	}
	if got := s.confirmedLSN(t); got > tl.Origin.CommitLSN {
		t.Fatalf("confirmed %s, past the refused transaction, committed at %s", got, tl.Origin.CommitLSN)
	}
}

func jsonNumber(n int) any { return float64(n) }

// A logical message larger than Kafka takes, emitted by a role without any privilege, does not
// stop the stream: under the default policy (dlq) a reference to it goes to <name>.dlq, the
// slot moves past it, and later changes arrive. Topics procon-cdc creates get
// max.message.bytes = kafka.max_record_bytes.
func TestTooLargeMessageFromAnyRoleIsDeadLettered(t *testing.T) {
	s := newSetup(t, `public.docs: {}`, "")
	withMaxRecordBytes(s, 20000)
	s.db.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	role := unprivilegedRole(t, s)
	s.startEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO docs VALUES (1, 'before')`)
	msg := emitAs(t, s, role, "outbox", strings.Repeat("x", 30000))
	s.db.Exec(t, `INSERT INTO docs VALUES (2, 'after')`)

	if events := decode(t, s.env.ReadN(t, s.topic("docs"), 2, time.Minute)); fmt.Sprint(events[1].Key["id"]) != "2" {
		t.Fatalf("got %v, want the rows before and after the message", events)
	}
	ref, lsn, rec := dlqReference(t, s)
	if lsn != msg.end {
		t.Fatalf("dead-letter lsn %s, want the message's, %s (pgoutput gives a message the end of its WAL record)", lsn, msg.end)
	}
	want := map[string]any{
		"reason": "record_too_large", "kind": "message", "topic": s.name + ".message", "prefix": "outbox",
		"key": base64.StdEncoding.EncodeToString([]byte(`{"prefix":"outbox"}`)), "key_bytes": jsonNumber(19),
		"record_bytes": ref["record_bytes"], "max_record_bytes": jsonNumber(20000), "xid": jsonNumber(int(msg.xid)),
	}
	if n, ok := ref["record_bytes"].(float64); !ok || n <= 30000 {
		t.Fatalf("record_bytes %v, want the message record's size, over its 30000 bytes of content", ref["record_bytes"])
	}
	if !reflect.DeepEqual(ref, want) {
		t.Fatalf("dead-letter record\n got %v\nwant %v", ref, want)
	}
	if k, _ := txid.FromRecordHeaders(rec.Headers); k.Seq != 1 || headerValue(rec, txid.HeaderSource) == "" {
		t.Fatalf("dead-letter record headers %v: want the message record's procon.seq 1 and procon.source", rec.Headers)
	}
	if n := s.countIfExists(t, s.name+".message"); n != 0 {
		t.Fatalf("%d records in the message topic, want none", n)
	}
	testenv.WaitFor(t, time.Minute, "the slot to confirm past the message's transaction", func() (bool, error) {
		return s.confirmedLSN(t) >= msg.commitEnd, nil
	})
	for _, topic := range []string{s.topic("docs"), s.name + ".dlq"} {
		if got := topicConfig(t, s, topic, sink.MaxMessageBytes); got != "20000" {
			t.Errorf("topic %s has max.message.bytes %q, want kafka.max_record_bytes, 20000", topic, got)
		}
	}
}

// A row larger than Kafka takes stops procon-cdc under the default policy (fail), with an
// error naming the relation and the fix, before its transaction is confirmed; restarted with
// rows: dlq, procon-cdc writes a reference to it and goes on.
func TestTooLargeRowFailsThenIsDeadLetteredAfterRestart(t *testing.T) {
	s := newSetup(t, `public.docs: {}`, "")
	withMaxRecordBytes(s, 20000)
	s.db.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	r := s.startEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO docs VALUES (1, 'small')`)
	s.env.ReadN(t, s.topic("docs"), 1, time.Minute)
	before := s.currentLSN(t)
	var xid int64
	if err := s.db.Pool.QueryRow(context.Background(), `INSERT INTO docs
		SELECT 2, string_agg(md5(g::text), '') FROM generate_series(1, 1000) g RETURNING txid_current()`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	after := s.currentLSN(t)
	err := r.wait(t, time.Minute)
	t.Logf("refused: %v", err)
	for _, want := range []string{"relation public.docs", "max_record_bytes", "errors.record_too_large.rows to dlq or skip", fmt.Sprintf("xid %d", xid)} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want an error that contains %q", err, want)
		}
	}
	s.heldBefore(t, err, before)
	s.db.Exec(t, `INSERT INTO docs VALUES (3, 'later')`)

	s.config += "errors:\n  record_too_large: {rows: dlq}\n"
	s.startEngine(t)
	if events := decode(t, s.env.ReadN(t, s.topic("docs"), 2, time.Minute)); fmt.Sprint(events[1].Key["id"]) != "3" {
		t.Fatalf("got %v, want rows 1 and 3", events)
	}
	ref, lsn, _ := dlqReference(t, s)
	if lsn <= before || lsn >= after {
		t.Fatalf("dead-letter lsn %s, want the row's, between %s and %s", lsn, before, after)
	}
	want := map[string]any{
		"reason": "record_too_large", "kind": "row", "topic": s.topic("docs"), "relation": "public.docs",
		"key": base64.StdEncoding.EncodeToString([]byte(`{"id":2}`)), "key_bytes": jsonNumber(8),
		"record_bytes": ref["record_bytes"], "max_record_bytes": jsonNumber(20000), "xid": jsonNumber(int(xid)),
	}
	if n, ok := ref["record_bytes"].(float64); !ok || n <= 32000 {
		t.Fatalf("record_bytes %v, want the event's size, over its 32000 bytes of body", ref["record_bytes"])
	}
	if !reflect.DeepEqual(ref, want) {
		t.Fatalf("dead-letter record\n got %v\nwant %v", ref, want)
	}
	last := s.currentLSN(t)
	testenv.WaitFor(t, time.Minute, "the slot to confirm past the row's transaction", func() (bool, error) {
		return s.confirmedLSN(t) >= last, nil
	})
}

// A topic that exists with a max.message.bytes below kafka.max_record_bytes: batches of small
// records are kept within it, a larger record is too large before Kafka sees it (and stops
// procon-cdc under fail, naming the topic's limit), check warns about the topic, and under
// skip the stream goes past the record.
func TestExistingTopicWithASmallerLimit(t *testing.T) {
	s := newSetup(t, `public.docs: {}`, "")
	s.db.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	limit := "10000"
	resp, err := kadm.NewClient(s.env.Kafka(t)).CreateTopic(testenv.Context(t, 30*time.Second), 1, 1,
		map[string]*string{sink.MaxMessageBytes: &limit}, s.topic("docs"))
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(s.config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testenv.ProconBinary(t), "check", "--config", path).CombinedOutput()
	want := "warn  topic " + s.topic("docs")
	if err != nil || !strings.Contains(string(out), want) ||
		!strings.Contains(string(out), "max.message.bytes is 10000, below kafka.max_record_bytes (1048576)") {
		t.Fatalf("check: %v\n%s\nwant a line starting %q that names both limits", err, out, want)
	}

	r := s.startEngine(t)
	s.waitSlot(t)
	// 400 rows of about 330 bytes in one transaction: batches of them fill up to the
	// producer's limit unless it keeps to the topic's.
	s.db.Exec(t, `INSERT INTO docs SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 400) g`)
	s.env.ReadN(t, s.topic("docs"), 400, time.Minute)
	before := s.currentLSN(t)
	s.db.Exec(t, `INSERT INTO docs SELECT 1000, string_agg(md5(g::text), '') FROM generate_series(1, 400) g`) // 12800 bytes
	if err = r.wait(t, time.Minute); err == nil || !strings.Contains(err.Error(), "over the 10000 bytes the topic takes") {
		t.Fatalf("got %v, want the row refused against the topic's own limit", err)
	}
	s.heldBefore(t, err, before)
	s.db.Exec(t, `INSERT INTO docs VALUES (1001, 'later')`)
	s.config += "errors:\n  record_too_large: {rows: skip}\n"
	s.startEngine(t)
	recs := s.env.ReadN(t, s.topic("docs"), 401, time.Minute)
	if events := decode(t, recs[400:]); fmt.Sprint(events[0].Key["id"]) != "1001" {
		t.Fatalf("got %v after the 400 rows, want row 1001 (row 1000 skipped)", events)
	}
	last := s.currentLSN(t)
	testenv.WaitFor(t, time.Minute, "the slot to confirm past the skipped row", func() (bool, error) {
		return s.confirmedLSN(t) >= last, nil
	})
}

// A realtime message larger than Kafka takes, from a role without privileges, is skipped
// (realtime's default): the next notification goes out and the slot moves on.
func TestTooLargeRealtimeMessageIsSkipped(t *testing.T) {
	s := newSetup(t, `public.docs: {}`, "")
	withMaxRecordBytes(s, 20000)
	s.db.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 0")
	role := unprivilegedRole(t, s)
	s.runEngine(t)
	s.waitSlot(t)
	emitAs(t, s, role, "procon-realtime", `{"channel": "big", "metadata": {"blob": "`+strings.Repeat("x", 30000)+`"}}`)
	small := emitAs(t, s, role, "procon-realtime", `{"channel": "small"}`)
	got := readRealtime(t, s, time.Minute, hasChannel("small"))
	if len(got) != 1 {
		t.Fatalf("got %d notifications, want only the small one", len(got))
	}
	testenv.WaitFor(t, time.Minute, "the slot to confirm past both messages", func() (bool, error) {
		return s.confirmedLSN(t) >= small.commitEnd, nil
	})
}

// sink.Size is Kafka's own count: the producer takes a record of Size bytes under a batch limit
// of Size and refuses it under Size-1; the broker takes it into a topic whose max.message.bytes
// is Size-4 and refuses it at Size-5 (it does not count the 4 bytes of the request's records
// length that the producer does).
func TestRecordSizeIsKafkas(t *testing.T) {
	env := testenv.Get(t)
	rnd := testenv.Rand(t, 0)
	bytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.IntN(256))
		}
		return b
	}
	r := &sink.Record{Key: bytes(rnd.IntN(300)), Value: bytes(1000 + rnd.IntN(100000))}
	for range rnd.IntN(5) {
		r.Headers = append(r.Headers, sink.Header{Key: string(bytes(1 + rnd.IntN(20))), Value: bytes(rnd.IntN(200))})
	}
	size := sink.Size(r)
	produce := func(topic string, batchMax int) error {
		cl := env.Kafka(t, kgo.ProducerBatchMaxBytes(int32(batchMax)), kgo.RecordPartitioner(kgo.ManualPartitioner()))
		rec := &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, kgo.RecordHeader(h))
		}
		return cl.ProduceSync(testenv.Context(t, 30*time.Second), rec).FirstErr()
	}
	topicWithLimit := func(limit int) string {
		name := strings.ReplaceAll(testenv.Name(t, "t"), "_", "-")
		v := fmt.Sprint(limit)
		resp, err := kadm.NewClient(env.Kafka(t)).CreateTopic(testenv.Context(t, 30*time.Second), 1, 1, map[string]*string{sink.MaxMessageBytes: &v}, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatal(err)
		}
		env.DeleteTopicsAtCleanup(t, name)
		return name
	}
	roomy := topicWithLimit(2 * size)
	if err := produce(roomy, size); err != nil {
		t.Fatalf("the producer refused a record of Size %d under a batch limit of %d: %v", size, size, err)
	}
	if err := produce(roomy, size-1); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("the producer took a record of Size %d under a batch limit of %d: %v", size, size-1, err)
	}
	if err := produce(topicWithLimit(size-4), 2*size); err != nil {
		t.Fatalf("the broker refused a record of Size %d into a topic of max.message.bytes %d: %v", size, size-4, err)
	}
	if err := produce(topicWithLimit(size-5), 2*size); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("the broker took a record of Size %d into a topic of max.message.bytes %d: %v", size, size-5, err)
	}
}

// A row of the initial snapshot larger than Kafka takes follows the rows policy too: under
// dlq a reference to it (at the slot's consistent point, without a transaction) takes its
// place, the snapshot completes and streaming starts.
func TestTooLargeSnapshotRowIsDeadLettered(t *testing.T) {
	s := newSetup(t, `public.docs: {}`, "errors:\n  record_too_large: {rows: dlq}\n")
	withMaxRecordBytes(s, 20000)
	s.db.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, body text)`)
	s.db.Exec(t, `INSERT INTO docs SELECT g, 'small' FROM generate_series(1, 10) g`)
	s.db.Exec(t, `INSERT INTO docs SELECT 11, string_agg(md5(g::text), '') FROM generate_series(1, 1000) g`)
	s.runEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO docs VALUES (12, 'streamed')`)
	events := decode(t, s.env.ReadN(t, s.topic("docs"), 11, time.Minute))
	if fmt.Sprint(events[10].Key["id"]) != "12" {
		t.Fatalf("got %v last, want the streamed row 12 after the ten small snapshot rows", events[10].Key)
	}
	rec := s.env.ReadN(t, s.name+".dlq", 1, time.Minute)[0]
	var ref map[string]any
	if err := json.Unmarshal(rec.Value, &ref); err != nil {
		t.Fatal(err)
	}
	// The snapshot's rows have source.lsn = the slot's consistent point.
	point, err := events[0].Value["source"].(map[string]any)["lsn"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"reason": "record_too_large", "kind": "row", "topic": s.topic("docs"), "relation": "public.docs",
		"key": base64.StdEncoding.EncodeToString([]byte(`{"id":11}`)), "key_bytes": jsonNumber(9),
		"record_bytes": ref["record_bytes"], "max_record_bytes": jsonNumber(20000), "lsn": pglogrepl.LSN(point).String(),
	}
	if !reflect.DeepEqual(ref, want) {
		t.Fatalf("dead-letter record\n got %v\nwant %v", ref, want)
	}
}

// sqlBlock returns the README's ```sql block that contains marker.
func sqlBlock(t *testing.T, marker string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(readme), "```sql\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if strings.Contains(block, marker) {
			return block
		}
	}
	t.Fatalf("README.md has no sql block with %q", marker)
	return ""
}

// The README's advice works as written: by default any role can emit a logical message; after
// its REVOKE block only granted roles can, and the SECURITY DEFINER function it shows lets an
// application role emit its one prefix.
func TestEmitMessageAdviceFromTheREADME(t *testing.T) {
	s := &setup{env: testenv.Get(t)}
	s.db = s.env.Database(t)
	role := unprivilegedRole(t, s)
	emit := func(sql string) error {
		ctx := testenv.Context(t, 30*time.Second)
		tx, err := s.db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, sql)
		return err
	}
	if err := emit(`SELECT pg_logical_emit_message(true, 'any', 'thing')`); err != nil {
		t.Fatalf("before the REVOKE a role without privileges could not emit a message (%v): the threat the README describes is gone?", err)
	}
	s.db.Exec(t, sqlBlock(t, "FROM PUBLIC', f)"))
	for _, sql := range []string{`SELECT pg_logical_emit_message(true, 'any', 'thing')`, `SELECT pg_logical_emit_message(false, 'any', 'thing'::bytea)`} {
		if err := emit(sql); err == nil || !strings.Contains(err.Error(), "permission denied for function pg_logical_emit_message") {
			t.Fatalf("%s after the README's REVOKE: got %v, want permission denied", sql, err)
		}
	}
	s.db.Exec(t, strings.ReplaceAll(sqlBlock(t, "SECURITY DEFINER"), "app_writer", pgx.Identifier{role}.Sanitize()))
	if err := emit(`SELECT notify_realtime('{"channel": "c"}')`); err != nil {
		t.Fatalf("the README's wrapper function: %v", err)
	}
}
