package snapshot

import (
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/replication"
)

func TestDecide(t *testing.T) {
	none := replication.SlotInfo{}
	valid := replication.SlotInfo{Exists: true}
	lost := replication.SlotInfo{Exists: true, Lost: true}
	done := &Snapshot{Kind: KindInitial, Status: StatusDone}
	running := &Snapshot{Kind: KindInitial, Status: StatusRunning}
	pending := &Snapshot{Kind: KindInitial, Status: StatusPending}
	type want struct {
		drop, export, resume, full, stop bool
	}
	for _, tc := range []struct {
		mode    string
		slot    replication.SlotInfo
		initial *Snapshot
		want    want
	}{
		// A new slot: every mode but never/no_data snapshots from its exported snapshot.
		{ModeInitial, none, nil, want{export: true}},
		{ModeInitialOnly, none, nil, want{export: true, stop: true}},
		{ModeWhenNeeded, none, nil, want{export: true}},
		{ModeAlways, none, nil, want{export: true}},
		{ModeNever, none, nil, want{}},
		{ModeNoData, none, nil, want{}},
		// The slot of a recorded snapshot was dropped: snapshot again.
		{ModeInitial, none, done, want{export: true}},
		// A restart after the snapshot: stream (always snapshots in the stream).
		{ModeInitial, valid, done, want{}},
		{ModeInitialOnly, valid, done, want{stop: true}},
		{ModeWhenNeeded, valid, done, want{}},
		{ModeAlways, valid, done, want{full: true}},
		{ModeNoData, valid, done, want{}},
		// An existing slot without a recorded snapshot (made by never, or by hand).
		{ModeInitial, valid, nil, want{}},
		{ModeAlways, valid, nil, want{full: true}},
		// A crash during the snapshot: resume it; before it started: recreate the slot.
		{ModeInitial, valid, running, want{resume: true}},
		{ModeInitialOnly, valid, running, want{resume: true, stop: true}},
		{ModeWhenNeeded, valid, running, want{resume: true}},
		{ModeAlways, valid, running, want{full: true}},
		{ModeNever, valid, running, want{}},
		{ModeInitial, valid, pending, want{drop: true, export: true}},
		{ModeAlways, valid, pending, want{drop: true, export: true}},
		// A slot whose WAL is gone.
		{ModeWhenNeeded, lost, done, want{drop: true, export: true}},
		{ModeAlways, lost, done, want{drop: true, export: true}},
		{ModeInitial, lost, done, want{}}, // streaming fails with the server's error
	} {
		d := Decide(tc.mode, tc.slot, tc.initial)
		got := want{d.DropSlot, d.Export, d.Resume != nil, d.Full, d.StopAfter}
		if got != tc.want {
			t.Errorf("Decide(%s, %+v, %+v) = %+v, want %+v (%s)", tc.mode, tc.slot, tc.initial, got, tc.want, d.Reason)
		}
		if d.Reason == "" {
			t.Errorf("Decide(%s, ...) gives no reason", tc.mode)
		}
	}
}

func TestMarker(t *testing.T) {
	for _, tc := range []struct {
		firstSnap, lastSnap, firstTable, lastTable bool
		want                                       string
	}{
		{false, false, false, false, MarkerTrue},
		{true, false, true, false, MarkerFirst},
		{false, false, true, false, MarkerFirstInTable},
		{false, false, false, true, MarkerLastInTable},
		{false, true, false, true, MarkerLast},
		{false, false, true, true, MarkerLastInTable}, // a one-row table: last wins, as in Debezium
		{true, true, true, true, MarkerLast},          // a one-row snapshot
		{true, false, true, true, MarkerFirst},        // a one-row first table
	} {
		if got := marker(tc.firstSnap, tc.lastSnap, tc.firstTable, tc.lastTable); got != tc.want {
			t.Errorf("marker(%v, %v, %v, %v) = %s, want %s", tc.firstSnap, tc.lastSnap, tc.firstTable, tc.lastTable, got, tc.want)
		}
	}
}

func text(s ...string) []replication.Datum {
	out := make([]replication.Datum, len(s))
	for i, v := range s {
		if v == "<null>" {
			out[i] = replication.Datum{Kind: replication.DatumNull}
			continue
		}
		out[i] = replication.Datum{Kind: replication.DatumText, Data: []byte(v)}
	}
	return out
}

