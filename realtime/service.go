package realtime

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// CleanupPrefix is the prefix of the transactional logical message that starts each cleanup
// transaction. The pipeline sees it before the transaction's deletes and drops them, so the
// cleanup never becomes events, even when the realtime table is also in relation_configs.
const CleanupPrefix = "procon-realtime-cleanup"

// Default bounds.
const (
	DefaultMaxPending           = 100      // waiting notifications per channel
	DefaultMaxTotal             = 10_000   // waiting notifications in all channels
	DefaultMaxQueueBytes        = 16 << 20 // bytes the queue holds
	DefaultMaxNotificationBytes = 8000     // channel, session id and metadata of one notification, as PostgreSQL's NOTIFY payload
)

// Producer is what the realtime stage needs of the Kafka writer; *sink.Writer implements it.
type Producer interface {
	Produce(ctx context.Context, r *sink.Record) error
}

// Tracker counts the records of each transaction that Kafka has not acknowledged yet;
// *replication.Tracker implements it.
type Tracker interface {
	Add(tx *replication.Tx, n int)
	Ack(tx *replication.Tx)
}

// Config configures a Service.
type Config struct {
	// Topic receives the notifications; the key is the channel, so a channel's notifications
	// stay in order on one partition.
	Topic string
	// Threshold is the least time between two notifications of one channel, for the table and
	// message paths (a Rule has its own).
	Threshold time.Duration
	// Coalesce keeps only the newest waiting notification of each channel and session.
	Coalesce bool
	// MaxPending bounds the notifications waiting in one channel, MaxTotal those of all
	// channels, and MaxQueueBytes the bytes the queue holds (the waiting notifications and the
	// channels remembered for their spacing, with their bookkeeping). Past any of them, Submit
	// blocks until a notification is produced (backpressure).
	MaxPending, MaxTotal, MaxQueueBytes int
	// MaxNotificationBytes bounds one notification's channel, session id and metadata. A larger
	// one is dropped with a warning when it is derived; it never holds its transaction (a
	// realtime table row is still deleted).
	MaxNotificationBytes int

	// Table is the "schema.table" whose inserted rows are notifications; "" turns the table
	// path off. TableListed says that it is also in relation_configs: its changes then become
	// events too, except the deletes of the cleanup.
	Table       string
	TableListed bool
	// Cleanup deletes the rows of Table once their notification is in Kafka, through DSN.
	Cleanup bool
	DSN     string
	// Prefix is the prefix of the transactional logical messages that are notifications; ""
	// turns the message path off.
	Prefix string
	// Rules build notifications from the changes of relations, by "schema.table".
	Rules map[string]*Rule

	// Source names the pipeline, for each notification's procon.source header.
	Source []byte

	Producer Producer
	Encoder  envelope.Encoder
	Tracker  Tracker
	// Oversize decides on notifications too large for the topic; nil produces them all.
	Oversize *deadletter.Guard
	Logger   *slog.Logger
	Clock    Clock // the real clock when nil
	// CleanupInterval is how long acknowledged rows gather before a cleanup transaction
	// deletes them (default 100ms).
	CleanupInterval time.Duration
}

// Service derives realtime notifications from changes, spaces them per channel and produces
// them to Kafka.
//
// Suppress, Derive and Submit are called by the pipeline goroutine, in stream order; Run is
// the goroutine that produces and, with cleanup on, deletes published rows; a notification's
// record is acknowledged (item.Ack) on Kafka's promise goroutine. A notification is counted in its transaction with Tracker.Add before the
// transaction is sealed, and acknowledged only once Kafka has it (and its row is deleted), or
// when coalescing drops it: the slot's LSN never passes a notification still waiting.
type Service struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	cleaner *cleaner

	// Pipeline goroutine state.
	rels      map[*replication.Relation]*relInfo
	cleanupTx *replication.Tx // the cleanup transaction being read, if any
	// cleanupToken is the content of this process's cleanup markers: random, so that a
	// marker another role emits (pg_logical_emit_message is PUBLIC's by default) cannot hide
	// its own deletes of a listed realtime table from the event stream.
	cleanupToken string
	// Warnings about what a change or message could not become, counted per second (see
	// warnInput).
	warnWindow              time.Time
	warnsInWindow, warnsOut int

	tooLarge atomic.Int64 // notifications dropped for their size
	// sent and coalesced count notifications Kafka acknowledged and those a newer one of
	// their channel and session replaced.
	sent, coalesced atomic.Int64

	mu            sync.Mutex
	thr           *throttle
	space         chan struct{} // closed and replaced when a waiting notification leaves
	wake          chan struct{} // a notification arrived
	lastBlockLog  time.Time
	lastForgetLog time.Time
}

