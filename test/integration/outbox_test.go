package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/outbox"
	"github.com/procon-cdc/procon/test/testenv"
)

// outboxTables are an outbox table with Debezium's columns and a tenant, and a business table
// written in the same transactions.
const outboxTables = `
CREATE TABLE public.outbox (id uuid PRIMARY KEY, aggregatetype varchar(255), aggregateid varchar(255) NOT NULL,
  type varchar(255) NOT NULL, payload jsonb, tenant int);
CREATE TABLE public.orders (id int PRIMARY KEY, total numeric(10,2));`

// TestOutboxEvents writes outbox events through the Go helper, with pgx and with database/sql,
// beside a business change, and reads them back: the record of each committed event on its
// aggregate's topic, keyed by the aggregate id, its value the payload, the event id and type
// in headers; nothing of a rolled-back transaction, of an update, or of the deletes that keep
// the table empty; every row of the business table as usual. After a restart nothing is sent
// twice (the resume check reads the routed topics' tails too).
func TestOutboxEvents(t *testing.T) {
	// Each run routes to topics of its own (outbox.event.<type>.<slot>): the default
	// replacement would share outbox.event.Order between runs.
	name := testenv.Name(t, "p")
	s := newSetup(t, `
public.orders: {}
public.outbox: {outbox: {route.topic.replacement: "outbox.event.$${routedByValue}.`+name+`", table.fields.additional.placement: "type:header:eventType,tenant:header"}}`, "")
	env := s.env
	orderTopic, customerTopic := "outbox.event.Order."+name, "outbox.event.Customer."+name
	env.DeleteTopicsAtCleanup(t, orderTopic)
	env.DeleteTopicsAtCleanup(t, customerTopic)
	s.db.Exec(t, outboxTables)
	run := s.startEngine(t)
	ctx := testenv.Context(t, 2*time.Minute)

	// pgx: a business change and its event in one transaction.
	tx, err := s.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO public.orders VALUES (1, 12.50)"); err != nil {
		t.Fatal(err)
	}
	created := outbox.Event{ID: "10000000-0000-4000-8000-000000000001", AggregateType: "Order", AggregateID: "o-1", Type: "OrderCreated",
		Payload: []byte(`{"id": 1, "total": 12.5}`), Columns: map[string]any{"tenant": 7}}
	if err := (outbox.Table{}).Write(ctx, tx, created); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// database/sql (pgx's driver): two events of two aggregates in one transaction.
	db := stdlib.OpenDBFromPool(s.db.Pool)
	defer db.Close()
	stx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	paid := outbox.Event{ID: "10000000-0000-4000-8000-000000000002", AggregateType: "Order", AggregateID: "o-1", Type: "OrderPaid",
		Payload: []byte(`{"id": 1}`), Columns: map[string]any{"tenant": 7}}
	registered := outbox.Event{ID: "10000000-0000-4000-8000-000000000003", AggregateType: "Customer", AggregateID: "c-1", Type: "CustomerRegistered",
		Payload: []byte(`{"name": "Zoë"}`), Columns: map[string]any{"tenant": 8}}
	if err := (outbox.Table{}).WriteSQL(ctx, stx, paid, registered); err != nil {
		t.Fatal(err)
	}
	if err := stx.Commit(); err != nil {
		t.Fatal(err)
	}

	// Rolled back: no event.
	tx, err = s.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := (outbox.Table{}).Write(ctx, tx, outbox.Event{AggregateType: "Order", AggregateID: "o-9", Type: "Never", Columns: map[string]any{"tenant": 7}}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// A row kept, then updated (skipped with a warning) and deleted (nothing).
	kept := outbox.Event{ID: "10000000-0000-4000-8000-000000000004", AggregateType: "Order", AggregateID: "o-2", Type: "OrderCreated",
		Payload: []byte(`{"id": 2}`), Columns: map[string]any{"tenant": 7}}
	if err := (outbox.Table{KeepRows: true}).Write(ctx, s.db.Pool, kept); err != nil {
		t.Fatal(err)
	}
	s.db.Exec(t, "UPDATE public.outbox SET type = 'changed'")
	s.db.Exec(t, "DELETE FROM public.outbox")

	orders := env.ReadN(t, orderTopic, 3, time.Minute)
	customers := env.ReadN(t, customerTopic, 1, time.Minute)
	want := func(r *kgo.Record, ev outbox.Event, tenant string) {
		t.Helper()
		if got, w := string(r.Key), fmt.Sprintf("%q", ev.AggregateID); got != w {
			t.Errorf("%s key = %s, want %s", ev.ID, got, w)
		}
		// The payload column is jsonb: the value is its text, as a JSON string.
		var payload string
		if err := json.Unmarshal(r.Value, &payload); err != nil {
			t.Errorf("%s value %s: %v", ev.ID, r.Value, err)
		} else if !jsonEqual(t, payload, string(ev.Payload)) {
			t.Errorf("%s payload = %s, want %s", ev.ID, payload, ev.Payload)
		}
		headers := map[string]string{}
		var names []string
		for _, h := range r.Headers {
			if !strings.HasPrefix(h.Key, "procon.") {
				names = append(names, h.Key)
				headers[h.Key] = string(h.Value)
			}
		}
		if got := strings.Join(names, ","); got != "id,eventType,tenant" {
			t.Errorf("%s headers %s, want id,eventType,tenant", ev.ID, got)
		}
		if headers["id"] != ev.ID || headers["eventType"] != ev.Type || headers["tenant"] != tenant {
			t.Errorf("%s headers = %v, want id %s, eventType %s, tenant %s", ev.ID, headers, ev.ID, ev.Type, tenant)
		}
	}
	want(orders[0], created, "7")
	want(orders[1], paid, "7")
	want(orders[2], kept, "7")
	want(customers[0], registered, "8")
	if rs, _ := env.ReadUntil(orderTopic, 2*time.Second, func(r []*kgo.Record) bool { return len(r) > 3 }); len(rs) > 3 {
		t.Errorf("%d records on %s, want 3 (a rolled-back event, an update or a delete made one)", len(rs), orderTopic)
	}
	var left int
	if err := s.db.Pool.QueryRow(ctx, "SELECT count(*) FROM public.outbox").Scan(&left); err != nil || left != 0 {
		t.Errorf("the outbox table holds %d rows (%v); the helper deletes what it writes", left, err)
	}
	if got := env.ReadN(t, s.topic("orders"), 1, time.Minute); len(got) != 1 {
		t.Errorf("orders: %d records", len(got))
	}
	waitLog(t, run, `msg="outbox: change skipped" relation=public.outbox`)

	// A restart resends from the confirmed position at most; the routed topics' tails say
	// what Kafka has, so nothing is written twice.
	run.stop(t)
	tx, err = s.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shipped := outbox.Event{ID: "10000000-0000-4000-8000-000000000005", AggregateType: "Order", AggregateID: "o-1", Type: "OrderShipped",
		Payload: []byte(`{"id": 1}`), Columns: map[string]any{"tenant": 7}}
	if err := (outbox.Table{}).Write(ctx, tx, shipped); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s.startEngine(t)
	orders = env.ReadN(t, orderTopic, 4, time.Minute)
	want(orders[3], shipped, "7")
	if rs, _ := env.ReadUntil(orderTopic, 2*time.Second, func(r []*kgo.Record) bool { return len(r) > 4 }); len(rs) > 4 {
		t.Errorf("%d records on %s after the restart, want 4", len(rs), orderTopic)
	}
}

