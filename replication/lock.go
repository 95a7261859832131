package replication

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/retrylog"
)

// ErrLockLost is returned (wrapped) once the session that held a slot's lock has ended while
// this process was the active one: another procon-cdc may take the lock and stream, so this
// one must stop producing. Nothing it had not confirmed is lost; it may wait for the lock
// again.
var ErrLockLost = errors.New("lost the lock")

// LockConfig says which slot's lock to take.
type LockConfig struct {
	DSN  string
	Slot string
	// Waiting, when set, is called when the lock is found held by another session, just
	// before this one waits for it, with what the server says of the holder (for metrics).
	Waiting func(Holder)
	Logger  *slog.Logger
}

// Holder is the session holding a slot's lock, as pg_locks and pg_stat_activity show it; a
// field the server does not show this role is empty.
type Holder struct {
	PID         int32
	Application string
	Address     string // client address and port, or "local" for a Unix socket
	Since       time.Time
}

// SlotLock is a held slot lock: a session-level advisory lock on a connection of its own,
// whose key is derived from the database and the slot (LockKey). It is held until Release,
// or until its session ends (the server restarts, the backend is terminated, the network
// breaks): Lost is then closed and Err says why. Lost and Err may be called from any
// goroutine; Release once, from one.
type SlotLock struct {
	conn *pgx.Conn
	slot string
	key  int64
	log  *slog.Logger

	stop     context.CancelFunc
	done     chan struct{} // closed when the watch goroutine has returned
	lost     chan struct{}
	lostOnce sync.Once
	err      error // set before lost is closed
}

// LockKey is the advisory lock key of slot in database: the FNV-1a 64-bit hash of
// "procon-cdc/<database>/<slot>", as a signed bigint. Advisory locks belong to a database, and
// slot names are unique in a cluster, so every procon-cdc that may read the slot takes the same
// key, and no other slot's procon-cdc does.
func LockKey(database, slot string) int64 {
	h := fnv.New64a()
	h.Write([]byte("procon-cdc/" + database + "/" + slot))
	return int64(h.Sum64())
}

// LockApplication is the application_name of the lock's session (unless the DSN sets one):
// "procon-cdc lock <pid>@<host>", so that pg_stat_activity tells which instance is active (in
// Kubernetes the host name is the pod's).
func LockApplication() string {
	host, _ := os.Hostname()
	app := "procon-cdc lock " + strconv.Itoa(os.Getpid()) + "@" + host
	if len(app) > 63 { // NAMEDATALEN - 1: the server would cut it anyway
		app = app[:63]
	}
	return app
}

// lockRetry bounds the backoff between attempts to reconnect while waiting for the lock.
const lockRetry = 5 * time.Second

// LockSlot takes the lock of cfg.Slot, waiting while another session holds it, and returns
// once this process holds it. The wait is one blocking pg_advisory_lock, so the lock is taken
// as soon as its holder's session ends; it is logged once, with the holder. A failure to
// connect at the first attempt is returned (a wrong DSN or an unreachable server is a
// configuration error); a session lost while waiting is reconnected with backoff. When ctx
// ends first, LockSlot returns an error wrapping ctx.Err().
func LockSlot(ctx context.Context, cfg LockConfig) (*SlotLock, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &SlotLock{slot: cfg.Slot, log: cfg.Logger, lost: make(chan struct{}), done: make(chan struct{})}
	var (
		down    retrylog.Outage
		backoff = 100 * time.Millisecond
		waited  time.Time
		shown   int32 // the holder last logged, so a reconnect does not log the same wait again
	)
	for attempt := 0; ; attempt++ {
		held, holder, err := l.try(ctx, cfg)
		if err == nil && held {
			down.Recovered(l.log, "reconnected to PostgreSQL", "slot", cfg.Slot)
			break
		}
		if err == nil {
			if waited.IsZero() {
				waited = time.Now()
			}
			if holder.PID != 0 && holder.PID != shown {
				shown = holder.PID
				args := []any{"slot", cfg.Slot, "lock_key", l.key, "holder_pid", holder.PID,
					"holder_application", holder.Application, "holder_address", holder.Address}
				if !holder.Since.IsZero() {
					args = append(args, "holder_since", holder.Since.UTC().Format(time.RFC3339))
				}
				l.log.Info("waiting: another procon-cdc holds slot "+cfg.Slot, args...)
				if cfg.Waiting != nil {
					cfg.Waiting(holder)
				}
			}
			if err = l.wait(ctx); err == nil {
				break
			}
		}
		l.closeConn()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for the lock of slot %s: %w", cfg.Slot, ctx.Err())
		}
		if (attempt == 0 && waited.IsZero()) || !pg.Transient(err) {
			return nil, err
		}
		down.Failed(l.log, "lost the connection while waiting for the lock of the slot; reconnecting", err, "slot", cfg.Slot)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for the lock of slot %s: %w", cfg.Slot, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, lockRetry)
	}
	args := []any{"slot", cfg.Slot, "lock_key", l.key}
	if !waited.IsZero() {
		args = append(args, "waited", time.Since(waited).Round(time.Millisecond))
	}
	l.log.Info("took the lock of the slot: this procon-cdc is the active one", args...)
	var wctx context.Context
	wctx, l.stop = context.WithCancel(context.Background())
	go l.watch(wctx)
	return l, nil
}

