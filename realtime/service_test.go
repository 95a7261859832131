package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// fakeClock is a clock that moves only when the test says.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	changed chan struct{} // closed and replaced when a timer is added
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0, changed: make(chan struct{})} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Until(at time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !at.After(c.now) {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at, ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// fireNext waits until someone waits on a timer, moves the clock to the earliest one and
// fires every timer due by then.
func (c *fakeClock) fireNext(t *testing.T) time.Time {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if len(c.timers) > 0 {
			at := c.timers[0].at
			for _, tm := range c.timers {
				if tm.at.Before(at) {
					at = tm.at
				}
			}
			c.now = at
			kept := c.timers[:0]
			for _, tm := range c.timers {
				if tm.at.After(at) {
					kept = append(kept, tm)
				} else {
					tm.ch <- at
				}
			}
			c.timers = kept
			c.mu.Unlock()
			return at
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("nobody waits on the clock")
		}
	}
}

// fakeTracker counts records per transaction as replication.Tracker does.
type fakeTracker struct {
	mu      sync.Mutex
	pending map[*replication.Tx]int
}

func (f *fakeTracker) Add(tx *replication.Tx, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pending == nil {
		f.pending = map[*replication.Tx]int{}
	}
	f.pending[tx] += n
}

func (f *fakeTracker) Ack(tx *replication.Tx) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending[tx]--
	if f.pending[tx] < 0 {
		panic("Ack without Add")
	}
}

func (f *fakeTracker) open(tx *replication.Tx) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pending[tx]
}

// fakeProducer keeps what is produced, stamped with the fake clock, and acknowledges it
// from another goroutine, as Kafka's promises do.
type fakeProducer struct {
	clock *fakeClock

	mu       sync.Mutex
	recs     []produced
	produced chan struct{}
	wg       sync.WaitGroup
}

type produced struct {
	rec *sink.Record
	at  time.Time
}

func (p *fakeProducer) Produce(_ context.Context, r *sink.Record) error {
	// Counted before the record is seen: a test that saw it may Wait for its acknowledgement
	// at once, and an Add after that Wait began is a race.
	p.wg.Add(1)
	p.mu.Lock()
	p.recs = append(p.recs, produced{r, p.clock.Now()})
	p.mu.Unlock()
	go func() { defer p.wg.Done(); r.Ack.Ack() }()
	p.produced <- struct{}{}
	return nil
}

func (p *fakeProducer) all() []produced {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]produced(nil), p.recs...)
}

type harness struct {
	svc     *Service
	clock   *fakeClock
	prod    *fakeProducer
	tracker *fakeTracker
	cancel  context.CancelFunc
	done    chan error
}

func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{clock: newFakeClock(), tracker: &fakeTracker{}}
	h.prod = &fakeProducer{clock: h.clock, produced: make(chan struct{}, 1000)}
	cfg.Topic, cfg.Producer, cfg.Encoder, cfg.Tracker, cfg.Clock = "rt", h.prod, &envelope.JSONEncoder{}, h.tracker, h.clock
	if cfg.Prefix == "" {
		cfg.Prefix = "procon-realtime"
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
		h.prod.wg.Wait()
	})
	return h
}

// waitProduced waits until n records have been produced in all.
func (h *harness) waitProduced(t *testing.T, n int) []produced {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for len(h.prod.all()) < n {
		select {
		case <-h.prod.produced:
		case <-deadline:
			t.Fatalf("got %d records, want %d", len(h.prod.all()), n)
		}
	}
	return h.prod.all()
}

func newTx(xid uint32) *replication.Tx {
	return &replication.Tx{XID: xid, CommitLSN: pglogrepl.LSN(0x1000 * uint64(xid)), CommitTime: t0.Add(-time.Minute)}
}

func message(tx *replication.Tx, content string) *replication.Change {
	return &replication.Change{Op: replication.OpMessage, Tx: tx, Prefix: "procon-realtime", Transactional: true, Content: []byte(content)}
}

func txHeader(tx *replication.Tx) []byte {
	return txid.New(tx.CommitTime, 1234, uint64(tx.CommitLSN)).AppendText(nil)
}

type value struct {
	Channel    string  `json:"channel"`
	SessionID  *string `json:"session_id"`
	Metadata   string  `json:"metadata"`
	CommitTsMs int64   `json:"commit_ts_ms"`
	TxID       string  `json:"tx_id"`
}