// Stats is what the realtime stage holds and has dropped.
type Stats struct {
	// Waiting is the number of notifications waiting for their channel's spacing.
	Waiting int
	// QueueBytes is what the queue holds, as Config.MaxQueueBytes counts it, and
	// PeakQueueBytes the most it has held.
	QueueBytes, PeakQueueBytes int
	// TooLarge counts the notifications dropped for being over Config.MaxNotificationBytes.
	TooLarge int64
	// ChannelsForgotten counts idle channels forgotten before their spacing ran out to make
	// room in the queue: the next notification of such a channel may follow its previous one
	// sooner than the threshold.
	ChannelsForgotten int64
	// Sent counts notifications Kafka acknowledged; Coalesced those a newer notification of
	// their channel and session replaced while they waited; Delayed those that waited for
	// their channel's spacing (or for an earlier notification of their channel).
	Sent, Coalesced, Delayed int64
}

// Stats returns the stage's counters. It is safe to call from any goroutine; a nil Service
// has none.
func (s *Service) Stats() Stats {
	if s == nil {
		return Stats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Waiting: s.thr.total, QueueBytes: s.thr.bytes, PeakQueueBytes: s.thr.peak,
		TooLarge: s.tooLarge.Load(), ChannelsForgotten: s.thr.forgotten,
		Sent: s.sent.Load(), Coalesced: s.coalesced.Load(), Delayed: s.thr.delayed}
}

// relInfo is what the Service knows about one relation version.
type relInfo struct {
	table bool // the realtime table
	tc    tableColumns
	tcErr error
	rule  *Rule
}

// item is one notification on its way, or a realtime row that only needs deleting. It is the
// acknowledgement of its notification's record.
type item struct {
	svc       *Service
	n         Notification
	commit    time.Time
	tx        *replication.Tx
	txHdr     []byte // procon.tx
	seq       int    // procon.seq
	threshold time.Duration
	row       *rowRef   // the realtime table row to delete once produced; nil otherwise
	queued    time.Time // when it entered the queue
}

// rowRef identifies a realtime table row by its key.
type rowRef struct {
	rel *replication.Relation
	key []string // text of rel.Key columns
}

// New returns a Service. It connects to nothing: Run does.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.MaxTotal <= 0 {
		cfg.MaxTotal = DefaultMaxTotal
	}
	if cfg.MaxTotal < cfg.MaxPending {
		cfg.MaxTotal = cfg.MaxPending
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if cfg.MaxNotificationBytes <= 0 {
		cfg.MaxNotificationBytes = DefaultMaxNotificationBytes
	}
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = 100 * time.Millisecond
	}
	if cfg.Topic == "" || cfg.Producer == nil || cfg.Encoder == nil || cfg.Tracker == nil {
		return nil, errors.New("realtime: Topic, Producer, Encoder and Tracker are required")
	}
	if cfg.Prefix == CleanupPrefix {
		return nil, fmt.Errorf("realtime: the message prefix %q is reserved for the cleanup", CleanupPrefix)
	}
	s := &Service{
		cfg: cfg, log: cfg.Logger, clock: cfg.Clock,
		rels:  map[*replication.Relation]*relInfo{},
		thr:   newThrottle(cfg.Coalesce),
		space: make(chan struct{}),
		wake:  make(chan struct{}, 1),

		cleanupToken: rand.Text(),
	}
	if cfg.Table != "" && cfg.Cleanup {
		s.cleaner = newCleaner(cfg.DSN, cfg.Table, s.cleanupToken, cfg.Tracker, cfg.CleanupInterval, cfg.Logger)
	}
	return s, nil
}

func (s *Service) info(rel *replication.Relation) *relInfo {
	ri, ok := s.rels[rel]
	if !ok {
		name := rel.QualifiedName()
		ri = &relInfo{rule: s.cfg.Rules[name]}
		if s.cfg.Table != "" && name == s.cfg.Table {
			ri.table = true
			ri.tc, ri.tcErr = tableColumnsOf(rel)
		}
		// Changes come in stream order: none of an older version of rel (the same ID) follows
		// this one. Each reconnect and each DDL makes new versions; drop the replaced ones.
		for old := range s.rels {
			if old.ID == rel.ID {
				delete(s.rels, old)
			}
		}
		s.rels[rel] = ri
	}
	return ri
}