func bufRow(key ...string) BufferedRow {
	d := text(key...)
	id, _ := keyID(nil, d, []int{0})
	return BufferedRow{Datums: d, key: string(id)}
}

// TestWindow pins the DBLog rule: rows whose key changed between the watermarks are dropped
// (the streamed change is newer), the rest are emitted, and a read that could not see a
// transaction streamed before the low watermark is read again.
func TestWindow(t *testing.T) {
	newWin := func() *window {
		w := &window{opened: true, openCommit: 100, ready: true, changed: map[string]struct{}{}}
		w.rows = []BufferedRow{bufRow("1"), bufRow("2"), bufRow("3")}
		return w
	}
	idx := []int{0}
	change := func(op replication.Op, newTup, oldTup []replication.Datum) *replication.Change {
		return &replication.Change{Op: op, New: newTup, Old: oldTup}
	}
	emitted := func(rows []BufferedRow) []string {
		var out []string
		for _, r := range rows {
			out = append(out, string(r.Datums[0].Data))
		}
		return out
	}

	w := newWin()
	w.evict(change(replication.OpUpdate, text("2", "x"), nil), idx, nil)
	w.evict(change(replication.OpDelete, nil, text("3", "<null>")), idx, nil)
	w.evict(change(replication.OpInsert, text("9", "y"), nil), idx, nil)
	rows, res := w.close(200, nil, false)
	if res.invalid != "" || !reflect.DeepEqual(emitted(rows), []string{"1"}) {
		t.Fatalf("after an update of 2 and a delete of 3: emitted %v (%q), want [1]", emitted(rows), res.invalid)
	}
	if res.commit != 200 || res.emitted != 1 {
		t.Fatalf("result %+v", res)
	}

	// A key change evicts the old key too.
	w = newWin()
	w.evict(change(replication.OpUpdate, text("7", "x"), text("1", "<null>")), idx, nil)
	if rows, _ := w.close(200, nil, false); !reflect.DeepEqual(emitted(rows), []string{"2", "3"}) {
		t.Fatalf("after 1 became 7: emitted %v, want [2 3]", emitted(rows))
	}

	// A delete without its key cannot be matched: read the chunk again.
	w = newWin()
	w.evict(change(replication.OpDelete, nil, text("<null>", "<null>")), idx, nil)
	if _, res := w.close(200, nil, false); res.invalid == "" {
		t.Fatal("a delete without a key was accepted")
	}
	// So is a relation without the key column.
	w = newWin()
	w.evict(change(replication.OpInsert, text("1"), nil), nil, nil)
	if _, res := w.close(200, nil, false); res.invalid == "" {
		t.Fatal("a change of a relation without the key column was accepted")
	}

	// A truncate between the watermarks: nothing of the chunk exists any more.
	w = newWin()
	w.truncated = true
	if rows, res := w.close(200, nil, false); len(rows) != 0 || res.invalid != "" {
		t.Fatalf("after a truncate: %v, %q", emitted(rows), res.invalid)
	}

	// Visibility: transaction 42 committed before the low watermark (commit LSN 90 < 100)
	// but the read saw it in progress.
	w = newWin()
	w.xip = []uint32{42, 43}
	txs := map[uint32]pglogrepl.LSN{42: 90, 43: 150}
	if _, res := w.close(200, txs, false); res.invalid == "" {
		t.Fatal("a read that missed a transaction committed before the low watermark was accepted")
	}
	// Committed after the low watermark: its changes evict, the read stands.
	w = newWin()
	w.xip = []uint32{43}
	if rows, res := w.close(200, txs, false); res.invalid != "" || len(rows) != 3 {
		t.Fatalf("%q, %d rows", res.invalid, len(rows))
	}
	// Forgotten transactions (too many): unknown in-progress ids make the read fail safe.
	w = newWin()
	w.xip = []uint32{77}
	if _, res := w.close(200, txs, true); res.invalid == "" {
		t.Fatal("an unknown in-progress transaction was accepted after an overflow")
	}
	// The low watermark never seen (a window of an earlier run) is never emitted.
	w = newWin()
	w.opened = false
	if _, res := w.close(200, nil, false); res.invalid == "" {
		t.Fatal("a window without its low watermark was accepted")
	}
}

