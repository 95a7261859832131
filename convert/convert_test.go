package convert

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/config"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// report is what procon-cdc convert prints on stderr for a result, and its exit status.
func report(r *Result) string {
	var b strings.Builder
	for _, f := range r.Findings {
		key := f.Key
		if key == "" {
			key = "(configuration)"
		}
		fmt.Fprintf(&b, "%s %s", f.Kind, key)
		if f.To != "" {
			fmt.Fprintf(&b, " -> %s", f.To)
		}
		if f.Why != "" {
			fmt.Fprintf(&b, ": %s", f.Why)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "unsupported: %d\n", len(r.Unsupported()))
	return b.String()
}

// TestGolden converts each connector configuration of testdata/input (real ones, from
// Debezium's documentation and examples: testdata/input/README.md) and compares the YAML and
// the report with testdata/golden.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/input/*.*")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		if strings.HasSuffix(in, ".md") {
			continue
		}
		name := filepath.Base(in)
		t.Run(name, func(t *testing.T) {
			p, r := convertFile(t, in)
			golden(t, filepath.Join("testdata/golden", name+".yaml"), r.YAML)
			golden(t, filepath.Join("testdata/golden", name+".txt"), []byte(report(r)))
			checkAccounted(t, p, r)
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./convert -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./convert -update rewrites it)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// checkAccounted: every property gets exactly one finding.
func checkAccounted(t *testing.T, p *Properties, r *Result) {
	t.Helper()
	seen := map[string]int{}
	for _, f := range r.Findings {
		if f.Key != "" {
			seen[f.Key]++
		}
	}
	for _, k := range serverProperties(p).Keys {
		if seen[k] != 1 {
			t.Errorf("property %s has %d findings, want 1", k, seen[k])
		}
		delete(seen, k)
	}
	for k := range seen {
		if k != "transforms" { // a transform without a type is reported on the list
			t.Errorf("finding for %s, which is no property", k)
		}
	}
}

// TestAccepted: a configuration converted without unsupported findings is one procon-cdc
// runs: config.Parse takes it once its variables are set.
func TestAccepted(t *testing.T) {
	for _, name := range []string{"docs-fulfillment.json", "docs-avro.properties", "docs-topic-routing-avro.properties", "examples-auditlog.json", "examples-ext-secrets-postgres.json", "examples-kstreams-live-update.json"} {
		_, r := convertFile(t, filepath.Join("testdata/input", name))
		if bad := r.Unsupported(); len(bad) > 0 {
			t.Errorf("%s: unsupported %v", name, bad)
			continue
		}
		env := map[string]string{"PROCON_KAFKA_BROKERS": "k1:9092,k2:9092", "PROCON_PG_PASSWORD": "s3cr$t 'x'", "PROCON_PG_USER": "u"}
		cfg, err := config.Parse(bytes.NewReader(r.YAML), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Errorf("%s: config.Parse: %v\n%s", name, err, r.YAML)
			continue
		}
		if len(cfg.Relations) == 0 || cfg.Name == "" || len(cfg.Kafka.Brokers) != 2 {
			t.Errorf("%s: parsed %+v", name, cfg)
		}
		for v := range r.Env {
			if _, ok := env[v]; !ok {
				t.Errorf("%s: variable %s is not in the test's environment", name, v)
			}
		}
	}
}

// TestRouting: the topics ByLogicalTableRouter (Java's regex replacement included) makes,
// and what a router that also moves procon-cdc's own topics is.
func TestRouting(t *testing.T) {
	base := "connector.class=io.debezium.connector.postgresql.PostgresConnector\ntopic.prefix=shop\n" +
		"table.include.list=public.orders,public.order_items\nvalue.converter=org.apache.kafka.connect.json.JsonConverter\n" +
		"key.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable=false\nkey.converter.schemas.enable=false\n"
	for _, tc := range []struct {
		props       string
		topics      []string
		unsupported string
	}{
		{"transforms=r\ntransforms.r.type=io.debezium.transforms.ByLogicalTableRouter\ntransforms.r.topic.regex=shop\\\\.public\\\\.(.*)\n" +
			"transforms.r.topic.replacement=$10-v1\ntransforms.r.key.enforce.uniqueness=false\n", []string{"orders0-v1", "order_items0-v1"}, ""},
		{"transforms=r\ntransforms.r.type=org.apache.kafka.connect.transforms.RegexRouter\ntransforms.r.regex=shop\\\\.public\\\\.(?<t>.*)\n" +
			"transforms.r.replacement=${t}\n", []string{"orders", "order_items"}, ""},
		{"transforms=r\ntransforms.r.type=org.apache.kafka.connect.transforms.RegexRouter\ntransforms.r.regex=(.*)\n" +
			"transforms.r.replacement=all\n", nil, "routed to one topic"},
		{"heartbeat.interval.ms=1000\ntransforms=r\ntransforms.r.type=org.apache.kafka.connect.transforms.RegexRouter\ntransforms.r.regex=(.*)\\\\.(.*)\n" +
			"transforms.r.replacement=$1-$2\n", nil, "heartbeats"},
		{"topic.naming.strategy=io.debezium.schema.SchemaRegexTopicNamingStrategy\ntopic.regex=shop\\\\.public\\\\.order_items\n" +
			"topic.replacement=items\ntopic.key.enforce.uniqueness=false\n", []string{"", "items"}, ""},
	} {
		p, err := Load([]byte(base + tc.props))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Convert(context.Background(), p, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if tc.unsupported != "" {
			if !strings.Contains(report(r), tc.unsupported) || len(r.Unsupported()) == 0 {
				t.Errorf("%s: want an unsupported finding about %q, got\n%s", tc.props, tc.unsupported, report(r))
			}
			continue
		}
		if len(r.Unsupported()) > 0 {
			t.Errorf("%s: %s", tc.props, report(r))
			continue
		}
		env := map[string]string{"PROCON_KAFKA_BROKERS": "k:9092", "PROCON_PG_DSN": "host=db"}
		cfg, err := config.Parse(bytes.NewReader(r.YAML), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("%v\n%s", err, r.YAML)
		}
		for i, rel := range []string{"public.orders", "public.order_items"} {
			want := tc.topics[i]
			if want == "" {
				want = "shop.public." + strings.TrimPrefix(rel, "public.")
			}
			if got := cfg.Relations[rel].Topic; got != want {
				t.Errorf("%s: %s goes to %s, want %s", tc.props, rel, got, want)
			}
			// RegexRouter keeps the schema names of the unrouted topic.
			wantNames := want
			if strings.Contains(tc.props, "RegexRouter") {
				wantNames = "shop." + rel
			}
			if got := cfg.Relations[rel].SchemaName; got != wantNames && !(got == "" && wantNames == want) {
				t.Errorf("%s: %s's schema names %q, want %q", tc.props, rel, got, wantNames)
			}
		}
	}
}

// TestSecrets: no password reaches the report or, unless asked, the YAML; a '$' in a value
// survives procon-cdc's ${VAR} expansion.
func TestSecrets(t *testing.T) {
	const secret = "Zq9xW7kP"
	props := "connector.class=io.debezium.connector.postgresql.PostgresConnector\ntopic.prefix=shop\ntable.include.list=public.t\n" +
		"database.hostname=db\ndatabase.user=app\ndatabase.password=" + secret + "$x\ndatabase.dbname=my db\n" +
		"heartbeat.action.query=INSERT INTO public.hb VALUES ('$1')\n" +
		"key.converter=io.confluent.connect.avro.AvroConverter\nvalue.converter=io.confluent.connect.avro.AvroConverter\n" +
		"value.converter.schema.registry.url=https://sr:8081\nvalue.converter.basic.auth.user.info=reg:" + secret + "\n" +
		"value.converter.basic.auth.credentials.source=USER_INFO\n"
	p, err := Load([]byte(props))
	if err != nil {
		t.Fatal(err)
	}
	for _, inline := range []bool{false, true} {
		r, err := Convert(context.Background(), p, Options{InlineSecrets: inline})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(report(r), secret) {
			t.Errorf("the report shows the password:\n%s", report(r))
		}
		if got := bytes.Contains(r.YAML, []byte(secret)); got != inline {
			t.Errorf("inline %t: the YAML has the password: %t\n%s", inline, got, r.YAML)
		}
		env := map[string]string{"PROCON_KAFKA_BROKERS": "k:9092", "PROCON_PG_PASSWORD": "pw", "PROCON_REGISTRY_PASSWORD": "pw"}
		cfg, err := config.Parse(bytes.NewReader(r.YAML), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("inline %t: %v\n%s", inline, err, r.YAML)
		}
		wantPW := "pw"
		if inline {
			wantPW = secret + "$x"
		}
		if want := "host=db user=app password=" + wantPW + " dbname='my db'"; cfg.Postgres.DSN != want {
			t.Errorf("inline %t: dsn %q, want %q", inline, cfg.Postgres.DSN, want)
		}
		if cfg.Debezium.HeartbeatActionQuery != "INSERT INTO public.hb VALUES ('$1')" || cfg.SchemaRegistry.Username != "reg" {
			t.Errorf("inline %t: heartbeat query %q, registry user %q", inline, cfg.Debezium.HeartbeatActionQuery, cfg.SchemaRegistry.Username)
		}
	}
}

func TestLoad(t *testing.T) {
	p, err := Load([]byte("# comment\n! also\n a.b = x \\\n   y\nc:d\ne f\\u0041\\=\ng=\\\\\nh\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a.b": "x y", "c": "d", "e": "fA=", "g": `\`, "h": ""}
	for k, v := range want {
		if p.Values[k] != v {
			t.Errorf("%s = %q, want %q", k, p.Values[k], v)
		}
	}
	for _, bad := range []string{`{"config": {"a": {"b": 1}}}`, `{"name": "x", "config": {}, "other": 1}`, "a=\\u12"} {
		if _, err := Load([]byte(bad)); err == nil {
			t.Errorf("Load(%q) accepted it", bad)
		}
	}
	p, err = Load([]byte(`{"tasks.max": 1, "slot.failover": true, "x": null}`))
	if err != nil || p.Values["tasks.max"] != "1" || p.Values["slot.failover"] != "true" || len(p.Keys) != 2 {
		t.Errorf("bare JSON: %+v %v", p, err)
	}
}

// TestREADMEExample: the README's "Moving from Debezium" example is this package's golden
// case, input and output.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Moving from Debezium")
	if !ok {
		t.Fatal("README has no \"Moving from Debezium\" section")
	}
	block := func(after, lang string) string {
		_, rest, ok := strings.Cut(section, after)
		if !ok {
			t.Fatalf("README: %q not found", after)
		}
		_, rest, ok = strings.Cut(rest, "```"+lang+"\n")
		if !ok {
			t.Fatalf("README: no %s block after %q", lang, after)
		}
		body, _, _ := strings.Cut(rest, "```")
		return body
	}
	in, err := os.ReadFile("testdata/input/docs-topic-routing-avro.properties")
	if err != nil {
		t.Fatal(err)
	}
	var props []string
	for _, line := range strings.SplitAfter(string(in), "\n") {
		if !strings.HasPrefix(line, "#") {
			props = append(props, line)
		}
	}
	if got, want := block("For example", "properties"), strings.Join(props, ""); got != want {
		t.Errorf("README's input differs from testdata/input/docs-topic-routing-avro.properties:\n%s", got)
	}
	out, err := os.ReadFile("testdata/golden/docs-topic-routing-avro.properties.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := block("becomes (stdout)", "yaml"); got != string(out) {
		t.Errorf("README's output differs from testdata/golden/docs-topic-routing-avro.properties.yaml:\n%s", got)
	}
}

// TestTuning: a number that only paces work is mapped when procon-cdc takes it, and left to
// procon-cdc's default (not an error) when it does not: Debezium allows a 2-minute status
// interval, procon-cdc at most one minute.
func TestTuning(t *testing.T) {
	p, err := Load([]byte("topic.prefix=a\ntable.include.list=public.t\nstatus.update.interval.ms=120000\nsnapshot.max.threads=8\n" +
		"producer.override.linger.ms=5\nincremental.snapshot.chunk.size=0\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Convert(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]Kind{}
	for _, f := range r.Findings {
		kinds[f.Key] = f.Kind
	}
	want := map[string]Kind{"status.update.interval.ms": Ignored, "snapshot.max.threads": Mapped,
		"producer.override.linger.ms": Mapped, "incremental.snapshot.chunk.size": Ignored}
	for k, w := range want {
		if kinds[k] != w {
			t.Errorf("%s: %s, want %s", k, kinds[k], w)
		}
	}
	if len(r.Unsupported()) > 0 || !bytes.Contains(r.YAML, []byte("parallelism: 8")) || !bytes.Contains(r.YAML, []byte("linger: 5")) {
		t.Errorf("%s\n%s", report(r), r.YAML)
	}
}

// convertFile loads the connector configuration in path and converts it with the default
// options.
func convertFile(t *testing.T, path string) (*Properties, *Result) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Convert(context.Background(), p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return p, r
}
