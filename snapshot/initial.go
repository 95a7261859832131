package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/retrylog"
)

// Source.snapshot markers of snapshot rows (Debezium's SnapshotRecord).
const (
	MarkerFirst        = "first"
	MarkerFirstInTable = "first_in_data_collection"
	MarkerTrue         = "true"
	MarkerLastInTable  = "last_in_data_collection"
	MarkerLast         = "last"
	MarkerIncremental  = "incremental"
)

// marker resolves a row's marker as Debezium does: the last row of the snapshot wins, then
// its first row, then the last and first rows of each table.
func marker(firstInSnapshot, lastInSnapshot, firstInTable, lastInTable bool) string {
	switch {
	case lastInSnapshot:
		return MarkerLast
	case firstInSnapshot:
		return MarkerFirst
	case lastInTable:
		return MarkerLastInTable
	case firstInTable:
		return MarkerFirstInTable
	}
	return MarkerTrue
}

// Acker is a record's acknowledgement: Ack is called once Kafka has the record (it is a
// sink.Acker).
type Acker interface{ Ack() }

// Row is one snapshot row handed to an Emitter.
type Row struct {
	// Datums are the row's values as text, in the column order of the table's Rel. They are
	// valid only during the call.
	Datums []replication.Datum
	Marker string
	// Time, TxID and LSN are for the source block: the snapshot's CURRENT_TIMESTAMP, its
	// transaction and the slot's consistent point.
	Time time.Time
	TxID int64
	LSN  pglogrepl.LSN
	// Ack is the record's acknowledgement: the chunk the row belongs to, which records its
	// range's progress once all of its rows are acknowledged.
	Ack Acker
}

// Emitter hands one row of a table to Kafka. Emitters are called from several goroutines.
type Emitter func(ctx context.Context, row *Row) error

// InitialConfig configures an initial snapshot.
type InitialConfig struct {
	DSN string
	// SnapshotName is the snapshot exported by the slot's creation, LSN its consistent point.
	// Without a name each connection reads in a snapshot of its own (Resume).
	SnapshotName string
	LSN          pglogrepl.LSN
	// Resume, when set, are ranges of an interrupted initial snapshot to read again whole,
	// instead of planning every table: tables without a key, whose rows cannot be matched
	// with streamed changes. The snapshot is not marked done afterwards.
	Resume []*Range
	// Relations are the captured tables, in the order their rows are emitted.
	Relations   []string
	Specs       map[string]replication.RelationSpec
	ChunkSize   int
	Parallelism int
	Store       *Store
	Logger      *slog.Logger
	// LogInterval is the period of progress log lines (default 10s).
	LogInterval time.Duration
	// Commit, when set (exactly-once delivery), commits every record handed over so far
	// together with ranges, the progress they make; the records' acknowledgements follow
	// the commit. Run calls it every CommitInterval, with the workers paused between chunks,
	// and once they are done.
	Commit         func(ctx context.Context, ranges []RangeUpdate) error
	CommitInterval time.Duration
}

// Initial is an initial snapshot, read in parallel from the slot's exported snapshot.
type Initial struct {
	cfg      InitialConfig
	log      *slog.Logger
	conns    []*pgx.Conn
	tables   []*tableState
	segments []*segment
	snap     *Snapshot
	progress *Progress
	ts       time.Time
	txid     int64

	firstDone    chan struct{} // closed once the snapshot's first row is handed to Kafka
	firstEmitted atomic.Bool

	mu          sync.Mutex
	tablesLeft  int
	finalRow    *heldRow // the snapshot's last row, emitted after every other row
	segsLeft    atomic.Int64
	allAcked    chan struct{}
	allAckedOne sync.Once

	// pause holds the workers between chunks while Commit runs: each holds a read lock
	// while it reads a chunk and hands its rows over.
	pause sync.RWMutex
}

type tableState struct {
	t          *Table
	emit       Emitter
	first      bool // the first non-empty table
	last       bool // the last non-empty table
	left       int  // segments still being read
	deferred   *heldRow
	rowsBefore int64
}

// segment is one range being read by one worker, chunk after chunk.
type segment struct {
	ts    *tableState
	rng   *Range
	first bool // the table's first range
	last  bool // the table's last range

	mu     sync.Mutex
	chunks []*chunk // handed to Kafka, not yet all acknowledged, in order
	// handed is the range's progress as of the rows handed to Kafka, acknowledged or not
	// (kept only with Commit).
	handed    RangeUpdate
	reading   bool
	ackedKey  []string
	ackedRows int64
	done      bool
	dirty     bool
	onDone    func()
}