func TestParseSnapshot(t *testing.T) {
	xmin, xip, ok := parseSnapshot("4294967301:4294967310:4294967303,4294967305")
	if !ok || xmin != 5 || !reflect.DeepEqual(xip, []uint32{7, 9}) {
		t.Fatalf("got %d %v %v: want 32-bit ids 5 [7 9]", xmin, xip, ok)
	}
	if _, xip, ok := parseSnapshot("10:10:"); !ok || xip != nil {
		t.Fatalf("empty list: %v %v", xip, ok)
	}
	if _, _, ok := parseSnapshot("garbage"); ok {
		t.Fatal("garbage parsed")
	}
	if !xidBefore(4294967295, 3) || xidBefore(3, 4294967295) {
		t.Fatal("xidBefore must wrap around")
	}
}

func TestWatermark(t *testing.T) {
	kind, id, ok := parseWatermark([]byte(watermarkText("close", "01ABC/7")))
	if !ok || kind != "close" || id != "01ABC/7" {
		t.Fatalf("got %q %q %v", kind, id, ok)
	}
	if _, _, ok := parseWatermark([]byte("other 1")); ok {
		t.Fatal("unknown kind parsed")
	}
}

func TestSelectSQL(t *testing.T) {
	i8 := &replication.Type{Name: "int8", Schema: "pg_catalog"}
	tx := &replication.Type{Name: "text", Schema: "pg_catalog"}
	rel := &replication.Relation{Schema: "public", Table: "Orders", Columns: []replication.Column{
		{Name: "tenant", Type: tx}, {Name: "id", Type: i8}, {Name: "note", Type: tx}}}
	tb := newTable("public.Orders", rel, []int{0, 1})
	sql, params := tb.selectSQL(filterView, []string{"a", "1"}, []string{"b", "9"}, 101)
	want := `SELECT "tenant", "id", "note" FROM pg_temp.procon_snapshot_filter WHERE ("tenant", "id") OPERATOR("pg_catalog".>) ($1::"pg_catalog"."text", $2::"pg_catalog"."int8")` +
		` AND ("tenant", "id") OPERATOR("pg_catalog".<=) ($3::"pg_catalog"."text", $4::"pg_catalog"."int8") ORDER BY "tenant", "id" LIMIT 101`
	if sql != want {
		t.Fatalf("got\n%s\nwant\n%s", sql, want)
	}
	if len(params) != 4 || string(params[2]) != "b" {
		t.Fatalf("params %q", params)
	}
	one := newTable("public.Orders", rel, []int{1})
	if sql, _ := one.selectSQL(one.from, nil, []string{"5"}, 0); sql != `SELECT "tenant", "id", "note" FROM "public"."Orders" WHERE "id" OPERATOR("pg_catalog".<=) $1::"pg_catalog"."int8" ORDER BY "id"` {
		t.Fatalf("got %s", sql)
	}
	keyless := newTable("public.Orders", rel, nil)
	if sql, _ := keyless.selectSQL(keyless.from, nil, nil, 0); sql != `SELECT "tenant", "id", "note" FROM "public"."Orders"` {
		t.Fatalf("got %s", sql)
	}
}

