package replication

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/procon-cdc/procon/pg"
)

// TestServerEndingTheCopyReconnects: a walsender that ends the copy (CopyDone, as on a
// promotion or a shutdown) is going away, and Run must reconnect rather than stop.
func TestServerEndingTheCopyReconnects(t *testing.T) {
	if err := fmt.Errorf("stream: %w", errConnClosed); !pg.Transient(err) {
		t.Errorf("pg.Transient(%v) = false: Run would stop instead of reconnecting", err)
	}
}

// An empty CopyData from the server is an error, not a crash.
func TestEmptyCopyDataIsAnError(t *testing.T) {
	s := &Stream{tracker: NewTracker(0)}
	if err := s.handle(context.Background(), []byte{}, func(*Change) error { return nil }); err == nil {
		t.Fatal("an empty CopyData was accepted")
	}
}

// A truncate message that claims more relations than it carries is refused before anything
// is allocated for them.
func TestTruncateCountMustFit(t *testing.T) {
	d := newDecoder(map[string]RelationSpec{}, &catalog{}, NewTracker(0), slog.New(slog.DiscardHandler))
	msg := []byte{'T', 0x37, 0, 0, 1, 0, 0, 0, 0x10, 1} // 922,746,881 relations in 10 bytes
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := d.decode(context.Background(), 1, msg, func(*Change) error { return nil })
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncate message with an impossible relation count was accepted")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("decoding it allocated %d bytes", n)
	}
}

// The lock key is documented (README, "Running a standby"): FNV-1a 64 of
// "procon-cdc/<database>/<slot>" as a signed bigint. Changing it would let an old and a new
// version stream side by side during an upgrade.
func TestLockKeyIsStable(t *testing.T) {
	// The value was computed apart from Go's hash/fnv (a few lines of Python).
	if got, want := LockKey("shop", "procon_shop"), int64(595958548590891267); got != want {
		t.Fatalf("LockKey = %d, want %d", got, want)
	}
}

// readerRig runs a Stream's reader on a pgconn whose server side is a plain TCP socket on
// loopback.
type readerRig struct {
	t    *testing.T
	srv  net.Conn
	raw  chan []rawMsg
	next byte
}

func startReader(t *testing.T, linger time.Duration) *readerRig {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { srv.Close() })
	cfg, err := pgconn.ParseConfig("postgres://procon@127.0.0.1/x?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Construct(&pgconn.HijackedConn{Conn: cli, ParameterStatuses: map[string]string{},
		Frontend: pgproto3.NewFrontend(cli, cli), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	s := &Stream{cfg: Config{ReadLinger: linger}}
	r := &readerRig{t: t, srv: srv, raw: make(chan []rawMsg, rawBatches)}
	stop, done := make(chan struct{}), make(chan struct{})
	go s.read(conn, r.raw, stop, done)
	t.Cleanup(func() {
		close(stop)
		cli.Close()
		<-done
	})
	return r
}

// send writes n CopyData messages of size bytes each (at least 2), in one write.
func (r *readerRig) send(n, size int) {
	r.t.Helper()
	var buf []byte
	for range n {
		data := make([]byte, max(size, 2))
		data[0], data[1] = 'k', r.next
		var err error
		if buf, err = (&pgproto3.CopyData{Data: data}).Encode(buf); err != nil {
			r.t.Fatal(err)
		}
		r.next++
	}
	if _, err := r.srv.Write(buf); err != nil {
		r.t.Fatal(err)
	}
}

// receive waits for the next batch and checks it holds want messages.
func (r *readerRig) receive(want int) time.Time {
	r.t.Helper()
	select {
	case b := <-r.raw:
		if len(b) != want {
			r.t.Fatalf("a batch of %d messages, want %d", len(b), want)
		}
		return time.Now()
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no batch within 10s (want %d messages)", want)
	}
	return time.Time{}
}

// TestReaderLingersAfterSmallBatches: at a trickle the reader waits ReadLinger after a small
// batch, so the messages that arrive meanwhile reach the stream loop in one batch (one wake-up
// of each goroutine downstream instead of one per message); a backlog is read in full batches
// with no wait between them.
func TestReaderLingersAfterSmallBatches(t *testing.T) {
	const linger = 300 * time.Millisecond // far above a loaded machine's scheduling delays
	r := startReader(t, linger)
	r.send(1, 2)
	r.receive(1) // read at once: a message after a quiet spell does not wait
	for i := range 3 {
		if i > 0 {
			// Time passes between the transactions of a trickle; without the wait, the reader
			// would be back in its read and take each message alone.
			time.Sleep(20 * time.Millisecond)
		}
		r.send(1, 2)
	}
	r.receive(3)
	// A backlog: full batches follow each other without a wait, the remainder comes last.
	r.send(2*rawBatch+5, 2)
	first := r.receive(rawBatch)
	r.receive(rawBatch)
	if last := r.receive(5); last.Sub(first) >= linger {
		t.Fatalf("the backlog's batches were %s apart: the reader waited after a full batch", last.Sub(first))
	}
}

// TestReaderGatherEndsAtLingerBytes: on TCP the linger is the socket's (SO_RCVLOWAT and a
// deadline), so it ends as soon as lingerBytes have arrived, however they were written, rather
// than after the whole linger; and what arrived meanwhile is read together. A reader that
// slept through its linger on a timer would take the linger.
func TestReaderGatherEndsAtLingerBytes(t *testing.T) {
	const linger = 5 * time.Second
	r := startReader(t, linger)
	r.send(1, 2)
	r.receive(1) // a small batch: the reader lingers after it
	start := time.Now()
	const n, size = 12, 1000 // 12 KB in separate writes: more than lingerBytes
	for range n {
		r.send(1, size)
	}
	got := 0
	for got < n {
		select {
		case b := <-r.raw:
			got += len(b)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d messages within 10s", got, n)
		}
	}
	if took := time.Since(start); took >= linger/2 {
		t.Fatalf("%d bytes took %s to arrive: the linger did not end at lingerBytes (%d)", n*size, took, lingerBytes)
	}
}

// TestGatherOnlyOnTCP: a Unix socket wakes its reader at the first byte whatever SO_RCVLOWAT
// says, so the reader sleeps through its lingers there.
func TestGatherOnlyOnTCP(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", dir+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g := newGather(c); g != nil {
		t.Fatal("newGather took a Unix socket")
	}
	r := startReader(t, time.Millisecond)
	if g := newGather(r.srv); g == nil {
		t.Fatal("newGather refused a TCP socket")
	}
}

func TestLingers(t *testing.T) {
	for _, c := range []struct {
		n, size int
		want    bool
	}{
		{1, 100, true},            // one small transaction's message
		{15, 2000, true},          // five single-row transactions
		{rawBatch, 2000, false},   // a full batch: a backlog
		{3, lingerBytes, false},   // as much as half a read: waiting could leave more than one read takes
		{1, 1 << 20, false},       // a large row
		{rawBatch - 1, 100, true}, // just below the batch limit
	} {
		if got := lingers(c.n, c.size); got != c.want {
			t.Errorf("lingers(%d, %d) = %v, want %v", c.n, c.size, got, c.want)
		}
	}
}
