// Package engine wires procon-cdc's data path together and owns its goroutines and their
// shutdown order:
//
//	replication.Stream ─changes─▶ pipeline.Pipeline (envelope.Builder, encoders) ─▶ sink.Writer ─acks─▶ replication.Tracker
//
// New checks and prepares everything (Kafka, the schema registry, realtime and snapshot
// tables, the publication and the slot) and builds the parts; Run starts the stream, the
// pipeline, the in-stream snapshot worker, the realtime producer and the heartbeat under one
// errgroup, and on the way out drains Kafka, confirms the final position and closes
// everything. The engine itself turns no change into a record: the pipeline does.
//
// Concurrency: New and Run are called once, from one goroutine; SnapshotProgress and Stream
// may be called from any goroutine while Run runs.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/eventrouter"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/pipeline"
	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/realtime"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// Version is Procon's version, written as source.version.
var Version = "0.1.0-dev"

// Engine is one running procon-cdc.
type Engine struct {
	cfg     *config.Config
	log     *slog.Logger
	stream  *replication.Stream
	writer  *sink.Writer
	builder *envelope.Builder
	router  *eventrouter.Router // nil without outbox relations
	enc     encoders
	pipe    *pipeline.Pipeline
	source  []byte            // procon.source of every record: the stream's server, database and slot
	rt      *realtime.Service // nil when no realtime notification is configured
	// rtWriter produces realtime notifications: the writer, or with exactly-once delivery
	// one of their own outside transactions (exactly.go).
	rtWriter *sink.Writer
	resume   *progress.State   // exactly once: the last committed progress record, or nil
	guard    *deadletter.Guard // errors.record_too_large
	snap     *snapshots        // snapshot.go
	obs      *observer         // observe.go; nil without metrics.listen
	// lock is the slot's lock (standby.go), held from before the slot is read to after the
	// last record is produced and the slot released.
	lock *replication.SlotLock

	// DrainTimeout bounds the wait for Kafka's acknowledgements on shutdown.
	DrainTimeout time.Duration
}

// New checks Kafka, then prepares the publication and the slot. Kafka is checked first so that
// an unreachable broker changes nothing in the database.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Engine, error) {
	return NewAfter(ctx, cfg, log, nil)
}