// TestKeyPredicateOperators: a key compares with the operators of its types' own btree
// classes (an extension's citext, through a domain too), as one row comparison when they are
// in one schema and column by column when they are not, so the keyset reads in the order of
// ORDER BY whatever search_path finds.
func TestKeyPredicateOperators(t *testing.T) {
	i8 := &replication.Type{Name: "int8", Schema: "pg_catalog"}
	citext := &replication.Type{Name: "citext", Schema: "ext", Kind: 'b', Operators: "ext"}
	email := &replication.Type{Name: "email", Schema: "app", Kind: 'd', Base: citext}
	rel := &replication.Relation{Schema: "app", Table: "users", Columns: []replication.Column{
		{Name: "tenant", Type: i8}, {Name: "email", Type: email}, {Name: "name", Type: citext}}}
	for _, tc := range []struct {
		order []int
		op    string
		want  string
	}{
		{[]int{1}, ">", `"email" OPERATOR("ext".>) $1::"app"."email"`},
		{[]int{1, 2}, "<=", `("email", "name") OPERATOR("ext".<=) ($1::"app"."email", $2::"ext"."citext")`},
		{[]int{0, 1}, ">", `("tenant" OPERATOR("pg_catalog".>) $1::"pg_catalog"."int8" OR ("tenant" OPERATOR("pg_catalog".=) $1::"pg_catalog"."int8" AND ` +
			`"email" OPERATOR("ext".>) $2::"app"."email"))`},
		{[]int{0, 1, 2}, "<=", `("tenant" OPERATOR("pg_catalog".<) $1::"pg_catalog"."int8" OR ("tenant" OPERATOR("pg_catalog".=) $1::"pg_catalog"."int8" AND ` +
			`("email" OPERATOR("ext".<) $2::"app"."email" OR ("email" OPERATOR("ext".=) $2::"app"."email" AND "name" OPERATOR("ext".<=) $3::"ext"."citext"))))`},
	} {
		if got := newTable("app.users", rel, tc.order).keyPredicate(tc.op, 1); got != tc.want {
			t.Errorf("key %v %s:\ngot  %s\nwant %s", tc.order, tc.op, got, tc.want)
		}
	}
}

func TestKeyID(t *testing.T) {
	a, _ := keyID(nil, text("a,b", "c"), []int{0, 1})
	b, _ := keyID(nil, text("a", "b,c"), []int{0, 1})
	if string(a) == string(b) {
		t.Fatal("different keys share an id")
	}
	if _, ok := keyID(nil, text("a", "<null>"), []int{0, 1}); ok {
		t.Fatal("a key with a missing value has an id")
	}
}

func TestRequestResolve(t *testing.T) {
	captured := []string{"public.orders", "public.order_lines", "sales.orders"}
	r, err := ParseRequest(`{"data-collections": ["public\\.order.*", "SALES.ORDERS"], "type": "incremental",
		"additional-conditions": [{"data-collection": "public\\.orders", "filter": "id > 10"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	tables, filters, err := r.Resolve(captured)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tables, captured) {
		t.Fatalf("tables %v", tables)
	}
	if filters["public.orders"] != "id > 10" || filters["public.order_lines"] != "" {
		t.Fatalf("filters %v", filters)
	}
	// The older single condition applies to every table.
	r, _ = ParseRequest(`{"data-collections": ["public.orders"], "additional-condition": "v = 1"}`)
	if _, filters, _ := r.Resolve(captured); filters["public.orders"] != "v = 1" {
		t.Fatalf("filters %v", filters)
	}
	for _, bad := range []string{`{"data-collections": []}`, `{"data-collections": ["nope"]}`, `{"data-collections": ["("]}`} {
		r, _ := ParseRequest(bad)
		if _, _, err := r.Resolve(captured); err == nil {
			t.Errorf("%s resolved", bad)
		}
	}
	if _, err := ParseRequest("{"); err == nil {
		t.Error("bad JSON parsed")
	}
}

func TestProgress(t *testing.T) {
	now := time.Unix(1000, 0)
	p := NewProgress("initial", KindInitial)
	p.now = func() time.Time { return now }
	p.SetTotal("public.a", 1000)
	p.Add("public.a", 0)
	now = now.Add(10 * time.Second)
	p.Add("public.a", 250)
	st := p.Stats()[0]
	if st.Rows != 250 || st.Rate != 25 || st.ETA != 30*time.Second {
		t.Fatalf("stats %+v: want 250 rows, 25 rows/s, 30s left", st)
	}
	if line := p.Line(); line != "snapshot initial: 250/~1000 rows, 25 rows/s, ETA 30s [public.a 25%]" {
		t.Fatalf("line %q", line)
	}
	p.Done("public.a")
	if st := p.Stats()[0]; !st.Done || st.ETA != 0 {
		t.Fatalf("done: %+v", st)
	}
	for d, want := range map[time.Duration]string{-1: "?", 42 * time.Second: "42s", 185 * time.Second: "3m05s", 7800 * time.Second: "2h10m"} {
		if got := FormatETA(d); got != want {
			t.Errorf("FormatETA(%s) = %s, want %s", d, got, want)
		}
	}
}
