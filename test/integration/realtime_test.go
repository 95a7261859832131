package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/test/testenv"
	"github.com/procon-cdc/procon/txid"
)

// createRealtimeTable creates procon_realtimes with the SQL that `procon-cdc init-sql` prints.
func createRealtimeTable(t *testing.T, s *setup) {
	t.Helper()
	out, err := exec.Command(testenv.ProconBinary(t), "init-sql").Output()
	if err != nil {
		t.Fatalf("procon-cdc init-sql: %v", err)
	}
	s.db.Exec(t, string(out))
}

// realtimeTopic is the test's realtime topic: under the test's prefix, so it is deleted with
// the test's other topics.
func realtimeTopic(s *setup) string { return s.name + ".realtime" }

// withRealtime appends a realtime section to the test's configuration.
func withRealtime(s *setup, settings ...string) {
	s.config += "\nrealtime:\n  topic: " + realtimeTopic(s) + "\n"
	for _, l := range settings {
		s.config += "  " + l + "\n"
	}
}

// rtRecord is a decoded realtime record.
type rtRecord struct {
	Channel    string  `json:"channel"`
	SessionID  *string `json:"session_id"`
	Metadata   string  `json:"metadata"`
	CommitTsMs int64   `json:"commit_ts_ms"`
	TxID       string  `json:"tx_id"`
	rec        *kgo.Record
	key        txid.Key
}

func (r rtRecord) meta(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Metadata), &m); err != nil {
		t.Fatalf("metadata %q: %v", r.Metadata, err)
	}
	return m
}

func (r rtRecord) i(t *testing.T) int {
	t.Helper()
	v, ok := r.meta(t)["i"].(float64)
	if !ok {
		t.Fatalf("metadata %s has no i", r.Metadata)
	}
	return int(v)
}

func decodeRealtime(t *testing.T, recs []*kgo.Record) []rtRecord {
	t.Helper()
	out := make([]rtRecord, len(recs))
	for i, r := range recs {
		if err := json.Unmarshal(r.Value, &out[i]); err != nil {
			t.Fatalf("realtime value %q: %v", r.Value, err)
		}
		out[i].rec = r
		k, err := txid.FromRecordHeaders(r.Headers)
		if err != nil {
			t.Fatalf("realtime record without its idempotency key: %v", err)
		}
		out[i].key = k
		if want := fmt.Sprintf(`{"channel":%q}`, out[i].Channel); string(r.Key) != want {
			t.Fatalf("key %s, want %s", r.Key, want)
		}
		if out[i].TxID != k.Tx.String() {
			t.Fatalf("tx_id %s differs from the procon.tx header %s", out[i].TxID, k.Tx)
		}
	}
	return out
}

// readRealtime reads the realtime topic until done says it has seen enough.
func readRealtime(t *testing.T, s *setup, timeout time.Duration, done func([]rtRecord) bool) []rtRecord {
	t.Helper()
	var got []rtRecord
	recs, err := s.env.ReadUntil(realtimeTopic(s), timeout, func(recs []*kgo.Record) bool {
		got = decodeRealtime(t, recs)
		return done(got)
	})
	if err != nil {
		t.Fatalf("reading %s: %v (got %d records)", realtimeTopic(s), err, len(recs))
	}
	return got
}

func hasChannel(channel string) func([]rtRecord) bool {
	return func(rs []rtRecord) bool {
		for _, r := range rs {
			if r.Channel == channel {
				return true
			}
		}
		return false
	}
}

