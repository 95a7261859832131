package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/metrics"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/snapshot"
)

// observer is the engine's metrics, probes and state: built first in New when
// metrics.listen is set (nil otherwise: nothing is counted), so the probes answer during a
// long start.
type observer struct {
	metrics *metrics.Producer
	server  *metrics.Server
	stop    context.CancelFunc // ends the rate sampling

	// parts are the engine's parts once New has built them (state reads them from the
	// listener's goroutines).
	mu       sync.Mutex
	e        *Engine
	slotName string // postgres.slot, for the state before the engine is built
	stopping bool
	running  bool // Run streams (past the initial snapshot)
	standby  bool // New waits for the slot's lock, held by another procon-cdc

	slot     atomic.Pointer[metrics.SlotState]
	lastSnap atomic.Pointer[snapshot.Progress]
}

// slotPollInterval is how often the slot's state is read from the server.
const slotPollInterval = 5 * time.Second

// newObserver starts the metrics listener when cfg asks for one.
func newObserver(cfg *config.Config, e *Engine) (*observer, error) {
	if cfg.Metrics.Listen == "" {
		return nil, nil
	}
	o := &observer{slotName: cfg.Postgres.Slot}
	reg := metrics.NewRegistry(Version)
	o.metrics = metrics.NewProducer(reg, metrics.ProducerConfig{
		Relations:   cfg.SortedRelations(),
		State:       o.state,
		ReadyMaxLag: time.Duration(cfg.Metrics.ReadyMaxLag),
	})
	srv, err := metrics.Listen(cfg.Metrics.Listen, reg, metrics.Probes{
		Alive:  o.alive,
		Ready:  o.ready,
		Status: func() any { return o.metrics.Status() },
	}, e.log)
	if err != nil {
		return nil, &config.FieldError{Key: "metrics.listen", Problem: err.Error()}
	}
	o.server = srv
	var ctx context.Context
	ctx, o.stop = context.WithCancel(context.Background())
	go o.metrics.SampleRates(ctx)
	return o, nil
}

// streamObserver is the replication stream's Observer, or nil without metrics (a nil
// *metrics.Producer in the interface would not be nil).
func (o *observer) streamObserver() replication.Observer {
	if o == nil {
		return nil
	}
	return o.metrics
}

// built publishes the engine's parts to the state.
func (o *observer) built(e *Engine) {
	if o == nil {
		return
	}
	o.mu.Lock()
	o.e = e
	o.mu.Unlock()
}

// setRunning and setStopping mark the phases the stream does not report itself.
func (o *observer) setRunning() {
	if o != nil {
		o.mu.Lock()
		o.running = true
		o.mu.Unlock()
	}
}

func (o *observer) setStandby(on bool) {
	if o != nil {
		o.mu.Lock()
		o.standby = on
		o.mu.Unlock()
	}
}

func (o *observer) setStopping() {
	if o != nil {
		o.mu.Lock()
		o.stopping = true
		o.mu.Unlock()
	}
}

func (o *observer) close() {
	if o != nil {
		o.stop()
		o.server.Close()
	}
}