// Suppress reports whether a change must not become events: changes of the realtime table
// when relation_configs does not list it, the deletes of the cleanup in any case, logical
// messages with the realtime or the cleanup prefix. A truncate loses the realtime table from
// its list when it is not listed. A nil Service suppresses nothing.
func (s *Service) Suppress(c *replication.Change) bool {
	if s == nil {
		return false
	}
	switch c.Op {
	case replication.OpMessage:
		if c.Prefix == CleanupPrefix {
			// Never an event; its transaction's deletes are suppressed only if the marker is
			// this process's own. After a restart, the slot's replay of an earlier process's
			// cleanups shows their deletes as events of a listed realtime table: noise, not
			// loss, and the price of a marker no other role can forge.
			if c.Transactional && string(c.Content) == s.cleanupToken {
				s.cleanupTx = c.Tx
			}
			return true
		}
		return s.cfg.Prefix != "" && c.Prefix == s.cfg.Prefix
	case replication.OpInsert, replication.OpUpdate, replication.OpDelete:
		if !s.info(c.Rel).table {
			return false
		}
		return !s.cfg.TableListed || (c.Op == replication.OpDelete && c.Tx == s.cleanupTx)
	case replication.OpTruncate:
		if s.cfg.TableListed || s.cfg.Table == "" {
			return false
		}
		kept := c.Truncated[:0:0]
		for _, rel := range c.Truncated {
			if !s.info(rel).table {
				kept = append(kept, rel)
			}
		}
		c.Truncated = kept
		return len(kept) == 0
	case replication.OpCommit:
		if c.Tx == s.cleanupTx {
			s.cleanupTx = nil
		}
	}
	return false
}

// Handle derives the notification of a change and submits it (Derive, then Submit). It
// returns the position after the notification's. A nil Service does nothing.
func (s *Service) Handle(ctx context.Context, c *replication.Change, txHdr []byte, seq int) (int, error) {
	p, seq := s.Derive(c, txHdr, seq)
	return seq, s.Submit(ctx, p)
}

// Pending is a notification derived from a change, not yet submitted.
type Pending struct {
	it      *item
	cleanup bool // no notification, but the realtime table row must still be deleted
}

// Derive works out the notification a change makes, if any, under the next position of its
// transaction after seq, which it returns. It has no effect until Submit: the pipeline derives
// in stream order, then submits once the change's own records are produced.
func (s *Service) Derive(c *replication.Change, txHdr []byte, seq int) (*Pending, int) {
	if s == nil {
		return nil, seq
	}
	var (
		n         Notification
		row       *rowRef
		err       error
		threshold = s.cfg.Threshold
	)
	switch c.Op {
	case replication.OpMessage:
		if s.cfg.Prefix == "" || c.Prefix != s.cfg.Prefix {
			return nil, seq
		}
		if !c.Transactional {
			s.warnInput("ignoring a non-transactional realtime message: only pg_logical_emit_message(true, ...) is tied to its transaction's commit",
				"prefix", c.Prefix, "lsn", c.LSN.String())
			return nil, seq
		}
		if n, err = parseMessage(c.Content, s.cfg.MaxNotificationBytes); err != nil {
			if !s.droppedTooLarge(c, err) {
				s.warnInput("ignoring a realtime message", "err", err, "lsn", c.LSN.String(), "xid", c.Tx.XID)
			}
			return nil, seq
		}
	case replication.OpInsert, replication.OpUpdate, replication.OpDelete:
		ri := s.info(c.Rel)
		switch {
		case ri.table && c.Op == replication.OpInsert:
			row = s.rowOf(c)
			err = ri.tcErr
			if err == nil {
				n, err = fromRow(ri.tc, c.New, s.cfg.MaxNotificationBytes)
			}
		case ri.rule != nil && ri.rule.Ops[c.Op]:
			threshold = ri.rule.Threshold
			if n, err = ri.rule.derive(c, s.cfg.MaxNotificationBytes); err != nil && c.Op == replication.OpDelete && c.OldKind != 'O' && !isTooLarge(err) {
				err = fmt.Errorf("%w (a delete carries the old row's columns only with REPLICA IDENTITY FULL)", err)
			}
		default:
			return nil, seq
		}
		if err != nil {
			if !s.droppedTooLarge(c, err) {
				s.warnInput("no realtime notification for this change", "relation", c.Rel.QualifiedName(), "op", c.Op.String(),
					"lsn", c.LSN.String(), "xid", c.Tx.XID, "err", err)
			}
			if row != nil { // the row is still deleted, once what precedes it is acknowledged
				return &Pending{it: &item{svc: s, tx: c.Tx, row: row}, cleanup: true}, seq
			}
			return nil, seq
		}
	default:
		return nil, seq
	}
	seq++
	return &Pending{it: &item{svc: s, n: n, commit: c.Tx.CommitTime, tx: c.Tx, txHdr: txHdr, seq: seq, threshold: threshold, row: row}}, seq
}