// NewAfter is New for a process whose previous engine on cfg stopped with ErrLockLost: prev is
// that engine (its Lineage), and the new one refuses a server whose WAL does not continue what
// prev read, such as a standby promoted without everything the crashed primary had sent
// (invariant 25). prev may be nil.
func NewAfter(ctx context.Context, cfg *config.Config, log *slog.Logger, prev *replication.Lineage) (_ *Engine, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{cfg: cfg, log: log, DrainTimeout: 30 * time.Second}
	specs := RelationSpecs(cfg)
	// The metrics listener comes first: its probes answer while the start takes its time.
	if e.obs, err = newObserver(cfg, e); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.obs.close()
		}
	}()

	// Configuration the validation cannot see (handling modes, regular expressions) is refused
	// before anything is touched.
	bcfg, err := builderConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	scfg, err := sink.ConfigFrom(&cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	if e.obs != nil {
		scfg.Observer = e.obs.metrics
	}
	plain := scfg
	if cfg.Kafka.ExactlyOnce() {
		scfg.TransactionalID = cfg.TransactionalID()
	}
	if e.writer, err = sink.New(ctx, scfg, e.topicSpec); err != nil {
		return nil, err
	}
	e.rtWriter = e.writer
	// The slot's lock before anything reads the slot or fences: the others wait here as
	// standbys (standby.go).
	if e.lock, err = e.takeLock(ctx); err != nil {
		e.writer.Close()
		return nil, err
	}
	defer func() {
		if err != nil {
			// A start that failed after the lock was lost (the slot then found in use by the
			// successor, say) says so: run waits for the lock again.
			if lerr := e.lock.Err(); lerr != nil {
				err = lerr
			}
			e.lock.Release()
		}
	}()
	if cfg.Kafka.ExactlyOnce() {
		// Fenced before anything reads Kafka: once this returns, no earlier instance can
		// commit, and what it left open is aborted.
		if err := e.writer.Fence(ctx); err != nil {
			e.writer.Close()
			return nil, err
		}
		if cfg.RealtimeUsed() {
			if e.rtWriter, err = sink.New(ctx, plain, e.topicSpec); err != nil {
				e.writer.Close()
				return nil, err
			}
		}
	}
	avroEnc, err := newAvroEncoder(ctx, cfg, log)
	if err != nil {
		e.closeWriters()
		return nil, err
	}
	major, err := checkServerVersion(ctx, cfg, log)
	if err != nil {
		e.closeWriters()
		return nil, err
	}
	if err := prepareRealtime(ctx, cfg, specs); err != nil {
		e.closeWriters()
		return nil, err
	}
	if e.snap, err = prepareSnapshots(ctx, cfg, major, log); err != nil {
		e.closeWriters()
		return nil, err
	}
	if e.snap.signal != "" {
		specs[e.snap.signal] = replication.RelationSpec{} // published, consumed by the snapshot Controller
	}
	e.stream, err = e.openStream(ctx, replication.Config{
		DSN:             cfg.Postgres.DSN,
		Slot:            cfg.Postgres.Slot,
		Publication:     cfg.Postgres.Publication,
		PublicationMode: cfg.Postgres.PublicationAutocreate,
		Relations:       specs,
		StatusInterval:  time.Duration(cfg.Postgres.StatusInterval),
		ReceiveTimeout:  time.Duration(cfg.Postgres.ReceiveTimeout),
		ExportSnapshot:  e.snap.exportSnapshot(),
		Failover:        cfg.Postgres.Failover,
		SlotWait:        e.slotWait(),
		After:           prev,
		Observer:        e.obs.streamObserver(),
		Logger:          log,
	})
	if err != nil {
		e.snap.close()
		e.closeWriters()
		return nil, err
	}
	e.source = []byte(e.stream.Source())
	if e.writer.Transactional() {
		if e.resume, err = e.loadProgress(ctx); err != nil {
			return nil, e.abort(err)
		}
		if err := e.applySnapshotProgress(ctx, e.resume); err != nil {
			return nil, e.abort(err)
		}
	}
	if err := e.snap.opened(ctx, e); err != nil {
		return nil, e.abort(err)
	}
	bcfg.Database = e.stream.Database()
	bcfg.EmptyTransactions = major < 15
	e.builder = envelope.NewBuilder(bcfg)
	if err := e.checkAvro(ctx, avroEnc); err != nil {
		return nil, e.abort(err)
	}
	if e.router, err = newRouter(cfg, log); err != nil {
		return nil, e.abort(err)
	}
	if err := e.checkOutbox(ctx); err != nil {
		return nil, e.abort(err)
	}
	e.enc = newEncoders(cfg, avroEnc)
	if e.guard, err = newGuard(cfg, e.writer, log); err != nil {
		return nil, e.abort(err)
	}
	if e.rt, err = e.newRealtime(); err != nil {
		return nil, e.abort(err)
	}
	pcfg := pipeline.Config{
		Builder:        e.builder,
		Encoders:       e.enc,
		Producer:       e.writer,
		Tails:          e.writer,
		Tracker:        e.stream.Tracker(),
		Snapshots:      e.snap.observer(e.builder),
		Oversize:       e.guard,
		Instance:       uint16(*cfg.InstanceNum),
		Source:         e.source,
		WALAtOpen:      uint64(e.stream.WALAtOpen()),
		ExactlyOnce:    e.exactlyOnce(),
		HeartbeatTopic: cfg.HeartbeatTopic(),
		Logger:         log,
	}
	if e.rt != nil {
		pcfg.Notifier = e.rt
	}
	if e.router != nil {
		pcfg.Router = e.router
	}
	if e.obs != nil {
		pcfg.Meter = e.obs.metrics
	}
	e.pipe = pipeline.New(pcfg)
	e.obs.built(e)
	return e, nil
}

