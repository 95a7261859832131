package replication

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"
)

// gather lets the kernel collect a trickle of small messages on the replication socket while
// the reader lingers (DefaultReadLinger), without anyone waking for each of them.
//
// The walsender writes and flushes every message it sends. A client that waits for the next
// one, as a sleeping reader's runtime does in epoll, is woken by every write, and on a small
// machine those wake-ups cost more than the messages: the walsender pays for each (the wake-up
// runs in its write), and a drain whose reader keeps up with it ran at half the speed with 2.5
// times the walsender's CPU. While armed, SO_RCVLOWAT makes TCP hold the wake-up until
// lingerBytes are queued, and a read deadline ends the wait after the linger if they never
// are: the reader wakes once per linger or per lingerBytes, whichever comes first.
//
// Only TCP sockets support this (a Unix socket reports itself readable at the first byte
// whatever SO_RCVLOWAT says); newGather returns nil for others, and the reader sleeps through
// its linger on a timer instead.
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

// arm makes the next receive wait until lingerBytes are queued or linger has passed, whichever
// comes first; the receive then fails with a timeout if nothing at all could be read in time.
// Every arm must be followed by disarm once that receive has returned.
func (g *gather) arm(linger time.Duration) error {
	if err := g.lowat(lingerBytes); err != nil {
		return err
	}
	return g.conn.SetReadDeadline(time.Now().Add(linger))
}

// disarm makes the socket wake its reader at the first byte again, with no deadline: what was
// gathered is read at once, and an idle stream is read as soon as something arrives.
func (g *gather) disarm() error {
	if err := g.conn.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	return g.lowat(1)
}

func (g *gather) lowat(n int) error { return setRcvLowat(g.raw, n) }
