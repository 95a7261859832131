package convert

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// fuzzSecret is the password of the fuzz inputs' database.password; no report may show it.
const fuzzSecret = "Zq9xW7kP"

// FuzzConvert gives Load and Convert any file: they never panic; every property of a
// configuration they read gets exactly one finding; the report never shows the password;
// and a configuration with nothing unsupported is YAML procon-cdc accepts (Convert checks it
// with config.Parse and reports what that refuses as unsupported, so an accepted one parses).
func FuzzConvert(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/input/*.*")
	for _, in := range inputs {
		if data, err := os.ReadFile(in); err == nil && !strings.HasSuffix(in, ".md") {
			f.Add(data)
		}
	}
	for _, s := range []string{
		"connector.class=io.debezium.connector.postgresql.PostgresConnector\ntopic.prefix=a\ntable.include.list=public.t\ndatabase.password=" + fuzzSecret + "\n",
		"topic.prefix=x\ntable.include.list=(a|b)\\.c\ntransforms=r\ntransforms.r.type=org.apache.kafka.connect.transforms.RegexRouter\ntransforms.r.regex=(.*)\ntransforms.r.replacement=$1$2\\\n",
		`{"config": {"topic.prefix": "a", "table.include.list": "s.t", "message.key.columns": "s.t:a,b;(x:y", "database.password": "` + fuzzSecret + `"}}`,
		"a\\u00zz=1\n", "topic.prefix=a\ndatabase.password=${file:/x:y}\\nname: evil\n", "=\n:\n \\\n", "{", `{"name": 1, "config": {"x": [1]}}`,
		"topic.prefix=a\ntable.include.list=p.t\nkey.converter=io.confluent.connect.avro.AvroConverter\nvalue.converter.basic.auth.user.info=u:" + fuzzSecret + "\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Load(data)
		if err != nil {
			return
		}
		r, err := Convert(context.Background(), p, Options{})
		if err != nil {
			return
		}
		checkAccounted(t, p, r)
		// Nothing from the input escapes the header's comments: the YAML has the keys
		// Convert wrote, whatever a value holds.
		var doc map[string]any
		if err := yaml.Unmarshal(r.YAML, &doc); err != nil {
			t.Fatalf("the YAML does not parse: %v\n%s", err, r.YAML)
		}
		for k := range doc {
			if !slices.Contains(order, k) {
				t.Fatalf("top-level key %q that Convert does not write:\n%s", k, r.YAML)
			}
		}
		if pw, ok := p.Values["database.password"]; ok && pw == fuzzSecret {
			rep := report(r)
			if strings.Contains(rep, fuzzSecret) {
				t.Fatalf("the report shows the password:\n%s", rep)
			}
		}
	})
}
