package integration

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestStreamEvents checks the exact content of inserts, updates and deletes across tables
// (one with a composite key), multi-statement transactions, and that rolled-back transactions
// and savepoints emit nothing.
func TestStreamEvents(t *testing.T) {
	s := newSetup(t, `
		public.accounts: {}
		public.orders: {}`, "")
	s.db.Exec(t, `CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, balance numeric(12,2), active boolean, created timestamptz)`)
	s.db.Exec(t, `CREATE TABLE orders (tenant_id int, id int, note text, PRIMARY KEY (tenant_id, id))`)
	s.runEngine(t)
	s.waitSlot(t)

	ctx := testenv.Context(t, time.Minute)
	conn := s.db.Conn(t)
	xid := func(sql ...string) int64 {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var x int64
		if err := tx.QueryRow(ctx, `SELECT txid_current() % 4294967296`).Scan(&x); err != nil {
			t.Fatal(err)
		}
		for _, q := range sql {
			if _, err := tx.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return x
	}
	x1 := xid(`INSERT INTO accounts VALUES (1, 'a@example.com', 10.5, true, '2024-03-01 12:00:00.123456+00')`,
		`INSERT INTO orders VALUES (7, 1, 'first')`)
	// A rolled-back transaction and a rolled-back savepoint leave no trace.
	tx, _ := conn.Begin(ctx)
	_, _ = tx.Exec(ctx, `INSERT INTO accounts VALUES (2, 'rolled@back', 1, false, now())`)
	_ = tx.Rollback(ctx)
	x2 := xid(`UPDATE accounts SET balance = 11, active = NULL WHERE id = 1`,
		`SAVEPOINT s1`, `INSERT INTO orders VALUES (7, 2, 'undone')`, `ROLLBACK TO SAVEPOINT s1`,
		`UPDATE orders SET note = 'second' WHERE tenant_id = 7 AND id = 1`)
	x3 := xid(`DELETE FROM orders WHERE tenant_id = 7`, `DELETE FROM accounts WHERE id = 1`)

	accounts := decode(t, s.env.ReadN(t, s.topic("accounts"), 4, time.Minute))
	orders := decode(t, s.env.ReadN(t, s.topic("orders"), 4, time.Minute))

	src := func(table string, x int64) map[string]any {
		return map[string]any{"version": "0.1.0-dev", "connector": "postgresql", "name": s.name, "snapshot": "false",
			"db": s.db.Name, "schema": "public", "table": table, "txId": json.Number(strconv.FormatInt(x, 10)),
			"xmin": nil, "origin": nil, "origin_lsn": nil}
	}
	acc1 := map[string]any{"id": num(1), "email": "a@example.com", "balance": "BBo=", "active": true, "created": "2024-03-01T12:00:00.123456Z"}
	acc2 := map[string]any{"id": num(1), "email": "a@example.com", "balance": "BEw=", "active": nil, "created": "2024-03-01T12:00:00.123456Z"}
	want := []struct {
		ev            event
		key           map[string]any
		op            string
		before, after any
		table         string
		x             int64
	}{
		{accounts[0], map[string]any{"id": num(1)}, "c", nil, acc1, "accounts", x1},
		{accounts[1], map[string]any{"id": num(1)}, "u", nil, acc2, "accounts", x2},
		// REPLICA IDENTITY DEFAULT: the delete's before holds the key, the required email its
		// zero value, the nullable columns null.
		{accounts[2], map[string]any{"id": num(1)}, "d", map[string]any{"id": num(1), "email": "", "balance": nil, "active": nil, "created": nil}, nil, "accounts", x3},
		{orders[0], map[string]any{"tenant_id": num(7), "id": num(1)}, "c", nil, map[string]any{"tenant_id": num(7), "id": num(1), "note": "first"}, "orders", x1},
		{orders[1], map[string]any{"tenant_id": num(7), "id": num(1)}, "u", nil, map[string]any{"tenant_id": num(7), "id": num(1), "note": "second"}, "orders", x2},
		{orders[2], map[string]any{"tenant_id": num(7), "id": num(1)}, "d", map[string]any{"tenant_id": num(7), "id": num(1), "note": nil}, nil, "orders", x3},
	}
	for i, w := range want {
		ev := w.ev
		if !reflect.DeepEqual(ev.Key, w.key) {
			t.Errorf("event %d: key got %v, want %v", i, ev.Key, w.key)
		}
		v := ev.Value
		if v == nil {
			t.Fatalf("event %d: tombstone, want op %s", i, w.op)
		}
		keys := []string{}
		for k := range v {
			keys = append(keys, k)
		}
		if v["op"] != w.op || !reflect.DeepEqual(v["before"], w.before) || !reflect.DeepEqual(v["after"], w.after) {
			t.Errorf("event %d: got op %v before %v after %v, want %s %v %v", i, v["op"], v["before"], v["after"], w.op, w.before, w.after)
		}
		if v["transaction"] != nil {
			t.Errorf("event %d: transaction = %v, want null", i, v["transaction"])
		}
		source := v["source"].(map[string]any)
		for k, want := range src(w.table, w.x) {
			if !reflect.DeepEqual(source[k], want) {
				t.Errorf("event %d: source.%s got %#v, want %#v", i, k, source[k], want)
			}
		}
		lsn, err := source["lsn"].(json.Number).Int64()
		if err != nil || lsn <= 0 {
			t.Errorf("event %d: source.lsn %v is not a positive integer", i, source["lsn"])
		}
		var seq []*string
		if err := json.Unmarshal([]byte(source["sequence"].(string)), &seq); err != nil || len(seq) != 2 || seq[1] == nil || *seq[1] != strconv.FormatInt(lsn, 10) {
			t.Errorf("event %d: source.sequence %v does not end with the lsn %d", i, source["sequence"], lsn)
		}
		for _, k := range []string{"ts_ms", "ts_us", "ts_ns"} {
			if _, err := v[k].(json.Number).Int64(); err != nil {
				t.Errorf("event %d: %s = %v", i, k, v[k])
			}
			if _, err := source[k].(json.Number).Int64(); err != nil {
				t.Errorf("event %d: source.%s = %v", i, k, source[k])
			}
		}
	}
	if accounts[3].Value != nil || !reflect.DeepEqual(accounts[3].Key, map[string]any{"id": num(1)}) {
		t.Errorf("accounts[3]: got key %v value %v, want the tombstone of id 1", accounts[3].Key, accounts[3].Value)
	}
	if orders[3].Value != nil {
		t.Errorf("orders[3]: got %v, want a tombstone", orders[3].Value)
	}
	// Nothing else arrived: the rolled-back insert and savepoint produced no records.
	for _, topic := range []string{s.topic("accounts"), s.topic("orders")} {
		if n := s.count(t, topic); n != 4 {
			t.Errorf("%s holds %d records, want 4", topic, n)
		}
	}
}

func num(n int64) json.Number { return json.Number(strconv.FormatInt(n, 10)) }

// count returns the number of records in a topic (its end offsets summed).
func (s *setup) count(t *testing.T, topic string) int64 {
	t.Helper()
	n, err := s.endOffsets(t, topic)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// countIfExists is count, with 0 for a topic not created yet.
func (s *setup) countIfExists(t *testing.T, topic string) int64 {
	n, _ := s.endOffsets(t, topic)
	return n
}

func (s *setup) endOffsets(t *testing.T, topic string) (int64, error) {
	adm := kadm.NewClient(s.env.Kafka(t))
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		return 0, err
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n, nil
}