func commit(t *testing.T, conn *pgx.Conn, sql ...string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range sql {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func currentLSN(t *testing.T, s *setup) pglogrepl.LSN {
	t.Helper()
	var text string
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&text); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

func realtimeRows(t *testing.T, s *setup) int {
	t.Helper()
	var n int
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM procon_realtimes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func topicExists(t *testing.T, s *setup, topic string) bool {
	t.Helper()
	adm := kadm.NewClient(s.env.Kafka(t))
	details, err := adm.ListTopics(testenv.Context(t, 30*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := details[topic]
	return ok && d.Err == nil
}

func headerValue(r *kgo.Record, name string) string {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

// TestRealtimeFromCommittedTransactionsOnly: a notification from the table and one from a
// logical message in a committed transaction arrive, identical; a rolled-back transaction
// sends nothing; channels spread over partitions, each channel on one; the realtime table and
// the realtime messages never become events; published rows are cleaned up.
func TestRealtimeFromCommittedTransactionsOnly(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY, v text)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 0", "partitions: 4")
	s.runEngine(t)
	s.waitSlot(t)
	conn := s.db.Conn(t)

	commit(t, conn,
		`INSERT INTO accounts VALUES (1, 'a')`,
		`INSERT INTO procon_realtimes (channel, session_id, metadata) VALUES ('c1', 's1', '{"k": 1, "who": "x"}')`,
		`SELECT pg_logical_emit_message(true, 'procon-realtime', '{"channel": "c1", "session_id": "s1", "metadata": {"who": "x", "k": 1}}')`)
	ctx := testenv.Context(t, time.Minute)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO procon_realtimes (channel) VALUES ('rolled')`,
		`SELECT pg_logical_emit_message(true, 'procon-realtime', '{"channel": "rolled"}')`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var spread []string
	for i := range 16 {
		spread = append(spread, fmt.Sprintf(`INSERT INTO procon_realtimes (channel, metadata) VALUES ('ch%d', '{"i": %d}')`, i, i))
	}
	commit(t, conn, spread...)
	commit(t, conn, spread...) // each channel twice: both times on the same partition
	commit(t, conn, `SELECT pg_logical_emit_message(true, 'procon-realtime', '{"channel": "end"}')`)

	// Partitions are read in no particular order: wait for all 35 (a 36th in the same fetches fails the count).
	got := readRealtime(t, s, time.Minute, func(rs []rtRecord) bool { return len(rs) >= 35 && hasChannel("end")(rs) })
	if len(got) != 2+32+1 {
		t.Fatalf("got %d realtime records, want 35", len(got))
	}
	for _, r := range got {
		if r.Channel == "rolled" {
			t.Fatal("a rolled-back transaction sent a realtime notification")
		}
	}
	byChannel := map[string][]rtRecord{}
	for _, r := range got {
		byChannel[r.Channel] = append(byChannel[r.Channel], r)
	}
	if len(byChannel["c1"]) != 2 {
		t.Fatalf("got %d notifications in c1, want 2", len(byChannel["c1"]))
	}
	table, msg := byChannel["c1"][0], byChannel["c1"][1]
	if string(table.rec.Value) != string(msg.rec.Value) {
		t.Fatalf("the table and the message paths differ:\n%s\n%s", table.rec.Value, msg.rec.Value)
	}
	if table.Channel != "c1" || table.SessionID == nil || *table.SessionID != "s1" || table.Metadata != `{"k":1,"who":"x"}` {
		t.Fatalf("got %+v", table)
	}
	if table.key.Tx != msg.key.Tx || table.key.Seq == msg.key.Seq {
		t.Fatalf("one transaction's notifications must share procon.tx and differ in procon.seq: %v, %v", table.key, msg.key)
	}
	accounts := s.env.ReadN(t, s.topic("accounts"), 1, time.Minute)
	if h := headerValue(accounts[0], txid.HeaderTx); h != table.key.Tx.String() {
		t.Fatalf("the change event has procon.tx %s, its notifications %s", h, table.key.Tx)
	}
	if ms := table.key.Tx.Time().UnixMilli(); ms != table.CommitTsMs {
		t.Fatalf("commit_ts_ms %d, procon.tx time %d", table.CommitTsMs, ms)
	}

	partitionOf := map[string]int32{}
	used := map[int32]bool{}
	for _, r := range got {
		if !strings.HasPrefix(r.Channel, "ch") {
			continue
		}
		if p, ok := partitionOf[r.Channel]; ok && p != r.rec.Partition {
			t.Fatalf("channel %s is on partitions %d and %d", r.Channel, p, r.rec.Partition)
		}
		partitionOf[r.Channel] = r.rec.Partition
		used[r.rec.Partition] = true
	}
	if len(used) < 2 {
		t.Fatalf("16 channels all went to partitions %v: they must spread by channel", used)
	}

	if topicExists(t, s, s.topic("procon_realtimes")) {
		t.Fatal("the realtime table is not in relation_configs: it must not have events")
	}
	if topicExists(t, s, s.name+".message") {
		t.Fatal("realtime and cleanup messages must not become message events")
	}
	testenv.WaitFor(t, 30*time.Second, "published rows to be deleted", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})
}

// TestRealtimeBurstIsSpaced: a burst of 50 notifications in one channel with rt_threshold 200
// all arrive, in order, at least 200 ms apart (Kafka record timestamps); another channel is
// not held up by the burst.
func TestRealtimeBurstIsSpaced(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 200")
	s.runEngine(t)
	s.waitSlot(t)
	conn := s.db.Conn(t)
	for i := 1; i <= 50; i++ {
		commit(t, conn, fmt.Sprintf(`INSERT INTO procon_realtimes (channel, metadata) VALUES ('burst', '{"i": %d}')`, i))
		if i == 10 {
			commit(t, conn, `INSERT INTO procon_realtimes (channel, metadata) VALUES ('other', '{"i": 0}')`)
		}
	}
	got := readRealtime(t, s, 2*time.Minute, func(rs []rtRecord) bool { return len(rs) >= 51 })
	var burst []rtRecord
	var other rtRecord
	for _, r := range got {
		if r.Channel == "burst" {
			burst = append(burst, r)
		} else {
			other = r
		}
	}
	if len(burst) != 50 {
		t.Fatalf("got %d burst notifications, want 50", len(burst))
	}
	minGap := time.Hour
	for k, r := range burst {
		if r.i(t) != k+1 {
			t.Fatalf("burst notification %d is #%d: they must arrive in order", k+1, r.i(t))
		}
		if k > 0 {
			gap := r.rec.Timestamp.Sub(burst[k-1].rec.Timestamp)
			if gap < 200*time.Millisecond {
				t.Fatalf("notifications #%d and #%d are %v apart, want at least 200ms", k, k+1, gap)
			}
			minGap = min(minGap, gap)
		}
	}
	span := burst[49].rec.Timestamp.Sub(burst[0].rec.Timestamp)
	t.Logf("50 notifications over %v, smallest gap %v", span, minGap)
	if other.Channel != "other" || !other.rec.Timestamp.Before(burst[20].rec.Timestamp) {
		t.Fatalf("the other channel's notification (at %v) waited behind the burst", other.rec.Timestamp.Sub(burst[0].rec.Timestamp))
	}
}

// TestRealtimeCoalesceKeepsTheNewest: with rt_coalesce, a burst in one channel and session
// delivers the newest notification, not every one; dropped notifications release the slot.
func TestRealtimeCoalesceKeepsTheNewest(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 1000", "rt_coalesce: true")
	s.runEngine(t)
	s.waitSlot(t)
	conn := s.db.Conn(t)
	for i := 1; i <= 20; i++ {
		commit(t, conn, fmt.Sprintf(`INSERT INTO procon_realtimes (channel, session_id, metadata) VALUES ('co', 's', '{"i": %d}')`, i))
	}
	commit(t, conn, `INSERT INTO procon_realtimes (channel, session_id, metadata) VALUES ('co', 'other', '{"i": 100}')`)
	end := currentLSN(t, s)

	got := readRealtime(t, s, time.Minute, func(rs []rtRecord) bool {
		seen20, seen100 := false, false
		for _, r := range rs {
			seen20 = seen20 || r.i(t) == 20
			seen100 = seen100 || r.i(t) == 100
		}
		return seen20 && seen100
	})
	var seq []int
	for _, r := range got {
		if *r.SessionID == "s" {
			seq = append(seq, r.i(t))
		}
	}
	t.Logf("session s got %v", seq)
	if len(seq) > 3 || seq[len(seq)-1] != 20 {
		t.Fatalf("got %v: coalescing must deliver the newest (20) and drop most of the burst", seq)
	}
	for k := 1; k < len(seq); k++ {
		if seq[k] <= seq[k-1] {
			t.Fatalf("got %v: out of order", seq)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "the slot to confirm past the coalesced burst", func() (bool, error) {
		return s.confirmedLSN(t) >= end, nil
	})
	testenv.WaitFor(t, 30*time.Second, "coalesced rows to be deleted too", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})
}

// TestRealtimeKill9WhileWaiting: procon-cdc is killed while notifications wait in the throttle;
// the slot was not confirmed past them, and after a restart every one arrives, with the same
// idempotency key as before the crash; the transactions' change events carry the same
// procon.tx as their notifications.
func TestRealtimeKill9WhileWaiting(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 1000")
	p := s.startProcess(t)
	s.waitSlot(t)
	conn := s.db.Conn(t)
	const n = 10
	for i := 1; i <= n; i++ {
		commit(t, conn, fmt.Sprintf(`INSERT INTO accounts VALUES (%d)`, i),
			fmt.Sprintf(`INSERT INTO procon_realtimes (channel, metadata) VALUES ('k', '{"i": %d}')`, i))
	}
	end := currentLSN(t, s)
	before := readRealtime(t, s, time.Minute, func(rs []rtRecord) bool { return len(rs) >= 2 })
	p.kill9(t)
	if c := s.confirmedLSN(t); c >= end {
		t.Fatalf("the slot confirmed %s, past the notifications still waiting (last commit before %s)", c, end)
	}

	s.startProcess(t)
	got := readRealtime(t, s, 2*time.Minute, func(rs []rtRecord) bool {
		seen := map[int]bool{}
		for _, r := range rs {
			seen[r.i(t)] = true
		}
		return len(seen) == n
	})
	keys := map[txid.Key]int{}
	txOf := map[int]txid.ID{}
	for _, r := range append(before, got...) {
		i := r.i(t)
		if prev, ok := keys[r.key]; ok && prev != i {
			t.Fatalf("key %s names notifications %d and %d", r.key, prev, i)
		}
		keys[r.key] = i
		txOf[i] = r.key.Tx
	}
	if len(keys) != n {
		t.Fatalf("got %d distinct idempotency keys, want %d (a re-sent notification must keep its key)", len(keys), n)
	}
	t.Logf("%d records for %d notifications (repeats after the crash are expected)", len(got), n)
	for _, ev := range decode(t, s.env.ReadN(t, s.topic("accounts"), n, time.Minute)) {
		id, _ := strconv.Atoi(fmt.Sprint(ev.after()["id"]))
		if h := headerValue(ev.Record, txid.HeaderTx); h != txOf[id].String() {
			t.Fatalf("account %d: change event procon.tx %s, its notification's %s", id, h, txOf[id])
		}
	}
	testenv.WaitFor(t, time.Minute, "the slot to confirm past every notification", func() (bool, error) {
		return s.confirmedLSN(t) >= end, nil
	})
	testenv.WaitFor(t, 30*time.Second, "published rows to be deleted", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})
}

// TestRealtimeCleanupUnderLoad: with the realtime table also in relation_configs, a sustained
// load of notifications keeps the table small, its inserts are events, and the cleanup's
// deletes are not.
func TestRealtimeCleanupUnderLoad(t *testing.T) {
	s := newSetup(t, `public.procon_realtimes: {}`, "")
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 0")
	s.runEngine(t)
	s.waitSlot(t)
	// Warm up: the realtime topic exists, the relation is described, the cleanup is connected.
	s.db.Exec(t, `INSERT INTO procon_realtimes (channel) VALUES ('warmup')`)
	testenv.WaitFor(t, time.Minute, "the warm-up row to be published and deleted", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})

	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	var inserted atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				_, err := s.db.Pool.Exec(context.Background(),
					`INSERT INTO procon_realtimes (channel, metadata) VALUES ($1, jsonb_build_object('i', $2::int))`,
					fmt.Sprintf("load%d", (w*7+i)%10), i)
				if err != nil {
					t.Error(err)
					return
				}
				inserted.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	var samples []int
	for ctx.Err() == nil {
		samples = append(samples, realtimeRows(t, s))
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	total := int(inserted.Load())
	slices.Sort(samples)
	median, most := samples[len(samples)/2], samples[len(samples)-1]
	t.Logf("%d rows inserted in 5s; rows in the table: median %d, at most %d", total, median, most)
	// Without the cleanup the table would end with all of them; a busy machine can delay the
	// notifications (and so the deletes) for a moment, hence the looser bound on the maximum.
	if median > total/10 || most > total/2 {
		t.Fatalf("the table held a median of %d and at most %d of %d rows: the cleanup does not keep up", median, most, total)
	}
	testenv.WaitFor(t, time.Minute, "every published row to be deleted", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})
	// Committed after every cleanup delete: its event comes after theirs, if they had any.
	s.db.Exec(t, `INSERT INTO procon_realtimes (channel) VALUES ('sentinel')`)
	recs, err := s.env.ReadUntil(s.topic("procon_realtimes"), time.Minute, func(recs []*kgo.Record) bool {
		for _, ev := range decode(t, recs) {
			if ev.Value != nil && ev.after()["channel"] == "sentinel" {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("reading the realtime table's events: %v", err)
	}
	for _, ev := range decode(t, recs) {
		if ev.op() != "c" {
			t.Fatalf("the realtime table has a %q event: the cleanup's deletes must not become events", ev.op())
		}
	}
	if len(recs) != total+2 {
		t.Fatalf("got %d insert events, want %d", len(recs), total+2)
	}
	rt := readRealtime(t, s, time.Minute, hasChannel("sentinel"))
	if len(rt) != total+2 {
		t.Fatalf("got %d notifications, want %d", len(rt), total+2)
	}
	if topicExists(t, s, s.name+".message") {
		t.Fatal("the cleanup marker must not become a message event")
	}
}

// TestRealtimePerRelation: relation_configs.<rel>.realtime builds a notification from the
// selected operations of a relation (a delete from the old row), with channel and session
// from a column and from the row's metadata, and the row's metadata merged in; the realtime
// table is not needed for it.
func TestRealtimePerRelation(t *testing.T) {
	s := newSetup(t, `public.docs: {realtime: {channel: room, session_id: metadata.session_token, operations: [insert, delete]}, rt_threshold: 0}`, "")
	s.db.Exec(t, `CREATE TABLE docs (id int PRIMARY KEY, room text, body text, metadata jsonb NOT NULL DEFAULT '{}')`)
	s.db.Exec(t, `ALTER TABLE docs REPLICA IDENTITY FULL`)
	withRealtime(s) // realtime.enabled stays false: no procon_realtimes table here
	s.runEngine(t)
	s.waitSlot(t)
	conn := s.db.Conn(t)
	commit(t, conn, `INSERT INTO docs VALUES (1, 'r1', 'x', '{"session_token": "tok", "extra": 1}')`)
	commit(t, conn, `UPDATE docs SET body = 'y' WHERE id = 1`) // not selected
	commit(t, conn, `DELETE FROM docs WHERE id = 1`)

	got := readRealtime(t, s, time.Minute, func(rs []rtRecord) bool { return len(rs) >= 2 })
	for k, op := range []string{"insert", "delete"} {
		r := got[k]
		if r.Channel != "r1" || r.SessionID == nil || *r.SessionID != "tok" {
			t.Fatalf("%s: got channel %q session %v", op, r.Channel, r.SessionID)
		}
		want := fmt.Sprintf(`{"extra":1,"op":%q,"relation":"public.docs","session_token":"tok"}`, op)
		if r.Metadata != want {
			t.Fatalf("%s: got metadata %s, want %s", op, r.Metadata, want)
		}
	}
	events := s.env.ReadN(t, s.topic("docs"), 4, time.Minute) // c, u, d, tombstone
	if h := headerValue(events[0], txid.HeaderTx); h != got[0].key.Tx.String() {
		t.Fatalf("insert event procon.tx %s, its notification %s", h, got[0].key.Tx)
	}
	if h := headerValue(events[2], txid.HeaderTx); h != got[1].key.Tx.String() {
		t.Fatalf("delete event procon.tx %s, its notification %s", h, got[1].key.Tx)
	}
	if got[0].key.Seq != 2 || got[1].key.Seq != 3 {
		t.Fatalf("notification positions %d and %d, want 2 (after the insert) and 3 (after the delete and its tombstone)", got[0].key.Seq, got[1].key.Seq)
	}
}

// TestTransactionIdentityOnEveryRecord: change events, tombstones, transaction metadata and
// realtime notifications of one transaction all carry its procon.tx and distinct procon.seq
// positions; PROCON_INSTANCE overrides instance_num in the id.
func TestTransactionIdentityOnEveryRecord(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "instance_num: 5\ndebezium:\n  provide.transaction.metadata: true\n")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY, v text)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 0")
	t.Setenv("PROCON_INSTANCE", "77") // the child process inherits it
	s.startProcess(t)
	s.waitSlot(t)
	commit(t, s.db.Conn(t),
		`INSERT INTO accounts VALUES (1, 'a')`,
		`UPDATE accounts SET v = 'b' WHERE id = 1`,
		`DELETE FROM accounts WHERE id = 1`,
		`INSERT INTO procon_realtimes (channel) VALUES ('ident')`)

	accounts := s.env.ReadN(t, s.topic("accounts"), 4, time.Minute) // c, u, d, tombstone
	meta := s.env.ReadN(t, s.name+".transaction", 2, time.Minute)   // BEGIN, END
	rt := readRealtime(t, s, time.Minute, hasChannel("ident"))
	all := []*kgo.Record{meta[0], accounts[0], accounts[1], accounts[2], accounts[3], rt[0].rec, meta[1]}
	var id txid.ID
	for k, r := range all {
		key, err := txid.FromRecordHeaders(r.Headers)
		if err != nil {
			t.Fatalf("record %d of %s: %v", k, r.Topic, err)
		}
		if k == 0 {
			id = key.Tx
		}
		if key.Tx != id || key.Seq != k+1 {
			t.Fatalf("record %d of %s has key %s, want %s/%d", k, r.Topic, key, id, k+1)
		}
	}
	if accounts[3].Value != nil {
		t.Fatal("the fourth accounts record must be the tombstone")
	}
	if id.Instance() != 77 {
		t.Fatalf("procon.tx has instance %d, want 77 from PROCON_INSTANCE", id.Instance())
	}
	ev := decode(t, accounts[:1])[0]
	commitMs, _ := ev.Value["source"].(map[string]any)["ts_ms"].(json.Number).Int64()
	if id.Time().UnixMilli() != commitMs {
		t.Fatalf("procon.tx time %d, commit time (source.ts_ms) %d", id.Time().UnixMilli(), commitMs)
	}
}

// TestInstanceNumRefused: bad instance_num and PROCON_INSTANCE values stop procon-cdc before it
// touches anything, with a message naming the setting.
func TestInstanceNumRefused(t *testing.T) {
	env := testenv.Get(t)
	base := fmt.Sprintf("name: ident\npostgres:\n  dsn: postgres://nobody@127.0.0.1:1/none\nkafka:\n  brokers: %s\nrelation_configs:\n  public.accounts: {}\n",
		strings.Join(env.Brokers, ","))
	cases := []struct{ yaml, envVal, want string }{
		{"instance_num: 70000\n", "", "instance_num: must be an integer from 0 to 65535, got 70000"},
		{"instance_num: -1\n", "", "instance_num: must be an integer from 0 to 65535, got -1"},
		{"instance_num: abc\n", "", `instance_num: "abc" is not an integer from 0 to 65535`},
		{"instance_num: 1.5\n", "", `instance_num: "1.5" is not an integer from 0 to 65535`},
		{"", "abc", `PROCON_INSTANCE: "abc" is not an integer from 0 to 65535`},
		{"", "65536", `PROCON_INSTANCE: "65536" is not an integer from 0 to 65535`},
		{"instance_num: 5\n", "-2", `PROCON_INSTANCE: "-2" is not an integer from 0 to 65535`},
	}
	for _, tc := range cases {
		path := filepath.Join(t.TempDir(), "procon.yaml")
		if err := os.WriteFile(path, []byte(base+tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(testenv.ProconBinary(t), "run", "--config", path)
		cmd.Env = append(os.Environ(), "PROCON_INSTANCE="+tc.envVal)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Fatalf("%q with PROCON_INSTANCE=%q: got %v, want exit code 2\n%s", tc.yaml, tc.envVal, err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Fatalf("%q with PROCON_INSTANCE=%q: output\n%s\ndoes not say %q", tc.yaml, tc.envVal, out, tc.want)
		}
	}
}

// emitRealtime emits a transactional realtime message in a transaction of its own and returns
// the LSN pg_logical_emit_message gives it.
func emitRealtime(t *testing.T, s *setup, content string) pglogrepl.LSN {
	t.Helper()
	var text string
	if err := s.db.Pool.QueryRow(context.Background(),
		`SELECT pg_logical_emit_message(true, 'procon-realtime', $1::text)::text`, content).Scan(&text); err != nil {
		t.Fatal(err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// loggedDrops returns the log lines of notifications dropped for their size, by channel.
func loggedDrops(logs string) map[string][]string {
	out := map[string][]string{}
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "over realtime.max_notification_bytes") {
			continue
		}
		_, rest, _ := strings.Cut(l, " channel=")
		channel, _, _ := strings.Cut(rest, " ")
		out[channel] = append(out[channel], l)
	}
	return out
}

// logField returns the value of key=value in a text log line.
func logField(line, key string) string {
	_, rest, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

// TestRealtimeOverCapNotificationsAreDropped: ~1 MiB realtime messages and a realtime table row
// with a 20 kB metadata, all over realtime.max_notification_bytes (default 8000), are dropped
// with a warning naming the channel, the LSN and the size; they neither stop the stream nor
// hold the slot; the row is still cleaned up; the notifications after them arrive.
func TestRealtimeOverCapNotificationsAreDropped(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 0", "partitions: 1")
	run := s.startEngine(t)
	s.waitSlot(t)

	bigs := map[pglogrepl.LSN]bool{} // what pg_logical_emit_message returned: the message's LSN in the stream
	pad := strings.Repeat("x", 1<<20)
	for range 5 {
		bigs[emitRealtime(t, s, `{"channel": "big", "metadata": {"pad": "`+pad+`"}}`)] = true
	}
	s.db.Exec(t, `INSERT INTO procon_realtimes (channel, metadata) VALUES ('bigrow', jsonb_build_object('pad', repeat('y', 20000)))`)
	emitRealtime(t, s, `{"channel": "after", "metadata": {"pad": "`+strings.Repeat("z", 7000)+`"}}`) // just under the cap
	commit(t, s.db.Conn(t), `INSERT INTO accounts VALUES (1)`, `INSERT INTO procon_realtimes (channel) VALUES ('after-row')`)
	end := currentLSN(t, s)

	got := readRealtime(t, s, time.Minute, func(rs []rtRecord) bool { return hasChannel("after-row")(rs) })
	var channels []string
	for _, r := range got {
		channels = append(channels, r.Channel)
	}
	if fmt.Sprint(channels) != "[after after-row]" {
		t.Fatalf("got notifications in %v, want [after after-row]: over-cap ones are dropped, later ones arrive", channels)
	}
	s.env.ReadN(t, s.topic("accounts"), 1, time.Minute)
	testenv.WaitFor(t, 30*time.Second, "the slot to confirm past the dropped notifications", func() (bool, error) {
		return s.confirmedLSN(t) >= end, nil
	})
	testenv.WaitFor(t, 30*time.Second, "the over-cap row to be deleted too", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})
	if st := run.e.RealtimeStats(); st.TooLarge != 6 || st.PeakQueueBytes > 10_000 {
		t.Fatalf("got %+v: want 6 notifications dropped, none of them queued", st)
	}

	drops := loggedDrops(run.logs())
	if len(drops["big"]) != 5 || len(drops["bigrow"]) != 1 || len(drops) != 2 {
		t.Fatalf("got drop warnings %v, want 5 for big and 1 for bigrow", drops)
	}
	for _, l := range append(drops["big"], drops["bigrow"]...) {
		if !strings.Contains(l, "level=WARN") {
			t.Errorf("a dropped notification must be a warning: %s", l)
		}
		if size, _ := strconv.Atoi(logField(l, "size")); size <= 8000 {
			t.Errorf("the warning must give the notification's size: %s", l)
		}
	}
	// Each message's warning names its own LSN.
	for _, l := range drops["big"] {
		lsn, err := pglogrepl.ParseLSN(logField(l, "lsn"))
		if err != nil {
			t.Fatalf("no lsn in %s: %v", l, err)
		}
		if !bigs[lsn] {
			t.Fatalf("the warning names LSN %s, not one of the messages' %v: %s", lsn, bigs, l)
		}
		delete(bigs, lsn)
	}
}

// TestRealtimeQueueBytesBound: with notifications of up to 1 MiB allowed, a burst of ~700 kB
// messages in two spaced channels fills realtime.max_queue_bytes and no more: reading the WAL
// waits (backpressure) instead of queueing them all; every one arrives, in order per channel,
// and the slot moves past them.
func TestRealtimeQueueBytesBound(t *testing.T) {
	const queueBytes = 3 << 20
	s := newSetup(t, `public.accounts: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "rt_threshold: 300", "partitions: 1",
		"max_notification_bytes: 1048576", fmt.Sprintf("max_queue_bytes: %d", queueBytes))
	run := s.startEngine(t)
	s.waitSlot(t)

	const n = 12
	pad := strings.Repeat("x", 700_000)
	for i := 1; i <= n; i++ {
		emitRealtime(t, s, fmt.Sprintf(`{"channel": "big%d", "metadata": {"i": %d, "pad": "%s"}}`, i%2, i, pad))
	}
	s.db.Exec(t, `INSERT INTO accounts VALUES (1)`)
	end := currentLSN(t, s)

	got := readRealtime(t, s, 2*time.Minute, func(rs []rtRecord) bool { return len(rs) >= n })
	last := map[string]int{}
	for _, r := range got {
		if i := r.i(t); i <= last[r.Channel] {
			t.Fatalf("channel %s: notification %d after %d", r.Channel, i, last[r.Channel])
		}
		last[r.Channel] = r.i(t)
	}
	if len(got) != n {
		t.Fatalf("got %d notifications, want %d", len(got), n)
	}
	s.env.ReadN(t, s.topic("accounts"), 1, time.Minute)
	testenv.WaitFor(t, 30*time.Second, "the slot to confirm past the burst", func() (bool, error) {
		return s.confirmedLSN(t) >= end, nil
	})
	st := run.e.RealtimeStats()
	t.Logf("realtime stats: %+v", st)
	if st.PeakQueueBytes > queueBytes {
		t.Fatalf("the queue held up to %d bytes, over realtime.max_queue_bytes (%d)", st.PeakQueueBytes, queueBytes)
	}
	if st.PeakQueueBytes < queueBytes-800_000 {
		t.Fatalf("the queue held at most %d bytes: the burst (%d bytes) must have filled it", st.PeakQueueBytes, n*len(pad))
	}
	if st.Waiting != 0 || st.TooLarge != 0 {
		t.Fatalf("got %+v: nothing waits, nothing dropped", st)
	}
}

// TestRealtimeMessagesOff: with realtime.messages: false, a realtime message makes no
// notification (it is an ordinary logical message event) while realtime table rows still do.
func TestRealtimeMessagesOff(t *testing.T) {
	s := newSetup(t, `public.accounts: {}`, "")
	s.env.RequireServer(t, engine.MessagesSince, "the realtime message becomes a message event only where pgoutput decodes it")
	s.db.Exec(t, `CREATE TABLE accounts (id int PRIMARY KEY)`)
	createRealtimeTable(t, s)
	withRealtime(s, "enabled: true", "messages: false", "rt_threshold: 0", "partitions: 1")
	s.runEngine(t)
	s.waitSlot(t)
	conn := s.db.Conn(t)
	commit(t, conn, `INSERT INTO accounts VALUES (1)`,
		`SELECT pg_logical_emit_message(true, 'procon-realtime', '{"channel": "msg"}')`,
		`INSERT INTO procon_realtimes (channel) VALUES ('row')`)
	commit(t, conn, `SELECT pg_logical_emit_message(true, 'procon-realtime', '{"channel": "msg2"}')`)
	commit(t, conn, `INSERT INTO procon_realtimes (channel) VALUES ('end')`)
	end := currentLSN(t, s)

	got := readRealtime(t, s, time.Minute, hasChannel("end"))
	var channels []string
	for _, r := range got {
		channels = append(channels, r.Channel)
	}
	if fmt.Sprint(channels) != "[row end]" {
		t.Fatalf("got notifications in %v, want [row end]: with messages off only the table's rows notify", channels)
	}
	msgs := decode(t, s.env.ReadN(t, s.name+".message", 2, time.Minute))
	for _, m := range msgs {
		if p := m.Value["message"].(map[string]any)["prefix"]; p != "procon-realtime" {
			t.Fatalf("got a message event with prefix %v", p)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "the slot to confirm past the messages", func() (bool, error) {
		return s.confirmedLSN(t) >= end, nil
	})
	testenv.WaitFor(t, 30*time.Second, "published rows to be deleted", func() (bool, error) {
		return realtimeRows(t, s) == 0, nil
	})
}
