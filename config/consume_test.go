package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The example, as users will copy it.
const consumeExample = `
name: billing
postgres: {dsn: "${TARGET_DSN}"}
kafka: {brokers: "${PROCON_KAFKA_BROKERS}", group: billing}
schema_registry: {url: "${PROCON_SCHEMA_REGISTRY_URL}"}
entities:
  - topic: demo.public.accounts
    table: public.accounts
    master_key: id
    keys_mapping: {email: contact_email, "meta.plan": plan}
  - topic: demo-orders
    table: public.orders
    master_key: [[tenant, tenant_id], [id, id]]
    soft_delete: deleted_at
    realtime: {channel: orders, session_id: session, metadata: {total: total}, operations: [create]}
`

func TestParseConsume(t *testing.T) {
	cfg, err := ParseConsume(strings.NewReader(consumeExample), env(map[string]string{
		"TARGET_DSN": "postgres://t", "PROCON_KAFKA_BROKERS": "k:9092", "PROCON_SCHEMA_REGISTRY_URL": "http://r:8081"}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ got, want any }{
		{cfg.Postgres.DSN, "postgres://t"},
		{cfg.Kafka.Group, "billing"},
		{cfg.OnError, "stop"},
		{cfg.DLQTopic, "billing.dlq"},
		{cfg.Batch.MaxRecords, DefaultConsumeBatch},
		{time.Duration(cfg.Batch.Linger), time.Duration(DefaultConsumeLinger)},
		{cfg.RealtimeTable, "public.procon_realtimes"},
		{cfg.Decoding.UnavailableValuePlaceholder, "__debezium_unavailable_value"},
		{cfg.Entities[0].MasterKey, MasterKey{{"id", "id"}}},
		{cfg.Entities[0].KeysMapping["meta.plan"], "plan"},
		{cfg.Entities[0].OnTruncate, "ignore"},
		{cfg.Entities[1].MasterKey, MasterKey{{"tenant", "tenant_id"}, {"id", "id"}}},
		{cfg.Entities[1].Realtime.Operations, StringList{"create"}},
	}
	for i, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("check %d: got %v, want %v", i, c.got, c.want)
		}
	}
}

func TestParseConsumeErrorsNameTheKey(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{`name: x
postgres: {dsn: d}
kafka: {brokers: b}
entities: [{topic: t, table: a}]`, "entities[0].master_key: is required"},
		{`name: x
postgres: {dsn: d}
kafka: {brokers: b}
entities: [{topic: t, table: a, master_key: [[a, b, c]]}]`, "a master key item is a column name or a [local_column, event_field] pair"},
		{`name: x
postgres: {dsn: d}
kafka: {brokers: b}
entities: [{topic: t, table: a, master_key: id}, {topic: t, table: b, master_key: id}]`, `entities[1].topic: "t" is already the topic of entities[0]`},
		{`name: x
postgres: {dsn: d}
kafka: {brokers: b}
on_error: skip
entities: [{topic: t, table: a, master_key: id}]`, `on_error: "skip" is not one of stop, dlq`},
		{`name: x
postgres: {dsn: d}
kafka: {brokers: b}
entities: [{topic: t, table: a, master_key: id, keys_maping: {a: b}}]`, "keys_maping"},
		{`name: x
postgres: {dsn: d}
kafka: {brokers: b}
batch: {max_records: 0.5}
entities: [{topic: t, table: a, master_key: id}]`, "batch.max_records"},
		{`postgres: {dsn: d}
kafka: {brokers: b}
entities: [{topic: t, table: a, master_key: id}]`, "name: is required"},
	}
	for _, c := range cases {
		_, err := ParseConsume(strings.NewReader(c.yaml), env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s\n got %v\nwant it to contain %q", c.yaml, err, c.want)
		}
	}
}

// A DSN from the environment must never appear in an error.
func TestParseConsumeErrorHidesExpandedValues(t *testing.T) {
	_, err := ParseConsume(strings.NewReader(`name: x
postgres: {dsn: "${DSN}", max_connections: "${DSN}"}
kafka: {brokers: b}
entities: [{topic: t, table: a, master_key: id}]`), env(map[string]string{"DSN": "postgres://u:s3cret@h/db"}))
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("got %v", err)
	}
}
