package config

import (
	"strings"
	"testing"
)

func TestRecordTooLargeDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader(minimal), env(map[string]string{"DSN": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Errors.RecordTooLarge
	for _, c := range []struct{ key, got, want string }{
		{"rows", r.Rows, "fail"},
		{"messages", r.Messages, "dlq"},
		{"realtime", r.Realtime, "skip"},
		{"dlq_topic", cfg.Errors.DLQTopic, "demo.dlq"},
	} {
		if c.got != c.want {
			t.Errorf("errors.%s: got %q, want %q", c.key, c.got, c.want)
		}
	}
	if cfg.Kafka.MaxRecordBytes != 1<<20 {
		t.Errorf("kafka.max_record_bytes: got %d, want 1 MiB", cfg.Kafka.MaxRecordBytes)
	}
}

func TestRecordTooLargeErrorsNameTheKey(t *testing.T) {
	cases := []struct{ name, kafka, extra, want string }{
		{"bad policy", "", "errors:\n  record_too_large: {rows: drop}\n", `errors.record_too_large.rows: "drop" is not one of fail, skip, dlq`},
		{"bad messages policy", "", "errors:\n  record_too_large: {messages: FAIL}\n", `errors.record_too_large.messages: "FAIL" is not one of`},
		{"bad realtime policy", "", "errors:\n  record_too_large: {realtime: ignore}\n", `errors.record_too_large.realtime: "ignore"`},
		{"unknown kind", "", "errors:\n  record_too_large: {rowz: dlq}\n", "errors.record_too_large.rowz: line"},
		{"dlq topic of a relation", "", "errors:\n  dlq_topic: demo-orders\n", `errors.dlq_topic: "demo-orders" is also the topic of public.orders`},
		{"bad dlq topic", "", "errors:\n  dlq_topic: 'a b'\n", `errors.dlq_topic: "a b" is not a valid Kafka topic name`},
		{"dlq topic of messages", "", "errors:\n  dlq_topic: demo.message\n", `errors.dlq_topic: "demo.message" is also the topic of logical messages`},
		{"dlq topic of heartbeats", "", "errors:\n  dlq_topic: __debezium-heartbeat.demo\ndebezium:\n  heartbeat.interval.ms: 1000\n", `errors.dlq_topic: "__debezium-heartbeat.demo" is also the topic of heartbeats`},
		{"tiny max_record_bytes", "max_record_bytes: 1000", "", "kafka.max_record_bytes: must be an integer from 8192 to 104857600 bytes, got 1000"},
		{"buffer below a record", "max_record_bytes: 2000000\n  max_buffered_bytes: 1000000", "",
			"kafka.max_buffered_bytes: 1000000 is less than kafka.max_record_bytes (2000000)"},
		{"topic limit below the records", "topic_defaults: {configs: {max.message.bytes: '100000'}}", "",
			"kafka.topic_defaults.configs.max.message.bytes: 100000 is below kafka.max_record_bytes (1048576)"},
		{"topic limit not a number", "topic_defaults: {configs: {max.message.bytes: 1MB}}", "",
			`kafka.topic_defaults.configs.max.message.bytes: "1MB" is not a number of bytes`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(minimal, "kafka:\n", "kafka:\n  "+tc.kafka+"\n", 1) + tc.extra
			_, err := Parse(strings.NewReader(text), env(map[string]string{"DSN": "x"}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q\n%s", err, tc.want, text)
			}
		})
	}
}

func TestRecordTooLargeDLQTopicUnusedIsNotChecked(t *testing.T) {
	// With no policy dlq, the dead-letter topic is never written, so its name does not matter.
	text := minimal + "errors:\n  dlq_topic: demo-orders\n  record_too_large: {messages: skip}\n"
	if _, err := Parse(strings.NewReader(text), env(map[string]string{"DSN": "x"})); err != nil {
		t.Fatal(err)
	}
}

func TestDeliveryValidation(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"kafka: {brokers: b:9092, delivery: twice}", "kafka.delivery"},
		{"kafka: {brokers: b:9092, delivery: exactly_once, transactions: {commit_records: 5, max_records: 4}}\nsnapshot: {chunk_size: 1}", "kafka.transactions.commit_records"},
		{"kafka: {brokers: b:9092, delivery: exactly_once, transactions: {max_records: 100, commit_records: 10}}", "snapshot chunk must fit"},
		{"kafka: {brokers: b:9092, delivery: exactly_once, transactions: {commit_interval: 40s}}", "kafka.transactions.commit_interval"},
		{"kafka: {brokers: b:9092, delivery: exactly_once, transactions: {progress_topic: demo.message}}", "kafka.transactions.progress_topic"},
		{"kafka: {brokers: b:9092, delivery: exactly_once, transactions: {timeout: 500ms}}", "kafka.transactions.timeout"},
	} {
		text := strings.Replace(minimal, "kafka:\n  brokers: ${BROKERS:-127.0.0.1:9092}\n", "", 1) + c.yaml + "\n"
		_, err := Parse(strings.NewReader(text), env(map[string]string{"DSN": "x"}))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %s", c.yaml, err, c.want)
		}
	}
	cfg, err := Parse(strings.NewReader(minimal), env(map[string]string{"DSN": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Delivery != AtLeastOnce || cfg.Kafka.Transactions.ProgressTopic != "demo.progress" || cfg.TransactionalID() != "procon-cdc/demo/procon_demo" {
		t.Fatalf("defaults: %q %q %q", cfg.Kafka.Delivery, cfg.Kafka.Transactions.ProgressTopic, cfg.TransactionalID())
	}
}