// state assembles the engine's State for a scrape or /status.
func (o *observer) state() metrics.State {
	o.mu.Lock()
	e, running, stopping, standby := o.e, o.running, o.stopping, o.standby
	o.mu.Unlock()
	st := metrics.State{Phase: metrics.PhaseStarting, Slot: o.slotName}
	if standby {
		st.Phase = metrics.PhaseStandby
	}
	if e == nil {
		return st
	}
	st.Slot = e.cfg.Postgres.Slot
	tr := e.stream.Tracker()
	st.ConfirmedLSN = metrics.LSN(tr.Confirmed())
	st.ServerLSN = metrics.LSN(e.stream.ServerWAL())
	if t, ok := tr.Oldest(); ok {
		st.OldestUnacknowledged = t
	}
	st.BufferedRecords, st.BufferedBytes = e.writer.Buffered()
	st.MaxBufferedRecords, st.MaxBufferedBytes = e.writer.MaxBuffered()
	st.SlotPoll = o.slot.Load()
	running0 := e.SnapshotProgress()
	if running0 != nil {
		o.lastSnap.Store(running0)
	}
	if p := o.lastSnap.Load(); p != nil {
		st.Snapshot = snapshotState(p, running0 != nil)
	}
	if e.rt != nil {
		rs := e.rt.Stats()
		st.Realtime = &metrics.RealtimeState{Waiting: rs.Waiting, QueueBytes: rs.QueueBytes, Sent: rs.Sent,
			Coalesced: rs.Coalesced, Delayed: rs.Delayed, TooLarge: rs.TooLarge}
	}
	for _, k := range []deadletter.Kind{deadletter.Row, deadletter.Message, deadletter.Realtime} {
		skipped, dead := e.guard.Counts(k)
		st.DeadLetters = append(st.DeadLetters,
			metrics.DeadLetterCount{Kind: k.String(), Outcome: "dead_letter", Records: dead},
			metrics.DeadLetterCount{Kind: k.String(), Outcome: "skipped", Records: skipped})
	}
	streaming, streamed := o.metrics.IsStreaming()
	switch {
	case stopping:
		st.Phase = metrics.PhaseStopping
	case running && streaming:
		st.Phase = metrics.PhaseStreaming
	case running && streamed:
		st.Phase = metrics.PhaseReconnecting
	case running0 != nil && !running:
		st.Phase = metrics.PhaseSnapshotting
	}
	return st
}

func snapshotState(p *snapshot.Progress, running bool) *metrics.SnapshotState {
	s := &metrics.SnapshotState{ID: p.ID, Kind: p.Kind, Running: running}
	for _, t := range p.Stats() {
		eta := -1.0
		if t.ETA >= 0 {
			eta = t.ETA.Seconds()
		}
		s.Tables = append(s.Tables, metrics.SnapshotTable{Relation: t.Relation, Rows: t.Rows, Total: t.Total,
			Chunks: t.Chunks, RowsPerSecond: t.Rate, ETASeconds: eta, Done: t.Done})
	}
	return s
}

// alive is /healthz: the stream goroutine goes round its loop at least every status interval
// while it streams, and every few seconds while it reconnects or waits for Kafka; silence for
// much longer means it is stuck. Before streaming (an initial snapshot can take hours) and
// while stopping, the process counts as alive.
func (o *observer) alive() error {
	o.mu.Lock()
	e, running, stopping := o.e, o.running, o.stopping
	o.mu.Unlock()
	if e == nil || !running || stopping {
		return nil
	}
	bound := max(3*time.Duration(e.cfg.Postgres.StatusInterval), 30*time.Second)
	if last := e.stream.LastBeat(); !last.IsZero() && time.Since(last) > bound {
		return fmt.Errorf("the replication stream's loop has not run for %s (bound %s)", time.Since(last).Round(time.Second), bound)
	}
	return nil
}

// ready is /readyz: streaming, Kafka reachable, and the lag within metrics.ready_max_lag.
func (o *observer) ready() error {
	if st := o.metrics.Status(); !st.Ready {
		return errors.New(st.NotReady)
	}
	return nil
}

