package apply_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/jackc/pgx/v5/pgconn"
	"strings"
	"sync"
	"testing"

	"github.com/procon-cdc/procon/consumer/apply"
	"github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/pg"
)

const ordersDDL = `
CREATE TYPE public.mood AS ENUM ('calm', 'angry');
CREATE TABLE public.orders (
	tenant text, id integer, name character varying(8), amount numeric(10,2), mood public.mood,
	note text DEFAULT 'none', PRIMARY KEY (tenant, id))`

var ordersEntity = apply.Entity{
	Topic:     "demo.public.orders",
	Table:     "public.orders",
	MasterKey: []apply.KeyColumn{{Column: "tenant", Field: "tenant_id"}, {Column: "id", Field: "id"}},
	Mapping:   apply.Mapping{Fields: map[string]string{"tenant_id": "tenant"}},
}

// TestApplyCompositeKey: creates, updates and deletes of a composite master key, in mixed
// batches, leave exactly the rows applying them one by one would (per-key order kept), count
// what happened, and leave columns no field writes alone.
func TestApplyCompositeKey(t *testing.T) {
	tg := newTarget(t, ordersDDL)
	a := tg.applier(ordersEntity)
	o := func(tenant string, id int, name string, amount any) *event.Row {
		return row("tenant_id", tenant, "id", id, "name", name, "amount", amount, "mood", "calm")
	}
	st := tg.mustApply(a,
		create(o("a", 1, "one", json.Number("1.50"))),
		create(o("a", 2, "two", json.Number("2"))),
		create(o("b", 1, "b-one", nil)),
		update(o("a", 1, "one", json.Number("1.50")), o("a", 1, "uno", json.Number("1.5"))),
		del(row("tenant_id", "a", "id", 2)),
		create(o("a", 2, "two-2", json.Number("22"))),
		update(nil, o("a", 2, "two-3", json.Number("23"))),
		tombstone(),
		read(o("c", 9, "snap", json.Number("9.999"))),
	)
	wantStats(t, st, apply.Stats{Upserted: 7, Deleted: 1, Ignored: 1})
	tg.wantRows("public.orders",
		`(a,1,uno,1.50,calm,none)`,
		`(a,2,two-3,23.00,calm,none)`,
		`(b,1,b-one,,calm,none)`,
		`(c,9,snap,10.00,calm,none)`,
	)
	// A second batch: deletes of present and missing rows, an update of a row whose
	// note a user set.
	tg.db.Exec(t, `UPDATE public.orders SET note = 'kept' WHERE tenant = 'b'`)
	st = tg.mustApply(a,
		del(row("tenant_id", "a", "id", 1)),
		del(row("tenant_id", "zz", "id", 1)),
		del(row("tenant_id", "a", "id", 1)),
		update(o("b", 1, "b-one", nil), o("b", 1, "b-uno", json.Number("7"))),
	)
	wantStats(t, st, apply.Stats{Upserted: 1, Deleted: 1, MissingDeletes: 2})
	tg.wantRows("public.orders",
		`(a,2,two-3,23.00,calm,none)`,
		`(b,1,b-uno,7.00,calm,kept)`,
		`(c,9,snap,10.00,calm,none)`,
	)
}

// TestApplyMapping: keys_mapping renames fields (the field's own column stays untouched),
// reads nested paths (and wins over a field of the target column's name), merges per-operation mappings over the common one, and drops fields
// always, on create only or on update only; fields with no column are ignored.
func TestApplyMapping(t *testing.T) {
	tg := newTarget(t, `CREATE TABLE public.accounts (id integer PRIMARY KEY, email text,
		contact_email text, plan text, created_from text, updated_from text, secret text,
		created_at text, name text)`)
	a := tg.applier(apply.Entity{
		Topic:     "demo.public.accounts",
		Table:     "accounts",
		MasterKey: []apply.KeyColumn{{Column: "id", Field: "id"}},
		Mapping: apply.Mapping{
			Fields:       map[string]string{"email": "contact_email", "meta.plan": "plan"},
			OnCreate:     map[string]string{"src": "created_from"},
			OnUpdate:     map[string]string{"src": "updated_from"},
			Drop:         []string{"secret"},
			DropOnCreate: []string{"name"},
			DropOnUpdate: []string{"created_at"},
		},
	})
	acc := func(email, plan, src, secret, createdAt, name string) *event.Row {
		return row("id", 1, "email", email, "meta", map[string]any{"plan": plan, "seats": 3}, "src", src,
			"secret", secret, "created_at", createdAt, "name", name, "unknown", "x",
			"contact_email", "stale") // the mapped field wins over the column's own
	}
	tg.mustApply(a, create(acc("x@a", "pro", "web", "s1", "t1", "n1")))
	tg.wantRows("public.accounts", `(1,,x@a,pro,web,,,t1,)`)
	tg.mustApply(a, update(nil, acc("y@a", "max", "app", "s2", "t2", "n2")))
	tg.wantRows("public.accounts", `(1,,y@a,max,web,app,,t1,n2)`)
}

