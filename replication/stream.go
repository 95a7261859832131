package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/retrylog"
)

// Config says which slot to read and what to capture.
type Config struct {
	DSN             string
	Slot            string
	Publication     string
	PublicationMode string // PublicationFiltered, PublicationAllTables or PublicationDisabled
	// Relations are the captured relations by "schema.table".
	Relations map[string]RelationSpec
	// StatusInterval is the period of standby status updates (default 1s).
	StatusInterval time.Duration
	// ReceiveTimeout ends a connection on which the server has sent nothing for this long
	// (default 1m); keepalives are asked for after a third of it, so a live server is never
	// silent that long.
	ReceiveTimeout time.Duration
	// ReadLinger is how long the reader waits before reading again after a small batch
	// (default DefaultReadLinger; negative: never). See Stream.read.
	ReadLinger time.Duration
	// ExportSnapshot makes a newly created slot export its snapshot; the snapshot stays
	// usable until Run is called.
	ExportSnapshot bool
	// Failover creates the slot as a failover slot (PostgreSQL 17+), or makes an existing
	// slot one, so that standbys with sync_replication_slots keep a copy (failover.go).
	Failover bool
	// SlotWait bounds Open's wait for a slot another server process uses (default 10s), before
	// it fails with ErrSlotActive.
	SlotWait time.Duration
	// After, when set, is what an earlier stream of this process read from the slot (its
	// Lineage): Open then refuses a server whose WAL does not continue it, as a reconnection
	// does, so a new stream after a lost lock cannot skip a promoted standby's transactions.
	After *Lineage
	// Observer, when set, is told the stream's state changes and each transaction Kafka has
	// all of (metrics).
	Observer Observer
	Logger   *slog.Logger
}

// Observer is told what the stream does, for metrics and health. Its methods are called from
// the stream goroutine and, for TxAcknowledged, from Kafka's promise goroutines under the
// tracker's lock: they must be quick and must not call back into the stream.
type Observer interface {
	// Streaming reports that replication started (true) or that the connection was lost
	// (false).
	Streaming(on bool)
	// Reconnecting reports an attempt to reconnect that failed with err.
	Reconnecting(err error)
	// TxAcknowledged reports that every record of the transaction that committed at commit is
	// acknowledged by Kafka.
	TxAcknowledged(commit time.Time)
}

// Stream reads a logical replication slot. Open prepares the publication and the slot; Run
// streams changes until its context ends or a permanent error occurs, reconnecting after
// transient ones; Close sends the final confirmed position and closes the connections.
type Stream struct {
	cfg     Config
	log     *slog.Logger
	tracker *Tracker

	sql        *pgx.Conn
	repl       *pgconn.PgConn
	readerDone chan struct{}
	dec        *decoder

	serverVersion int
	system        pglogrepl.IdentifySystemResult // at Open
	created       bool
	// openedOnStandby is set when Open found the server in recovery (logical decoding on a
	// standby, PostgreSQL 16+): only then may a reconnection land on a standby.
	openedOnStandby bool
	snapshotName    string
	received        pglogrepl.LSN // highest WAL position received, reported as "written"
	// serverWAL is the server's WAL end as its messages last told it (keepalives and row
	// data), and beat the time the stream goroutine last ran its loop: both for metrics and
	// health, read from any goroutine.
	serverWAL atomic.Uint64
	beat      atomic.Int64
	// waiting is when the reader goroutine began waiting for the server's next message (unix
	// nanoseconds), zero while it hands one over: silence is measured only while listening.
	waiting atomic.Int64

	stopping chan struct{} // closed by Stop
	stopOnce sync.Once
}