// droppedTooLarge reports whether err says that c's notification is over the size bound, and
// if so counts it and says so. Such a notification is dropped where it is derived: it never
// enters the queue nor holds its transaction, so the slot's LSN moves past it.
func (s *Service) droppedTooLarge(c *replication.Change, err error) bool {
	var tl *tooLargeError
	if !errors.As(err, &tl) {
		return false
	}
	dropped := s.tooLarge.Add(1)
	args := []any{"channel", shortened(tl.channel), "lsn", c.LSN.String(), "xid", c.Tx.XID, "op", c.Op.String()}
	if c.Rel != nil {
		args = append(args, "relation", c.Rel.QualifiedName())
	} else {
		args = append(args, "prefix", c.Prefix)
	}
	s.warnInput("dropping a realtime notification over realtime.max_notification_bytes",
		append(args, "size", tl.size, "max_notification_bytes", tl.limit, "dropped_total", dropped)...)
	return true
}

// maxInputWarnsPerSecond bounds the warnings about changes and messages that become no
// notification: any role can emit realtime messages, and a flood of bad ones must not become
// a flood of log lines.
const maxInputWarnsPerSecond = 10

// warnInput logs a warning about a change or message that becomes no notification, at most
// maxInputWarnsPerSecond a second; the next one logged says how many were left out. Called
// from the pipeline goroutine only.
func (s *Service) warnInput(msg string, args ...any) {
	if now := s.clock.Now(); now.Sub(s.warnWindow) >= time.Second {
		s.warnWindow, s.warnsInWindow = now, 0
	}
	if s.warnsInWindow >= maxInputWarnsPerSecond {
		s.warnsOut++
		return
	}
	s.warnsInWindow++
	if s.warnsOut > 0 {
		args = append(args, "similar_warnings_left_out", s.warnsOut)
		s.warnsOut = 0
	}
	s.log.Warn(msg, args...)
}

// isTooLarge reports whether err says that a notification is over the size bound.
func isTooLarge(err error) bool {
	var tl *tooLargeError
	return errors.As(err, &tl)
}

// Submit counts a derived notification in its transaction and queues it. It blocks while the
// notification's channel, or the whole queue, is full, and returns an error only when ctx
// ends. A nil Pending does nothing.
func (s *Service) Submit(ctx context.Context, p *Pending) error {
	if s == nil || p == nil {
		return nil
	}
	s.cfg.Tracker.Add(p.it.tx, 1)
	if p.cleanup {
		s.cleaner.add(p.it)
		return nil
	}
	return s.enqueue(ctx, p.it)
}

// rowOf returns the key of an inserted realtime table row when cleanup is on.
func (s *Service) rowOf(c *replication.Change) *rowRef {
	if s.cleaner == nil || len(c.Rel.Key) == 0 {
		return nil
	}
	r := &rowRef{rel: c.Rel, key: make([]string, len(c.Rel.Key))}
	for i, col := range c.Rel.Key {
		v, ok := datumText(c.New, col)
		if !ok {
			return nil
		}
		r.key[i] = v
	}
	return r
}

func (s *Service) enqueue(ctx context.Context, it *item) error {
	lim := limits{perChannel: s.cfg.MaxPending, total: s.cfg.MaxTotal, bytes: s.cfg.MaxQueueBytes}
	for {
		s.mu.Lock()
		forgotten := s.thr.forgotten
		if s.thr.admit(it, lim, s.clock.Now()) {
			if s.thr.forgotten > forgotten {
				s.logForgotten()
			}
			dropped := s.thr.push(it, s.clock.Now())
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
			if dropped != nil {
				s.coalesced.Add(1)
				s.done(dropped) // coalesced away: it will never be produced
			}
			return nil
		}
		space := s.space
		if now := s.clock.Now(); now.Sub(s.lastBlockLog) >= 10*time.Second {
			s.lastBlockLog = now
			s.log.Info("realtime queue full: reading the WAL waits until notifications go out",
				"channel", shortened(it.n.Channel), "waiting_in_channel", s.thr.waitingIn(it.n.Channel), "waiting", s.thr.total,
				"queue_bytes", s.thr.bytes, "max_pending", s.cfg.MaxPending, "max_queue_bytes", s.cfg.MaxQueueBytes)
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-space:
		}
	}
}