// TestApplyUnchangedToast: the unchanged-TOAST placeholder never overwrites a value: it takes
// the value of an earlier event of the key in the batch, else the column is left out of that
// row's statement (the stored value stays); after a delete in the batch there is nothing to
// take, and the column gets its default, as applying the events one by one would give.
func TestApplyUnchangedToast(t *testing.T) {
	tg := newTarget(t, `CREATE TABLE public.docs (id integer PRIMARY KEY, body text, title text, n integer)`)
	a := tg.applier(apply.Entity{Topic: "docs", Table: "public.docs", MasterKey: []apply.KeyColumn{{Column: "id", Field: "id"}}})
	doc := func(id int, body any, title string, n int) *event.Row {
		return row("id", id, "body", body, "title", title, "n", n)
	}
	tg.mustApply(a,
		create(doc(1, "B1", "T1", 1)),
		update(nil, doc(1, toast, "T1b", 2)), // from the create just before
		create(doc(2, "B2", "T2", 1)),
		create(doc(3, "B3", "T3", 1)),
		create(doc(4, "B4", "T4", 1)),
	)
	tg.wantRows("public.docs", `(1,B1,T1b,2)`, `(2,B2,T2,1)`, `(3,B3,T3,1)`, `(4,B4,T4,1)`)
	tg.mustApply(a,
		update(nil, doc(1, toast, "T1c", 3)), // alone: stored value kept
		update(nil, doc(2, toast, "T2b", 2)), // first of three
		update(nil, doc(2, "B2'", "T2c", 3)),
		update(nil, doc(2, toast, "T2d", 4)), // last: from the one before
		del(row("id", 3)),
		create(doc(3, toast, "T3b", 2)), // after a delete: nothing to take
		update(nil, doc(4, "B4'", "T4b", 2)),
		update(nil, doc(4, toast, "T4c", 3)), // middle of three
		update(nil, doc(4, toast, "T4d", 4)),
	)
	tg.wantRows("public.docs", `(1,B1,T1c,3)`, `(2,B2',T2d,4)`, `(3,,T3b,2)`, `(4,B4',T4d,4)`)
}

// TestApplyKeyChange: an update whose master key changed deletes the old row and upserts the
// new one; an update without before is keyed by after.
func TestApplyKeyChange(t *testing.T) {
	tg := newTarget(t, ordersDDL)
	a := tg.applier(ordersEntity)
	o := func(tenant string, id int, name string) *event.Row {
		return row("tenant_id", tenant, "id", id, "name", name)
	}
	tg.mustApply(a, create(o("a", 1, "one")), create(o("a", 2, "two")))
	st := tg.mustApply(a,
		update(o("a", 1, "one"), o("a", 5, "five")),
		update(row("tenant_id", "a", "id", 9), o("a", 6, "six")), // old key missing
		update(nil, o("a", 2, "deux")),
	)
	wantStats(t, st, apply.Stats{Upserted: 3, Deleted: 1, MissingDeletes: 1})
	tg.wantRows("public.orders", `(a,2,deux,,,none)`, `(a,5,five,,,none)`, `(a,6,six,,,none)`)
	// Moving a key and back within a batch.
	tg.mustApply(a, update(o("a", 5, "five"), o("a", 7, "seven")), update(o("a", 7, "seven"), o("a", 5, "cinq")))
	tg.wantRows("public.orders", `(a,2,deux,,,none)`, `(a,5,cinq,,,none)`, `(a,6,six,,,none)`)
}

