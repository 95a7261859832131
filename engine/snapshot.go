package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/pipeline"
	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/snapshot"
	"github.com/procon-cdc/procon/txid"
)

// errSnapshotOnly ends Run once an initial_only snapshot is done.
var errSnapshotOnly = errors.New("engine: initial_only snapshot done")

// snapshots is the engine's side of snapshots: what to do at start, the initial snapshot
// before streaming, and the in-stream Controller.
//
// Snapshot records carry procon.tx/procon.seq like streamed ones. The initial snapshot's id
// is built from the slot's consistent point minus one, so its positions sort before every
// streamed transaction's (those commit at or after the consistent point): resume.go's
// per-partition dedup, which compares a replayed record with the last position in the
// partition, never drops a streamed record because a snapshot record came before it. The
// snapshot's own records bypass that dedup: they are not replays, and several workers write
// them in parallel, so their seq does not grow within a partition. In-stream snapshot rows
// are records of their high watermark's transaction, positioned like any streamed record.
type snapshots struct {
	cfg      *config.Config
	log      *slog.Logger
	store    *snapshot.Store
	decision snapshot.Decision
	signal   string // qualified signal table, or ""
	ctl      *snapshot.Controller
	keyless  []*snapshot.Range // keyless ranges of an interrupted initial snapshot
	idle     chan struct{}

	mu      sync.Mutex
	initial *snapshot.Progress

	seq atomic.Int64 // procon.seq of the initial snapshot's records
}