// chunk counts the records of one chunk that Kafka has not acknowledged yet; it starts at 1
// for the chunk being read, released when the chunk is complete.
type chunk struct {
	seg     *segment
	pending atomic.Int64
	rows    int64
	lastKey []string
	acked   bool
}

// Ack implements Acker.
func (c *chunk) Ack() {
	if c.pending.Add(-1) == 0 {
		c.seg.chunkAcked(c)
	}
}

func (s *segment) newChunk() *chunk {
	c := &chunk{seg: s}
	c.pending.Store(1)
	s.mu.Lock()
	s.chunks = append(s.chunks, c)
	s.mu.Unlock()
	return c
}

func (s *segment) chunkAcked(c *chunk) {
	s.mu.Lock()
	c.acked = true
	for len(s.chunks) > 0 && s.chunks[0].acked {
		h := s.chunks[0]
		if h.lastKey != nil {
			s.ackedKey = h.lastKey
		}
		s.ackedRows += h.rows
		s.chunks[0] = nil
		s.chunks = s.chunks[1:]
		s.dirty = true
	}
	finished := !s.reading && len(s.chunks) == 0 && !s.done
	if finished {
		s.done = true
	}
	s.mu.Unlock()
	if finished {
		s.onDone()
	}
}

// heldRow is a row kept back: the last row read, until the next row says whether it ends
// its range, or a table's last row, until the table's other ranges are done.
type heldRow struct {
	vals         [][]byte
	buf          []byte
	firstInTable bool
	tok          *chunk
}

func (h *heldRow) set(vals [][]byte) {
	h.buf = h.buf[:0]
	for _, v := range vals {
		h.buf = append(h.buf, v...)
	}
	h.vals = h.vals[:0]
	off := 0
	for _, v := range vals {
		if v == nil {
			h.vals = append(h.vals, nil)
			continue
		}
		h.vals = append(h.vals, h.buf[off:off+len(v):off+len(v)])
		off += len(v)
	}
}

func (h *heldRow) clone() *heldRow {
	c := &heldRow{firstInTable: h.firstInTable, tok: h.tok}
	c.set(h.vals)
	return c
}

// PrepareInitial imports the exported snapshot into cfg.Parallelism connections, describes
// and plans the tables inside it, and records the plan in the store. The exported snapshot
// must still be valid: the replication connection that exported it must be idle.
func PrepareInitial(ctx context.Context, cfg InitialConfig) (*Initial, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = 10 * time.Second
	}
	cfg.Parallelism = max(cfg.Parallelism, 1)
	in := &Initial{cfg: cfg, log: cfg.Logger, firstDone: make(chan struct{}), allAcked: make(chan struct{}),
		progress: NewProgress(InitialID, KindInitial)}
	if err := in.prepare(ctx); err != nil {
		in.close()
		return nil, err
	}
	return in, nil
}

