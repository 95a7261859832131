package config

import (
	"strings"
	"testing"
	"time"
)

// withVars is a configuration whose postgres, kafka and schema_registry sections are given by
// the caller; the rest makes it valid.
func withVars(sections string) string {
	return "name: demo\n" + sections + "relation_configs:\n  public.accounts: {}\n"
}

// A variable's value becomes one scalar's text, whatever it holds: it cannot add keys, anchors,
// aliases, comments or list items, and it is not turned into null, a number or a boolean where
// the key holds a string.
func TestExpandedValuesAreVerbatim(t *testing.T) {
	doc := withVars(`postgres:
  dsn: ${PW}
kafka:
  brokers: 127.0.0.1:9092
  sasl:
    mechanism: PLAIN
    username: postgres://u:${PW}@h/db
    password: "${PW}"
schema_registry:
  password: &pw ${PW}
  username: *pw
`)
	secrets := []struct{ name, value string }{
		{"asterisk", "*s3cret"},
		{"hash", "pa #ss"},
		{"ampersand", "&anchor x"},
		{"colon space", "user: root"},
		{"newline", "line1\nline2: x"},
		{"double quote", `pa"ss`},
		{"single quote", `pa'ss`},
		{"leading dash", "- item"},
		{"leading spaces", "  padded"},
		{"braces", "{a: b}"},
		{"brackets", "[a, b]"},
		{"percent and bang", "%!x !!int"},
		{"reference-like", "${OTHER} and $$"},
		{"null word", "null"},
		{"tilde", "~"},
		{"number", "123"},
		{"hex number", "0x10"},
		{"bool word", "true"},
		{"float", "1.5"},
	}
	for _, s := range secrets {
		t.Run(s.name, func(t *testing.T) {
			cfg, err := Parse(strings.NewReader(doc), env(map[string]string{"PW": s.value}))
			if err != nil {
				t.Fatalf("PW=%q: %v", s.value, err)
			}
			checks := []struct {
				key, got, want string
			}{
				{"postgres.dsn (plain)", cfg.Postgres.DSN, s.value},
				{"kafka.sasl.username (inside a plain value)", cfg.Kafka.SASL.Username, "postgres://u:" + s.value + "@h/db"},
				{"kafka.sasl.password (quoted)", cfg.Kafka.SASL.Password, s.value},
				{"schema_registry.password (anchored)", cfg.SchemaRegistry.Password, s.value},
				{"schema_registry.username (alias)", cfg.SchemaRegistry.Username, s.value},
				{"kafka.brokers (untouched)", strings.Join(cfg.Kafka.Brokers, ","), "127.0.0.1:9092"},
				{"relation order (untouched)", strings.Join(cfg.RelationOrder, ","), "public.accounts"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("PW=%q: %s = %q, want %q", s.value, c.key, c.got, c.want)
				}
			}
		})
	}
}

