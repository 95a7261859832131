package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/retrylog"
)

// Acked is the stream's acknowledgement tracker, as far as a snapshot needs it: progress of
// a chunk is recorded only once the confirmed position passed the chunk's high watermark,
// that is once Kafka acknowledged the chunk's rows; and a signal holds its transaction (Add,
// then the transaction's Ack) until it is recorded.
type Acked interface {
	Confirmed() pglogrepl.LSN
	Changed() <-chan struct{}
	Add(tx *replication.Tx, n int)
}

// ControllerConfig configures in-stream snapshots.
type ControllerConfig struct {
	DSN   string
	Store *Store
	// Relations are the captured tables, in order; Specs their key settings.
	Relations []string
	Specs     map[string]replication.RelationSpec
	// SignalTable is "schema.table" of the signal table, or "" when signals are off.
	SignalTable string
	ChunkSize   int
	// StatementTimeout bounds each statement of a chunk's read and of a signal's handling
	// (default 5 minutes). A chunk read that runs longer fails its table's snapshot.
	StatementTimeout time.Duration
	Acked            Acked
	Logger           *slog.Logger
	// LogInterval is the period of progress log lines (default 10s).
	LogInterval time.Duration
}

// Controller runs in-stream snapshots (incremental, the rest of an interrupted initial
// snapshot, always): Run is the worker goroutine that writes watermarks and reads chunks;
// Observe is called by the pipeline for every change.
type Controller struct {
	cfg   ControllerConfig
	log   *slog.Logger
	runID string

	mu        sync.Mutex
	queue     []*job
	cur       *job
	win       *window
	jobTables map[string]bool // tables of queued and running jobs
	txs       map[uint32]pglogrepl.LSN
	overflow  bool
	dropped   uint32 // greatest xid forgotten on overflow
	wake      chan struct{}
	active    atomic.Bool

	emitted *Emitted // the chunks emitted in the stream so far (guarded by mu)

	// pipeline goroutine only
	names   map[*replication.Relation]string
	keyIdx  map[*replication.Relation][]int
	keyRel  *Table
	keyBuf  []byte
	onEmpty func()

	saves []pendingSave // worker goroutine only

	signals  chan signalRow // queued by the pipeline, handled by RunSignals
	dropMu   sync.Mutex
	sigDrops droppedSignals
}

type job struct {
	snap     *Snapshot
	progress *Progress
	stop     atomic.Bool
}

type pendingSave struct {
	commit pglogrepl.LSN
	snap   string
	upd    RangeUpdate
}

// NewController returns a Controller with no snapshot queued.
func NewController(cfg ControllerConfig) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = 10 * time.Second
	}
	if cfg.StatementTimeout <= 0 {
		cfg.StatementTimeout = 5 * time.Minute
	}
	return &Controller{
		cfg: cfg, log: cfg.Logger, runID: NewSignalID(),
		jobTables: map[string]bool{}, txs: map[uint32]pglogrepl.LSN{}, wake: make(chan struct{}, 1),
		names: map[*replication.Relation]string{}, keyIdx: map[*replication.Relation][]int{},
		signals: make(chan signalRow, maxQueuedSignals),
	}
}

// Enqueue queues a recorded snapshot; its ranges not done yet are read in the stream.
func (c *Controller) Enqueue(snap *Snapshot) {
	j := &job{snap: snap, progress: NewProgress(snap.ID, snap.Kind)}
	for _, r := range snap.Ranges {
		j.progress.SetTotal(r.Relation, 0)
	}
	for _, r := range snap.Ranges {
		t := j.progress.table(r.Relation)
		t.total.Add(r.Total)
		t.rows.Add(r.Rows)
	}
	for _, r := range snap.Ranges {
		if !pending(snap, r.Relation) { // read before a restart, or refused
			j.progress.Done(r.Relation)
		}
	}
	c.mu.Lock()
	c.queue = append(c.queue, j)
	for _, r := range snap.Ranges {
		if !r.Done {
			c.jobTables[r.Relation] = true
		}
	}
	c.active.Store(true)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Progress returns the progress of the running in-stream snapshot, or nil.
func (c *Controller) Progress() *Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	return c.cur.progress
}

