// Package outbox writes outbox events in the caller's own database transaction, for
// procon-cdc's outbox event router (relation_configs.<table>.outbox, with Debezium's
// EventRouter semantics): the event is committed, or rolled back, with the business change
// it describes, and procon-cdc turns the committed row into a Kafka record on the topic of
// its aggregate type, keyed by its aggregate id.
//
// By default each row is deleted again in the same transaction right after its insert: the
// insert is in the WAL, which is all procon-cdc reads, and the table stays empty.
//
//	tx, _ := pool.Begin(ctx)
//	// ... the business change ...
//	err := outbox.Table{}.Write(ctx, tx, outbox.Event{ // public.outbox, Debezium's column names
//		AggregateType: "Order", AggregateID: "o-17", Type: "OrderCreated",
//		Payload: []byte(`{"id": 17, "total": 12.5}`),
//	})
//	// ... tx.Commit(ctx)
//
// A Table is safe for concurrent use; it holds no connection.
package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Event is one outbox event.
type Event struct {
	// ID is the event id (the record's id header); a random UUID (version 4) when empty.
	ID string
	// AggregateType routes the event: to outbox.event.<AggregateType> by default
	// (route.by.field, route.topic.replacement).
	AggregateType string
	// AggregateID is the record key: events of one aggregate keep their order.
	AggregateID string
	// Type is the event type (placed in a header or the envelope by
	// table.fields.additional.placement).
	Type string
	// Payload is the record value: JSON for a jsonb payload column (expanded into a structure
	// with table.expand.json.payload), or any text. Nil writes NULL.
	Payload []byte
	// Columns are values of further columns of the outbox table (a tenant, a trace id), to
	// place with table.fields.additional.placement.
	Columns map[string]any
}

// Table is an outbox table and its column names. The zero value of a name is Debezium's
// default.
type Table struct {
	Name          string // schema-qualified, default public.outbox
	ID            string // default id
	AggregateType string // default aggregatetype
	AggregateID   string // default aggregateid
	Type          string // default type
	Payload       string // default payload
	// KeepRows leaves the rows in the table instead of deleting each in its own transaction.
	KeepRows bool
}

// PgxTx is what Write needs of a transaction: pgx.Tx has it (and so do a connection and a
// pool, which would write outside the caller's transaction).
type PgxTx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// SQLTx is what WriteSQL needs of a transaction: database/sql's *sql.Tx has it.
type SQLTx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Write inserts events into the outbox table in tx (and deletes them again unless KeepRows).
func (t Table) Write(ctx context.Context, tx PgxTx, events ...Event) error {
	return t.write(ctx, events, func(ctx context.Context, q string, args []any) error {
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
}

// WriteSQL is Write for database/sql (the pgx stdlib driver, lib/pq).
func (t Table) WriteSQL(ctx context.Context, tx SQLTx, events ...Event) error {
	return t.write(ctx, events, func(ctx context.Context, q string, args []any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	})
}

func (t Table) write(ctx context.Context, events []Event, exec func(context.Context, string, []any) error) error {
	if len(events) == 0 {
		return nil
	}
	table, err := t.qualified()
	if err != nil {
		return err
	}
	ids := make([]string, len(events))
	for i := range events {
		if ids[i] = events[i].ID; ids[i] == "" {
			if ids[i], err = newUUID(); err != nil {
				return err
			}
		}
	}
	// One INSERT per set of extra columns, in the events' order.
	for start := 0; start < len(events); {
		extra := columnNames(events[start].Columns)
		end := start + 1
		for end < len(events) && slices.Equal(columnNames(events[end].Columns), extra) {
			end++
		}
		cols := append([]string{t.col(t.ID, "id"), t.col(t.AggregateType, "aggregatetype"), t.col(t.AggregateID, "aggregateid"),
			t.col(t.Type, "type"), t.col(t.Payload, "payload")}, extra...)
		var q strings.Builder
		q.WriteString("INSERT INTO " + table + " (")
		for i, c := range cols {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(quoteIdent(c))
		}
		q.WriteString(") VALUES ")
		var args []any
		for i := start; i < end; i++ {
			ev := events[i]
			if i > start {
				q.WriteString(", ")
			}
			q.WriteByte('(')
			var payload any
			if ev.Payload != nil {
				payload = string(ev.Payload)
			}
			row := append([]any{ids[i], ev.AggregateType, ev.AggregateID, ev.Type, payload}, make([]any, len(extra))...)
			for j, c := range extra {
				row[5+j] = ev.Columns[c]
			}
			for j, v := range row {
				if j > 0 {
					q.WriteString(", ")
				}
				args = append(args, v)
				fmt.Fprintf(&q, "$%d", len(args))
			}
			q.WriteByte(')')
		}
		if err := exec(ctx, q.String(), args); err != nil {
			return fmt.Errorf("outbox: insert into %s: %w", table, err)
		}
		start = end
	}
	if t.KeepRows {
		return nil
	}
	var q strings.Builder
	args := make([]any, len(ids))
	fmt.Fprintf(&q, "DELETE FROM %s WHERE %s IN (", table, quoteIdent(t.col(t.ID, "id")))
	for i, id := range ids {
		if i > 0 {
			q.WriteString(", ")
		}
		args[i] = id
		fmt.Fprintf(&q, "$%d", i+1)
	}
	q.WriteByte(')')
	if err := exec(ctx, q.String(), args); err != nil {
		return fmt.Errorf("outbox: delete the events just written from %s: %w", table, err)
	}
	return nil
}

// CreateTableSQL is a CREATE TABLE statement for the outbox table with its five columns
// (id uuid, the payload jsonb).
func (t Table) CreateTableSQL() (string, error) {
	table, err := t.qualified()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("CREATE TABLE %s (%s uuid PRIMARY KEY, %s varchar(255) NOT NULL, %s varchar(255) NOT NULL, %s varchar(255) NOT NULL, %s jsonb)",
		table, quoteIdent(t.col(t.ID, "id")), quoteIdent(t.col(t.AggregateType, "aggregatetype")), quoteIdent(t.col(t.AggregateID, "aggregateid")),
		quoteIdent(t.col(t.Type, "type")), quoteIdent(t.col(t.Payload, "payload"))), nil
}

func (t Table) col(name, def string) string {
	if name == "" {
		return def
	}
	return name
}

// qualified is the table's quoted schema.table.
func (t Table) qualified() (string, error) {
	name := t.Name
	if name == "" {
		name = "public.outbox"
	}
	schema, table, ok := strings.Cut(name, ".")
	if !ok || schema == "" || table == "" || strings.Contains(table, ".") {
		return "", fmt.Errorf("outbox: table %q is not schema.table", name)
	}
	return quoteIdent(schema) + "." + quoteIdent(table), nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func columnNames(m map[string]any) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("outbox: event id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