// Open checks the server and the captured relations, creates the publication and the slot if
// needed, and positions a Tracker at the slot's confirmed flush LSN. Relations and keys are
// checked before anything is created, so a bad configuration changes nothing.
func Open(ctx context.Context, cfg Config) (*Stream, error) {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.ReceiveTimeout <= 0 {
		cfg.ReceiveTimeout = time.Minute
	}
	if cfg.ReadLinger == 0 {
		cfg.ReadLinger = DefaultReadLinger
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Stream{cfg: cfg, log: cfg.Logger, stopping: make(chan struct{})}
	if err := s.open(ctx); err != nil {
		s.closeConns()
		return nil, err
	}
	return s, nil
}

func (s *Stream) open(ctx context.Context) error {
	var err error
	if s.sql, err = pg.Connect(ctx, s.cfg.DSN, "procon-cdc catalog"); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := checkServer(ctx, s.sql); err != nil {
		return err
	}
	if err := s.sql.QueryRow(ctx, "SELECT pg_catalog.current_setting('server_version_num')::int / 10000").Scan(&s.serverVersion); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	if err := checkFailoverVersion(s.cfg.Failover, s.serverVersion); err != nil {
		return err
	}
	names := sortedKeys(s.cfg.Relations)
	if err := checkRelations(ctx, s.sql, names); err != nil {
		return err
	}
	cat := newCatalog(s.sql)
	if err := checkKeys(ctx, cat, s.cfg.Relations); err != nil {
		return err
	}
	slot, err := ReadSlot(ctx, s.sql, s.cfg.Slot)
	if err != nil {
		return err
	}
	if slot.Exists && slot.ActivePID != 0 {
		// A walsender of a client that just died lingers until it notices; give it time.
		wait := s.cfg.SlotWait
		if wait <= 0 {
			wait = 10 * time.Second
		}
		s.log.Info("the slot is in use by another server process; waiting for it to end", "slot", s.cfg.Slot, "pid", slot.ActivePID, "up_to", wait)
		deadline := time.Now().Add(wait)
		for slot.ActivePID != 0 && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for slot %s: %w", s.cfg.Slot, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
			if slot, err = ReadSlot(ctx, s.sql, s.cfg.Slot); err != nil {
				return err
			}
		}
		if slot.ActivePID != 0 {
			return fmt.Errorf("slot %s is used by server process %d: %w; stop the other client or choose another postgres.slot",
				s.cfg.Slot, slot.ActivePID, ErrSlotActive)
		}
	}
	if slot.Exists {
		if slot.Plugin != "pgoutput" {
			return fmt.Errorf("slot %s uses plugin %q, not pgoutput: drop it (SELECT pg_drop_replication_slot('%s')) or choose another postgres.slot", s.cfg.Slot, slot.Plugin, s.cfg.Slot)
		}
		if db := s.sql.Config().Database; slot.Database != db {
			return fmt.Errorf("slot %s belongs to database %q, not %q: choose another postgres.slot", s.cfg.Slot, slot.Database, db)
		}
	}
	if err := ensurePublication(ctx, s.sql, s.cfg.Publication, s.cfg.PublicationMode, names); err != nil {
		return err
	}
	if err := s.connectReplication(ctx); err != nil {
		return err
	}
	if s.system, err = pglogrepl.IdentifySystem(ctx, s.repl); err != nil {
		return fmt.Errorf("identify the server: %w", err)
	}
	s.openedOnStandby = s.repl.ParameterStatus("in_hot_standby") == "on"
	if s.cfg.After != nil {
		if err := s.checkContinues(ctx, *s.cfg.After); err != nil {
			return err
		}
	}
	start, err := slot.confirmedLSN(s.cfg.Slot)
	if err != nil {
		return err
	}
	if !slot.Exists {
		action := "NOEXPORT_SNAPSHOT"
		if s.cfg.ExportSnapshot {
			action = "EXPORT_SNAPSHOT"
		}
		// PostgreSQL builds a logical slot's starting point only once every transaction running
		// in the cluster has ended: a long transaction anywhere makes this wait.
		s.log.Info("creating replication slot; waiting for transactions running in the cluster to end", "slot", s.cfg.Slot)
		res, err := createSlot(ctx, s.repl, s.cfg.Slot, action, s.cfg.Failover)
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "42710": // duplicate_object
			if start, err = s.createdMeanwhile(ctx); err != nil { // lock.go
				return err
			}
		case err != nil:
			return fmt.Errorf("create slot %s: %w", s.cfg.Slot, err)
		default:
			if start, err = pglogrepl.ParseLSN(res.ConsistentPoint); err != nil {
				return fmt.Errorf("slot %s consistent point %q: %w", s.cfg.Slot, res.ConsistentPoint, err)
			}
			s.created, s.snapshotName = true, res.SnapshotName
			s.log.Info("created replication slot", "slot", s.cfg.Slot, "consistent_point", start.String(), "failover", s.cfg.Failover)
		}
	} else {
		if s.cfg.Failover {
			if err := s.ensureFailover(ctx); err != nil {
				return err
			}
		}
		s.log.Info("resuming replication slot", "slot", s.cfg.Slot, "confirmed_lsn", start.String())
	}
	if s.cfg.Failover {
		s.warnFailoverSettings(ctx)
	}
	if start > s.system.XLogPos {
		// A slot created just now starts past the position IDENTIFY_SYSTEM gave before it
		// existed; an initial snapshot's records sit just below its consistent point.
		s.system.XLogPos = start
	}
	s.serverWAL.Store(uint64(s.system.XLogPos))
	s.tracker = NewTracker(start)
	if s.cfg.Observer != nil {
		s.tracker.acknowledged = s.cfg.Observer.TxAcknowledged
	}
	s.dec = newDecoder(s.cfg.Relations, cat, s.tracker, s.log)
	return nil
}

