package pg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/procon-cdc/procon/pg"
)

// serverError is an error as pgconn makes it from the server's ErrorResponse.
func serverError(code, msg string) error {
	return pgconn.ErrorResponseToPgError(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: msg})
}

// TestTransientStates pins which SQLSTATEs the retry loops (replication stream, in-stream
// snapshot, realtime cleanup) retry and which end them, and why.
func TestTransientStates(t *testing.T) {
	for _, tc := range []struct {
		code      string
		transient bool
		why       string
	}{
		// Class 08, connection exception: the session is gone or could not be made; a new one may work.
		{"08000", true, "connection exception"},
		{"08003", true, "connection does not exist"},
		{"08006", true, "connection failure"},
		{"08001", true, "could not establish a connection"},
		{"08P01", true, "protocol violation: the session is unusable, a new one is not"},
		// Class 53, insufficient resources: other sessions end and free them, or an operator does.
		{"53300", true, "too many connections (max_connections, max_wal_senders, a role's limit)"},
		{"53400", true, "configuration limit: all replication slots or workers in use"},
		{"53100", true, "disk full: freed by the operator or by checkpoints"},
		{"53200", true, "out of memory: other sessions release theirs"},
		// Class 57, operator intervention: the server goes down or comes up; it comes back.
		{"57P01", true, "admin shutdown: a restart or pg_terminate_backend"},
		{"57P02", true, "crash shutdown: the postmaster restarts every backend"},
		{"57P03", true, "cannot connect now: starting up, shutting down, recovering"},
		{"57P05", true, "idle session timeout: the server closed an idle session"},
		{"57014", true, "statement cancelled: pg_cancel_backend or statement_timeout"},
		{"57P04", false, "database dropped: it will not come back"},
		{"57000", false, "operator intervention without a known cause"},
		// Class 25, invalid transaction state: two conditions that a new session clears.
		{"25006", true, "read-only transaction: a failover whose new primary is not promoted yet"},
		{"25P03", true, "idle-in-transaction timeout: the server closed the session"},
		{"25P02", false, "in failed transaction: a statement before failed for its own reason"},
		// Class 40, transaction rollback: the conflict is with another session, which moves on.
		{"40001", true, "serialization failure, recovery conflicts on a standby included"},
		{"40P01", true, "deadlock detected: the other transaction won"},
		{"40002", false, "integrity constraint violation at commit: the data is wrong"},
		// Class 55, object not in prerequisite state: two conditions held by another session.
		{"55006", true, "object in use: a slot held by the walsender of a client that died"},
		{"55P03", true, "lock not available: lock_timeout behind another session's lock"},
		{"55000", false, "object not in prerequisite state: wal_level, a slot's plugin"},
		// Class 72, snapshot failure.
		{"72000", true, "snapshot too old: a new transaction takes a new snapshot"},
		// Nothing else is: retrying the same statement gets the same answer.
		{"42601", false, "syntax error"},
		{"42501", false, "insufficient privilege"},
		{"42P01", false, "undefined table"},
		{"42703", false, "undefined column"},
		{"28P01", false, "password authentication failed"},
		{"3D000", false, "database does not exist"},
		{"22P02", false, "invalid text representation: bad data"},
		{"23505", false, "unique violation"},
		{"58030", false, "I/O error: a failing disk or corruption, not something to wait out"},
		{"XX000", false, "internal error"},
		{"XX001", false, "data corrupted"},
		{"", false, "no SQLSTATE"},
	} {
		err := serverError(tc.code, tc.why)
		if got := pg.Transient(err); got != tc.transient {
			t.Errorf("Transient(%s: %s) = %v, want %v", tc.code, tc.why, got, tc.transient)
		}
		wrapped := fmt.Errorf("realtime cleanup: delete published rows: %w", err)
		if got := pg.Transient(wrapped); got != tc.transient {
			t.Errorf("Transient(wrapped %s) = %v, want %v", tc.code, got, tc.transient)
		}
	}
}

func TestTransientClientErrors(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name      string
		err       error
		transient bool
	}{
		{"nil is no error", nil, false},
		{"connection reset", fmt.Errorf("failed to receive message: %w", reset), true},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"host not found for now", &net.DNSError{Err: "no such host", Name: "db", IsTemporary: true}, true},
		{"server closed the socket", fmt.Errorf("receive: %w", io.EOF), true},
		{"message cut short", fmt.Errorf("receive: %w", io.ErrUnexpectedEOF), true},
		{"connection already closed by pgconn", fmt.Errorf("query: %w", pgconn.ErrConnClosed), true},
		{"context cancelled", context.Canceled, false},
		{"context cancelled, wrapped", fmt.Errorf("read chunk: %w", context.Canceled), false},
		{"context expired (also a net.Error)", fmt.Errorf("read chunk: %w", context.DeadlineExceeded), false},
		{"context cause", context.Cause(cancelled), false},
		{"a server error beside a net error", errors.Join(reset, serverError("42P01", "undefined table")), false},
		{"decoding error", errors.New("decode: relation 16384 is unknown"), false},
		{"no rows", fmt.Errorf("read slot: %w", pgx.ErrNoRows), false},
		{"transaction closed", pgx.ErrTxClosed, false},
	} {
		if got := pg.Transient(tc.err); got != tc.transient {
			t.Errorf("%s: Transient(%v) = %v, want %v", tc.name, tc.err, got, tc.transient)
		}
	}
}

// TestTransientConnectErrors uses pgconn's own errors: a connection refused and a
// connect_timeout are transient, a caller's cancelled context is not.
func TestTransientConnectErrors(t *testing.T) {
	ctx := context.Background()
	_, err := pgconn.Connect(ctx, "postgres://u:pw@127.0.0.1:"+closedPort(t)+"/db?sslmode=disable")
	var connectErr *pgconn.ConnectError
	if !errors.As(err, &connectErr) || !pg.Transient(err) {
		t.Errorf("connection refused: Transient(%v) = %v, want a transient *pgconn.ConnectError", err, pg.Transient(err))
	}

	// A server that accepts and never answers: connect_timeout ends the attempt with a
	// DeadlineExceeded inside a ConnectError, though the caller's context is fine.
	addr, _ := silentServer(t)
	_, err = pgconn.Connect(ctx, "postgres://u:pw@"+addr+"/db?sslmode=disable&connect_timeout=1")
	if !errors.Is(err, context.DeadlineExceeded) || !pg.Transient(err) {
		t.Errorf("connect_timeout: Transient(%v) = %v, want true", err, pg.Transient(err))
	}

	addr, accepted := silentServer(t)
	cctx, cancel := context.WithCancel(ctx)
	go func() { <-accepted; cancel() }() // cancels the attempt in progress
	_, err = pgconn.Connect(cctx, "postgres://u:pw@"+addr+"/db?sslmode=disable")
	if !errors.Is(err, context.Canceled) || pg.Transient(err) {
		t.Errorf("cancelled connect: Transient(%v) = %v, want false", err, pg.Transient(err))
	}
}

// silentServer listens on a local port, accepts connections and never answers; accepted is
// closed at the first connection.
func silentServer(t *testing.T) (addr string, accepted <-chan struct{}) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if conns = append(conns, c); len(conns) == 1 {
				close(first)
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), first
}

// closedPort returns a local TCP port nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	return port
}
