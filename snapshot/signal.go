package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/oklog/ulid/v2"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/retrylog"
)

// Signal types procon-cdc acts on (Debezium's names).
const (
	SignalExecuteSnapshot = "execute-snapshot"
	SignalStopSnapshot    = "stop-snapshot"
	SignalLog             = "log"
)

// SignalTableSQL creates a signal table with Debezium's columns.
func SignalTableSQL(table string) string {
	return "CREATE TABLE IF NOT EXISTS " + pg.QuoteQualified(QualifyTable(table)) +
		" (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, data varchar(2048) NULL)"
}

// EnsureSignalTable creates the signal table when it is missing, and refuses one on which
// procon-cdc snapshot's inserts would run another role's code (pg.CheckWrites).
func EnsureSignalTable(ctx context.Context, conn *pgx.Conn, table string) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, pg.QuoteQualified(QualifyTable(table))).Scan(&exists); err != nil {
		return fmt.Errorf("snapshot: look up signal table %s: %w", table, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, SignalTableSQL(table)); err != nil {
			return fmt.Errorf("snapshot: create signal table %s: %w", table, err)
		}
	}
	if err := pg.CheckWrites(ctx, conn, QualifyTable(table), pg.Insert); err != nil {
		return fmt.Errorf("snapshot.signal_table: %w", err)
	}
	return nil
}

// QualifyTable returns "schema.table", adding public when no schema is given.
func QualifyTable(name string) string {
	if name == "" || strings.Contains(name, ".") {
		return name
	}
	return "public." + name
}

// Condition restricts the rows of the tables a pattern matches (Debezium's
// additional-conditions).
type Condition struct {
	DataCollection string `json:"data-collection"`
	Filter         string `json:"filter"`
}

// SnapshotRequest is the data of an execute-snapshot signal.
type SnapshotRequest struct {
	DataCollections      []string    `json:"data-collections"`
	Type                 string      `json:"type,omitempty"`
	AdditionalConditions []Condition `json:"additional-conditions,omitempty"`
	// AdditionalCondition is the older single-filter form, applied to every table.
	AdditionalCondition string `json:"additional-condition,omitempty"`
}

// ParseRequest reads the data of an execute-snapshot or stop-snapshot signal.
func ParseRequest(data string) (*SnapshotRequest, error) {
	var r SnapshotRequest
	if strings.TrimSpace(data) == "" {
		return &r, nil
	}
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return nil, fmt.Errorf("signal data is not JSON: %w", err)
	}
	return &r, nil
}

// Resolve matches the request against the captured relations: data-collections are regular
// expressions matched against whole "schema.table" names, case-insensitively. It returns the
// matched relations in capture order, each with its filter.
func (r *SnapshotRequest) Resolve(captured []string) ([]string, map[string]string, error) {
	if len(r.DataCollections) == 0 {
		return nil, nil, fmt.Errorf("the signal names no data-collections")
	}
	match := func(pattern string) (*regexp.Regexp, error) {
		re, err := regexp.Compile("(?i)^(?:" + strings.TrimSpace(pattern) + ")$")
		if err != nil {
			return nil, fmt.Errorf("data-collection %q is not a regular expression: %w", pattern, err)
		}
		return re, nil
	}
	var res []*regexp.Regexp
	for _, p := range r.DataCollections {
		re, err := match(p)
		if err != nil {
			return nil, nil, err
		}
		res = append(res, re)
	}
	filters := map[string]string{}
	var tables []string
	for _, name := range captured {
		for _, re := range res {
			if re.MatchString(name) {
				tables = append(tables, name)
				filters[name] = r.AdditionalCondition
				break
			}
		}
	}
	if len(tables) == 0 {
		return nil, nil, fmt.Errorf("data-collections %v match no captured table", r.DataCollections)
	}
	for _, c := range r.AdditionalConditions {
		re, err := match(c.DataCollection)
		if err != nil {
			return nil, nil, err
		}
		for _, name := range tables {
			if re.MatchString(name) {
				filters[name] = c.Filter
			}
		}
	}
	return tables, filters, nil
}

// NewSignalID returns a fresh signal id (a ULID).
func NewSignalID() string {
	return ulid.MustNew(ulid.Timestamp(time.Now()), rand.Reader).String()
}