// checkShapes describes, as they are now, the relations pick selects and hands each to check.
// Every relation's check error is collected, so that one start names all of them; a relation
// that cannot be described stops the check.
func (e *Engine) checkShapes(ctx context.Context, pick func(*config.RelationConfig) bool,
	check func(name string, rc *config.RelationConfig, rel *replication.Relation) error) error {
	var errs []error
	for _, name := range e.cfg.SortedRelations() {
		rc := e.cfg.Relations[name]
		if !pick(rc) {
			continue
		}
		rel, err := e.stream.Describe(ctx, name)
		if err != nil {
			return err
		}
		if err := check(name, rc, rel); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Lineage says what the engine's stream read, for the engine that replaces it after a lost
// lock (NewAfter); call it once Run has returned.
func (e *Engine) Lineage() replication.Lineage { return e.stream.Lineage() }

// openStream opens the replication stream. With exactly-once delivery, a slot still in use is
// waited for, up to slotTakeover: Fence has just fenced the instance using it, which stops at
// its next commit and releases the slot.
func (e *Engine) openStream(ctx context.Context, cfg replication.Config) (*replication.Stream, error) {
	deadline := time.Now().Add(slotTakeover)
	for attempt := 0; ; attempt++ {
		st, err := replication.Open(ctx, cfg)
		if err == nil || !e.writer.Transactional() || !errors.Is(err, replication.ErrSlotActive) || time.Now().After(deadline) {
			if err == nil && attempt > 0 {
				e.log.Info("the fenced procon-cdc released the slot", "slot", cfg.Slot, "attempts", attempt+1)
			}
			return st, err
		}
		// The fenced instance stops at its next commit; an idle one would never notice, so its
		// replication connection is ended (it can commit nothing more, so nothing is lost).
		// Tried every 500ms: said at the first attempt.
		if attempt == 0 {
			e.log.Info("the slot is in use by the procon-cdc this one fenced: ending its replication connection", "slot", cfg.Slot, "err", err)
		}
		if terr := terminateSlotUser(ctx, cfg.DSN, cfg.Slot); terr != nil {
			lvl := slog.LevelDebug
			if attempt == 0 {
				lvl = slog.LevelWarn
			}
			e.log.Log(ctx, lvl, "cannot end the fenced procon-cdc's replication connection; waiting for it to stop", "slot", cfg.Slot, "err", terr)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// terminateSlotUser ends the walsender that holds slot, if it is a procon-cdc's (its
// application_name is the one this one's replication connection has): another client of the
// slot is not this one's to end.
func terminateSlotUser(ctx context.Context, dsn, slot string) error {
	app, err := pg.ApplicationName(dsn, replication.ApplicationName)
	if err != nil {
		return err
	}
	conn, err := pg.Connect(ctx, dsn, "procon-cdc takeover")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, `SELECT pg_catalog.pg_terminate_backend(s.active_pid)
		FROM pg_catalog.pg_replication_slots s JOIN pg_catalog.pg_stat_activity a ON a.pid = s.active_pid
		WHERE s.slot_name = $1 AND a.application_name = $2`, slot, app)
	return err
}

// slotTakeover bounds the wait for a fenced instance to release the slot.
const slotTakeover = 30 * time.Second

// abort undoes New after the stream was opened: a refused start leaves no slot behind.
func (e *Engine) abort(err error) error {
	e.snap.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if derr := e.stream.Discard(ctx); derr != nil {
		e.log.Warn("the refused start left its new slot behind; drop it with procon-cdc drop", "slot", e.cfg.Postgres.Slot, "err", derr)
	}
	e.closeWriters()
	return err
}

// writers are the engine's Kafka writers: the writer, and realtime's when it has its own.
func (e *Engine) writers() []*sink.Writer {
	if e.rtWriter != nil && e.rtWriter != e.writer {
		return []*sink.Writer{e.writer, e.rtWriter}
	}
	return []*sink.Writer{e.writer}
}

// closeWriters closes the Kafka writers; records not acknowledged are abandoned.
func (e *Engine) closeWriters() {
	for _, w := range e.writers() {
		w.Close()
	}
}

// newGuard applies errors.record_too_large, with the writer's per-topic limits.
func newGuard(cfg *config.Config, w *sink.Writer, log *slog.Logger) (*deadletter.Guard, error) {
	dc := deadletter.Config{Limits: w, Topic: cfg.Errors.DLQTopic, Logger: log}
	r := cfg.Errors.RecordTooLarge
	for k, name := range map[deadletter.Kind]string{deadletter.Row: r.Rows, deadletter.Message: r.Messages, deadletter.Realtime: r.Realtime} {
		p, err := deadletter.ParsePolicy(name)
		if err != nil {
			return nil, &config.FieldError{Key: "errors.record_too_large", Problem: err.Error()}
		}
		dc.Policies[k] = p
	}
	return deadletter.New(dc)
}

// RelationSpecs are the captured relations of cfg as the replication stream takes them.
func RelationSpecs(cfg *config.Config) map[string]replication.RelationSpec {
	specs := map[string]replication.RelationSpec{}
	for name, rc := range cfg.Relations {
		// An outbox table's events are keyed by its aggregate column, not by the row's key: it
		// needs none.
		specs[name] = replication.RelationSpec{PKey: rc.PKey, Keyless: rc.Keyless || (rc.Outbox != nil && len(rc.PKey) == 0)}
	}
	return specs
}

// builderConfig maps the configuration to the event builder's, all but the database name.
func builderConfig(cfg *config.Config, log *slog.Logger) (envelope.Config, error) {
	d := &cfg.Debezium
	opts, err := envelope.OptionsFrom(d)
	if err != nil {
		return envelope.Config{}, err
	}
	opts.FillUnchangedToast = *cfg.FillUnchangedToast
	skip := map[string]bool{}
	for _, op := range d.SkippedOperations {
		skip[op] = true
	}
	topics, names := map[string]string{}, map[string]string{}
	for name, rc := range cfg.Relations {
		topics[name] = rc.Topic
		if rc.SchemaName != "" && rc.SchemaName != rc.Topic {
			names[name] = rc.SchemaName
		}
	}
	bcfg := envelope.Config{
		Name:         cfg.Name,
		Version:      Version,
		Topics:       topics,
		SchemaNames:  names,
		Options:      opts,
		Tombstones:   *d.TombstonesOnDelete,
		Skip:         skip,
		TxMetadata:   d.ProvideTransactionMetadata,
		TxTopic:      cfg.TransactionTopic(),
		MessageTopic: cfg.MessageTopic(),
		Logger:       log,
	}
	if d.SkippedOperationsSet && len(d.SkippedOperations) > 0 {
		bcfg.Publish = map[string]bool{}
		for _, op := range []string{"c", "u", "d", "t"} {
			bcfg.Publish[op] = !skip[op]
		}
	}
	if bcfg.MessageInclude, err = compileAll("debezium.message.prefix.include.list", d.MessagePrefixIncludeList); err != nil {
		return bcfg, err
	}
	if bcfg.MessageExclude, err = compileAll("debezium.message.prefix.exclude.list", d.MessagePrefixExcludeList); err != nil {
		return bcfg, err
	}
	return bcfg, nil
}

func compileAll(key string, patterns []string) ([]*regexp.Regexp, error) {
	out := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		re, err := regexp.Compile("^(?:" + p + ")$")
		if err != nil {
			return nil, &config.FieldError{Key: key, Problem: fmt.Sprintf("%q is not a regular expression: %v", p, err)}
		}
		out[i] = re
	}
	return out, nil
}

// Stream exposes the replication stream (for status and tests).
func (e *Engine) Stream() *replication.Stream { return e.stream }

// Run streams until ctx ends or a permanent error occurs. When ctx ends it finishes the
// transaction being received (up to DrainTimeout), waits for Kafka to acknowledge what was
// produced, and confirms the resulting position to PostgreSQL; a context cancellation (a
// signal) returns nil.
func (e *Engine) Run(ctx context.Context) error {
	defer e.obs.close()
	// Released last, once the Kafka clients and the replication connection are closed.
	defer e.lock.Release()
	lockCtx, stopLockWatch := context.WithCancel(context.Background())
	lockWatched := make(chan struct{})
	go func() { defer close(lockWatched); e.watchLock(lockCtx) }()
	defer func() { stopLockWatch(); <-lockWatched }()
	// The slot is watched from the start: an initial snapshot is when its WAL grows most.
	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		e.obs.pollSlot(pollCtx, e.cfg.Postgres.DSN, e.cfg.Postgres.Slot)
	}()
	defer func() { stopPoll(); <-polled }()
	if done, err := e.snapshotBeforeStreaming(ctx); done {
		return err
	}
	defer e.snap.close()
	e.obs.setRunning()
	// The goroutines run until hard ends; ctx ending only stops the stream at the next
	// transaction boundary, and the pipeline ends hard once it has handed over every change.
	hard, stopHard := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHard()
	g, gctx := errgroup.WithContext(hard)
	changes := make(chan []*replication.Change, 64) // batches of at most 64 changes (Stream.Run)
	g.Go(func() error {
		defer close(changes)
		return e.stream.Run(gctx, changes)
	})
	g.Go(func() error {
		err := e.pipe.Run(gctx, changes)
		if err == nil {
			stopHard()
		}
		return err
	})
	g.Go(func() error { return e.runSnapshots(gctx) })
	g.Go(func() error { return e.runSignals(gctx) })
	g.Go(func() error { e.runHeartbeats(gctx); return nil })
	g.Go(func() error { e.watchBackpressure(gctx); return nil })
	if e.rt != nil {
		g.Go(func() error { return e.rt.Run(gctx) })
	}
	g.Go(func() error {
		select {
		case <-gctx.Done():
			return nil
		case <-e.writer.Failed():
			return e.writer.Err()
		}
	})
	// A stop waits at most DrainTimeout for the open transaction and for buffer space. Records
	// already handed to Kafka are then drained, not dropped: the writer gives them up only at
	// the deadline, which also releases a pipeline waiting for buffer space while Kafka is away.
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			e.obs.setStopping()
			e.stream.Stop()
		case <-gctx.Done():
		case <-stopped:
			return
		}
		select {
		case <-time.After(e.DrainTimeout):
			stopHard()
			e.writer.Abort()
		case <-stopped:
		}
	}()
	defer close(stopped)
	err := g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil || errors.Is(err, errSnapshotOnly) {
		err = nil
	}

	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.DrainTimeout)
	defer cancel()
	e.drainWriters(fin, err)
	if err := e.rt.Close(fin); err != nil {
		e.log.Warn("realtime rows acknowledged by Kafka were not deleted; they will be sent again at restart", "err", err)
	}
	// The Kafka clients are closed before the replication connection: closing it releases the
	// slot, after which a successor may stream, and by then this process can produce nothing.
	e.closeWriters()
	closeErr := e.stream.Close(fin)
	if err != nil {
		return err
	}
	return closeErr
}

// drainWriters waits for Kafka's acknowledgements of what was produced, on the way out. A
// Kafka transaction the pipeline left open (it stopped inside a source transaction, or on
// an error) is aborted rather than left to time out: read_committed consumers wait for it.
func (e *Engine) drainWriters(ctx context.Context, runErr error) {
	// AbortTxn does nothing without an open transaction (or outside exactly-once delivery).
	if err := e.writer.AbortTxn(ctx); err != nil {
		e.log.Warn("the open Kafka transaction could not be aborted; the next start aborts it (read_committed consumers wait until then, or kafka.transactions.timeout)", "err", err)
	}
	for _, w := range e.writers() {
		if err := w.Flush(ctx); err != nil && runErr == nil {
			e.log.Warn("not every record was acknowledged before shutdown; they will be sent again at restart", "err", err)
		}
	}
}