func decodeValue(t *testing.T, p produced) value {
	t.Helper()
	var v value
	if err := json.Unmarshal(p.rec.Value, &v); err != nil {
		t.Fatalf("value %s: %v", p.rec.Value, err)
	}
	return v
}

func header(p produced, name string) string {
	for _, h := range p.rec.Headers {
		if h.Key == name {
			return string(h.Value)
		}
	}
	return ""
}

func TestServiceBurstIsSpacedInOrderAndHoldsTheTransaction(t *testing.T) {
	h := start(t, Config{Threshold: 200 * time.Millisecond})
	tx := newTx(7)
	hdr := txHeader(tx)
	seq := 3 // the transaction's own events took positions 1..3
	var err error
	for i := 1; i <= 50; i++ {
		if seq, err = h.svc.Handle(context.Background(), message(tx, fmt.Sprintf(`{"channel":"room","metadata":{"i":%d}}`, i)), hdr, seq); err != nil {
			t.Fatal(err)
		}
	}
	if seq != 53 {
		t.Fatalf("got seq %d, want 53", seq)
	}
	h.waitProduced(t, 1)
	if n := h.tracker.open(tx); n == 0 {
		t.Fatal("the transaction must stay open while its notifications wait")
	}
	for n := len(h.prod.all()); n < 50; n++ {
		h.clock.fireNext(t)
		h.waitProduced(t, n+1)
	}
	recs := h.prod.all()
	for i, p := range recs {
		v := decodeValue(t, p)
		if want := fmt.Sprintf(`{"i":%d}`, i+1); v.Metadata != want {
			t.Fatalf("record %d has metadata %s, want %s", i, v.Metadata, want)
		}
		if i > 0 {
			if gap := p.at.Sub(recs[i-1].at); gap < 200*time.Millisecond {
				t.Fatalf("records %d and %d are %v apart, want at least 200ms", i-1, i, gap)
			}
		}
		if got := header(p, txid.HeaderTx); got != string(hdr) || v.TxID != got {
			t.Fatalf("procon.tx %q, tx_id %q, want %s", got, v.TxID, hdr)
		}
		if got, want := header(p, txid.HeaderSeq), fmt.Sprint(i+4); got != want {
			t.Fatalf("procon.seq %s, want %s", got, want)
		}
		if v.CommitTsMs != tx.CommitTime.UnixMilli() || v.Channel != "room" || v.SessionID != nil {
			t.Fatalf("got %+v", v)
		}
		if string(p.rec.Key) != `{"channel":"room"}` {
			t.Fatalf("key %s", p.rec.Key)
		}
	}
	h.prod.wg.Wait()
	if n := h.tracker.open(tx); n != 0 {
		t.Fatalf("got %d records of the transaction unacknowledged, want 0", n)
	}
}

func TestServiceBlocksPastTheBound(t *testing.T) {
	h := start(t, Config{Threshold: time.Second, MaxPending: 3})
	tx := newTx(1)
	hdr := txHeader(tx)
	seq := 0
	handle := func(i int) error {
		var err error
		seq, err = h.svc.Handle(context.Background(), message(tx, fmt.Sprintf(`{"channel":"hot","metadata":{"i":%d}}`, i)), hdr, seq)
		return err
	}
	if err := handle(1); err != nil {
		t.Fatal(err)
	}
	h.waitProduced(t, 1) // #1 goes at once, #2..#4 wait
	for i := 2; i <= 4; i++ {
		if err := handle(i); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- handle(5) }()
	select {
	case err := <-blocked:
		t.Fatalf("Handle returned %v with 3 notifications waiting in a channel bounded to 3", err)
	case <-time.After(100 * time.Millisecond):
	}
	h.clock.fireNext(t) // #2 goes: room for #5
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Handle still blocked after a notification left the channel")
	}
	// A blocked Handle returns when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := h.svc.Handle(ctx, message(tx, `{"channel":"hot"}`), hdr, seq); err == nil {
		t.Fatal("want the context's error")
	}
}

