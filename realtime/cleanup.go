package realtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/retrylog"
)

// cleaner deletes realtime table rows whose notification Kafka has (or that coalescing
// dropped). Each batch is one transaction that first emits a transactional logical message
// with CleanupPrefix and then deletes the rows by key; the pipeline reads the message before
// the deletes and drops them. A row's transaction is acknowledged to the tracker only once its
// row is deleted, so a crash between Kafka's acknowledgement and the delete sends the
// notification again and deletes the row then: no row is left behind. Before deleting, it waits
// until the inserting transactions are visible (see awaitVisible).
type cleaner struct {
	dsn      string
	table    string
	token    string // the content of the cleanup markers
	tracker  Tracker
	interval time.Duration
	batch    int
	log      *slog.Logger

	mu   sync.Mutex
	rows []*item
	wake chan struct{}

	conn *pgx.Conn // used by run, then by Close
}

func newCleaner(dsn, table, token string, tracker Tracker, interval time.Duration, log *slog.Logger) *cleaner {
	return &cleaner{dsn: dsn, table: table, token: token, tracker: tracker, interval: interval, batch: 1000, log: log, wake: make(chan struct{}, 1)}
}

// add queues a row for deletion. It does not block: Kafka's promises call it.
func (c *cleaner) add(it *item) {
	c.mu.Lock()
	c.rows = append(c.rows, it)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *cleaner) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rows)
}

func (c *cleaner) run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	var failing retrylog.Outage
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
		}
		select { // let a batch gather
		case <-ctx.Done():
			return nil
		case <-time.After(c.interval):
		}
		for {
			n, err := c.flush(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				if !pg.Transient(err) {
					return err
				}
				failing.Failed(c.log, "realtime cleanup failed; retrying", err, "relation", c.table, "rows", c.pending())
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			if failing.Failing() {
				failing.Recovered(c.log, "realtime cleanup works again", "relation", c.table, "rows", c.pending())
			}
			if n == 0 {
				break
			}
		}
	}
}

// flush deletes up to one batch of queued rows and acknowledges them; it returns how many.
func (c *cleaner) flush(ctx context.Context) (int, error) {
	c.mu.Lock()
	n := min(len(c.rows), c.batch)
	items := append([]*item(nil), c.rows[:n]...)
	c.rows = c.rows[n:]
	if len(c.rows) == 0 {
		c.rows = nil
	}
	c.mu.Unlock()
	if n == 0 {
		return 0, nil
	}
	if err := c.delete(ctx, items); err != nil {
		c.mu.Lock()
		c.rows = append(items, c.rows...)
		c.mu.Unlock()
		return 0, err
	}
	for _, it := range items {
		c.tracker.Ack(it.tx)
	}
	return n, nil
}