// pollSlot reads the slot's state from the server every slotPollInterval until ctx ends. A
// failed poll is counted and shown, never fatal: metrics must not stop the stream.
func (o *observer) pollSlot(ctx context.Context, dsn, slot string) {
	if o == nil {
		return
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(slotPollInterval)
	defer t.Stop()
	for {
		st, err := readSlotState(ctx, &conn, dsn, slot)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			o.metrics.SlotPollFailed(err)
			st = &metrics.SlotState{At: time.Now(), Err: err.Error()}
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
		}
		o.slot.Store(st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readSlotState reads the slot's row of pg_replication_slots, connecting first if *conn is
// nil.
func readSlotState(ctx context.Context, conn **pgx.Conn, dsn, slot string) (*metrics.SlotState, error) {
	ctx, cancel := context.WithTimeout(ctx, slotPollInterval)
	defer cancel()
	if *conn == nil {
		c, err := pg.Connect(ctx, dsn, "procon-cdc metrics")
		if err != nil {
			return nil, err
		}
		*conn = c
	}
	st := &metrics.SlotState{At: time.Now()}
	var current string
	var restart, walStatus *string
	var safe *int64
	err := (*conn).QueryRow(ctx, `SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END)::text, s.restart_lsn::text, s.active, s.wal_status, s.safe_wal_size
		FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1`, slot).Scan(&current, &restart, &st.Active, &walStatus, &safe)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil // the slot is gone: Exists stays false
	}
	if err != nil {
		return nil, fmt.Errorf("read slot %s from pg_replication_slots: %w", slot, err)
	}
	st.Exists = true
	cur, err := pglogrepl.ParseLSN(current)
	if err != nil {
		return nil, err
	}
	st.ServerLSN = metrics.LSN(cur)
	if restart != nil {
		if r, err := pglogrepl.ParseLSN(*restart); err == nil && cur >= r {
			st.RetainedBytes = int64(cur - r)
		}
	}
	if walStatus != nil {
		st.WALStatus = *walStatus
	}
	st.SafeWALSize = safe
	return st, nil
}

// kafkaSilence is how long Kafka may acknowledge nothing of what waits for it before
// watchBackpressure says so: a partition or a hung broker fails no request for a while (the
// client waits out its request timeouts), so without this line nothing would be logged.
const kafkaSilence = 15 * time.Second

// watchBackpressure logs, once per change, that producing is paused because Kafka's
// producer buffer is full (Kafka is slow or away) and that it resumed, and that Kafka has
// acknowledged nothing for kafkaSilence while records wait, and when it does again.
func (e *Engine) watchBackpressure(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	paused, silent := false, false
	written, progress := e.writer.Written(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		recs, bytes := e.writer.Buffered()
		// Nothing waits for Kafka when nothing is buffered and no Kafka transaction is being
		// committed (a commit hung on a silent coordinator holds everything, its records out
		// of the buffer already).
		committing := e.writer.Committing()
		idle := recs == 0 && !committing
		switch now := e.writer.Written(); {
		case now != written || idle:
			if silent {
				e.log.Info("Kafka acknowledges records again", "silent_for", time.Since(progress).Round(time.Second).String(),
					"confirmed_lsn", e.stream.Tracker().Confirmed().String())
			}
			written, progress, silent = now, time.Now(), false
		case !silent && time.Since(progress) >= kafkaSilence:
			e.log.Warn("Kafka has acknowledged nothing for a while; the slot's position holds until it does",
				"silent_for", time.Since(progress).Round(time.Second).String(), "waiting_records", recs, "committing", committing,
				"confirmed_lsn", e.stream.Tracker().Confirmed().String())
			silent = true
		}
		maxRecs, maxBytes := e.writer.MaxBuffered()
		full := recs >= maxRecs || (maxBytes > 0 && bytes >= maxBytes)
		switch {
		case full && !paused:
			e.log.Warn("paused by backpressure: Kafka's producer buffer is full; reading the WAL waits for Kafka's acknowledgements",
				"buffered_records", recs, "buffered_bytes", bytes, "max_buffered_records", maxRecs, "max_buffered_bytes", maxBytes,
				"confirmed_lsn", e.stream.Tracker().Confirmed().String())
		case !full && paused:
			e.log.Info("resumed: Kafka's producer buffer has room again", "buffered_records", recs, "confirmed_lsn", e.stream.Tracker().Confirmed().String())
		}
		paused = full
	}
}
