package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const minimal = `
name: demo
postgres:
  dsn: ${DSN}
kafka:
  brokers: ${BROKERS:-127.0.0.1:9092}
relation_configs:
  public.accounts: {}
  public.orders: {topic: demo-orders, pkey: [tenant_id, id]}
`

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader(minimal), env(map[string]string{"DSN": "postgres://x"}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ got, want any }{
		{cfg.Postgres.DSN, "postgres://x"},
		{cfg.Kafka.Brokers[0], "127.0.0.1:9092"},
		{cfg.Postgres.Slot, "procon_demo"},
		{cfg.Postgres.Publication, "procon_demo"},
		{cfg.Postgres.PublicationAutocreate, "filtered"},
		{cfg.Relations["public.accounts"].Topic, "demo.public.accounts"},
		{cfg.Relations["public.orders"].Topic, "demo-orders"},
		{strings.Join(cfg.Relations["public.orders"].PKey, ","), "tenant_id,id"},
		{cfg.Relations["public.orders"].AvroValueSchema, "demo-orders-value"},
		{*cfg.InstanceNum, 1234},
		{cfg.Debezium.DecimalHandlingMode, "precise"},
		{*cfg.Debezium.TombstonesOnDelete, true},
		{cfg.Debezium.Skips("t"), true},
		{strings.Join(cfg.RelationOrder, ","), "public.accounts,public.orders"},
		{cfg.Kafka.Linger, DefaultLinger},
	}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("check %d: got %v, want %v", i, c.got, c.want)
		}
	}
}

// An explicit zero linger means "send at once", not "use the default".
func TestExplicitZeroLinger(t *testing.T) {
	text := strings.Replace(minimal, "kafka:\n", "kafka:\n  linger: 0\n", 1)
	cfg, err := Parse(strings.NewReader(text), env(map[string]string{"DSN": "postgres://x"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kafka.Linger != 0 {
		t.Fatalf("linger = %v, want 0", time.Duration(cfg.Kafka.Linger))
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		vars       map[string]string
		want       []string
	}{
		{"unset variable", minimal, nil, []string{"DSN is not set"}},
		{"unknown key", minimal + "surprise: 1\n", map[string]string{"DSN": "x"}, []string{"surprise: line 10: field surprise not found"}},
		{"unknown nested key", strings.Replace(minimal, "kafka:\n", "kafka:\n  lingr: 5ms\n", 1), map[string]string{"DSN": "x"}, []string{"kafka.lingr: line 6: field lingr not found"}},
		{"fraction for an integer", strings.Replace(minimal, "kafka:\n", "kafka:\n  max_buffered_records: 1.5\n", 1), map[string]string{"DSN": "x"}, []string{"kafka.max_buffered_records: \"1.5\" is not an integer (line 6)"}},
		{"word for an integer", strings.Replace(minimal, "{}", "{rt_threshold: soon}", 1), map[string]string{"DSN": "x"}, []string{"relation_configs.public.accounts.rt_threshold: \"soon\" is not an integer"}},
		{"word for a list", strings.Replace(minimal, "postgres:\n", "postgres:\n  status_interval: [1]\n", 1), map[string]string{"DSN": "x"}, []string{"postgres.status_interval"}},
		{"missing name", strings.Replace(minimal, "name: demo", "", 1), map[string]string{"DSN": "x"}, []string{"name: is required"}},
		{"several at once", strings.Replace(strings.Replace(minimal, "name: demo", "name: demo\nserialization: xml", 1), "{}", "{rt_threshold: -5}", 1),
			map[string]string{"DSN": "x"}, []string{"serialization: \"xml\"", "relation_configs.public.accounts.rt_threshold"}},
		{"bad mode", minimal + "debezium:\n  decimal.handling.mode: exact\n", map[string]string{"DSN": "x"}, []string{"debezium.decimal.handling.mode"}},
		{"bad instance", minimal + "instance_num: 70000\n", map[string]string{"DSN": "x"}, []string{"instance_num: must be an integer from 0 to 65535"}},
		{"bad PROCON_INSTANCE", minimal, map[string]string{"DSN": "x", "PROCON_INSTANCE": "abc"}, []string{"PROCON_INSTANCE"}},
		{"avro without registry", minimal + "serialization: avro\n", map[string]string{"DSN": "x"}, []string{"schema_registry.url"}},
		{"duplicate topic", strings.Replace(minimal, "public.accounts: {}", "public.accounts: {topic: demo-orders}", 1), map[string]string{"DSN": "x"}, []string{"also the topic of"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml), env(tc.vars))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFieldErrorsAreTyped(t *testing.T) {
	_, err := Parse(strings.NewReader(strings.Replace(minimal, "name: demo", "", 1)), env(map[string]string{"DSN": "x"}))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key != "name" {
		t.Fatalf("got %v, want a *FieldError for name", err)
	}
}

func TestInstanceFromEnvironment(t *testing.T) {
	cfg, err := Parse(strings.NewReader(minimal+"instance_num: 7\n"), env(map[string]string{"DSN": "x", "PROCON_INSTANCE": "42"}))
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.InstanceNum != 42 {
		t.Fatalf("got %d, want PROCON_INSTANCE to override instance_num", *cfg.InstanceNum)
	}
}

func TestExpandValue(t *testing.T) {
	vars := env(map[string]string{"A": "1", "EMPTY": ""})
	cases := map[string]string{
		"x${A}y":        "x1y",
		"${B:-def}":     "def",
		"${EMPTY:-def}": "def",
		"$$literal":     "$literal",
		"cost $5":       "cost $5",
		"${A:-unused}":  "1",
		"a: ${B:-x:y}":  "a: x:y",
	}
	for in, want := range cases {
		got, _, _, err := expandValue(in, vars)
		if err != nil || got != want {
			t.Errorf("expandValue(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, _, _, err := expandValue("${1BAD}", vars); err == nil {
		t.Error("a bad variable name must be an error")
	}
}
