package convert

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/test/testenv"
)

// TestIncludeListsAgainstDatabase: Debezium's tutorial connector captures the schema
// inventory (schema.include.list, a pattern); with a database, convert lists its tables, and
// table patterns and exclusions are matched as Debezium matches them (whole name, any case).
func TestIncludeListsAgainstDatabase(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE SCHEMA inventory;
		CREATE TABLE inventory.customers (id int PRIMARY KEY);
		CREATE TABLE inventory.orders (id int PRIMARY KEY);
		CREATE TABLE inventory.orders_archive (id int PRIMARY KEY);
		CREATE TABLE public.debezium_signal (id text PRIMARY KEY, type text, data text);
		CREATE TABLE public.other (id int PRIMARY KEY)`)
	ctx := testenv.Context(t, time.Minute)
	data, err := os.ReadFile("testdata/input/examples-tutorial.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		with string // replaces "schema.include.list": "inventory"
		want []string
	}{
		{`"schema.include.list": "inventory"`, []string{"inventory.customers", "inventory.orders", "inventory.orders_archive"}},
		{`"schema.include.list": "inventory", "table.include.list": "INVENTORY\\.ORDERS.*", "table.exclude.list": ".*_archive"`, []string{"inventory.orders"}},
		{`"schema.include.list": "", "table.exclude.list": "inventory\\..*", "signal.data.collection": "public.debezium_signal"`, []string{"public.other"}},
	} {
		in := bytes.Replace(data, []byte(`"schema.include.list": "inventory"`), []byte(tc.with), 1)
		p, err := Load(in)
		if err != nil {
			t.Fatalf("%s: %v", tc.with, err)
		}
		r, err := Convert(ctx, p, Options{Tables: Database{DSN: db.DSN}})
		if err != nil {
			t.Fatal(err)
		}
		if bad := r.Unsupported(); len(bad) > 0 {
			t.Errorf("%s: unsupported %v", tc.with, bad)
			continue
		}
		env := map[string]string{"PROCON_KAFKA_BROKERS": "k:9092", "PROCON_PG_PASSWORD": "pw"}
		cfg, err := config.Parse(bytes.NewReader(r.YAML), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.with, err, r.YAML)
		}
		if got := cfg.SortedRelations(); !equal(got, tc.want) {
			t.Errorf("%s: relations %v, want %v", tc.with, got, tc.want)
		}
	}
	if _, err := Convert(context.Background(), &Properties{Values: map[string]string{"topic.prefix": "x"}, Keys: []string{"topic.prefix"}},
		Options{Tables: Database{DSN: db.DSN + "&user=nobody_here"}}); err == nil {
		t.Error("a database that cannot be listed is no error")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