// try connects when needed and tries to take the lock without waiting; when another session
// holds it, it says which (a zero Holder when it was released meanwhile).
func (l *SlotLock) try(ctx context.Context, cfg LockConfig) (held bool, holder Holder, err error) {
	if l.conn == nil {
		conn, err := pg.Connect(ctx, cfg.DSN, LockApplication())
		if err != nil {
			return false, holder, fmt.Errorf("connect to PostgreSQL: %w", err)
		}
		l.conn = conn
		if err := prepareLockSession(ctx, conn); err != nil {
			return false, holder, err
		}
		var db string
		if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_database()`).Scan(&db); err != nil {
			return false, holder, fmt.Errorf("read the database name: %w", err)
		}
		l.key = LockKey(db, cfg.Slot)
	}
	if err := l.conn.QueryRow(ctx, `SELECT pg_catalog.pg_try_advisory_lock($1)`, l.key).Scan(&held); err != nil {
		return false, holder, fmt.Errorf("take the lock of slot %s: %w", cfg.Slot, err)
	}
	if held {
		return true, holder, nil
	}
	holders, err := lockSessions(ctx, l.conn, l.key, true)
	if err != nil {
		return false, holder, fmt.Errorf("read the holder of the lock of slot %s: %w", cfg.Slot, err)
	}
	if len(holders) > 0 {
		holder = holders[0]
	}
	// None: released between the two statements, and the wait takes it at once.
	return false, holder, nil
}

// LockSessions reads, in the database conn is connected to, the session holding the lock of
// slot (nil when none does) and how many sessions wait for it (standbys).
func LockSessions(ctx context.Context, conn *pgx.Conn, slot string) (holder *Holder, waiting int, err error) {
	var db string
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_database()`).Scan(&db); err != nil {
		return nil, 0, fmt.Errorf("read the database name: %w", err)
	}
	key := LockKey(db, slot)
	held, err := lockSessions(ctx, conn, key, true)
	if err != nil {
		return nil, 0, fmt.Errorf("read the holder of the lock of slot %s: %w", slot, err)
	}
	if len(held) > 0 {
		holder = &held[0]
	}
	waiters, err := lockSessions(ctx, conn, key, false)
	if err != nil {
		return nil, 0, fmt.Errorf("read the sessions waiting for the lock of slot %s: %w", slot, err)
	}
	return holder, len(waiters), nil
}