// Idle reports whether no snapshot is queued or running.
func (c *Controller) Idle() bool { return !c.active.Load() }

// Run reads the queued snapshots' chunks between watermarks until ctx ends. A table whose
// filter is refused, or whose chunk read fails (over snapshot.statement_timeout, or for an
// error retrying cannot fix), ends with that outcome and the snapshot goes on with its other
// tables; a lost connection is retried.
func (c *Controller) Run(ctx context.Context) error {
	var conn *pgx.Conn
	defer func() { closeConn(conn) }()
	backoff := 100 * time.Millisecond
	var down retrylog.Outage
	for {
		j := c.next(ctx)
		if j == nil {
			return nil
		}
		if conn == nil || conn.IsClosed() {
			var err error
			if conn, err = pg.Connect(ctx, c.cfg.DSN, applicationName); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				down.Failed(c.log, "snapshot: cannot connect to PostgreSQL; retrying", err, "snapshot", j.snap.ID)
				if !sleep(ctx, backoff) {
					return ctx.Err()
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			down.Recovered(c.log, "snapshot: connected to PostgreSQL again", "snapshot", j.snap.ID)
		}
		err := c.runJob(ctx, conn, j)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			backoff = 100 * time.Millisecond
			c.finish(j)
		case pg.Transient(err):
			c.log.Warn("snapshot: interrupted (a lost connection, a server restart, a conflict); resuming the snapshot", "snapshot", j.snap.ID, "err", err)
			_ = conn.Close(context.Background())
			conn = nil
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, 5*time.Second)
		default:
			c.log.Error("snapshot failed", "snapshot", j.snap.ID, "err", err)
			if serr := c.cfg.Store.SetOutcome(ctx, j.snap.ID, StatusFailed, err.Error()); serr != nil {
				c.log.Warn("recording snapshot status", "snapshot", j.snap.ID, "err", serr)
			}
			c.finish(j)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// next waits for the next queued snapshot.
func (c *Controller) next(ctx context.Context) *job {
	for {
		c.mu.Lock()
		if c.cur != nil {
			j := c.cur
			c.mu.Unlock()
			return j
		}
		if len(c.queue) > 0 {
			c.cur = c.queue[0]
			c.queue = c.queue[1:]
			j := c.cur
			c.mu.Unlock()
			return j
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		}
	}
}

// finish ends the current snapshot and recomputes what the pipeline must track.
func (c *Controller) finish(j *job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == j {
		c.cur = nil
	}
	c.jobTables = map[string]bool{}
	for _, q := range c.queue {
		for _, r := range q.snap.Ranges {
			if !r.Done {
				c.jobTables[r.Relation] = true
			}
		}
	}
	if len(c.queue) == 0 {
		c.active.Store(false)
		clear(c.txs)
		c.overflow = false
		if c.onEmpty != nil {
			c.onEmpty()
		}
	}
}

// OnIdle sets a function called (under the Controller's lock, so it must not call back) each
// time the queue empties.
func (c *Controller) OnIdle(f func()) {
	c.mu.Lock()
	c.onEmpty = f
	c.mu.Unlock()
}

func (c *Controller) runJob(ctx context.Context, conn *pgx.Conn, j *job) error {
	snap := j.snap
	c.log.Info("snapshot in the stream: starting", "snapshot", snap.ID, "kind", snap.Kind, "ranges", len(snap.Ranges))
	pctx, stopLog := context.WithCancel(ctx)
	defer stopLog()
	go j.progress.Log(pctx, c.log, c.cfg.LogInterval)
	start := time.Now()
	firstTable := true
	lastRange := -1
	for i, r := range snap.Ranges {
		if !r.Done {
			lastRange = i
		}
	}
	tables := map[string]*Table{}
	for i, r := range snap.Ranges {
		if r.Done {
			continue
		}
		if j.stop.Load() {
			break
		}
		if _, captured := c.cfg.Specs[r.Relation]; !captured {
			c.log.Warn("snapshot in the stream: the table is no longer in relation_configs; skipped", "snapshot", snap.ID, "relation", r.Relation)
			c.saves = append(c.saves, pendingSave{snap: snap.ID, upd: RangeUpdate{Relation: r.Relation, Part: r.Part, Last: r.Last, Rows: r.Rows, Done: true}})
			r.Done = true
			continue
		}
		t := tables[r.Relation]
		if t == nil {
			var err error
			if t, err = DescribeTable(ctx, conn, r.Relation, c.cfg.Specs[r.Relation]); err != nil {
				if ctx.Err() != nil || pg.Transient(err) {
					return err
				}
				c.endRange(j, r, r.Last, r.Rows, StatusFailed, err)
				continue
			}
			tables[r.Relation] = t
		}
		if !t.Keyed() {
			c.log.Warn("snapshot in the stream: a table without a key cannot be snapshotted while streaming; skipped",
				"snapshot", snap.ID, "relation", r.Relation)
			c.saves = append(c.saves, pendingSave{snap: snap.ID, upd: RangeUpdate{Relation: r.Relation, Part: r.Part, Done: true}})
			r.Done = true
			continue
		}
		if err := c.readRange(ctx, conn, j, t, r, firstTable && snap.Kind == KindAlways, i == lastRange); err != nil {
			return err
		}
		firstTable = false
		if err := c.flushSaves(ctx, false); err != nil {
			return err
		}
	}
	// Done once Kafka holds every row.
	if err := c.flushSaves(ctx, true); err != nil {
		return err
	}
	status, reason := outcomeOf(snap)
	if j.stop.Load() {
		status = StatusStopped
	}
	if err := c.cfg.Store.SetOutcome(ctx, snap.ID, status, reason); err != nil {
		return err
	}
	var rows int64
	for _, s := range j.progress.Stats() {
		rows += s.Rows
	}
	lvl := slog.LevelInfo
	if reason != "" {
		lvl = slog.LevelError
	}
	c.log.Log(ctx, lvl, "snapshot in the stream: ended", "snapshot", snap.ID, "kind", snap.Kind, "status", status, "rows", rows,
		"elapsed", time.Since(start).Round(time.Millisecond), "reason", reason)
	return nil
}

// outcomeOf is a snapshot's status once nothing is left to read: done when every range was
// read to its end, refused when every range was refused, failed otherwise; and the reasons,
// one per table.
func outcomeOf(snap *Snapshot) (status, reason string) {
	var reasons []string
	seen := map[string]bool{}
	refused := 0
	for _, r := range snap.Ranges {
		if r.Outcome == "" {
			continue
		}
		if r.Outcome == StatusRefused {
			refused++
		}
		if !seen[r.Relation] {
			seen[r.Relation] = true
			reasons = append(reasons, r.Error)
		}
	}
	switch {
	case len(reasons) == 0:
		return StatusDone, ""
	case refused == len(snap.Ranges):
		return StatusRefused, strings.Join(reasons, "; ")
	}
	return StatusFailed, strings.Join(reasons, "; ")
}

// endRange ends a range that cannot be read to its end: its outcome is recorded after the
// progress of the chunks already handed over, and the snapshot goes on with its other ranges.
func (c *Controller) endRange(j *job, r *Range, last []string, rows int64, outcome string, err error) {
	c.log.Error("snapshot in the stream: a table cannot be read to its end", "snapshot", j.snap.ID, "relation", r.Relation, "outcome", outcome,
		"filter", r.Filter, "err", err)
	r.Done, r.Outcome, r.Error = true, outcome, err.Error()
	c.saves = append(c.saves, pendingSave{snap: j.snap.ID, upd: RangeUpdate{Relation: r.Relation, Part: r.Part, Last: last, Rows: rows,
		Done: true, Outcome: outcome, Error: r.Error}})
	if !pending(j.snap, r.Relation) {
		j.progress.Done(r.Relation)
	}
}

// readRange reads one range chunk by chunk, each between watermarks.
func (c *Controller) readRange(ctx context.Context, conn *pgx.Conn, j *job, t *Table, r *Range, firstInSnapshot, lastInSnapshot bool) error {
	snap := j.snap
	lo := r.Lo
	if r.Last != nil {
		lo = r.Last
	}
	firstInTable := r.Lo == nil && r.Last == nil
	rows := r.Rows
	retries := 0
	j.progress.Add(r.Relation, 0)
	for seq := 0; ; seq++ {
		if j.stop.Load() {
			return nil
		}
		w := &window{id: c.runID + "/" + strconv.Itoa(seq), t: t, job: j, changed: map[string]struct{}{}, done: make(chan windowResult, 1)}
		c.mu.Lock()
		c.win = w
		c.mu.Unlock()
		if err := emitWatermark(ctx, conn, "open", w.id); err != nil {
			return err
		}
		buffered, lastKey, more, err := c.readChunk(ctx, conn, t, r, lo, w)
		if err != nil {
			c.dropWindow(w)
			// What retrying cannot fix ends this table only: a refused filter, a read over
			// statement_timeout, an error of the filter's own (a division by zero).
			var fe *FilterError
			switch {
			case errors.As(err, &fe):
				c.endRange(j, r, lo, rows, StatusRefused, err)
				return nil
			case ctx.Err() == nil && !pg.Transient(err):
				c.endRange(j, r, lo, rows, StatusFailed, err)
				return nil
			}
			return err
		}
		for i := range buffered {
			fi := firstInTable && i == 0
			li := !more && i == len(buffered)-1 && r.Hi == nil
			switch snap.Kind {
			case KindIncremental:
				buffered[i].Marker = MarkerIncremental
			default:
				buffered[i].Marker = marker(fi && firstInSnapshot, li && lastInSnapshot, fi, li)
			}
		}
		next := RangeUpdate{Relation: r.Relation, Part: r.Part, Last: lo, Rows: rows + int64(len(buffered)), Done: !more}
		if lastKey != nil {
			next.Last = lastKey
		}
		c.mu.Lock()
		w.rows, w.ready, w.update = buffered, true, next
		c.mu.Unlock()
		if err := emitWatermark(ctx, conn, "close", w.id); err != nil {
			c.dropWindow(w)
			return err
		}
		var res windowResult
		select {
		case res = <-w.done:
		case <-ctx.Done():
			c.dropWindow(w)
			return ctx.Err()
		}
		c.dropWindow(w)
		if res.invalid != "" {
			retries++
			lvl := slog.LevelDebug
			if retries%50 == 0 {
				lvl = slog.LevelWarn
			}
			c.log.Log(ctx, lvl, "snapshot chunk read again", "snapshot", snap.ID, "relation", r.Relation, "reason", res.invalid, "attempts", retries)
			if retries > 3 && !sleep(ctx, min(time.Duration(retries)*10*time.Millisecond, time.Second)) {
				return ctx.Err()
			}
			continue
		}
		retries = 0
		if len(buffered) > 0 {
			firstInTable = false
		}
		rows += int64(len(buffered))
		j.progress.Add(r.Relation, int64(len(buffered)))
		if lastKey != nil {
			lo = lastKey
		}
		c.saves = append(c.saves, pendingSave{commit: res.commit, snap: snap.ID,
			upd: RangeUpdate{Relation: r.Relation, Part: r.Part, Last: lo, Rows: rows, Done: !more}})
		if !more {
			r.Done = true
			if !pending(snap, r.Relation) {
				j.progress.Done(r.Relation)
			}
			return nil
		}
		if err := c.flushSaves(ctx, false); err != nil {
			return err
		}
	}
}

// pending reports whether a relation has ranges still to read.
func pending(s *Snapshot, rel string) bool {
	for _, r := range s.Ranges {
		if !r.Done && r.Relation == rel {
			return true
		}
	}
	return false
}

func (c *Controller) dropWindow(w *window) {
	c.mu.Lock()
	if c.win == w {
		c.win = nil
	}
	c.mu.Unlock()
}

// readChunk reads the rows after lo in one REPEATABLE READ transaction whose first statement
// records the transactions in progress, for the visibility check at the high watermark. Each
// of its statements runs under StatementTimeout. A filtered range is read through its filter's
// view (filter.go), created and checked in the transaction, which then turns read-only; the
// transaction is always rolled back, which drops the view.
func (c *Controller) readChunk(ctx context.Context, conn *pgx.Conn, t *Table, r *Range, lo []string, w *window) (rows []BufferedRow, lastKey []string, more bool, err error) {
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	if r.Filter != "" {
		opts.AccessMode = pgx.ReadWrite // to create the filter's temporary view
	}
	tx, err := conn.BeginTx(ctx, opts)
	if err != nil {
		return nil, nil, false, err
	}
	defer tx.Rollback(context.Background())
	var snapText string
	if err := tx.QueryRow(ctx, "SELECT pg_catalog.pg_current_snapshot()::text").Scan(&snapText); err != nil {
		return nil, nil, false, err
	}
	xmin, xip, ok := parseSnapshot(snapText)
	if !ok {
		return nil, nil, false, fmt.Errorf("unexpected pg_current_snapshot() %q", snapText)
	}
	if err := setStatementTimeout(ctx, tx, c.cfg.StatementTimeout); err != nil {
		return nil, nil, false, err
	}
	from := t.from
	if r.Filter != "" {
		start := time.Now()
		if err := createFilterView(ctx, tx, t, r.Filter); err != nil {
			return nil, nil, false, c.chunkError(t, lo, start, err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL transaction_read_only = on"); err != nil {
			return nil, nil, false, err
		}
		from = filterView
	}
	sql, params := t.selectSQL(from, lo, r.Hi, c.cfg.ChunkSize+1)
	var buf []byte
	start := time.Now()
	err = readRows(ctx, conn, sql, params, func(vals [][]byte) error {
		if len(rows) == c.cfg.ChunkSize {
			more = true
			return nil
		}
		d := copyRow(vals)
		buf, _ = keyID(buf, d, t.Order)
		rows = append(rows, BufferedRow{Datums: d, key: string(buf)})
		return nil
	})
	if err != nil {
		return nil, nil, false, c.chunkError(t, lo, start, err)
	}
	if len(rows) > 0 {
		last := rows[len(rows)-1].Datums
		lastKey = make([]string, len(t.Order))
		for i, ci := range t.Order {
			lastKey[i] = string(last[ci].Data)
		}
	}
	c.mu.Lock()
	w.xip, w.xmin = xip, xmin
	c.mu.Unlock()
	return rows, lastKey, more, nil
}

// ChunkTimeoutError is a chunk read cancelled by snapshot.statement_timeout: the table's
// snapshot fails there, and streaming goes on. pg.Transient does not take it for transient.
type ChunkTimeoutError struct {
	Relation string
	After    []string // the chunk's lower key bound, nil for the first chunk
	Timeout  time.Duration
}

func (e *ChunkTimeoutError) Error() string {
	chunk := "the first chunk"
	if e.After != nil {
		chunk = "the chunk after key (" + strings.Join(e.After, ", ") + ")"
	}
	return fmt.Sprintf("reading %s of %s took longer than snapshot.statement_timeout (%s) and was cancelled: "+
		"make the filter cheaper, lower snapshot.chunk_size or raise snapshot.statement_timeout, then request the snapshot again",
		chunk, e.Relation, e.Timeout)
}

// chunkError names the table of a chunk's failed read, and tells a read cancelled by its
// statement_timeout (a ChunkTimeoutError) from other cancellations (an administrator's, which
// is retried like any transient error).
func (c *Controller) chunkError(t *Table, lo []string, start time.Time, err error) error {
	if cancelled(err) && time.Since(start) >= c.cfg.StatementTimeout {
		return &ChunkTimeoutError{Relation: t.Name, After: lo, Timeout: c.cfg.StatementTimeout}
	}
	var fe *FilterError
	if errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("read %s: %w", t.Name, err)
}

// setStatementTimeout bounds each later statement of tx.
func setStatementTimeout(ctx context.Context, tx pgx.Tx, d time.Duration) error {
	_, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('statement_timeout', $1, true)", strconv.FormatInt(d.Milliseconds(), 10))
	if err != nil {
		return fmt.Errorf("set statement_timeout: %w", err)
	}
	return nil
}

func emitWatermark(ctx context.Context, conn *pgx.Conn, kind, id string) error {
	_, err := conn.Exec(ctx, "SELECT pg_catalog.pg_logical_emit_message(true, $1, $2)", WatermarkPrefix, watermarkText(kind, id))
	if err != nil {
		return fmt.Errorf("write %s watermark: %w", kind, err)
	}
	return nil
}

// flushSaves records the progress of chunks that Kafka acknowledged; with wait, it waits
// until every chunk handed over is acknowledged.
func (c *Controller) flushSaves(ctx context.Context, wait bool) error {
	for {
		changed := c.cfg.Acked.Changed()
		confirmed := c.cfg.Acked.Confirmed()
		n := 0
		for n < len(c.saves) && (c.saves[n].commit == 0 || c.saves[n].commit < confirmed) {
			n++
		}
		if n > 0 {
			bySnap := map[string][]RangeUpdate{}
			var order []string
			for _, s := range c.saves[:n] {
				if _, ok := bySnap[s.snap]; !ok {
					order = append(order, s.snap)
				}
				bySnap[s.snap] = append(bySnap[s.snap], s.upd)
			}
			for _, id := range order {
				if err := c.cfg.Store.SaveProgress(ctx, id, latestPerRange(bySnap[id])); err != nil {
					return err
				}
			}
			c.saves = c.saves[n:]
		}
		if !wait || len(c.saves) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-time.After(time.Second):
		}
	}
}

func latestPerRange(ups []RangeUpdate) []RangeUpdate {
	type k struct {
		rel  string
		part int
	}
	idx := map[k]int{}
	var out []RangeUpdate
	for _, u := range ups {
		if i, ok := idx[k{u.Relation, u.Part}]; ok {
			out[i] = u
			continue
		}
		idx[k{u.Relation, u.Part}] = len(out)
		out = append(out, u)
	}
	return out
}

// Observe is called by the pipeline for every change, in stream order. It returns the rows
// to emit at a high watermark (as records of the watermark's transaction) and whether the
// change is the snapshot's own (a watermark or a signal) and must not become an event.
func (c *Controller) Observe(ctx context.Context, ch *replication.Change) (*Emission, bool, error) {
	switch ch.Op {
	case replication.OpInsert, replication.OpUpdate, replication.OpDelete:
		name := c.relName(ch.Rel)
		if c.cfg.SignalTable != "" && name == c.cfg.SignalTable {
			c.queueSignal(ch)
			return nil, true, nil
		}
		if !c.active.Load() {
			return nil, false, nil
		}
		c.mu.Lock()
		if c.jobTables[name] {
			c.noteTx(ch.Tx)
		}
		if w := c.win; w != nil && w.opened && !w.closed && w.t.Name == name {
			c.keyBuf = w.evict(ch, c.keyIndexes(ch.Rel, w.t), c.keyBuf)
		}
		c.mu.Unlock()
	case replication.OpTruncate:
		if !c.active.Load() {
			return nil, false, nil
		}
		c.mu.Lock()
		for _, rel := range ch.Truncated {
			name := c.relName(rel)
			if c.jobTables[name] {
				c.noteTx(ch.Tx)
			}
			if w := c.win; w != nil && w.opened && !w.closed && w.t.Name == name {
				w.truncated = true
			}
		}
		c.mu.Unlock()
	case replication.OpMessage:
		if ch.Prefix != WatermarkPrefix {
			return nil, false, nil
		}
		return c.watermark(ch), true, nil
	}
	return nil, false, nil
}

func (c *Controller) watermark(ch *replication.Change) *Emission {
	kind, id, ok := parseWatermark(ch.Content)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.win
	if w == nil || w.id != id || w.closed {
		return nil // a window of an earlier run, or one already decided
	}
	if kind == "open" {
		if !w.opened {
			w.opened, w.openCommit = true, ch.Tx.CommitLSN
		}
		return nil
	}
	w.closed = true
	rows, res := w.close(ch.Tx.CommitLSN, c.txs, c.overflow)
	// Transactions older than the read's xmin can no longer be in progress for any read.
	for x := range c.txs {
		if xidBefore(x, w.xmin) {
			delete(c.txs, x)
		}
	}
	if c.overflow && xidBefore(c.dropped, w.xmin) {
		c.overflow = false
		c.log.Info("snapshot: the forgotten transactions have ended; chunks are no longer read again")
	}
	w.done <- res
	if res.invalid == "" {
		c.noteEmitted(w.job.snap, w.update)
	}
	if len(rows) == 0 {
		return nil
	}
	return &Emission{Table: w.t, Rows: rows}
}

// Emitted is the progress of an in-stream snapshot as of the chunks emitted in the stream,
// acknowledged or not: exactly-once delivery commits it with the chunks' records, so a
// restart goes on after exactly the rows Kafka has.
type Emitted struct {
	ID, Kind string
	LSN      pglogrepl.LSN // the consistent point of an initial snapshot
	Ranges   []RangeUpdate
}

// Emitted returns the progress as of the last chunk emitted (nil before any). It changes
// only when Observe emits a chunk; the value returned is never modified.
func (c *Controller) Emitted() *Emitted {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.emitted
}

// noteEmitted records that the rows of a chunk of snap were emitted, up to upd. c.mu must be
// held.
func (c *Controller) noteEmitted(snap *Snapshot, upd RangeUpdate) {
	e := &Emitted{ID: snap.ID, Kind: snap.Kind, LSN: snap.LSN}
	if old := c.emitted; old != nil && old.ID == snap.ID {
		e.Ranges = make([]RangeUpdate, 0, len(old.Ranges)+1)
		for _, r := range old.Ranges {
			if r.Relation != upd.Relation || r.Part != upd.Part {
				e.Ranges = append(e.Ranges, r)
			}
		}
	}
	e.Ranges = append(e.Ranges, upd)
	c.emitted = e
}

// noteTx remembers a transaction that changed a snapshotted table. c.mu must be held.
func (c *Controller) noteTx(tx *replication.Tx) {
	if tx == nil || tx.XID == 0 {
		return
	}
	if _, ok := c.txs[tx.XID]; ok {
		return
	}
	if len(c.txs) >= maxTrackedTxs {
		first := !c.overflow
		if first {
			c.log.Warn("snapshot: too many transactions while a long one is open; chunks are read again until it ends",
				"transactions", maxTrackedTxs)
		}
		for x := range c.txs {
			if first || xidBefore(c.dropped, x) {
				c.dropped, first = x, false
			}
		}
		c.overflow = true
		clear(c.txs)
	}
	c.txs[tx.XID] = tx.CommitLSN
}

func (c *Controller) relName(rel *replication.Relation) string {
	if n, ok := c.names[rel]; ok {
		return n
	}
	n := rel.QualifiedName()
	dropOlderVersions(c.names, rel)
	c.names[rel] = n
	return n
}

// dropOlderVersions deletes from a cache of relation versions those that rel replaces (the
// same ID): the stream is observed in order, so no change of theirs comes after rel's first.
// Each reconnect and each DDL makes new versions; without this the cache keeps them all.
func dropOlderVersions[V any](m map[*replication.Relation]V, rel *replication.Relation) {
	for old := range m {
		if old.ID == rel.ID {
			delete(m, old)
		}
	}
}

// keyIndexes maps the chunk table's key columns to the columns of a streamed relation.
func (c *Controller) keyIndexes(rel *replication.Relation, t *Table) []int {
	if c.keyRel != t {
		clear(c.keyIdx)
		c.keyRel = t
	}
	if idx, ok := c.keyIdx[rel]; ok {
		return idx
	}
	idx := make([]int, len(t.Order))
	for i, ci := range t.Order {
		if idx[i] = rel.ColumnIndex(t.Rel.Columns[ci].Name); idx[i] < 0 {
			idx = nil
			break
		}
	}
	dropOlderVersions(c.keyIdx, rel)
	c.keyIdx[rel] = idx
	return idx
}

// closeConn closes a worker's connection, if it has one, without waiting long for a server
// that is gone.
func closeConn(conn *pgx.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