// An unquoted ${VAR} takes the type its value would have written there, so variables can set
// integer, boolean and duration keys; a quoted one is a string.
func TestExpandedValueTypes(t *testing.T) {
	doc := withVars(`instance_num: ${N:-}
postgres:
  dsn: x
kafka:
  brokers: ${BROKERS}
  linger: ${LINGER:-7}
  max_buffered_records: ${RECORDS:-5}
realtime:
  enabled: ${ON:-false}
`)
	cases := []struct {
		name  string
		vars  map[string]string
		check func(*Config) (got, want any)
	}{
		{"integer", map[string]string{"N": "7"}, func(c *Config) (any, any) { return *c.InstanceNum, 7 }},
		{"hex integer", map[string]string{"N": "0x10"}, func(c *Config) (any, any) { return *c.InstanceNum, 16 }},
		{"empty integer takes the default", map[string]string{"N": ""}, func(c *Config) (any, any) { return *c.InstanceNum, 1234 }},
		{"integer default", nil, func(c *Config) (any, any) { return c.Kafka.MaxBufferedRecords, 5 }},
		{"integer from env", map[string]string{"RECORDS": "42"}, func(c *Config) (any, any) { return c.Kafka.MaxBufferedRecords, 42 }},
		{"milliseconds", map[string]string{"LINGER": "250"}, func(c *Config) (any, any) { return c.Kafka.Linger, Duration(250 * time.Millisecond) }},
		{"duration", map[string]string{"LINGER": "5s"}, func(c *Config) (any, any) { return c.Kafka.Linger, Duration(5 * time.Second) }},
		{"boolean", map[string]string{"ON": "true"}, func(c *Config) (any, any) { return c.Realtime.On(), true }},
		{"boolean default", nil, func(c *Config) (any, any) { return c.Realtime.Enabled != nil && !*c.Realtime.Enabled, true }},
		{"comma-separated list", map[string]string{"BROKERS": "a:1, b:2"}, func(c *Config) (any, any) { return strings.Join(c.Kafka.Brokers, "|"), "a:1|b:2" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{"BROKERS": "k:9092"}
			for k, v := range tc.vars {
				vars[k] = v
			}
			cfg, err := Parse(strings.NewReader(doc), env(vars))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := tc.check(cfg); got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	quoted := strings.Replace(doc, "${N:-}", `"${N}"`, 1)
	if _, err := Parse(strings.NewReader(quoted), env(map[string]string{"N": "7", "BROKERS": "k:9092"})); err == nil ||
		!strings.Contains(err.Error(), "instance_num: the value of ${N} is not an integer") {
		t.Errorf(`instance_num: "${N}" must stay a string and be refused, got %v`, err)
	}
}

func TestDollarsDefaultsAndComments(t *testing.T) {
	cases := []struct {
		name, dsn string
		vars      map[string]string
		want      string
	}{
		{"double dollar", "pa$$word", nil, "pa$word"},
		{"double dollar before a brace", "$${PW}", map[string]string{"PW": "x"}, "${PW}"},
		{"lone dollar", "cost $5", nil, "cost $5"},
		{"default when unset", "${PW:-def}", nil, "def"},
		{"default when empty", "${PW:-def}", map[string]string{"PW": ""}, "def"},
		{"set beats default", "${PW:-def}", map[string]string{"PW": "set"}, "set"},
		{"default with a colon", "${PW:-host:5432}", nil, "host:5432"},
		{"two references", "${A}:${B:-b}", map[string]string{"A": "a"}, "a:b"},
		{"quoted default with a hash", `"${PW:-a #b}"`, nil, "a #b"},
		{"comment is not expanded", "x  # ${UNSET_IN_COMMENT}", nil, "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := withVars("postgres:\n  dsn: " + tc.dsn + "\nkafka:\n  brokers: k:9092\n")
			cfg, err := Parse(strings.NewReader(doc), env(tc.vars))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Postgres.DSN != tc.want {
				t.Errorf("dsn: %s gave %q, want %q", tc.dsn, cfg.Postgres.DSN, tc.want)
			}
		})
	}
}

func TestUnsetVariableNamesKeyAndLine(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"mapping value", withVars("postgres:\n  dsn: postgres://u:${PGPASS}@h/db\nkafka:\n  brokers: k:9092\n"),
			[]string{"postgres.dsn: line 3: environment variable PGPASS is not set (set it, write ${PGPASS:-default}, or $${PGPASS} for the text ${PGPASS} itself)"}},
		{"list item", withVars("postgres:\n  dsn: x\nkafka:\n  brokers:\n    - k:9092\n    - ${BROKER2}\n"),
			[]string{"kafka.brokers[1]: line 7: environment variable BROKER2 is not set"}},
		{"every one at once", withVars("postgres:\n  dsn: ${DSN}\nkafka:\n  brokers: ${BROKERS}\n"),
			[]string{"postgres.dsn: line 3: environment variable DSN", "kafka.brokers: line 5: environment variable BROKERS"}},
		{"unterminated", withVars("postgres:\n  dsn: ${DSN\nkafka:\n  brokers: k:9092\n"),
			[]string{"postgres.dsn: line 3: unterminated ${ (write $$ for a literal $)"}},
		{"bad name", withVars("postgres:\n  dsn: ${1DSN}\nkafka:\n  brokers: k:9092\n"),
			[]string{"postgres.dsn: line 3: ${1DSN} is not a valid variable reference"}},
		{"key with a reference", withVars("postgres:\n  dsn: x\nkafka:\n  brokers: k:9092\n  topic_defaults:\n    configs:\n      ${KEY}: 1\n"),
			[]string{"kafka.topic_defaults.configs.${KEY}: line 8: keys are not expanded"}},
		{"unquoted in a flow mapping", withVars("postgres: {dsn: ${DSN}}\nkafka:\n  brokers: k:9092\n"),
			[]string{`inside {...} or [...] a ${VAR} must be quoted: "${VAR}"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.doc), env(map[string]string{"KEY": "k"}))
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

// Whatever goes wrong with a value that came from the environment, the error names the
// reference and never shows the value (or the decoder's 7-character prefix of it).
func TestErrorsNeverShowExpandedValues(t *testing.T) {
	base := func(extra string) string {
		return "name: demo\npostgres:\n  dsn: x\nkafka:\n  brokers: k:9092\n" + extra +
			"relation_configs:\n  public.accounts: {}\n"
	}
	cases := []struct {
		name, doc, secret, want string
	}{
		{"integer key", base("  max_buffered_records: ${S}\n"), "hunter2-secret", "kafka.max_buffered_records: the value of ${S} is not an integer (line 6)"},
		{"integer key in a longer value", base("  max_buffered_records: 1${S}\n"), "hunter2-secret", `kafka.max_buffered_records: the value of "1${S}" is not an integer`},
		{"instance_num", "instance_num: ${S}\n" + base(""), "hunter2-secret", "instance_num: the value of ${S} is not an integer from 0 to 65535"},
		{"duration", base("  linger: ${S}\n"), "hunter2-secret", "kafka.linger: line 6: the value of ${S} is not a duration"},
		{"boolean", base("realtime:\n  enabled: ${S}\n"), "hunter2-secret", "realtime.enabled: line 7: cannot unmarshal !!str the value of ${S} into bool"},
		{"short boolean", base("realtime:\n  enabled: ${S}\n"), "hunt", "realtime.enabled: line 7: cannot unmarshal !!str the value of ${S} into bool"},
		{"section", base("schema_registry: ${S}\n"), "postgres://u:hunter2@h/db", "schema_registry: line 6: cannot unmarshal !!str the value of ${S} into config.SchemaRegistry"},
		{"one of", "serialization: ${S}\n" + base(""), "hunter2-secret", "serialization: the value of ${S} is not one of json, avro"},
		{"list element", strings.Replace(base(""), "brokers: k:9092", "brokers: k:9092,${S}", 1), "hunter2-secret", `kafka.brokers: the value of "k:9092,${S}" must be host:port`},
		{"topic", strings.Replace(base(""), "public.accounts: {}", "public.accounts:\n    topic: ${S}", 1), "hunter2/secret", "relation_configs.public.accounts.topic: the value of ${S} is not a valid Kafka topic name"},
		{"alias-like secret", base("  sasl:\n    password: ${S}\n  surprise: 1\n"), "*hunter2-secret", "kafka.surprise: line 8: field surprise not found"},
		{"syntax-like secret", base("  sasl:\n    password: ${S}\n  surprise: 1\n"), "x\n  - hunter2: [", "kafka.surprise: line 8: field surprise not found"},
		// The default slot is the name in lower case, which the redaction cannot recognize.
		{"slot derived from a long name", strings.Replace(base(""), "name: demo", "name: ${S}", 1), strings.Repeat("Hunter2", 9), "postgres.slot: is not set, and the default (procon_ and name in lower case) is longer than 63 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.doc), env(map[string]string{"S": tc.secret}))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, leak := range []string{tc.secret, tc.secret[:4], "hunter2"} {
				if strings.Contains(msg, leak) {
					t.Errorf("error shows %q: %s", leak, msg)
				}
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
		})
	}
}

// Anchors, aliases and merge keys are resolved by the decoder as before; an unknown key is
// refused wherever it is, a merged mapping included.
func TestAliasesAndMerges(t *testing.T) {
	doc := withVars(`postgres:
  dsn: x
kafka:
  brokers: k:9092
  tls: &tls
    enabled: true
    ca_file: ${CA}
schema_registry:
  url: https://r
  tls:
    <<: *tls
    insecure_skip_verify: true
`)
	cfg, err := Parse(strings.NewReader(doc), env(map[string]string{"CA": "/ca.pem"}))
	if err != nil {
		t.Fatal(err)
	}
	if tls := cfg.SchemaRegistry.TLS; !tls.Enabled || tls.CAFile != "/ca.pem" || !tls.InsecureSkipVerify {
		t.Errorf("merged tls = %+v", tls)
	}
	bad := strings.Replace(doc, "    enabled: true\n", "    enabled: true\n    bogus: 1\n", 1)
	_, err = Parse(strings.NewReader(bad), env(map[string]string{"CA": "/ca.pem"}))
	if err == nil || !strings.Contains(err.Error(), "kafka.tls.bogus: line 8: field bogus not found") {
		t.Errorf("unknown key in an anchored mapping: got %v", err)
	}
}