// logForgotten says that idle channels were forgotten early, at most every 10 seconds; the
// caller holds s.mu.
func (s *Service) logForgotten() {
	if now := s.clock.Now(); now.Sub(s.lastForgetLog) >= 10*time.Second {
		s.lastForgetLog = now
		s.log.Warn("realtime queue full of idle channels: forgetting the oldest before their spacing ran out; their next notification may come sooner than rt_threshold",
			"forgotten_total", s.thr.forgotten, "channels", len(s.thr.chans), "max_queue_bytes", s.cfg.MaxQueueBytes)
	}
}

// Run produces notifications as their channels' spacing allows, and deletes published rows
// of the realtime table, until ctx ends or Kafka or PostgreSQL fail in a way retrying cannot
// fix. Notifications still waiting when it returns are not acknowledged: the slot gives them
// again at the next start.
func (s *Service) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	if s.cleaner != nil {
		g.Go(func() error { return s.cleaner.run(gctx) })
	}
	g.Go(func() error { return s.produceLoop(gctx) })
	return g.Wait()
}

func (s *Service) produceLoop(ctx context.Context) error {
	for {
		s.mu.Lock()
		now := s.clock.Now()
		it, wait := s.thr.pop(now)
		if it != nil {
			close(s.space) // a place in the queue is free
			s.space = make(chan struct{})
		}
		s.mu.Unlock()
		if it == nil {
			var timer <-chan time.Time
			if wait >= 0 {
				timer = s.clock.Until(now.Add(wait))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.wake:
			case <-timer:
			}
			continue
		}
		if err := s.produce(ctx, it); err != nil {
			return err
		}
		// The channel's spacing counts from after Produce returned, when the record has its
		// timestamp: consecutive records of a channel are at least the threshold apart, even
		// if Produce waited for room in the producer's buffer.
		s.mu.Lock()
		s.thr.sent(it, s.clock.Now())
		s.mu.Unlock()
	}
}

func (s *Service) produce(ctx context.Context, it *item) error {
	topic := s.cfg.Topic
	key, value, err := s.cfg.Encoder.Encode(ctx, it.event(topic))
	if err != nil {
		return fmt.Errorf("realtime: encode the notification of channel %q: %w", it.n.Channel, err)
	}
	// The writer creates the topic and partitions by the key (the channel), as Kafka would.
	rec := &sink.Record{
		Topic: topic, Key: key, Value: value,
		Headers:   txid.AppendHeaders(make([]sink.Header, 0, 3), s.cfg.Source, it.txHdr, it.seq),
		Partition: -1,
		Ack:       it,
	}
	// Too large for the topic: skipped, it counts as sent (its row is still deleted); a
	// dead-letter reference carries its acknowledgement; fail stops here.
	rec, err = s.cfg.Oversize.Check(ctx, rec, deadletter.Origin{Kind: deadletter.Realtime, Channel: it.n.Channel, CommitLSN: it.tx.CommitLSN, XID: it.tx.XID})
	if err != nil {
		return fmt.Errorf("realtime: %w", err)
	}
	if rec == nil {
		s.done(it)
		return nil
	}
	return s.cfg.Producer.Produce(ctx, rec)
}

// Ack is called when Kafka acknowledges the item's notification. It does not block.
func (it *item) Ack() {
	it.svc.sent.Add(1)
	it.svc.done(it)
}

// done finishes a notification that Kafka has or that was dropped: its row goes to the
// cleanup, which acknowledges it once deleted; without a row it is acknowledged at once.
func (s *Service) done(it *item) {
	if it.row != nil && s.cleaner != nil {
		s.cleaner.add(it)
		return
	}
	s.cfg.Tracker.Ack(it.tx)
}

// Close deletes the rows whose notifications Kafka acknowledged since the last cleanup, so
// that their transactions can be confirmed, and closes the cleanup's connection. Call it after
// Run has returned and the writer has been flushed.
func (s *Service) Close(ctx context.Context) error {
	if s == nil || s.cleaner == nil {
		return nil
	}
	defer s.cleaner.close()
	for {
		n, err := s.cleaner.flush(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}