func (c *cleaner) delete(ctx context.Context, items []*item) (err error) {
	if c.conn == nil || c.conn.IsClosed() {
		if c.conn, err = pg.Connect(ctx, c.dsn, "procon-cdc realtime cleanup"); err != nil {
			return fmt.Errorf("realtime cleanup: connect to PostgreSQL: %w", err)
		}
	}
	defer func() {
		if err != nil { // start again from a fresh connection
			c.close()
		}
	}()
	if err := c.awaitVisible(ctx, items); err != nil {
		return err
	}
	tx, err := c.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("realtime cleanup: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// The lock the deletes take, taken first: adding a trigger, a rule or a row security
	// policy waits for it, so what the check below finds is what the deletes would fire. The
	// table's owner is not procon-cdc's role, and can add one while procon-cdc runs.
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pg.QuoteQualified(c.table)+" IN ROW EXCLUSIVE MODE"); err != nil {
		return c.explain(err)
	}
	if err := pg.CheckWrites(ctx, tx, c.table, pg.Delete); err != nil {
		return fmt.Errorf("realtime cleanup: %w", err) // stops procon-cdc, unless the lookup itself failed transiently
	}
	if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_logical_emit_message(true, $1, $2)`, CleanupPrefix, c.token); err != nil {
		return fmt.Errorf("realtime cleanup: emit the cleanup marker: %w", err)
	}
	// One statement per relation version: a schema change between rows changes nothing here
	// unless it changed the key, and then each version's rows are deleted by their own key.
	groups := map[*replication.Relation][][]string{}
	var order []*replication.Relation
	for _, it := range items {
		if _, ok := groups[it.row.rel]; !ok {
			order = append(order, it.row.rel)
		}
		groups[it.row.rel] = append(groups[it.row.rel], it.row.key)
	}
	for _, rel := range order {
		sql, args := deleteSQL(c.table, rel, groups[rel])
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return c.explain(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("realtime cleanup: commit: %w", err)
	}
	return nil
}

// awaitVisible waits until the transactions that inserted the rows are visible to new
// snapshots. Logical decoding can deliver a commit as soon as its WAL record is flushed, before
// the committing backend has removed itself from the running transactions; a DELETE in that
// window does not see the row and deletes nothing. The 32-bit xids from the WAL are widened to
// the 64-bit ids nearest to the current snapshot's xmax.
func (c *cleaner) awaitVisible(ctx context.Context, items []*item) error {
	var xmax int64
	if err := c.conn.QueryRow(ctx, `SELECT pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot())`).Scan(&xmax); err != nil {
		return fmt.Errorf("realtime cleanup: read the current snapshot: %w", err)
	}
	seen := map[uint32]bool{}
	var xids []int64
	for _, it := range items {
		if x := it.tx.XID; x != 0 && !seen[x] {
			seen[x] = true
			xids = append(xids, widenXID(x, xmax))
		}
	}
	wait, deadline := time.Millisecond, time.Now().Add(time.Minute)
	for {
		var running int
		err := c.conn.QueryRow(ctx, `SELECT pg_catalog.count(*) FROM pg_catalog.unnest($1::pg_catalog.int8[]) AS x
			WHERE NOT pg_catalog.txid_visible_in_snapshot(x, pg_catalog.txid_current_snapshot())`, xids).Scan(&running)
		if err != nil {
			return fmt.Errorf("realtime cleanup: wait for the inserting transactions: %w", err)
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			c.log.Warn("realtime cleanup: inserting transactions still not visible after a minute; deleting anyway, rows may remain",
				"relation", c.table, "transactions", running)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// widenXID returns the 64-bit transaction id with the low 32 bits xid that is nearest to xmax.
// A transaction still being made visible may be at or past xmax (which moves when it is), and
// every other one the WAL gives is less than 2^31 before it.
func widenXID(xid uint32, xmax int64) int64 {
	return xmax + int64(int32(xid-uint32(xmax)))
}

func (c *cleaner) explain(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !pg.Transient(err) {
		return fmt.Errorf("realtime cleanup: delete published rows from %s: %w; grant DELETE on it to procon-cdc's role, or set realtime.cleanup: false and delete them yourself",
			c.table, err)
	}
	return fmt.Errorf("realtime cleanup: delete published rows from %s: %w", c.table, err)
}

func (c *cleaner) close() {
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.conn.Close(ctx)
		cancel()
		c.conn = nil
	}
}

// deleteSQL deletes rows of table by the key columns of rel, given as text and cast to each
// column's type, compared with the operator of the type's own btree class:
//
//	DELETE FROM "public"."procon_realtimes" AS t USING pg_catalog.unnest($1::pg_catalog.text[]) AS k(c0)
//	WHERE t."id" OPERATOR("pg_catalog".=) k.c0::"pg_catalog"."int8"
func deleteSQL(table string, rel *replication.Relation, keys [][]string) (string, []any) {
	var b strings.Builder
	b.WriteString("DELETE FROM ")
	b.WriteString(pg.QuoteQualified(table))
	b.WriteString(" AS t USING pg_catalog.unnest(")
	args := make([]any, len(rel.Key))
	for j := range rel.Key {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(j+1) + "::pg_catalog.text[]")
		col := make([]string, len(keys))
		for i, k := range keys {
			col[i] = k[j]
		}
		args[j] = col
	}
	b.WriteString(") AS k(")
	for j := range rel.Key {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("c" + strconv.Itoa(j))
	}
	b.WriteString(") WHERE ")
	for j, ci := range rel.Key {
		if j > 0 {
			b.WriteString(" AND ")
		}
		col := rel.Columns[ci]
		schema := ""
		if col.Type != nil {
			schema = col.Type.OperatorSchema()
		}
		b.WriteString("t." + pgx.Identifier{col.Name}.Sanitize() + " " + pg.Operator(schema, "=") + " k.c" + strconv.Itoa(j))
		if col.Type != nil {
			b.WriteString("::" + pgx.Identifier{col.Type.Schema, col.Type.Name}.Sanitize())
		}
	}
	return b.String(), args
}