func (s *Stream) connectReplication(ctx context.Context) error {
	var err error
	if s.repl, err = pg.ConnectReplication(ctx, s.cfg.DSN, ApplicationName); err != nil {
		return fmt.Errorf("open replication connection: %w", err)
	}
	return nil
}

// Database is the name of the database the stream reads.
func (s *Stream) Database() string { return s.sql.Config().Database }

// Source names what this stream reads, for records to say where they come from: the server's
// system identifier, the database and the slot ("7400012345678901234/shop/procon_shop"). Two
// pipelines never share it.
func (s *Stream) Source() string {
	return s.system.SystemID + "/" + s.sql.Config().Database + "/" + s.cfg.Slot
}

// WALAtOpen is the server's WAL flush position when Open identified it, or the slot's start if
// that is later: every transaction a previous run of this slot (or this run's initial
// snapshot) can have written to Kafka committed before it.
func (s *Stream) WALAtOpen() pglogrepl.LSN { return s.system.XLogPos }

// Tracker returns the acknowledgement tracker of this stream.
func (s *Stream) Tracker() *Tracker { return s.tracker }

// Created reports whether Open created the slot; SnapshotName is then the exported snapshot
// (when Config.ExportSnapshot is set) and StartLSN the slot's consistent point.
func (s *Stream) Created() bool { return s.created }

// SnapshotName is the name of the snapshot exported when the slot was created.
func (s *Stream) SnapshotName() string { return s.snapshotName }

// StartLSN is where streaming starts: the slot's consistent point or confirmed flush LSN.
func (s *Stream) StartLSN() pglogrepl.LSN { return s.tracker.Confirmed() }

// Run streams changes into out, in batches (the changes of the messages read at once), until
// ctx ends or a permanent error occurs. A broken connection is retried with backoff: the
// transaction it cut is abandoned (the server sends it again), and once every change already
// sent has been acknowledged, streaming restarts from the confirmed position, so per-key order
// is kept. After Stop, Run returns nil at the first transaction boundary. Run does not close
// out.
func (s *Stream) Run(ctx context.Context, out chan<- []*Change) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := s.stream(ctx, out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errStopped) || s.stopRequested() {
			return nil // a connection lost while stopping: the cut transaction is sent again at restart
		}
		if !Transient(err) {
			return err
		}
		s.dec.abandonOpenTx()
		s.observe(func(o Observer) { o.Streaming(false) })
		s.log.Warn("replication connection lost; reconnecting", "slot", s.cfg.Slot, "err", err, "confirmed_lsn", s.tracker.Confirmed().String())
		s.closeRepl()
		// Wait until Kafka has everything sent so far: restarting from an older position would
		// replay it after newer events of the same key.
		for s.tracker.Open() > 0 {
			s.beatNow()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.tracker.Changed():
			case <-time.After(time.Second):
			}
		}
		var down retrylog.Outage
		for {
			s.beatNow()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			err := s.reconnect(ctx)
			if err == nil {
				down.Recovered(s.log, "reconnected to PostgreSQL", "slot", s.cfg.Slot)
				break
			}
			if !Transient(err) {
				return err
			}
			s.observe(func(o Observer) { o.Reconnecting(err) })
			down.Failed(s.log, "cannot reconnect to PostgreSQL; retrying", err, "slot", s.cfg.Slot)
		}
		backoff = 100 * time.Millisecond
	}
}