func TestServiceCoalesceAcknowledgesDroppedNotifications(t *testing.T) {
	h := start(t, Config{Threshold: time.Second, Coalesce: true})
	first, second := newTx(1), newTx(2)
	seq := 0
	var err error
	if seq, err = h.svc.Handle(context.Background(), message(first, `{"channel":"a","session_id":"s","metadata":{"v":0}}`), txHeader(first), seq); err != nil {
		t.Fatal(err)
	}
	h.waitProduced(t, 1)
	for i := 1; i <= 5; i++ {
		if seq, err = h.svc.Handle(context.Background(), message(first, fmt.Sprintf(`{"channel":"a","session_id":"s","metadata":{"v":%d}}`, i)), txHeader(first), seq); err != nil {
			t.Fatal(err)
		}
	}
	if _, err = h.svc.Handle(context.Background(), message(second, `{"channel":"a","session_id":"s","metadata":{"v":6}}`), txHeader(second), 0); err != nil {
		t.Fatal(err)
	}
	h.prod.wg.Wait()
	if n := h.tracker.open(first); n != 0 {
		t.Fatalf("the first transaction has %d records open, want 0: its waiting notifications were replaced", n)
	}
	if n := h.tracker.open(second); n != 1 {
		t.Fatalf("the second transaction has %d records open, want 1: its notification waits", n)
	}
	h.clock.fireNext(t)
	recs := h.waitProduced(t, 2)
	if v := decodeValue(t, recs[1]); v.Metadata != `{"v":6}` || *v.SessionID != "s" {
		t.Fatalf("got %+v, want the newest notification", v)
	}
}

func TestServiceTableRowsAndRules(t *testing.T) {
	table := &replication.Relation{Schema: "public", Table: "procon_realtimes", Key: []int{0},
		Columns: []replication.Column{{Name: "id"}, {Name: "session_id"}, {Name: "channel"}, {Name: "metadata"}}}
	orders := &replication.Relation{Schema: "public", Table: "orders", Key: []int{0},
		Columns: []replication.Column{{Name: "id"}, {Name: "account"}, {Name: "metadata"}}}
	h := start(t, Config{Table: "public.procon_realtimes", Rules: map[string]*Rule{
		"public.orders": {Channel: "account", SessionID: "metadata.session_token", Ops: map[replication.Op]bool{replication.OpInsert: true, replication.OpDelete: true}},
	}})
	tx := newTx(3)
	hdr := txHeader(tx)
	changes := []*replication.Change{
		{Op: replication.OpInsert, Tx: tx, Rel: table, New: []replication.Datum{text("1"), text("s1"), text("room"), text(`{"b": 2, "a": 1}`)}},
		message(tx, `{"channel": "room", "session_id": "s1", "metadata": {"a": 1, "b": 2}}`),
		{Op: replication.OpInsert, Tx: tx, Rel: orders, New: []replication.Datum{text("9"), text("acct-7"), text(`{"session_token": "tok", "x": true}`)}},
		{Op: replication.OpUpdate, Tx: tx, Rel: orders, New: []replication.Datum{text("9"), text("acct-7"), text(`{}`)}}, // not selected
		{Op: replication.OpDelete, Tx: tx, Rel: orders, OldKind: 'K', Old: []replication.Datum{text("9"), null, null}},   // no channel: skipped
		{Op: replication.OpDelete, Tx: tx, Rel: table, OldKind: 'K', Old: []replication.Datum{text("1"), null, null, null}},
	}
	seq := 0
	for _, c := range changes {
		var err error
		if seq, err = h.svc.Handle(context.Background(), c, hdr, seq); err != nil {
			t.Fatal(err)
		}
	}
	if seq != 3 {
		t.Fatalf("got %d notifications, want 3", seq)
	}
	recs := h.waitProduced(t, 3) // Threshold 0: no spacing
	byChannel := map[string][]value{}
	var roomValues []string
	for _, p := range recs {
		v := decodeValue(t, p)
		byChannel[v.Channel] = append(byChannel[v.Channel], v)
		if v.Channel == "room" {
			roomValues = append(roomValues, string(p.rec.Value))
		}
	}
	room := byChannel["room"]
	if len(roomValues) != 2 || roomValues[0] != roomValues[1] {
		t.Fatalf("the table row and the message must give the same notification: %q", roomValues)
	}
	if room[0].Metadata != `{"a":1,"b":2}` || *room[0].SessionID != "s1" {
		t.Fatalf("got %+v", room[0])
	}
	acct := byChannel["acct-7"]
	if len(acct) != 1 || *acct[0].SessionID != "tok" || acct[0].Metadata != `{"op":"insert","relation":"public.orders","session_token":"tok","x":true}` {
		t.Fatalf("got %+v", acct)
	}
	// Suppress: the realtime table's changes and realtime messages never become events.
	for _, c := range changes {
		want := c.Rel == table || c.Op == replication.OpMessage
		if got := h.svc.Suppress(c); got != want {
			t.Errorf("Suppress(%s of %v) = %v, want %v", c.Op, c.Rel, got, want)
		}
	}
}