// TestApplySoftDelete: with soft_delete a delete marks the row (true for a boolean column,
// the transaction's time for a timestamp), an upsert unmarks it, and a delete of a missing
// row is counted; other column types are refused.
func TestApplySoftDelete(t *testing.T) {
	tg := newTarget(t, `CREATE TABLE public.users (id integer PRIMARY KEY, name text, deleted boolean NOT NULL DEFAULT false);
		CREATE TABLE public.events (id integer PRIMARY KEY, name text, deleted_at timestamptz);
		CREATE TABLE public.bad (id integer PRIMARY KEY, gone text)`)
	e := apply.Entity{Topic: "users", Table: "public.users", MasterKey: []apply.KeyColumn{{Column: "id", Field: "id"}}, SoftDelete: "deleted"}
	a := tg.applier(e)
	u := func(id int, name string) *event.Row { return row("id", id, "name", name) }
	st := tg.mustApply(a, create(u(1, "a")), create(u(2, "b")), del(u(1, "")), del(u(3, "")), create(u(4, "d")), del(u(4, "")))
	wantStats(t, st, apply.Stats{Upserted: 3, SoftDeleted: 2, MissingDeletes: 1})
	tg.wantRows("public.users", `(1,a,t)`, `(2,b,f)`, `(4,d,t)`)
	st = tg.mustApply(a, create(u(1, "a2")), del(u(2, "")), del(u(2, "")))
	wantStats(t, st, apply.Stats{Upserted: 1, SoftDeleted: 2})
	tg.wantRows("public.users", `(1,a2,f)`, `(2,b,t)`, `(4,d,t)`)

	e.Table, e.SoftDelete = "public.events", "deleted_at"
	a = tg.applier(e)
	tg.mustApply(a, create(u(1, "a")), create(u(2, "b")), del(u(1, "")))
	tg.mustApply(a, del(u(2, "")))
	tg.wantRows("(SELECT id, name, deleted_at IS NOT NULL AS deleted, deleted_at > now() - interval '1 minute' AS recent FROM public.events)",
		`(1,a,t,t)`, `(2,b,t,t)`)

	e.Table, e.SoftDelete = "public.bad", "gone"
	if _, err := apply.New(t.Context(), tg.conn, e, nil); err == nil || !strings.Contains(err.Error(), `soft_delete column "gone" of public.bad is text`) {
		t.Errorf("New with a text soft delete column: got %v, want it refused", err)
	}
}

// TestApplyTruncate: on_truncate delete empties the table at its place in the batch;
// ignore (the default) leaves it and counts the event as ignored.
func TestApplyTruncate(t *testing.T) {
	tg := newTarget(t, `CREATE TABLE public.t (id integer PRIMARY KEY, v text)`)
	e := apply.Entity{Topic: "t", Table: "t", MasterKey: []apply.KeyColumn{{Column: "id", Field: "id"}}, OnTruncate: apply.TruncateDelete}
	a := tg.applier(e)
	st := tg.mustApply(a, create(row("id", 1, "v", "a")), create(row("id", 2, "v", "b")), truncate(), create(row("id", 2, "v", "c")), update(nil, row("id", 3, "v", "d")))
	wantStats(t, st, apply.Stats{Upserted: 4, Truncated: 1})
	tg.wantRows("public.t", `(2,c)`, `(3,d)`)

	e.OnTruncate = ""
	a = tg.applier(e)
	st = tg.mustApply(a, create(row("id", 4, "v", "e")), truncate())
	wantStats(t, st, apply.Stats{Upserted: 1, Ignored: 1})
	tg.wantRows("public.t", `(2,c)`, `(3,d)`, `(4,e)`)

	// With soft_delete, a truncate marks every row.
	tg.db.Exec(t, `ALTER TABLE public.t ADD COLUMN gone boolean NOT NULL DEFAULT false`)
	e.OnTruncate, e.SoftDelete = apply.TruncateDelete, "gone"
	a = tg.applier(e)
	st = tg.mustApply(a, create(row("id", 5, "v", "f")), truncate(), create(row("id", 2, "v", "c2")))
	wantStats(t, st, apply.Stats{Upserted: 2, Truncated: 1})
	tg.wantRows("public.t", `(2,c2,f)`, `(3,d,t)`, `(4,e,t)`, `(5,f,t)`)
}

