package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// fuzzSecret is the value of the fuzz environment's secrets. No error may show it unless the
// document itself does.
const fuzzSecret = "Zq9xW7kP"

var fuzzEnv = map[string]string{
	"DSN":     "postgres://procon:" + fuzzSecret + "@db:5432/shop",
	"SECRET":  fuzzSecret,
	"BROKERS": "k1:9092,k2:9092",
	"N":       "7",
	"NAME":    "shop",
	"EMPTY":   "",
}

// relationHeavy has every key a relation_configs entry takes, on many relations, with
// anchors, merges and references.
const relationHeavy = `
name: ${NAME}
serialization: avro
schema_registry: {url: "http://sr:8081", username: u, password: "${SECRET}"}
postgres: {dsn: "${DSN}", slot: s1, publication: p1, publication_autocreate: filtered, status_interval: 2s}
kafka:
  brokers: ${BROKERS}
  topic_defaults: {partitions: 3, replication_factor: 1, configs: {retention.ms: "1000"}}
  sasl: {mechanism: PLAIN, username: u, password: "${SECRET}"}
debezium: {decimal.handling.mode: string, skipped.operations: none, money.fraction.digits: "${N}"}
realtime: {enabled: true, table: rt, rt_threshold: 100, max_pending: 5}
defaults: &rel
  serialization: json
  partitions: 2
  rt_threshold: ${N}
relation_configs:
  public.a: {<<: *rel, topic: t-a, pkey: [tenant, id]}
  public.b: {<<: *rel, keyless: true}
  shop.c: {topic: "${NAME}.c", avro_value_schema: c-v, avro_key_schema: c-k, avro_value_schema_version: 2, avro_key_schema_version: 1}
  d: {realtime: {channel: metadata.room, session_id: sid, metadata: meta, operations: [insert, delete]}}
  public.e: {pkey: "a, b , c"}
  public.f:
  public.g: {serialization: xml, partitions: -1, rt_threshold: -2, keyless: true, pkey: x}
  public.g2: {topic: t-a}
  a.b.c: {}
`

// FuzzParse gives Parse any document with a fixed environment: it returns a configuration
// that validates, or an error; it never panics; each error about a document that is YAML
// names its key (a *FieldError; YAML's own syntax errors name a line when the parser knows
// it); and no error shows a secret that came from the environment.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		minimal, relationHeavy,
		"name: x\n", "", "---\n", "[1, 2]", "a: &x [*x]\n", "name: ${SECRET}!\n",
		"name: ${SECRET}${SECRET}${SECRET}${SECRET}${SECRET}${SECRET}${SECRET}${SECRET}\n",
		"instance_num: ${N}\nkafka: {brokers: \"${BROKERS}\"}\n", "instance_num: 1.5\n",
		"postgres: {dsn: ${DSN\n", "kafka: {brokers: [a:1, ${SECRET}]}\n", "relation_configs: {${X}: {}}\n",
		"x: &a {b: *a}\n", "log: {level: ${UNSET:-debug}}\nsnapshot: {chunk_size: 0x10}\n",
		"debezium:\n  unavailable.value.placeholder: \"${SECRET}\"\n  heartbeat.action.query: 'SELECT 1'\n",
	} {
		f.Add([]byte(s))
	}
	lookup := func(k string) (string, bool) { v, ok := fuzzEnv[k]; return v, ok }
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := Parse(bytes.NewReader(doc), lookup)
		if err == nil {
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Parse accepted a configuration that Validate refuses: %v", err)
			}
			_ = cfg.SortedRelations()
			_ = cfg.RealtimeUsed()
			return
		}
		msg := err.Error()
		if secret := strings.ToLower(fuzzSecret); strings.Contains(strings.ToLower(msg), secret) &&
			!bytes.Contains(bytes.ToLower(doc), []byte(secret)) {
			t.Fatalf("an error shows the value of ${SECRET}:\n%s", msg)
		}
		var node yaml.Node
		if yaml.Unmarshal(doc, &node) != nil {
			return // the syntax error
		}
		for _, e := range leafErrors(err) {
			var fe *FieldError
			switch {
			case errors.As(e, &fe):
				if fe.Key == "" {
					t.Fatalf("an error without a key: %v", e)
				}
			case e.Error() == "the file is empty":
			default:
				t.Fatalf("an error that names no key: %v", e)
			}
		}
	})
}

// leafErrors flattens errors.Join.
func leafErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}

// An empty key (found by FuzzParse) gave an error whose key was empty.
func TestEmptyKeyIsNamed(t *testing.T) {
	_, err := Parse(strings.NewReader(minimal+"\"\": 1\n"), env(map[string]string{"DSN": "x"}))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key != `""` || !strings.Contains(err.Error(), `"": line 10: field  not found`) {
		t.Errorf("got %v, want an error for the key \"\"", err)
	}
}