func TestSuppressCleanupDeletesOfAListedTable(t *testing.T) {
	table := &replication.Relation{Schema: "public", Table: "procon_realtimes", Key: []int{0},
		Columns: []replication.Column{{Name: "id"}, {Name: "session_id"}, {Name: "channel"}, {Name: "metadata"}}}
	h := start(t, Config{Table: "public.procon_realtimes", TableListed: true})
	user, cleanup := newTx(1), newTx(2)
	del := func(tx *replication.Tx) *replication.Change {
		return &replication.Change{Op: replication.OpDelete, Tx: tx, Rel: table, OldKind: 'K', Old: []replication.Datum{text("1"), null, null, null}}
	}
	if h.svc.Suppress(del(user)) {
		t.Fatal("a listed realtime table's own deletes are events")
	}
	// A marker anyone could emit (pg_logical_emit_message is PUBLIC's): never an event, and
	// it hides nothing.
	forger := newTx(3)
	forged := &replication.Change{Op: replication.OpMessage, Tx: forger, Prefix: CleanupPrefix, Transactional: true}
	if !h.svc.Suppress(forged) {
		t.Fatal("a cleanup-prefixed message became an event")
	}
	if h.svc.Suppress(del(forger)) {
		t.Fatal("a forged cleanup marker hid its transaction's deletes")
	}
	h.svc.Suppress(&replication.Change{Op: replication.OpCommit, Tx: forger})
	marker := &replication.Change{Op: replication.OpMessage, Tx: cleanup, Prefix: CleanupPrefix, Transactional: true, Content: []byte(h.svc.cleanupToken)}
	if !h.svc.Suppress(marker) || !h.svc.Suppress(del(cleanup)) {
		t.Fatal("the cleanup marker and the cleanup's deletes must not become events")
	}
	h.svc.Suppress(&replication.Change{Op: replication.OpCommit, Tx: cleanup})
	if h.svc.Suppress(del(user)) {
		t.Fatal("after the cleanup transaction, deletes are events again")
	}
	insert := &replication.Change{Op: replication.OpInsert, Tx: user, Rel: table, New: []replication.Datum{text("1"), null, text("c"), text("{}")}}
	if h.svc.Suppress(insert) {
		t.Fatal("a listed realtime table's inserts are events")
	}
}

// TestDeleteSQL: the cleanup's delete names the catalog's unnest and, for each key column,
// the = of the column type's own btree class (an extension type's, through a domain too), so
// that nothing found through search_path stands in for them.
func TestDeleteSQL(t *testing.T) {
	citext := &replication.Type{Schema: "ext", Name: "citext", Kind: 'b', Operators: "ext"}
	rel := &replication.Relation{Key: []int{1, 0, 2}, Columns: []replication.Column{
		{Name: "id", Type: &replication.Type{Schema: "pg_catalog", Name: "int8"}},
		{Name: "Tenant", Type: &replication.Type{Schema: "pg_catalog", Name: "text"}},
		{Name: "email", Type: &replication.Type{Schema: "app", Name: "email", Kind: 'd', Base: citext}},
	}}
	sql, args := deleteSQL("app.rt", rel, [][]string{{"t1", "1", "a@x"}, {"t2", "2", "b@x"}})
	want := `DELETE FROM "app"."rt" AS t USING pg_catalog.unnest($1::pg_catalog.text[], $2::pg_catalog.text[], $3::pg_catalog.text[]) AS k(c0, c1, c2) WHERE ` +
		`t."Tenant" OPERATOR("pg_catalog".=) k.c0::"pg_catalog"."text" AND t."id" OPERATOR("pg_catalog".=) k.c1::"pg_catalog"."int8" AND ` +
		`t."email" OPERATOR("ext".=) k.c2::"app"."email"`
	if sql != want {
		t.Fatalf("got  %s\nwant %s", sql, want)
	}
	if fmt.Sprint(args) != "[[t1 t2] [1 2] [a@x b@x]]" {
		t.Fatalf("got args %v", args)
	}
}