// reconnect opens the replication connection again, then the catalog connection: with a DSN
// of several hosts the server may have changed (a failover), and the catalog must be read
// where the WAL comes from, so the old catalog connection is replaced, not kept.
func (s *Stream) reconnect(ctx context.Context) error {
	if err := s.connectReplication(ctx); err != nil {
		return err
	}
	if err := s.guardStandby(); err != nil {
		s.closeRepl()
		return err
	}
	if err := s.checkTimeline(ctx); err != nil {
		s.closeRepl()
		return err
	}
	conn, err := pg.Connect(ctx, s.cfg.DSN, "procon-cdc catalog")
	if err != nil {
		s.closeRepl()
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if s.sql != nil {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = s.sql.Close(cctx) // the old server may be gone: its error says nothing
		cancel()
	}
	s.sql = conn
	s.dec.cat.conn = conn
	return nil
}

var (
	// errConnClosed is the server ending the copy (CopyDone): the walsender is going away, as
	// on a promotion or a shutdown, and a new connection may stream again.
	errConnClosed = fmt.Errorf("the server ended the replication stream: %w", io.EOF)
	errStopped    = errors.New("stopped between transactions")
)

// Stop asks Run to return once the transaction being received has been handed over whole, so
// that a graceful stop right after a large transaction does not leave all of it to be sent
// again at restart. A stream that is between transactions stops at once; one that waits for
// the rest of a transaction stops when its Commit has been emitted (the caller bounds the wait
// by cancelling Run's context).
func (s *Stream) Stop() { s.stopOnce.Do(func() { close(s.stopping) }) }

func (s *Stream) stopRequested() bool {
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// betweenTransactions reports whether no transaction is open in the decoder.
func (s *Stream) betweenTransactions() bool { return s.dec.tx == nil }

type rawMsg struct {
	data []byte
	err  error
}

func (s *Stream) stream(ctx context.Context, out chan<- []*Change) error {
	if s.repl == nil {
		if err := s.reconnect(ctx); err != nil {
			return err
		}
	}
	args := []string{"proto_version '1'", "publication_names '" + strings.ReplaceAll(s.cfg.Publication, "'", "''") + "'"}
	if s.serverVersion >= 14 {
		args = append(args, "messages 'true'")
	}
	start := s.tracker.Confirmed()
	if err := pglogrepl.StartReplication(ctx, s.repl, s.cfg.Slot, start, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" {
			return fmt.Errorf("start replication on slot %s: %w (%w)", s.cfg.Slot, ErrSlotActive, err)
		}
		return fmt.Errorf("start replication on slot %s at %s: %w%s", s.cfg.Slot, start, err, slotMissingHint(err, s.cfg.Failover))
	}
	s.log.Info("streaming", "slot", s.cfg.Slot, "from", start.String())
	s.observe(func(o Observer) { o.Streaming(true) })
	s.beatNow()

	raw := make(chan []rawMsg, rawBatches)
	stop := make(chan struct{})
	defer close(stop)
	s.readerDone = make(chan struct{})
	go s.read(s.repl, raw, stop, s.readerDone)

	ticker := time.NewTicker(s.cfg.StatusInterval)
	defer ticker.Stop()
	// The changes of a batch of messages go downstream in one send: a single-row transaction
	// read at once wakes the pipeline once, not three times.
	var pending []*Change
	emit := func(c *Change) error {
		pending = append(pending, c)
		return nil
	}
	send := func() error {
		if len(pending) == 0 {
			return nil
		}
		cs := pending
		pending = nil // the pipeline owns cs now
		// The common case first, without the cost of a three-way select.
		select {
		case out <- cs:
			return nil
		default:
		}
		for {
			select {
			case out <- cs:
				return nil
			case <-ticker.C:
				s.beatNow()
				if err := s.statusTick(false); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	for {
		var stop <-chan struct{}
		if s.betweenTransactions() {
			if s.stopRequested() {
				return errStopped
			}
			stop = s.stopping
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return errStopped
		case <-ticker.C:
			s.beatNow()
			// When idle, ask for a keepalive: its WAL end lets the tracker confirm past WAL
			// that holds nothing for us, so an idle slot retains nothing.
			if err := s.statusTick(s.tracker.Open() == 0); err != nil {
				return err
			}
		case batch := <-raw:
			var err error
			for i, m := range batch {
				if i > 0 && s.betweenTransactions() && s.stopRequested() {
					err = errStopped // the rest of the batch is dropped, as queued batches are
					break
				}
				if m.err != nil {
					err = m.err
					break
				}
				if err = s.handle(ctx, m.data, emit); err != nil {
					break
				}
			}
			// What was decoded goes downstream whatever ended the batch, as it did one change
			// at a time: its transactions are begun in the tracker.
			if serr := send(); err == nil {
				err = serr
			}
			if err != nil {
				return err
			}
		}
	}
}

// The reader hands messages over in batches: a single-row transaction is three messages (Begin,
// Insert, Commit), and a channel send and wake-up per message cost the stream loop more than
// decoding them. A batch is what the connection had already buffered, so batching adds no
// wait; rawBatches batches of at most rawBatch messages bound what is queued.
const (
	rawBatch   = 64
	rawBatches = 4
)

// DefaultReadLinger is the reader's wait after a small batch. At a steady trickle of small
// transactions (thousands a second, each sent alone) every read would find one transaction and
// wake the stream loop, the pipeline and the producer for it, and on a machine with idle cores
// each of those wake-ups costs more CPU than the transaction's work (a futex wake and a
// scheduler spinning on the other core). Waiting this long before the next read lets the
// kernel gather the transactions of about a millisecond, which then cross every goroutine
// together. It adds at most this much to the commit-to-Kafka latency of a transaction that
// arrives during the wait (kafka.linger, the producer's own wait, defaults to 2 ms); a
// transaction that arrives after a quiet spell is read at once, and a backlog (full batches)
// is read without waiting.
const DefaultReadLinger = time.Millisecond

// lingerBytes is what a batch after which the reader waits holds less of, and what ends the
// wait early when it has arrived (gather): one read of the connection's buffer (8 KiB).
const lingerBytes = 8 << 10

// lingers reports whether the reader waits before its next read after a batch of n messages and
// size bytes: only a small batch says that the server sends slower than the reader reads.
func lingers(n, size int) bool { return n < rawBatch && size < lingerBytes }

// read is the only goroutine that receives from the replication connection while streaming.
// It copies each message, because pgconn reuses its buffer, and stops at the first error. It
// sends the messages in batches: each message the connection has already buffered joins the
// batch (up to rawBatch), and the batch goes as soon as the next read could wait for the
// server. After a small batch it lingers up to ReadLinger (DefaultReadLinger) before reading
// again: on Linux's TCP until lingerBytes have arrived or the linger has passed, without waking
// for each message (gather), elsewhere asleep for the whole linger. Once the stream loop is
// gone (stop), it drops what still arrives until the server ends the copy or the socket is
// closed: Close waits for that to know its last status update was processed.
func (s *Stream) read(conn *pgconn.PgConn, raw chan<- []rawMsg, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	fe := conn.Frontend()
	var g *gather
	if s.cfg.ReadLinger > 0 {
		g = newGather(conn.Conn())
	}
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	lingering := false // the last batch was small: gather before the next read
	for {
		var batch []rawMsg
		var failed bool
		size := 0
		for !failed && len(batch) < rawBatch && (len(batch) == 0 || fe.ReadBufferLen() > 0) {
			// Only a receive from an empty buffer waits for the server; reading the clock
			// for every buffered message cost a few percent of a drain.
			listening := fe.ReadBufferLen() == 0
			if listening {
				s.waiting.Store(time.Now().UnixNano())
			}
			if lingering && listening && g != nil {
				if err := g.wait(lingerBytes, s.cfg.ReadLinger); err != nil {
					g = nil // a socket that refuses: sleep through lingers from now on
				}
			}
			lingering = false
			msg, err := conn.ReceiveMessage(context.Background())
			if listening {
				s.waiting.Store(0)
			}
			var m rawMsg
			switch msg := msg.(type) {
			case *pgproto3.CopyData:
				m.data = append([]byte(nil), msg.Data...)
			case *pgproto3.ErrorResponse:
				m.err = pgconn.ErrorResponseToPgError(msg)
			case *pgproto3.CopyDone:
				m.err = errConnClosed
			case nil:
				m.err = err
			default:
				continue
			}
			if batch == nil {
				batch = make([]rawMsg, 0, 8)
			}
			batch = append(batch, m)
			size += len(m.data)
			failed = m.err != nil
		}
		select {
		case raw <- batch:
		case <-stop:
		}
		if failed {
			return
		}
		lingering = s.cfg.ReadLinger > 0 && lingers(len(batch), size)
		if lingering && g == nil {
			lingering = false
			linger.Reset(s.cfg.ReadLinger)
			select {
			case <-linger.C:
			case <-stop:
			}
		}
	}
}

func (s *Stream) handle(ctx context.Context, data []byte, emit func(*Change) error) error {
	if len(data) == 0 {
		return errors.New("empty CopyData message from the server")
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		s.tracker.ServerWALEnd(ka.ServerWALEnd)
		s.sawServerWAL(ka.ServerWALEnd)
		if ka.ServerWALEnd > s.received {
			s.received = ka.ServerWALEnd
		}
		if ka.ReplyRequested {
			return s.sendStatus(false)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse XLogData: %w", err)
		}
		if xld.WALStart > s.received {
			s.received = xld.WALStart
		}
		// Not the tracker's: the server's WAL end may lie past transactions not yet sent.
		s.sawServerWAL(xld.ServerWALEnd)
		return s.dec.decode(ctx, xld.WALStart, xld.WALData, emit)
	}
	return nil
}

// observe calls f with the Observer, if there is one.
func (s *Stream) observe(f func(Observer)) {
	if s.cfg.Observer != nil {
		f(s.cfg.Observer)
	}
}

func (s *Stream) beatNow() { s.beat.Store(time.Now().UnixNano()) }

// sawServerWAL records the server's WAL end from one of its messages. Only the stream
// goroutine writes it.
func (s *Stream) sawServerWAL(lsn pglogrepl.LSN) {
	if uint64(lsn) > s.serverWAL.Load() {
		s.serverWAL.Store(uint64(lsn))
	}
}

// ServerWAL is the server's WAL end as its last messages told it. Any goroutine may call it.
func (s *Stream) ServerWAL() pglogrepl.LSN { return pglogrepl.LSN(s.serverWAL.Load()) }

// LastBeat is when the stream goroutine last went round its loop (it does at least every
// status interval while streaming, and every few seconds while reconnecting); zero before
// Run. Any goroutine may call it.
func (s *Stream) LastBeat() time.Time {
	if n := s.beat.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// sendStatus reports the confirmed position. It writes the message itself: pglogrepl's helper
// replaces a zero flush position with the write position, which would confirm unacknowledged
// data.
func (s *Stream) sendStatus(replyRequested bool) error {
	confirmed := s.tracker.Confirmed()
	written := max(s.received, confirmed)
	buf := make([]byte, 0, 5+34)
	buf = append(buf, 'd', 0, 0, 0, 0, pglogrepl.StandbyStatusUpdateByteID)
	buf = binary.BigEndian.AppendUint64(buf, uint64(written))
	buf = binary.BigEndian.AppendUint64(buf, uint64(confirmed))
	buf = binary.BigEndian.AppendUint64(buf, uint64(confirmed))
	buf = binary.BigEndian.AppendUint64(buf, uint64(pgTime(time.Now())))
	if replyRequested {
		buf = append(buf, 1)
	} else {
		buf = append(buf, 0)
	}
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(buf)-1))
	if err := s.repl.Frontend().SendUnbufferedEncodedCopyData(buf); err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// errServerSilent ends a connection on which the server sent nothing for ReceiveTimeout.
var errServerSilent = errors.New("no message from the server")

// statusTick sends the periodic status update, asking for a reply when idle (idle) or when
// the server has been silent for a third of ReceiveTimeout, and ends the connection once it
// has been silent for all of it: a partition or a dead server can leave a connection open on
// our side for as long as TCP keeps retrying (minutes to hours), with the slot held by a
// walsender that no longer hears us.
func (s *Stream) statusTick(idle bool) error {
	var silent time.Duration
	if since := s.waiting.Load(); since != 0 {
		silent = time.Since(time.Unix(0, since))
	}
	if silent >= s.cfg.ReceiveTimeout {
		return fmt.Errorf("%w for %s (postgres.receive_timeout): the connection is taken as lost", errServerSilent, silent.Round(time.Second))
	}
	return s.sendStatus(idle || silent >= s.cfg.ReceiveTimeout/3)
}

// pgTime is microseconds since 2000-01-01, PostgreSQL's epoch.
func pgTime(t time.Time) int64 {
	return t.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).Microseconds()
}

// Close sends the final confirmed position (everything Kafka acknowledged) and closes the
// connections. Call it after the pipeline has drained.
func (s *Stream) Close(ctx context.Context) error {
	var err error
	// The reader goroutine may still be receiving: only write here (pgconn's IsClosed would
	// race with it); a closed connection just makes the write fail.
	if s.repl != nil && s.readerDone != nil {
		err = s.sendStatus(false)
		if err == nil {
			err = s.endCopy(ctx)
		}
		if err == nil {
			s.log.Info("confirmed position on shutdown", "slot", s.cfg.Slot, "lsn", s.tracker.Confirmed().String())
		}
	}
	s.closeConns()
	return err
}

// endCopy ends the replication stream with CopyDone and waits for the server's answer. Closing
// the socket right after the last status update is not enough: with data still unread on our
// side the close resets the connection, and the server can lose the update with it.
func (s *Stream) endCopy(ctx context.Context) error {
	copyDone := []byte{'c', 0, 0, 0, 4} // written raw, like sendStatus: only the reader goroutine may use pgconn's buffers
	if err := s.repl.Frontend().SendUnbufferedEncodedCopyData(copyDone); err != nil {
		return fmt.Errorf("end replication: %w", err)
	}
	// A walsender busy decoding a large transaction reads its input late; past this wait the
	// update may be lost, and the restart resends from the previous confirmed position.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	select {
	case <-s.readerDone: // the server's CopyDone, an error or EOF: our messages were all read
		return nil
	case <-ctx.Done():
		return fmt.Errorf("end replication: no answer from the server: %w", ctx.Err())
	}
}

// Discard closes a stream that never started and drops the slot if Open created it, so that a
// start refused after Open (a pinned Avro schema that does not match, say) leaves nothing
// behind: nothing was read from the slot, and the next start creates it again.
func (s *Stream) Discard(ctx context.Context) error {
	s.closeRepl() // the replication connection holds the slot active
	var err error
	if s.created && s.sql != nil {
		if _, err = s.sql.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot($1)`, s.cfg.Slot); err != nil {
			err = fmt.Errorf("drop slot %s created by this start: %w", s.cfg.Slot, err)
		}
	}
	s.closeConns()
	return err
}

func (s *Stream) closeRepl() {
	if s.repl != nil {
		// Closing the socket first ends the reader's blocking receive; then pgconn cleans up.
		_ = s.repl.Conn().Close()
		if s.readerDone != nil {
			<-s.readerDone
			s.readerDone = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.repl.Close(ctx)
		cancel()
		s.repl = nil
	}
}

func (s *Stream) closeConns() {
	s.closeRepl()
	if s.sql != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.sql.Close(ctx)
		cancel()
	}
}