// TestApplyCreateTableAddColumns: a missing table is created from the first event's schema
// (primary key = master key), and a field with no column adds one; without add_columns the
// field is ignored.
func TestApplyCreateTableAddColumns(t *testing.T) {
	tg := newTarget(t, `CREATE SCHEMA app`)
	e := apply.Entity{Topic: "items", Table: "app.items", MasterKey: []apply.KeyColumn{{Column: "id", Field: "id"}}, CreateTable: true, AddColumns: true}
	if _, err := apply.New(t.Context(), tg.conn, apply.Entity{Topic: "items", Table: "app.items", MasterKey: e.MasterKey}, nil); err == nil ||
		!strings.Contains(err.Error(), "table app.items does not exist") {
		t.Errorf("New on a missing table without create_table: got %v, want an error naming it", err)
	}
	a := tg.applier(e)
	tg.mustApply(a, tombstone()) // nothing to create it from yet
	tg.mustApply(a, create(typed(row("id", "1", "name", "x"))), create(typed(row("id", "2", "name", "y"))))
	tg.wantRows("app.items", `(1,x)`, `(2,y)`)
	tg.mustApply(a, update(nil, typed(row("id", "1", "name", "x2", "color", "red"))), create(typed(row("id", "3", "color", "blue"))))
	tg.wantRows("app.items", `(1,x2,red)`, `(2,y,)`, `(3,,blue)`)
	var pk string
	if err := tg.conn.QueryRow(t.Context(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'app.items'::regclass AND contype = 'p'`).Scan(&pk); err != nil || pk != "PRIMARY KEY (id)" {
		t.Errorf("primary key of the created table: got %q (%v), want PRIMARY KEY (id)", pk, err)
	}

	e.AddColumns = false
	a = tg.applier(e)
	tg.mustApply(a, create(typed(row("id", "4", "name", "z", "size", "XL"))))
	tg.wantRows("app.items", `(1,x2,red)`, `(2,y,)`, `(3,,blue)`, `(4,z,)`)
}

// TestApplyRecordError: a record that can never apply is reported with its index, the
// batch's effects rolled back and the transaction still usable, so the rest applies in it.
func TestApplyRecordError(t *testing.T) {
	tg := newTarget(t, ordersDDL)
	a := tg.applier(ordersEntity)
	o := func(id int, name string, amount any) *event.Row {
		return row("tenant_id", "a", "id", id, "name", name, "amount", amount)
	}
	ctx := t.Context()
	tx, err := tg.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	batch := []*event.Event{create(o(1, "one", 1)), del(row("tenant_id", "a", "id", 7)), create(o(3, "far too long", 3)), create(o(4, "four", 4))}
	_, err = a.Apply(ctx, tx, batch)
	if got := recordIndex(t, err); got != 2 {
		t.Fatalf("RecordError index: got %d, want 2 (%v)", got, err)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22001" {
		t.Errorf("RecordError cause: got %v, want the server's string_data_right_truncation", err)
	}
	st, err := a.Apply(ctx, tx, append(batch[:2:2], batch[3]))
	if err != nil {
		t.Fatalf("Apply of the rest in the same transaction: %v", err)
	}
	wantStats(t, st, apply.Stats{Upserted: 2, MissingDeletes: 1})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tg.wantRows("public.orders", `(a,1,one,1.00,,none)`, `(a,4,four,4.00,,none)`)

	// The bad value came from an earlier event of the key than the one written.
	_, err = tg.apply(a, create(o(5, "ok", 5)), create(o(6, "far too long", 6)), update(nil, row("tenant_id", "a", "id", 6, "amount", 7)), create(o(8, "ok", 8)))
	if got := recordIndex(t, err); got != 1 {
		t.Errorf("RecordError index of a merged row: got %d, want 1 (%v)", got, err)
	}
	// A bad master key value, and a missing one.
	_, err = tg.apply(a, create(o(5, "ok", 5)), del(row("tenant_id", "a", "id", "x")))
	if got := recordIndex(t, err); got != 1 {
		t.Errorf("RecordError index of a bad key: got %d, want 1 (%v)", got, err)
	}
	_, err = tg.apply(a, create(o(5, "ok", 5)), create(o(6, "ok", 6)), create(row("tenant_id", "a", "name", "nokey")))
	if got := recordIndex(t, err); got != 2 {
		t.Errorf("RecordError index of a missing key: got %d, want 2 (%v)", got, err)
	}
	tg.wantRows("public.orders", `(a,1,one,1.00,,none)`, `(a,4,four,4.00,,none)`)
}

// TestApplyConstraintViolation: a constraint violation is the server's error, not a
// RecordError (the caller decides: its records are fine, the target refuses them).
func TestApplyConstraintViolation(t *testing.T) {
	tg := newTarget(t, ordersDDL+`; ALTER TABLE public.orders ADD CHECK (amount >= 0)`)
	a := tg.applier(ordersEntity)
	_, err := tg.apply(a, create(row("tenant_id", "a", "id", 1, "amount", 1)), create(row("tenant_id", "a", "id", 2, "amount", -1)))
	var pgErr *pgconn.PgError
	var re *apply.RecordError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" || errors.As(err, &re) {
		t.Fatalf("got %v, want a check_violation PgError that is no RecordError", err)
	}
	tg.wantRows("public.orders")
}

// TestNewChecksTable: New refuses a master key without a unique index that ON CONFLICT can
// infer (not partial, exactly its columns, in any order), naming the table, the
// columns and the DDL that fixes it, and a mapping to a missing column.
func TestNewChecksTable(t *testing.T) {
	tg := newTarget(t, `CREATE TABLE public.nokey (a integer, b text, c text);
		CREATE UNIQUE INDEX ON public.nokey (a, b) WHERE c IS NULL;
		CREATE UNIQUE INDEX ON public.nokey (a, b, c)`)
	e := apply.Entity{Topic: "x", Table: "nokey", MasterKey: []apply.KeyColumn{{Column: "a", Field: "a"}, {Column: "b", Field: "b"}}}
	_, err := apply.New(t.Context(), tg.conn, e, nil)
	want := `nokey has no primary key or unique index on exactly the master key (a, b), which upserts need: ALTER TABLE "public"."nokey" ADD PRIMARY KEY ("a", "b")`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error containing %q", err, want)
	}
	tg.db.Exec(t, `CREATE UNIQUE INDEX ON public.nokey (b, a)`)
	if _, err := apply.New(t.Context(), tg.conn, e, nil); err != nil {
		t.Errorf("with a unique index: %v", err)
	}
	e.Mapping.Fields = map[string]string{"x": "nope"}
	if _, err := apply.New(t.Context(), tg.conn, e, nil); err == nil || !strings.Contains(err.Error(), `writes column "nope", which nokey does not have`) {
		t.Errorf("mapping to a missing column: got %v", err)
	}
}

// TestApplyConcurrent: one Applier serves several partitions at once, each in its own
// transaction.
func TestApplyConcurrent(t *testing.T) {
	tg := newTarget(t, `CREATE TABLE public.c (id integer PRIMARY KEY, part integer, n integer)`)
	a := tg.applier(apply.Entity{Topic: "c", Table: "public.c", MasterKey: []apply.KeyColumn{{Column: "id", Field: "id"}}})
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for part := range 2 {
		conn, err := pg.Connect(t.Context(), tg.db.DSN, "apply-test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		wg.Go(func() {
			for n := range 20 {
				var batch []*event.Event
				for id := part; id < 200; id += 2 {
					batch = append(batch, update(nil, row("id", id, "part", part, "n", n)))
				}
				tx, err := conn.Begin(t.Context())
				if err == nil {
					_, err = a.Apply(t.Context(), tx, batch)
				}
				if err == nil {
					err = tx.Commit(t.Context())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var rows, wrong int
	if err := tg.conn.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE part <> id % 2 OR n <> 19) FROM public.c`).Scan(&rows, &wrong); err != nil || rows != 200 || wrong != 0 {
		t.Errorf("got %d rows, %d wrong (%v), want 200 rows of the last batch", rows, wrong, err)
	}
}

// TestApplyKeySources: the master key is read from nested fields, and from the record key
// when the row images lack it (a delete without before, an update whose before has nulls).
func TestApplyKeySources(t *testing.T) {
	tg := newTarget(t, `CREATE TABLE public.k (id integer PRIMARY KEY, v text)`)
	a := tg.applier(apply.Entity{Topic: "k", Table: "k", MasterKey: []apply.KeyColumn{{Column: "id", Field: "ref.id"}}})
	ref := func(id int) map[string]any { return map[string]any{"id": id} }
	tg.mustApply(a, create(row("ref", ref(1), "v", "a")), create(row("ref", ref(2), "v", "b")), create(row("ref", ref(3), "v", "c")))
	tg.wantRows("public.k", `(1,a)`, `(2,b)`, `(3,c)`)
	st := tg.mustApply(a,
		&event.Event{Op: event.Delete, Key: row("ref", ref(1))},
		&event.Event{Op: event.Delete, Before: row("ref", map[string]any{"id": nil}), Key: row("ref", ref(2))},
		update(row("ref", nil), row("ref", ref(3), "v", "c2")),
	)
	wantStats(t, st, apply.Stats{Upserted: 1, Deleted: 2})
	tg.wantRows("public.k", `(3,c2)`)
}