func text(s string) replication.Datum {
	return replication.Datum{Kind: replication.DatumText, Data: []byte(s)}
}

var null = replication.Datum{Kind: replication.DatumNull}

func TestWidenXID(t *testing.T) {
	const epoch = int64(3) << 32
	cases := []struct {
		xid  uint32
		xmax int64
		want int64
	}{
		{100, 200, 100},
		{200, 200, 200},                            // committed, not yet visible: at xmax
		{205, 200, 205},                            // past it
		{0xFFFFFFF0, epoch + 5, epoch - 16},        // the previous epoch
		{3, epoch + 0xFFFFFFF0, epoch + 1<<32 + 3}, // the next one, past xmax
		{7, epoch + 10, epoch + 7},
	}
	for _, c := range cases {
		if got := widenXID(c.xid, c.xmax); got != c.want {
			t.Errorf("widenXID(%d, %#x) = %#x, want %#x", c.xid, c.xmax, got, c.want)
		}
	}
}

// TestServiceDropsOverCapNotifications: a message or a rule's notification over
// MaxNotificationBytes is dropped where it is derived, with a warning naming its channel, LSN
// and size; it takes no position and holds no transaction; later ones go out.
func TestServiceDropsOverCapNotifications(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	orders := &replication.Relation{Schema: "public", Table: "orders", Key: []int{0},
		Columns: []replication.Column{{Name: "id"}, {Name: "account"}, {Name: "metadata"}}}
	h := start(t, Config{MaxNotificationBytes: 100, Logger: slog.New(slog.NewTextHandler(lockedBuffer{&logMu, &logs}, nil)),
		Rules: map[string]*Rule{"public.orders": {Channel: "account", Ops: map[replication.Op]bool{replication.OpInsert: true}}}})
	tx := newTx(4)
	hdr := txHeader(tx)
	big := message(tx, `{"channel":"big","metadata":{"pad":"`+strings.Repeat("x", 100)+`"}}`)
	big.LSN = 0x4242
	// Pretty-printed content counts as written: over the bound before it is parsed.
	spaces := message(tx, `{"channel":"spaces","metadata":{"a":1`+strings.Repeat(" ", 200)+`}}`)
	// Compact, but the notification as sent is over the bound.
	row := &replication.Change{Op: replication.OpInsert, Tx: tx, Rel: orders, LSN: 0x4343,
		New: []replication.Datum{text("1"), text("acct"), text(`{"pad":"` + strings.Repeat("y", 90) + `"}`)}}
	small := message(tx, `{"channel":"small","metadata":{"pad":"`+strings.Repeat("z", 80)+`"}}`)
	seq := 0
	for _, c := range []*replication.Change{big, spaces, row, small} {
		var err error
		if seq, err = h.svc.Handle(context.Background(), c, hdr, seq); err != nil {
			t.Fatal(err)
		}
	}
	if seq != 1 {
		t.Fatalf("got %d positions taken, want 1: dropped notifications take none", seq)
	}
	recs := h.waitProduced(t, 1)
	if v := decodeValue(t, recs[0]); v.Channel != "small" {
		t.Fatalf("got a notification in %s, want small", v.Channel)
	}
	h.prod.wg.Wait()
	if n := h.tracker.open(tx); n != 0 {
		t.Fatalf("the transaction has %d records open, want 0: dropped notifications must not hold it", n)
	}
	if st := h.svc.Stats(); st.TooLarge != 3 {
		t.Fatalf("got %+v, want 3 too large", st)
	}
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	for _, want := range []string{
		"level=WARN msg=\"dropping a realtime notification over realtime.max_notification_bytes\" channel=big lsn=0/4242 xid=4 op=message prefix=procon-realtime size=113",
		"channel=spaces", "channel=acct lsn=0/4343 xid=4 op=insert relation=public.orders size=",
		"dropped_total=3",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the log does not say %q:\n%s", want, text)
		}
	}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestServiceBlocksPastTheQueueBytes: notifications of several channels fill MaxQueueBytes;