// lockSessions reads the sessions that hold (granted) or wait for the advisory lock key in
// conn's database. A bigint key shows in pg_locks as classid (its high half), objid (its low
// half) and objsubid 1.
func lockSessions(ctx context.Context, conn *pgx.Conn, key int64, granted bool) ([]Holder, error) {
	rows, err := conn.Query(ctx, `SELECT l.pid, a.application_name,
			CASE WHEN a.client_addr IS NULL THEN CASE WHEN a.pid IS NULL THEN NULL ELSE 'local' END
			ELSE pg_catalog.host(a.client_addr) || ':' || a.client_port END, a.backend_start
		FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted = $3 AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
		  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
		ORDER BY a.backend_start`, int64(uint64(key)>>32), int64(uint64(key)&0xffffffff), granted)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Holder
	for rows.Next() {
		var h Holder
		var app, addr *string
		var since *time.Time
		if err := rows.Scan(&h.PID, &app, &addr, &since); err != nil {
			return nil, err
		}
		if app != nil {
			h.Application = *app
		}
		if addr != nil {
			h.Address = *addr
		}
		if since != nil {
			h.Since = *since
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// prepareLockSession makes the lock's session last as long as the process needs it, whatever
// the role's or database's defaults, and end soon after the process dies unseen: a blocking
// wait must not hit statement_timeout or lock_timeout, an idle holder must not hit
// idle_session_timeout, and the server's TCP keepalives (about 25 s here) end the session, and
// release the lock, when the active host vanishes without closing its socket.
// client_connection_check_interval lets a waiting session whose client has gone leave the
// lock's queue at once.
func prepareLockSession(ctx context.Context, conn *pgx.Conn) error {
	sql := `SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0;
		SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3`
	var version int
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting('server_version_num')::int / 10000").Scan(&version); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	if version >= 14 {
		sql += `; SET idle_session_timeout = 0; SET client_connection_check_interval = 1000`
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("prepare the lock's session: %w", err)
	}
	return nil
}

// wait blocks until the lock is taken, ctx ends or the session is lost.
func (l *SlotLock) wait(ctx context.Context) error {
	if _, err := l.conn.Exec(ctx, `SELECT pg_catalog.pg_advisory_lock($1)`, l.key); err != nil {
		return fmt.Errorf("wait for the lock of slot %s: %w", l.slot, err)
	}
	return nil
}

// watch reads the idle lock session until it ends: nothing is expected from the server, so
// the read returns only when the session is terminated (a restart, pg_terminate_backend, a
// broken network) or when Release cancels ctx (which closes the connection).
func (l *SlotLock) watch(ctx context.Context) {
	defer close(l.done)
	for {
		err := l.conn.PgConn().WaitForNotification(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.lostOnce.Do(func() {
				l.err = fmt.Errorf("replication: %w of slot %s: its PostgreSQL session ended (%w); stopped producing, since another procon-cdc may take it over",
					ErrLockLost, l.slot, err)
				close(l.lost)
			})
			return
		}
	}
}

// Lost is closed once the lock's session has ended while held; Err then says why.
func (l *SlotLock) Lost() <-chan struct{} { return l.lost }

// Err is why the lock was lost (wrapping ErrLockLost), or nil while it is held.
func (l *SlotLock) Err() error {
	select {
	case <-l.lost:
		return l.err
	default:
		return nil
	}
}

// Release gives the lock up by ending its session. A nil lock is ignored.
func (l *SlotLock) Release() {
	if l == nil {
		return
	}
	l.stop()
	<-l.done
	l.closeConn()
}

func (l *SlotLock) closeConn() {
	if l.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.conn.Close(ctx) // closing ends the session, which releases the lock
		l.conn = nil
	}
}

// createdMeanwhile is Open's answer to "replication slot already exists" when it found no
// slot a moment before: a client that takes no slot lock created it meanwhile (procon-cdc
// instances wait for each other's lock, so none of them). The slot is read again and resumed
// from, unless its creator still uses it, or this stream was to export the new slot's
// snapshot, which only the creator has.
func (s *Stream) createdMeanwhile(ctx context.Context) (pglogrepl.LSN, error) {
	slot, err := ReadSlot(ctx, s.sql, s.cfg.Slot)
	if err != nil {
		return 0, err
	}
	switch {
	case !slot.Exists:
		return 0, fmt.Errorf("create slot %s: it was reported to exist, then dropped: %w", s.cfg.Slot, ErrSlotActive)
	case slot.ActivePID != 0 || slot.Confirmed == "":
		return 0, fmt.Errorf("create slot %s: another client created it meanwhile and server process %d uses it: %w; stop the other client or choose another postgres.slot",
			s.cfg.Slot, slot.ActivePID, ErrSlotActive)
	case s.cfg.ExportSnapshot:
		return 0, fmt.Errorf("create slot %s: another client created it meanwhile, so its initial snapshot is not this one's: %w; start again to resume from it",
			s.cfg.Slot, ErrSlotActive)
	case slot.Plugin != "pgoutput" || slot.Database != s.sql.Config().Database:
		return 0, fmt.Errorf("create slot %s: another client created it meanwhile, for plugin %q in database %q: choose another postgres.slot", s.cfg.Slot, slot.Plugin, slot.Database)
	}
	start, err := slot.confirmedLSN(s.cfg.Slot)
	if err != nil {
		return 0, err
	}
	s.log.Info("resuming replication slot created meanwhile by another client", "slot", s.cfg.Slot, "confirmed_lsn", start.String())
	return start, nil
}