// waitLog waits until the engine has logged a line containing text.
func waitLog(t *testing.T, run *engineRun, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(run.logs(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the engine did not log %q; it logged:\n%s", text, run.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOutboxAvro routes an outbox table into Avro with its JSON payloads expanded: each
// routed topic's subjects get the derived schemas, the values decode (with an independent
// Avro reader) to the payload's structure beside the envelope's columns, the record
// timestamp is the row's. A payload the expansion gives up on is sent as it is, with a
// warning (where Debezium 3.6.1 stops its task), and a row without a route is skipped with a
// warning (table.op.invalid.behavior: warn).
func TestOutboxAvro(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	name := testenv.Name(t, "p")
	s := setupOn(t, env, db, `
public.outbox: {serialization: avro, outbox: {route.topic.replacement: "`+name+`.$${routedByValue}", table.expand.json.payload: true, table.fields.additional.placement: "type:envelope:eventType", table.field.event.timestamp: created}}`, "")
	reg := registryClient(t, env, name)
	db.Exec(t, `CREATE TABLE public.outbox (id uuid PRIMARY KEY, aggregatetype text, aggregateid text NOT NULL, type text NOT NULL,
  payload text, created timestamp(3) NOT NULL)`)
	run := s.startEngine(t)
	db.Exec(t, `INSERT INTO public.outbox VALUES
  ('20000000-0000-4000-8000-000000000001', 'Order', 'o-1', 'OrderCreated', '{"id": 1, "lines": [{"sku": "a", "qty": 2}], "total": 12.5, "paid": false}', '2026-12-07 10:00:00.250'),
  ('20000000-0000-4000-8000-000000000002', 'Order', 'o-1', 'OrderNoted', '[1, 2, 3]', '2026-12-07 10:00:01'),
  ('20000000-0000-4000-8000-000000000003', NULL, 'x-1', 'Lost', '{}', '2026-12-07 10:00:02'),
  ('20000000-0000-4000-8000-000000000004', 'Order', 'o-2', 'OrderHuge', '{"n": 123456789012345678901234567890}', '2026-12-07 10:00:03')`)
	topic := name + ".Order"
	recs := env.ReadN(t, topic, 3, time.Minute)
	r := newAvroReader(reg)
	type want struct {
		key     string
		payload any
		ts      string
	}
	wants := []want{
		{"o-1", map[string]any{"id": "1", "lines": []any{map[string]any{"qty": "2", "sku": "a"}}, "total": "25/2", "paid": false}, "2026-12-07T10:00:00.25Z"},
		{"o-1", "[1, 2, 3]", "2026-12-07T10:00:01Z"},
		{"o-2", `{"n": 123456789012345678901234567890}`, "2026-12-07T10:00:03Z"},
	}
	for i, w := range wants {
		key, _ := r.decode(t, recs[i].Key)
		v, _ := r.decode(t, recs[i].Value)
		m, _ := v.(map[string]any)
		if key != w.key || !jsonEqual(t, mustJSON(t, m["payload"]), mustJSON(t, w.payload)) {
			t.Errorf("record %d: key %v, payload %s; want %s, %s", i, key, mustJSON(t, m["payload"]), w.key, mustJSON(t, w.payload))
		}
		if got := recs[i].Timestamp.UTC().Format(time.RFC3339Nano); got != w.ts {
			t.Errorf("record %d: timestamp %s, want the row's created %s", i, got, w.ts)
		}
	}
	if m, _ := func() (any, int) { return r.decode(t, recs[0].Value) }(); m.(map[string]any)["eventType"] != "OrderCreated" {
		t.Errorf("record 0: envelope %v has no eventType OrderCreated", m)
	}
	waitLog(t, run, `msg="outbox: JSON expansion failed; the payload is sent as it is"`)
	waitLog(t, run, `msg="outbox: change skipped" relation=public.outbox`)
	subjects, err := reg.Subjects(testenv.Context(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, sub := range subjects {
		if strings.HasPrefix(sub, topic) {
			ours = append(ours, sub)
		}
	}
	if strings.Join(ours, ",") != topic+"-key,"+topic+"-value" {
		t.Errorf("subjects of %s: %v, want its -key and -value", topic, ours)
	}
}

// TestOutboxFatalRow: under table.op.invalid.behavior: fatal, an outbox row that cannot be
// routed stops the engine with an error naming the table and the change, and the slot stays
// before its transaction: started again with warn, the engine receives the row again (and
// skips it).
func TestOutboxFatalRow(t *testing.T) {
	s := newSetup(t, `public.outbox: {outbox: {table.op.invalid.behavior: fatal}}`, "")
	s.db.Exec(t, outboxTables)
	run := s.startEngine(t)
	s.db.Exec(t, `INSERT INTO public.outbox (id, aggregatetype, aggregateid, type, payload) VALUES ('30000000-0000-4000-8000-000000000001', NULL, 'x', 'Lost', '{}')`)
	err := run.wait(t, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "outbox table public.outbox: the change at LSN") || !strings.Contains(err.Error(), "aggregatetype (route.by.field) is null") {
		t.Fatalf("engine.Run = %v, want the outbox row's error", err)
	}
	s.config = strings.Replace(s.config, "table.op.invalid.behavior: fatal", "table.op.invalid.behavior: warn", 1)
	waitLog(t, s.startEngine(t), `msg="outbox: change skipped" relation=public.outbox`)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