// prepareSnapshots runs before the slot is opened: it records what the start needs in the
// database (the signal table, the progress table, a pending initial snapshot before the slot
// that exports it is created) and decides what snapshot runs, from snapshot.mode, the slot
// and the recorded progress.
func prepareSnapshots(ctx context.Context, cfg *config.Config, major int, log *slog.Logger) (*snapshots, error) {
	s := &snapshots{cfg: cfg, log: log, signal: snapshot.QualifyTable(cfg.Snapshot.SignalTable), idle: make(chan struct{})}
	conn, err := pg.Connect(ctx, cfg.Postgres.DSN, "procon-cdc start")
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	if s.signal != "" {
		if err := snapshot.EnsureSignalTable(ctx, conn, s.signal); err != nil {
			return nil, err
		}
	}
	slot, err := replication.ReadSlot(ctx, conn, cfg.Postgres.Slot)
	if err != nil {
		return nil, err
	}
	if slot.Exists && (slot.Database != conn.Config().Database || slot.Plugin != "pgoutput") {
		return s, nil // not ours: replication.Open explains
	}
	if s.store, err = snapshot.OpenStore(ctx, cfg.Postgres.DSN, cfg.Postgres.Slot, log); err != nil {
		m := cfg.Snapshot.Mode
		if (m == snapshot.ModeNever || m == snapshot.ModeNoData) && s.signal == "" {
			log.Warn("snapshot progress cannot be recorded: snapshots are off", "err", err)
			return s, nil // nothing needs it
		}
		return nil, err
	}
	recorded, err := s.store.Snapshots(ctx)
	if err != nil {
		s.close()
		return nil, err
	}
	s.decision = snapshot.Decide(cfg.Snapshot.Mode, slot, snapshot.Latest(recorded, snapshot.KindInitial))
	log.Info("snapshot decided", "decision", s.decision.Reason, "mode", cfg.Snapshot.Mode, "slot", cfg.Postgres.Slot)
	var running []*snapshot.Snapshot // in-stream snapshots that would resume
	for _, snap := range recorded {
		if snap.Status == snapshot.StatusRunning && snap.Kind != snapshot.KindInitial && !s.decision.Export && !(s.decision.Full && snap.Kind == snapshot.KindAlways) {
			running = append(running, snap)
		}
	}
	if err := inStreamSnapshotError(cfg, major, s.decision, running); err != nil {
		s.close()
		return nil, err
	}
	if s.decision.DropSlot {
		if slot.ActivePID != 0 {
			s.close()
			return nil, fmt.Errorf("slot %s must be recreated but server process %d uses it: %w", cfg.Postgres.Slot, slot.ActivePID, replication.ErrSlotActive)
		}
		if _, err := conn.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot($1)`, cfg.Postgres.Slot); err != nil {
			s.close()
			return nil, fmt.Errorf("drop slot %s: %w", cfg.Postgres.Slot, err)
		}
	}
	if s.decision.Export {
		// Recorded before the slot exists: a crash between creating the slot and finishing
		// the snapshot leaves a slot that is known not to be done.
		pending := &snapshot.Snapshot{ID: snapshot.InitialID, Kind: snapshot.KindInitial, Status: snapshot.StatusPending}
		if _, err := s.store.Insert(ctx, pending, false); err != nil {
			s.close()
			return nil, err
		}
	}
	for _, snap := range recorded {
		if snap.Status != snapshot.StatusRunning || snap.Kind == snapshot.KindInitial {
			continue
		}
		if s.decision.Export || (s.decision.Full && snap.Kind == snapshot.KindAlways) {
			// A new slot makes old in-stream snapshots moot; a new always snapshot
			// replaces an interrupted one.
			if err := s.store.SetStatus(ctx, snap.ID, snapshot.StatusStopped); err != nil {
				s.close()
				return nil, err
			}
		}
	}
	return s, nil
}

// exportSnapshot tells replication.Open to create the slot with an exported snapshot.
func (s *snapshots) exportSnapshot() bool { return s != nil && s.decision.Export }

// opened runs once the slot is open: it checks the slot is the one the decision expected,
// and queues the in-stream snapshots due at start.
func (s *snapshots) opened(ctx context.Context, e *Engine) error {
	if s.store == nil {
		return nil
	}
	st := e.stream
	if s.decision.Export && !st.Created() {
		return fmt.Errorf("slot %s appeared while procon-cdc was creating it: is another procon-cdc using it?", s.cfg.Postgres.Slot)
	}
	specs := RelationSpecs(s.cfg)
	s.ctl = snapshot.NewController(snapshot.ControllerConfig{
		DSN: s.cfg.Postgres.DSN, Store: s.store, Relations: s.cfg.SortedRelations(), Specs: specs,
		SignalTable: s.signal, ChunkSize: s.cfg.Snapshot.ChunkSize, Acked: st.Tracker(), Logger: s.log,
		StatementTimeout: time.Duration(s.cfg.Snapshot.StatementTimeout),
	})
	var idleOnce sync.Once
	s.ctl.OnIdle(func() { idleOnce.Do(func() { close(s.idle) }) })
	recorded, err := s.store.Snapshots(ctx)
	if err != nil {
		return err
	}
	if r := s.decision.Resume; r != nil {
		// Ranges of tables without a key cannot be read between watermarks: they are read
		// again whole before streaming.
		keyed := &snapshot.Snapshot{ID: r.ID, Kind: r.Kind, Status: r.Status, LSN: r.LSN, TxID: r.TxID}
		for _, rg := range r.Ranges {
			if rg.Done {
				continue
			}
			if _, captured := s.cfg.Relations[rg.Relation]; !captured {
				continue // the Controller skips it
			}
			rel, err := st.Describe(ctx, rg.Relation)
			if err != nil {
				return err
			}
			if len(rel.Key) == 0 {
				s.keyless = append(s.keyless, rg)
			} else {
				keyed.Ranges = append(keyed.Ranges, rg)
			}
		}
		s.ctl.Enqueue(keyed)
	}
	if s.decision.Full {
		snap := &snapshot.Snapshot{ID: "always-" + snapshot.NewSignalID(), Kind: snapshot.KindAlways, Status: snapshot.StatusRunning}
		for _, name := range s.cfg.SortedRelations() {
			snap.Ranges = append(snap.Ranges, &snapshot.Range{Relation: name})
		}
		if _, err := s.store.Insert(ctx, snap, false); err != nil {
			return err
		}
		s.ctl.Enqueue(snap)
	}
	// The keyed remainder of an interrupted initial snapshot was queued above.
	for _, snap := range recorded {
		if snap.Status == snapshot.StatusRunning && snap.Kind != snapshot.KindInitial {
			s.log.Info("snapshot: resuming an interrupted in-stream snapshot", "snapshot", snap.ID, "kind", snap.Kind)
			s.ctl.Enqueue(snap)
		}
	}
	return nil
}

// recorded reads the snapshot id as recorded now.
func (s *snapshots) recorded(ctx context.Context, id string) (*snapshot.Snapshot, error) {
	all, err := s.store.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	for _, snap := range all {
		if snap.ID == id {
			return snap, nil
		}
	}
	return nil, fmt.Errorf("snapshot %s is no longer recorded", id)
}

func (s *snapshots) close() {
	if s != nil && s.store != nil {
		s.store.Close()
		s.store = nil
	}
}

// SnapshotProgress returns the progress of the snapshot running now, or nil.
func (e *Engine) SnapshotProgress() *snapshot.Progress {
	s := e.snap
	if s == nil {
		return nil
	}
	s.mu.Lock()
	p := s.initial
	s.mu.Unlock()
	if p != nil {
		return p
	}
	if s.ctl != nil {
		return s.ctl.Progress()
	}
	return nil
}

// snapshotBeforeStreaming runs the initial snapshot (and the whole-table reads of an
// interrupted one's keyless tables) before streaming starts. When the engine must not stream
// afterwards (initial_only, or an error), it shuts the engine down and reports done.
func (e *Engine) snapshotBeforeStreaming(ctx context.Context) (done bool, err error) {
	s := e.snap
	if s == nil || s.store == nil {
		return false, nil
	}
	specs := RelationSpecs(e.cfg)
	icfg := snapshot.InitialConfig{
		DSN: e.cfg.Postgres.DSN, Specs: specs, ChunkSize: e.cfg.Snapshot.ChunkSize,
		Parallelism: e.cfg.Snapshot.Parallelism, Store: s.store, Logger: e.log,
	}
	// With exactly-once delivery, the snapshot's records are committed with its progress.
	withCommit := func(cfg snapshot.InitialConfig) snapshot.InitialConfig {
		if e.writer.Transactional() {
			cfg.Commit, cfg.CommitInterval = e.commitInitial(cfg.LSN), time.Duration(e.cfg.Kafka.Transactions.CommitInterval)
		}
		return cfg
	}
	var run *snapshot.Initial
	switch {
	case s.decision.Export:
		icfg.SnapshotName, icfg.LSN, icfg.Relations = e.stream.SnapshotName(), e.stream.StartLSN(), e.cfg.SortedRelations()
		run, err = snapshot.PrepareInitial(ctx, withCommit(icfg))
	case len(s.keyless) > 0:
		icfg.Resume, icfg.LSN = s.keyless, e.stream.StartLSN()
		for _, r := range s.keyless {
			icfg.Relations = append(icfg.Relations, r.Relation)
		}
		e.log.Warn("snapshot: tables without a key are read again whole before streaming", "relations", icfg.Relations)
		run, err = snapshot.PrepareInitial(ctx, withCommit(icfg))
	}
	if err == nil && run != nil {
		s.mu.Lock()
		s.initial = run.Progress()
		s.mu.Unlock()
		hdr := txid.New(run.Time(), uint16(*e.cfg.InstanceNum), uint64(icfg.LSN)-1).AppendText(nil)
		err = run.Run(ctx, func(t *snapshot.Table) (snapshot.Emitter, error) { return e.snapshotEmitter(t, hdr) })
		s.mu.Lock()
		s.initial = nil
		s.mu.Unlock()
	}
	if err == nil && !(s.decision.StopAfter && (s.ctl == nil || s.ctl.Idle())) {
		return false, nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	if err == nil && ctx.Err() == nil {
		e.log.Info("snapshot.mode initial_only: the snapshot is done; not streaming")
	}
	fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.DrainTimeout)
	defer cancel()
	if aerr := e.writer.AbortTxn(fin); aerr != nil { // nothing to do without an open transaction
		e.log.Warn("the open Kafka transaction could not be aborted; the next start aborts it", "err", aerr)
	}
	if ferr := e.writer.Flush(fin); ferr != nil && err == nil {
		err = ferr
	}
	e.closeWriters() // before the slot is released, as in Run
	closeErr := e.stream.Close(fin)
	s.close()
	if err == nil {
		err = closeErr
	}
	return true, err
}

// snapshotEmitter returns the function that turns one table's snapshot rows into records.
func (e *Engine) snapshotEmitter(t *snapshot.Table, txHdr []byte) (snapshot.Emitter, error) {
	r, err := e.builder.Reader(t.Rel)
	if err != nil {
		return nil, err
	}
	outbox := e.router != nil && e.router.Routes(t.Name)
	return func(ctx context.Context, row *snapshot.Row) error {
		ev, err := r.Read(row.Datums, envelope.ReadSource{Marker: row.Marker, Time: row.Time, TxID: row.TxID, LSN: row.LSN, SeqLSN: row.LSN})
		if err != nil {
			return err
		}
		if outbox {
			// An outbox table's rows are outbox events, as its inserts are.
			evs, err := e.router.Route(nil, []*envelope.Event{ev})
			if err != nil {
				return fmt.Errorf("initial snapshot: %w", err)
			}
			if len(evs) == 0 {
				row.Ack.Ack()
				return nil
			}
			ev = evs[0]
		}
		rec, err := pipeline.NewRecord(ctx, e.enc.ForEvent(ev), ev, e.source, txHdr, int(e.snap.seq.Add(1)))
		if err != nil {
			return fmt.Errorf("encode snapshot row of %s: %w", t.Name, err)
		}
		if ev.Outbox != nil {
			n, err := e.writer.EnsureTopic(ctx, rec.Topic)
			if err != nil {
				return err
			}
			rec.Partition = pipeline.PartitionOf(ev, rec, n, e.log, row.LSN)
		}
		rec.Ack = row.Ack
		// A row too large for its topic follows errors.record_too_large.rows; skipped, it
		// counts as written in its chunk.
		rec, err = e.guard.Check(ctx, rec, deadletter.Origin{Kind: deadletter.Row, Relation: t.Name, LSN: row.LSN})
		if err != nil {
			return fmt.Errorf("initial snapshot: %w", err)
		}
		if rec == nil {
			row.Ack.Ack()
			return nil
		}
		return e.writer.Produce(ctx, rec)
	}, nil
}

// runSnapshots is the in-stream snapshot worker. With initial_only it ends the engine once
// nothing is left to read.
func (e *Engine) runSnapshots(ctx context.Context) error {
	s := e.snap
	if s == nil || s.ctl == nil {
		return nil
	}
	if !s.decision.StopAfter {
		return s.ctl.Run(ctx)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.ctl.Run(wctx) }()
	select {
	case <-s.idle:
		cancel()
		<-done
		e.log.Info("snapshot.mode initial_only: the snapshot is done; stopping")
		return errSnapshotOnly
	case err := <-done:
		cancel()
		return err
	}
}

// runSignals handles the rows of the signal table, off the pipeline goroutine.
func (e *Engine) runSignals(ctx context.Context) error {
	s := e.snap
	if s == nil || s.ctl == nil || s.signal == "" {
		return nil
	}
	return s.ctl.RunSignals(ctx)
}

// observer returns what the pipeline shows every change to first, for the in-stream
// snapshots; nil when there are none.
func (s *snapshots) observer(b *envelope.Builder) pipeline.Snapshots {
	if s == nil || s.ctl == nil {
		return nil
	}
	return &streamSnapshots{ctl: s.ctl, builder: b, readers: map[string]streamReader{}}
}

// streamSnapshots implements pipeline.Snapshots: the snapshot Controller sees each change
// first, and may take it (watermarks, signals) or emit a chunk's rows at a high watermark,
// which become events of the watermark's transaction. Used by the pipeline goroutine only.
type streamSnapshots struct {
	ctl     *snapshot.Controller
	builder *envelope.Builder
	// readers has the reader of each table's shape as the last chunk read it: one per table.
	readers map[string]streamReader
	// emitted and progress: the controller's last Emitted and its progress form.
	emitted  *snapshot.Emitted
	progress *progress.Snapshot
}

// Progress implements pipeline.Snapshots.
func (s *streamSnapshots) Progress() *progress.Snapshot {
	if e := s.ctl.Emitted(); e != s.emitted {
		s.emitted, s.progress = e, progressOf(e.ID, e.Kind, e.LSN, e.Ranges)
	}
	return s.progress
}

// progressOf is a snapshot's progress in the progress record's form.
func progressOf(id, kind string, lsn pglogrepl.LSN, ranges []snapshot.RangeUpdate) *progress.Snapshot {
	p := &progress.Snapshot{ID: id, Kind: kind, LSN: uint64(lsn), Ranges: make([]progress.Range, len(ranges))}
	for i, r := range ranges {
		p.Ranges[i] = progress.Range{Relation: r.Relation, Part: r.Part, Last: r.Last, Rows: r.Rows, Done: r.Done}
	}
	return p
}

type streamReader struct {
	rel *replication.Relation
	r   *envelope.Reader
}

func (s *streamSnapshots) Observe(ctx context.Context, c *replication.Change, out []*envelope.Event) ([]*envelope.Event, bool, error) {
	em, handled, err := s.ctl.Observe(ctx, c)
	if err != nil {
		return out, true, err
	}
	if em == nil {
		return out, handled, nil
	}
	out, err = s.emission(em, c.LSN, out)
	return out, true, err
}

// emission builds the events of a chunk emitted in the stream at lsn.
func (s *streamSnapshots) emission(em *snapshot.Emission, lsn pglogrepl.LSN, out []*envelope.Event) ([]*envelope.Event, error) {
	sr := s.readers[em.Table.Name]
	if sr.rel != em.Table.Rel {
		// Each snapshot describes its tables anew. The previous shape's reader is done with:
		// its schemas are retired, for the encoders to forget once its events are encoded.
		if sr.r != nil {
			s.builder.RetireReader(sr.r)
		}
		r, err := s.builder.Reader(em.Table.Rel)
		if err != nil {
			delete(s.readers, em.Table.Name)
			return out, err
		}
		sr = streamReader{rel: em.Table.Rel, r: r}
		s.readers[em.Table.Name] = sr
	}
	r := sr.r
	src := envelope.ReadSource{Time: time.Now(), LastCommit: s.builder.LastCommit(), SeqLSN: lsn}
	for _, row := range em.Rows {
		src.Marker = row.Marker
		ev, err := r.Read(row.Datums, src)
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
	return out, nil
}
