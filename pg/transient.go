package pg

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Transient reports whether err may go away by trying again, on the same connection or a
// new one: a lost or refused connection, a server shutting down, starting or failing over, a
// resource the server lacks for now, or a conflict with another session. Errors that
// retrying cannot fix are not transient: a bad statement, a missing table or permission, bad
// data, a decoding error, a DSN that does not parse, an error of Procon's own. Neither is a
// cancelled or expired context: a caller checks its own context first, since only it knows
// whether it is shutting down.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientState(pgErr.Code)
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	// A failed connection attempt, a refused or unreachable server included. One the server
	// refused for a reason retrying cannot fix (password, database) carries a PgError, seen
	// above. Checked before DeadlineExceeded: connect_timeout ends an attempt with one.
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) { // also a net.Error: checked first
		return false
	}
	// The connection broke under a statement (reset, timeout, the server closing the socket
	// after a FATAL), or was already closed by pgconn after such a break.
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err)
}

// transientState reports whether a SQLSTATE names a condition that may pass. The unit test
// also lists neighbouring states that are not transient, and why.
func transientState(code string) bool {
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "08", // connection exception: the session is gone or could not be made
		"53": // insufficient resources: connections, slots, memory or disk free up
		return true
	}
	switch code {
	case "57P01", // admin shutdown: a restart or pg_terminate_backend
		"57P02", // crash shutdown: another backend crashed, the server restarts
		"57P03", // cannot connect now: starting up, shutting down, recovering
		"57P05", // idle session timeout: the server closed the session
		"25P03", // idle-in-transaction timeout: the server closed the session
		"57014", // statement cancelled: pg_cancel_backend, statement_timeout
		"55P03", // lock not available: lock_timeout behind another session's lock
		"55006", // object in use: a slot still held by the walsender of a client that died
		"40001", // serialization failure, recovery conflicts on a standby included
		"40P01", // deadlock: the other transaction won
		"25006", // read-only transaction: a failover in progress, the new primary not promoted yet
		"72000": // snapshot too old: a new transaction takes a new snapshot
		return true
	}
	return false
}