// the next Submit waits until one goes out, and the queue never holds more than its bound.
func TestServiceBlocksPastTheQueueBytes(t *testing.T) {
	const limit = 8 << 10
	h := start(t, Config{Threshold: time.Second, MaxQueueBytes: limit, MaxNotificationBytes: 4000})
	tx := newTx(1)
	hdr := txHeader(tx)
	seq := 0
	handle := func(channel string) error {
		var err error
		seq, err = h.svc.Handle(context.Background(), message(tx, `{"channel":"`+channel+`","metadata":{"pad":"`+strings.Repeat("x", 3000)+`"}}`), hdr, seq)
		return err
	}
	if err := handle("a"); err != nil {
		t.Fatal(err)
	}
	h.waitProduced(t, 1) // a#1 goes at once, its channel now waits a second
	for range 2 {
		if err := handle("a"); err != nil {
			t.Fatal(err)
		}
	}
	blocked := make(chan error, 1)
	go func() { blocked <- handle("a") }()
	select {
	case err := <-blocked:
		t.Fatalf("Handle returned %v with %d of %d bytes held", err, h.svc.Stats().QueueBytes, limit)
	case <-time.After(100 * time.Millisecond):
	}
	if st := h.svc.Stats(); st.Waiting != 2 || st.QueueBytes > limit {
		t.Fatalf("got %+v, want 2 waiting within %d bytes", st, limit)
	}
	h.clock.fireNext(t) // a#2 goes: room for a#4
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Handle still blocked after a notification left the queue")
	}
	h.waitProduced(t, 2)
	for n := 2; n < 4; n++ {
		h.clock.fireNext(t)
		h.waitProduced(t, n+1)
	}
	if st := h.svc.Stats(); st.PeakQueueBytes > limit || st.PeakQueueBytes < limit/2 || st.Waiting != 0 {
		t.Fatalf("got %+v, want a peak within %d bytes", st, limit)
	}
}

// Each reconnect and each DDL makes new relation versions: the Service keeps what it knows of
// the latest version of each relation only.
func TestServiceKeepsOneVersionPerRelation(t *testing.T) {
	svc, err := New(Config{Topic: "rt", Producer: &fakeProducer{}, Encoder: &envelope.JSONEncoder{}, Tracker: &fakeTracker{}})
	if err != nil {
		t.Fatal(err)
	}
	tx := newTx(1)
	for i := range 100 {
		for id := uint32(1); id <= 3; id++ {
			rel := &replication.Relation{ID: id, Schema: "public", Table: fmt.Sprint("t", id)}
			svc.Suppress(&replication.Change{Op: replication.OpInsert, Tx: tx, Rel: rel})
		}
		if n := len(svc.rels); n != 3 {
			t.Fatalf("after %d versions of 3 relations the Service keeps %d, want 3", i+1, n)
		}
	}
}

// A flood of realtime messages that become no notification (any role can emit them) logs at
// most maxInputWarnsPerSecond warnings a second; the first one of the next second says how
// many were left out.
func TestInputWarningsAreBounded(t *testing.T) {
	var logs bytes.Buffer
	var logMu sync.Mutex
	h := start(t, Config{Logger: slog.New(slog.NewTextHandler(lockedBuffer{&logMu, &logs}, nil))})
	tx := newTx(1)
	hdr := txHeader(tx)
	count := func() int {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Count(logs.String(), `msg="ignoring a realtime message"`)
	}
	for range 1000 {
		if _, err := h.svc.Handle(context.Background(), message(tx, `not json`), hdr, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != maxInputWarnsPerSecond {
		t.Fatalf("%d warnings for 1000 bad messages within a second, want %d", n, maxInputWarnsPerSecond)
	}
	h.clock.mu.Lock()
	h.clock.now = h.clock.now.Add(time.Second)
	h.clock.mu.Unlock()
	if _, err := h.svc.Handle(context.Background(), message(tx, `not json`), hdr, 0); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	text := logs.String()
	logMu.Unlock()
	if n := count(); n != maxInputWarnsPerSecond+1 || !strings.Contains(text, "similar_warnings_left_out=990") {
		t.Fatalf("after a second: %d warnings, want %d, the last saying 990 were left out:\n%s", n, maxInputWarnsPerSecond+1, text)
	}
}
