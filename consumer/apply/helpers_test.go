package apply_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/consumer/apply"
	"github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/test/testenv"
)

// toast is Debezium's unchanged-TOAST placeholder.
const toast = "__debezium_unavailable_value"

// target is a test's database, reached as the consumer reaches it (pg.Connect's settings).
type target struct {
	t    testing.TB
	db   *testenv.DB
	conn *pgx.Conn
}

func newTarget(t testing.TB, ddl string) *target {
	t.Helper()
	db := testenv.Get(t).Database(t)
	if ddl != "" {
		db.Exec(t, ddl)
	}
	ctx := testenv.Context(t, time.Minute)
	conn, err := pg.Connect(ctx, db.DSN, "apply-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &target{t: t, db: db, conn: conn}
}

func (tg *target) applier(e apply.Entity) *apply.Applier {
	tg.t.Helper()
	// The pool's sessions keep the server's search_path (public first), where format_type
	// leaves public's types unqualified; Apply's session searches only the catalog.
	a, err := apply.New(context.Background(), tg.db.Pool, e, nil)
	if err != nil {
		tg.t.Fatalf("New: %v", err)
	}
	return a
}

// apply applies events in a transaction of their own, committed unless Apply fails.
func (tg *target) apply(a *apply.Applier, events ...*event.Event) (apply.Stats, error) {
	ctx := context.Background()
	tx, err := tg.conn.Begin(ctx)
	if err != nil {
		tg.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	st, err := a.Apply(ctx, tx, events)
	if err != nil {
		return st, err
	}
	return st, tx.Commit(ctx)
}

func (tg *target) mustApply(a *apply.Applier, events ...*event.Event) apply.Stats {
	tg.t.Helper()
	st, err := tg.apply(a, events...)
	if err != nil {
		tg.t.Fatalf("Apply: %v", err)
	}
	return st
}

// rows returns the table's rows as record text, sorted.
func (tg *target) rows(table string) []string {
	tg.t.Helper()
	rows, err := tg.conn.Query(context.Background(), "SELECT t::text FROM "+table+" t")
	if err != nil {
		tg.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tg.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (tg *target) wantRows(table string, want ...string) {
	tg.t.Helper()
	slices.Sort(want)
	if got := tg.rows(table); !slices.Equal(got, want) {
		tg.t.Errorf("rows of %s:\ngot  %s\nwant %s", table, strings.Join(got, " "), strings.Join(want, " "))
	}
}

// row builds a schemaless row from name, value pairs (ints become JSON numbers, maps nested
// structs).
func row(pairs ...any) *event.Row {
	r := &event.Row{}
	for i := 0; i < len(pairs); i += 2 {
		r.Fields = append(r.Fields, event.Field{Name: pairs[i].(string), Value: event.Value{Raw: raw(pairs[i+1])}})
	}
	return r
}

func raw(x any) any {
	switch v := x.(type) {
	case int:
		return json.Number(strconv.Itoa(v))
	case map[string]any:
		m := map[string]any{}
		for k, x := range v {
			m[k] = raw(x)
		}
		return m
	}
	return x
}

// typed gives each field of r a schema (all strings: the stub's ColumnType makes text).
func typed(r *event.Row) *event.Row {
	for i := range r.Fields {
		r.Fields[i].Value.Schema = &envelope.Schema{Type: envelope.String, Optional: true}
	}
	return r
}

func create(after *event.Row) *event.Event { return &event.Event{Op: event.Create, After: after} }
func read(after *event.Row) *event.Event   { return &event.Event{Op: event.Read, After: after} }
func update(before, after *event.Row) *event.Event {
	return &event.Event{Op: event.Update, Before: before, After: after}
}
func del(before *event.Row) *event.Event { return &event.Event{Op: event.Delete, Before: before} }
func tombstone() *event.Event            { return &event.Event{Tombstone: true} }
func truncate() *event.Event             { return &event.Event{Op: event.Truncate} }

func wantStats(t testing.TB, got, want apply.Stats) {
	t.Helper()
	if got != want {
		t.Errorf("stats: got %+v, want %+v", got, want)
	}
}

func recordIndex(t testing.TB, err error) int {
	t.Helper()
	var re *apply.RecordError
	if !errors.As(err, &re) {
		t.Fatalf("got error %v, want a RecordError", err)
	}
	return re.Index
}
