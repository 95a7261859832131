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

// TestReaderLingersAfterSmallBatches: at a trickle the reader waits ReadLinger after a small
// batch, so the messages that arrive meanwhile reach the stream loop in one batch (one wake-up
// of each goroutine downstream instead of one per message); a backlog is read in full batches
// with no wait between them. The server side is a plain TCP socket on loopback.
func TestReaderLingersAfterSmallBatches(t *testing.T) {
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
	defer srv.Close()
	cfg, err := pgconn.ParseConfig("postgres://procon@127.0.0.1/x?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Construct(&pgconn.HijackedConn{Conn: cli, ParameterStatuses: map[string]string{},
		Frontend: pgproto3.NewFrontend(cli, cli), Config: cfg})
	if err != nil {
		t.Fatal(err)
	}

	const linger = 300 * time.Millisecond // far above a loaded machine's scheduling delays
	s := &Stream{cfg: Config{ReadLinger: linger}}
	raw := make(chan []rawMsg, rawBatches)
	stop, done := make(chan struct{}), make(chan struct{})
	go s.read(conn, raw, stop, done)
	defer func() {
		close(stop)
		cli.Close()
		<-done
	}()

	next := byte(0)
	send := func(n int) { // n messages, one write each unless together
		t.Helper()
		var buf []byte
		for range n {
			buf, err = (&pgproto3.CopyData{Data: []byte{'k', next}}).Encode(buf)
			if err != nil {
				t.Fatal(err)
			}
			next++
		}
		if _, err := srv.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	receive := func(want int) time.Time {
		t.Helper()
		select {
		case b := <-raw:
			if len(b) != want {
				t.Fatalf("a batch of %d messages, want %d", len(b), want)
			}
			return time.Now()
		case <-time.After(10 * time.Second):
			t.Fatalf("no batch within 10s (want %d messages)", want)
		}
		return time.Time{}
	}

	send(1)
	receive(1) // read at once: a message after a quiet spell does not wait
	for i := range 3 {
		if i > 0 {
			// Time passes between the transactions of a trickle; without the wait, the reader
			// would be back in its read and take each message alone.
			time.Sleep(20 * time.Millisecond)
		}
		send(1)
	}
	receive(3)
	// A backlog: full batches follow each other without a wait, the remainder comes last.
	send(2*rawBatch + 5)
	first := receive(rawBatch)
	receive(rawBatch)
	if last := receive(5); last.Sub(first) >= linger {
		t.Fatalf("the backlog's batches were %s apart: the reader waited after a full batch", last.Sub(first))
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