// WriteSignal inserts a signal into the signal table. It first takes the lock the insert
// takes, then refuses a table with a trigger or rule that would fire (pg.CheckWrites): adding
// one waits for that lock, so none can appear between the check and the insert.
func WriteSignal(ctx context.Context, conn *pgx.Conn, table, id, typ string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	table = QualifyTable(table)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("write signal to %s: %w", table, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pg.QuoteQualified(table)+" IN ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("write signal to %s: %w", table, err)
	}
	if err := pg.CheckWrites(ctx, tx, table, pg.Insert); err != nil {
		return fmt.Errorf("snapshot.signal_table: %w", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+pg.QuoteQualified(table)+" (id, type, data) VALUES ($1, $2, $3)", id, typ, string(b)); err != nil {
		return fmt.Errorf("write signal to %s: %w", table, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("write signal to %s: %w", table, err)
	}
	return nil
}

// maxQueuedSignals bounds the signals waiting to be handled. The pipeline never waits for the
// signal goroutine: a signal that finds the queue full is dropped, and logged.
const maxQueuedSignals = 64

// maxQueuedSnapshots bounds the incremental snapshots waiting to run: an execute-snapshot
// signal beyond it is refused.
const maxQueuedSnapshots = 16

// signalRow is a row inserted into the signal table, queued for RunSignals. Its transaction
// is held (one more acknowledgement to wait for) until the signal is recorded or refused, so
// the confirmed position never passes a signal that a crash could lose.
type signalRow struct {
	id, typ, data string
	tx            *replication.Tx
}

// droppedSignals counts the signals dropped since RunSignals last reported them.
type droppedSignals struct {
	count       int
	first, last string
}

// queueSignal hands a signal to RunSignals. Called by the pipeline goroutine: it runs no SQL
// and never waits.
func (c *Controller) queueSignal(ch *replication.Change) {
	if ch.Op != replication.OpInsert {
		return
	}
	col := func(name string) string {
		i := ch.Rel.ColumnIndex(name)
		if i < 0 || i >= len(ch.New) || ch.New[i].Kind != replication.DatumText {
			return ""
		}
		return string(ch.New[i].Data)
	}
	s := signalRow{id: col("id"), typ: col("type"), data: col("data"), tx: ch.Tx}
	c.cfg.Acked.Add(s.tx, 1)
	select {
	case c.signals <- s:
		return
	default:
	}
	s.tx.Ack()
	c.dropMu.Lock()
	d := &c.sigDrops
	if d.count == 0 {
		d.first = s.id
	}
	d.count++
	d.last = s.id
	first := d.count == 1
	c.dropMu.Unlock()
	if first {
		c.log.Error("signal dropped: the signal queue is full; insert it again once the queued signals are handled",
			"signal", s.id, "type", s.typ, "queued", maxQueuedSignals)
	}
}

// RunSignals handles the queued signals, one after the other, until ctx ends: it resolves an
// execute-snapshot signal's tables, checks their filters, estimates their rows and records
// the snapshot (or why it is refused), then queues it for Run. It has its own connection.
// Errors that may go away are retried; an error recording a signal ends it, and the engine.
func (c *Controller) RunSignals(ctx context.Context) error {
	var conn *pgx.Conn
	defer func() { closeConn(conn) }()
	for {
		var s signalRow
		select {
		case <-ctx.Done():
			return nil
		case s = <-c.signals:
		}
		c.reportDropped()
		backoff := 100 * time.Millisecond
		var failing retrylog.Outage
		for {
			var err error
			if conn == nil || conn.IsClosed() {
				conn, err = pg.Connect(ctx, c.cfg.DSN, applicationName)
			}
			if err == nil {
				err = c.handleSignal(ctx, conn, s)
			}
			if err == nil {
				failing.Recovered(c.log, "snapshot: signal handled after retries", "signal", s.id)
				break
			}
			if ctx.Err() != nil {
				return nil // the signal's transaction stays held: it is streamed again at restart
			}
			if !pg.Transient(err) {
				return fmt.Errorf("snapshot: signal %s: %w", s.id, err)
			}
			failing.Failed(c.log, "snapshot: cannot handle a signal; retrying", err, "signal", s.id)
			if conn != nil {
				_ = conn.Close(context.Background())
				conn = nil
			}
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(2*backoff, 5*time.Second)
		}
		s.tx.Ack()
	}
}

// reportDropped logs how many signals were dropped since the last report.
func (c *Controller) reportDropped() {
	c.dropMu.Lock()
	d := c.sigDrops
	c.sigDrops = droppedSignals{}
	c.dropMu.Unlock()
	if d.count > 0 {
		c.log.Error("signals dropped while the signal queue was full; insert them again", "dropped", d.count, "first", d.first, "last", d.last)
	}
}

// handleSignal acts on one signal.
func (c *Controller) handleSignal(ctx context.Context, conn *pgx.Conn, s signalRow) error {
	log := c.log.With("signal", s.id, "type", s.typ)
	switch s.typ {
	case SignalLog:
		var m struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal([]byte(s.data), &m)
		log.Info("signal: log", "message", m.Message)
		return nil
	case SignalExecuteSnapshot:
		return c.executeSnapshot(ctx, conn, s, log)
	case SignalStopSnapshot:
		req, err := ParseRequest(s.data)
		if err != nil {
			log.Error("signal ignored", "err", err)
			return nil
		}
		c.stop(req, log)
		return nil
	}
	log.Info("signal ignored: procon-cdc does not act on this type")
	return nil
}

// executeSnapshot records the incremental snapshot an execute-snapshot signal asks for and
// queues it. A table whose filter is refused, or that cannot be read, is recorded as refused
// with the reason, and the signal's other tables are snapshotted; a signal that names no
// table it can snapshot is recorded as refused. Nothing of a refused filter runs.
func (c *Controller) executeSnapshot(ctx context.Context, conn *pgx.Conn, s signalRow, log *slog.Logger) error {
	snap := &Snapshot{ID: "signal:" + s.id, Kind: KindIncremental, Status: StatusRunning}
	req, err := ParseRequest(s.data)
	if err == nil && req.Type != "" && !strings.EqualFold(req.Type, "incremental") {
		log.Warn("signal: only incremental snapshots run while streaming; running this one as incremental", "requested", req.Type)
	}
	var tables []string
	var filters map[string]string
	if err == nil {
		tables, filters, err = req.Resolve(c.cfg.Relations)
	}
	if err == nil {
		c.mu.Lock()
		queued := len(c.queue)
		c.mu.Unlock()
		if queued >= maxQueuedSnapshots {
			err = fmt.Errorf("%d snapshots are already waiting to run; request it again once they are done", queued)
		}
	}
	if err != nil {
		snap.Status, snap.Error = StatusRefused, "the signal is refused: "+err.Error()
		tables = nil
	}
	for _, name := range tables {
		r := &Range{Relation: name, Filter: filters[name]}
		if r.Total, err = c.planRange(ctx, conn, name, r.Filter); err != nil {
			if ctx.Err() != nil || pg.Transient(err) && !cancelled(err) {
				return err
			}
			r.Done, r.Outcome, r.Error = true, StatusRefused, err.Error()
			if cancelled(err) {
				r.Error = fmt.Sprintf("checking %s took longer than snapshot.statement_timeout (%s): is the table locked? %v", name, c.cfg.StatementTimeout, err)
			}
		}
		snap.Ranges = append(snap.Ranges, r)
	}
	if snap.Status != StatusRefused {
		if status, reason := outcomeOf(snap); status == StatusRefused {
			snap.Status, snap.Error = status, reason
		}
	}
	// Recorded before the signal's transaction can be confirmed: a crash cannot lose it, and
	// a signal streamed again after a crash is not run twice.
	fresh, err := c.cfg.Store.Insert(ctx, snap, true)
	if err != nil {
		return err
	}
	if !fresh {
		log.Debug("signal already recorded")
		return nil
	}
	for _, r := range snap.Ranges {
		if r.Outcome != "" {
			log.Error("signal: table refused", "snapshot", snap.ID, "relation", r.Relation, "filter", r.Filter, "reason", r.Error)
		}
	}
	if snap.Status == StatusRefused {
		if len(snap.Ranges) == 0 {
			log.Error("incremental snapshot refused", "snapshot", snap.ID, "reason", snap.Error)
		}
		return nil
	}
	log.Info("incremental snapshot requested", "snapshot", snap.ID, "relations", tables, "filters", filters)
	c.Enqueue(snap)
	return nil
}

// planRange describes a table, checks its filter and estimates the rows it selects, in a
// transaction that is rolled back. A filter that does not qualify is a *FilterError.
func (c *Controller) planRange(ctx context.Context, conn *pgx.Conn, name, filter string) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	if err := setStatementTimeout(ctx, tx, c.cfg.StatementTimeout); err != nil {
		return 0, err
	}
	t, err := DescribeTable(ctx, tx.Conn(), name, c.cfg.Specs[name])
	if err != nil {
		return 0, err
	}
	if !t.Keyed() {
		return 0, fmt.Errorf("%s has no key: a table without one cannot be snapshotted while streaming", name)
	}
	from := t.from
	if filter != "" {
		if err := createFilterView(ctx, tx, t, filter); err != nil {
			return 0, err
		}
		from = filterView
	}
	// Planning evaluates stable functions: only a checked filter gets here.
	if _, err := tx.Exec(ctx, "SET LOCAL transaction_read_only = on"); err != nil {
		return 0, err
	}
	return estimateRows(ctx, tx, t, from)
}

// cancelled reports whether err is a statement cancelled, by statement_timeout or by an
// administrator.
func cancelled(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57014"
}

// stop stops the queued and running incremental snapshots of the tables a stop-snapshot
// signal names (all of them when it names none).
func (c *Controller) stop(req *SnapshotRequest, log *slog.Logger) {
	tables := map[string]bool{}
	if len(req.DataCollections) > 0 {
		names, _, err := req.Resolve(c.cfg.Relations)
		if err != nil {
			log.Warn("stop-snapshot signal ignored", "err", err)
			return
		}
		for _, n := range names {
			tables[n] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, j := range append([]*job{c.cur}, c.queue...) {
		if j == nil || j.snap.Kind != KindIncremental {
			continue
		}
		for _, r := range j.snap.Ranges {
			if len(tables) == 0 || tables[r.Relation] {
				j.stop.Store(true)
			}
		}
		if j.stop.Load() {
			log.Info("incremental snapshot stopping", "snapshot", j.snap.ID)
		}
	}
}
