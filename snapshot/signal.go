package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/oklog/ulid/v2"

	"github.com/procon-cdc/procon/pg"
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
