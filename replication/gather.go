package replication

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// gather lets the kernel collect a trickle of small messages on the replication socket while
// the reader lingers (DefaultReadLinger), without anyone waking for each of them.
//
// The walsender writes every message as soon as it has decoded it. A reader asleep on a timer
// does not read them, but its runtime waits in epoll for any socket, and each write woke it to
// find nobody reading. While the reader waits here, SO_RCVLOWAT holds the socket's readiness,
// and so that wake-up, until lingerBytes are queued, and a read deadline ends the wait after
// the linger if they never are: the reader wakes once per linger or per lingerBytes, whichever
// comes first. At 5,000 single-row transactions a second this took procon-cdc from 56-57 to
// 47-51 CPU seconds per million events and its walsender's CPU down by 12%
// (docs/benchmarks.md).
//
// Only TCP sockets on Linux support this (a Unix socket reports itself readable at the first
// byte whatever SO_RCVLOWAT says); newGather returns nil for others, and the reader sleeps
// through its linger on a timer instead.
type gather struct {
	conn net.Conn        // the connection as pgconn reads it (TLS or not): the deadline
	raw  syscall.RawConn // its TCP socket: SO_RCVLOWAT
}

func newGather(conn net.Conn) *gather {
	c := conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	g := &gather{conn: conn, raw: raw}
	if g.lowat(1) != nil { // the kernel refuses the option: sleep instead
		return nil
	}
	return g
}

// wait returns once at least n bytes are queued on the socket or linger has passed, whichever
// comes first, without waking for smaller arrivals: SO_RCVLOWAT holds the socket's readiness
// (and the wake-up of whoever polls it) until n bytes are there, and a read deadline bounds the
// wait. It reads nothing: pgconn reads what is queued afterwards.
func (g *gather) wait(n int, linger time.Duration) error {
	if err := g.lowat(n); err != nil {
		return err
	}
	if err := g.conn.SetReadDeadline(time.Now().Add(linger)); err != nil {
		return err
	}
	err := g.raw.Read(func(fd uintptr) bool { return queued(fd) >= n })
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	// The socket wakes its reader at the first byte again, with no deadline: what was
	// gathered is read at once, and an idle stream is read as soon as something arrives.
	if derr := g.conn.SetReadDeadline(time.Time{}); err == nil {
		err = derr
	}
	if lerr := g.lowat(1); err == nil {
		err = lerr
	}
	return err
}

func (g *gather) lowat(n int) error { return setRcvLowat(g.raw, n) }