func (in *Initial) prepare(ctx context.Context) error {
	start := time.Now()
	in.log.Info("snapshot step 1: importing the exported snapshot", "snapshot_name", in.cfg.SnapshotName,
		"consistent_point", in.cfg.LSN.String(), "connections", in.cfg.Parallelism)
	for range in.cfg.Parallelism {
		conn, err := pg.Connect(ctx, in.cfg.DSN, applicationName)
		if err != nil {
			return fmt.Errorf("snapshot: connect to PostgreSQL: %w", err)
		}
		in.conns = append(in.conns, conn)
		if _, err := conn.Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"); err != nil {
			return fmt.Errorf("snapshot: begin: %w", err)
		}
		if in.cfg.SnapshotName == "" {
			continue
		}
		if _, err := conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+in.cfg.SnapshotName+"'"); err != nil {
			return fmt.Errorf("snapshot: import snapshot %s: %w", in.cfg.SnapshotName, err)
		}
	}
	conn := in.conns[0]
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.txid_current(), pg_catalog.now()").Scan(&in.txid, &in.ts); err != nil {
		return fmt.Errorf("snapshot: read the snapshot transaction: %w", err)
	}
	in.log.Info("snapshot step 2: describing and planning tables", "tables", len(in.cfg.Relations))
	in.snap = &Snapshot{ID: InitialID, Kind: KindInitial, Status: StatusRunning, LSN: in.cfg.LSN, TxID: in.txid}
	var nonEmpty []*tableState
	for _, name := range in.cfg.Relations {
		t, err := DescribeTable(ctx, conn, name, in.cfg.Specs[name])
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		var ranges []*Range
		var total int64
		if in.cfg.Resume != nil {
			for _, r := range in.cfg.Resume {
				if r.Relation == name {
					r.Lo, r.Hi, r.Last, r.Rows = nil, nil, nil, 0
					ranges = append(ranges, r)
					total += r.Total
				}
			}
		} else if ranges, total, err = planTable(ctx, conn, t, in.cfg.ChunkSize, in.cfg.Parallelism); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		in.progress.SetTotal(name, total)
		if len(ranges) == 0 {
			in.progress.Done(name)
			in.log.Info("snapshot table is empty", "relation", name)
			in.snap.Ranges = append(in.snap.Ranges, &Range{Relation: name, Done: true})
			continue
		}
		ts := &tableState{t: t, left: len(ranges)}
		in.tables = append(in.tables, ts)
		nonEmpty = append(nonEmpty, ts)
		for i, r := range ranges {
			in.snap.Ranges = append(in.snap.Ranges, r)
			in.segments = append(in.segments, &segment{ts: ts, rng: r, first: i == 0, last: i == len(ranges)-1, reading: true,
				handed: RangeUpdate{Relation: r.Relation, Part: r.Part}})
		}
		in.log.Info("snapshot table planned", "relation", name, "estimated_rows", total, "ranges", len(ranges))
	}
	if len(nonEmpty) > 0 {
		nonEmpty[0].first = true
		nonEmpty[len(nonEmpty)-1].last = true
	}
	in.tablesLeft = len(nonEmpty)
	if in.cfg.Resume != nil {
		return nil
	}
	if err := in.cfg.Store.AddRanges(ctx, in.snap); err != nil {
		return err
	}
	in.log.Info("snapshot planned", "tables", len(in.cfg.Relations), "ranges", len(in.segments), "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// Progress is the snapshot's progress.
func (in *Initial) Progress() *Progress { return in.progress }

// Time is the snapshot transaction's CURRENT_TIMESTAMP, written as source.ts_ms.
func (in *Initial) Time() time.Time { return in.ts }

// Run reads every range and hands each row to its table's emitter, then waits until Kafka
// acknowledged them all and records the snapshot as done. newEmitter is called once per
// table, before any row is read. Run closes the snapshot's connections.
func (in *Initial) Run(ctx context.Context, newEmitter func(*Table) (Emitter, error)) error {
	defer in.close()
	start := time.Now()
	for _, ts := range in.tables {
		emit, err := newEmitter(ts.t)
		if err != nil {
			return err
		}
		ts.emit = emit
	}
	in.segsLeft.Store(int64(len(in.segments)))
	if len(in.segments) == 0 {
		in.allAckedOne.Do(func() { close(in.allAcked) })
	}
	queue := make(chan *segment, len(in.segments))
	for _, s := range in.segments {
		s.onDone = in.segmentAcked
		queue <- s
	}
	close(queue)
	in.log.Info("snapshot step 3: reading rows", "workers", len(in.conns), "chunk_size", in.cfg.ChunkSize)

	pctx, stopPersist := context.WithCancel(ctx)
	persisted := make(chan struct{})
	go func() {
		defer close(persisted)
		in.persistLoop(pctx)
	}()
	go in.progress.Log(pctx, in.log, in.cfg.LogInterval)

	// Records are produced under wctx, which ends only with ctx or on a worker's error: the
	// producer drops records whose context ends before they are sent, so it must outlive
	// the workers until Kafka acknowledged everything.
	wctx, cancelWorkers := context.WithCancel(ctx)
	defer cancelWorkers()
	var g errgroup.Group
	for _, conn := range in.conns {
		g.Go(func() error {
			for seg := range queue {
				if err := in.readSegment(wctx, conn, seg); err != nil {
					cancelWorkers()
					return err
				}
			}
			return nil
		})
	}
	// The commits run until the workers are done (a commit in flight is let finish: one cut
	// short could leave Kafka unsure of its outcome); a failed commit stops the workers.
	workersDone := make(chan struct{})
	commitErr := make(chan error, 1)
	if in.cfg.Commit != nil {
		go func() {
			err := in.commitLoop(ctx, workersDone)
			if err != nil {
				cancelWorkers()
			}
			commitErr <- err
		}()
	} else {
		commitErr <- nil
	}
	err := g.Wait()
	close(workersDone)
	if cerr := <-commitErr; cerr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = cerr
	}
	if err == nil && in.cfg.Commit != nil {
		err = in.commit(ctx)
	}
	if err == nil {
		select {
		case <-in.allAcked:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	stopPersist()
	<-persisted
	// Whatever happened, record what Kafka acknowledged: a restart resumes after it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if perr := in.persist(fctx); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	if in.cfg.Resume != nil {
		return nil
	}
	if err := in.cfg.Store.SetStatus(fctx, InitialID, StatusDone); err != nil {
		return err
	}
	var rows int64
	for _, s := range in.progress.Stats() {
		rows += s.Rows
	}
	elapsed := time.Since(start)
	in.log.Info("snapshot done: every row is acknowledged by Kafka", "rows", rows, "elapsed", elapsed.Round(time.Millisecond),
		"rows_per_s", int64(float64(rows)/max(elapsed.Seconds(), 1e-3)))
	return nil
}

// commitLoop commits what the workers handed over every CommitInterval until they are done
// or ctx ends.
func (in *Initial) commitLoop(ctx context.Context, workersDone <-chan struct{}) error {
	// Until the snapshot's first row is handed over, the others wait for it inside their
	// chunks (hand), so pausing them could deadlock; and there is nothing to commit.
	select {
	case <-in.firstDone:
	case <-workersDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTicker(max(in.cfg.CommitInterval, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-workersDone:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := in.commit(ctx); err != nil {
				return err
			}
		}
	}
}

// commit pauses the workers between chunks and commits what they handed over, with the
// progress that makes.
func (in *Initial) commit(ctx context.Context) error {
	in.pause.Lock()
	defer in.pause.Unlock()
	ranges := make([]RangeUpdate, 0, len(in.segments))
	for _, s := range in.segments {
		s.mu.Lock()
		if h := s.handed; h.Rows > 0 || h.Done { // an untouched range is as planned
			ranges = append(ranges, h)
		}
		s.mu.Unlock()
	}
	return in.cfg.Commit(ctx, ranges)
}

func (in *Initial) close() {
	for _, c := range in.conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.Close(ctx)
		cancel()
	}
	in.conns = nil
}

func (in *Initial) segmentAcked() {
	if in.segsLeft.Add(-1) == 0 {
		in.allAckedOne.Do(func() { close(in.allAcked) })
	}
}

// readSegment reads one range, chunk after chunk, keeping the last row read back until the
// next one shows whether it ends the range: the last row of a table gets its marker and is
// handed to Kafka after the table's other rows.
func (in *Initial) readSegment(ctx context.Context, conn *pgx.Conn, seg *segment) error {
	t := seg.ts.t
	name := t.Name
	limit := in.cfg.ChunkSize + 1
	if !t.Keyed() {
		limit = 0 // keyless: one pass, streamed
	}
	lo := seg.rng.Lo
	firstRow := seg.first
	var held heldRow
	holding := false
	row := in.newRow()
	for {
		in.pause.RLock()
		ch := seg.newChunk()
		var n int64
		more := false
		sql, params := t.selectSQL(t.from, lo, seg.rng.Hi, limit)
		err := readRows(ctx, conn, sql, params, func(vals [][]byte) error {
			if limit > 0 && n == int64(in.cfg.ChunkSize) {
				more = true // the look-ahead row starts the next chunk
				return nil
			}
			if holding {
				if err := in.emit(ctx, seg.ts, row, &held); err != nil {
					return err
				}
			}
			held.set(vals)
			held.firstInTable, held.tok = firstRow, ch
			firstRow = false
			holding = true
			n++
			return nil
		})
		if err != nil {
			in.pause.RUnlock()
			return fmt.Errorf("snapshot: read %s: %w", name, err)
		}
		ch.rows = n
		if holding && t.Keyed() {
			ch.lastKey = keyOf(held.vals, t.Order)
			lo = ch.lastKey
		}
		in.progress.Add(name, n)
		if !more {
			// End of the range: the held row is its last. The last row of a table is kept
			// back until the table's other ranges are read; its record is counted now.
			var deferred *heldRow
			if holding {
				if seg.last {
					ch.pending.Add(1)
					deferred = held.clone()
				} else if err := in.emit(ctx, seg.ts, row, &held); err != nil {
					in.pause.RUnlock()
					return err
				}
			}
			seg.mu.Lock()
			seg.reading = false
			if deferred == nil {
				seg.handed.Done = true
			}
			seg.mu.Unlock()
			ch.Ack()
			err := in.rangeRead(ctx, seg, deferred)
			in.pause.RUnlock()
			return err
		}
		if holding {
			if err := in.emit(ctx, seg.ts, row, &held); err != nil {
				in.pause.RUnlock()
				return err
			}
			holding = false
		}
		ch.Ack()
		in.pause.RUnlock()
	}
}

// emit hands a row to Kafka, counting its record in its chunk.
func (in *Initial) emit(ctx context.Context, ts *tableState, row *Row, h *heldRow) error {
	h.tok.pending.Add(1)
	return in.hand(ctx, ts, row, h, false)
}

// hand sets a row's marker and hands it to the table's emitter. Every row but the snapshot's
// first waits until that one is handed over, so that the row marked first is written first.
func (in *Initial) hand(ctx context.Context, ts *tableState, row *Row, h *heldRow, lastInTable bool) error {
	firstInSnapshot := h.firstInTable && ts.first
	row.Marker = marker(firstInSnapshot, lastInTable && ts.last, h.firstInTable, lastInTable)
	if !firstInSnapshot && !in.firstEmitted.Load() {
		select {
		case <-in.firstDone:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	row.Datums = datums(h.vals, row.Datums)
	row.Ack = h.tok
	if err := ts.emit(ctx, row); err != nil {
		return err
	}
	if in.cfg.Commit != nil {
		seg := h.tok.seg
		seg.mu.Lock()
		if ts.t.Keyed() {
			seg.handed.Last = keyOf(h.vals, ts.t.Order)
		}
		seg.handed.Rows++
		if lastInTable {
			seg.handed.Done = true // the range's last row, kept back until now
		}
		seg.mu.Unlock()
	}
	if firstInSnapshot && in.firstEmitted.CompareAndSwap(false, true) {
		close(in.firstDone)
	}
	return nil
}

// rangeRead is called when a worker finished reading a range, with the table's last row when
// the range is the table's last. Once every range of the table is read, that row goes to
// Kafka, after every other row of the table; the snapshot's last row waits for every other
// table.
func (in *Initial) rangeRead(ctx context.Context, seg *segment, deferred *heldRow) error {
	ts := seg.ts
	in.mu.Lock()
	if deferred != nil {
		ts.deferred = deferred
	}
	ts.left--
	tableDone := ts.left == 0
	if tableDone {
		deferred, ts.deferred = ts.deferred, nil
		if ts.last {
			in.finalRow, deferred = deferred, nil
		}
	}
	in.mu.Unlock()
	if !tableDone {
		return nil
	}
	if deferred != nil {
		if err := in.hand(ctx, ts, in.newRow(), deferred, true); err != nil {
			return err
		}
	}
	in.progress.Done(ts.t.Name)
	in.log.Info("snapshot table read", "relation", ts.t.Name)
	in.mu.Lock()
	in.tablesLeft--
	var final *heldRow
	if in.tablesLeft == 0 {
		final, in.finalRow = in.finalRow, nil
	}
	in.mu.Unlock()
	if final != nil {
		return in.hand(ctx, in.lastTable(), in.newRow(), final, true)
	}
	return nil
}

func (in *Initial) newRow() *Row { return &Row{Time: in.ts, TxID: in.txid, LSN: in.cfg.LSN} }

func (in *Initial) lastTable() *tableState {
	for _, ts := range in.tables {
		if ts.last {
			return ts
		}
	}
	return nil
}

// persistLoop records acknowledged progress every second until ctx ends.
func (in *Initial) persistLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var failing retrylog.Outage
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			switch err := in.persist(ctx); {
			case err == nil:
				failing.Recovered(in.log, "snapshot progress is recorded again", "snapshot", in.snap.ID)
			case !errors.Is(err, context.Canceled):
				failing.Failed(in.log, "cannot record snapshot progress; retrying every second", err, "snapshot", in.snap.ID)
			}
		}
	}
}

func (in *Initial) persist(ctx context.Context) error {
	var updates []RangeUpdate
	var dirty []*segment
	for _, s := range in.segments {
		s.mu.Lock()
		if s.dirty {
			updates = append(updates, RangeUpdate{Relation: s.rng.Relation, Part: s.rng.Part, Last: s.ackedKey, Rows: s.ackedRows, Done: s.done})
			dirty = append(dirty, s)
			s.dirty = false
		}
		s.mu.Unlock()
	}
	if err := in.cfg.Store.SaveProgress(ctx, InitialID, updates); err != nil {
		for _, s := range dirty {
			s.mu.Lock()
			s.dirty = true
			s.mu.Unlock()
		}
		return err
	}
	return nil
}
