package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/test/testenv"
)

// TestConvertCommand runs procon-cdc convert as a user would: a connector's properties with a
// password and a schema pattern, the tables listed from a real database (--dsn), the YAML
// written to -o, the report on stderr; exit 0 when everything maps, 1 when something that
// changes the records does not (the unwrap transform), 2 for a file that is not a connector's.
// No password appears in any output.
func TestConvertCommand(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE SCHEMA inventory; CREATE TABLE inventory.customers (id int PRIMARY KEY); CREATE TABLE inventory.orders (id int PRIMARY KEY)`)
	const secret = "Pw-7xQ2z"
	dir := t.TempDir()
	props := filepath.Join(dir, "connector.properties")
	write := func(path, text string) {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "connector.class=io.debezium.connector.postgresql.PostgresConnector\ndatabase.hostname=db.example\ndatabase.port=5432\n" +
		"database.user=app\ndatabase.password=" + secret + "\ndatabase.dbname=shop\ntopic.prefix=shop\nschema.include.list=inventory\n"
	write(props, base)
	run := func(args ...string) (string, string, int) {
		ctx := testenv.Context(t, time.Minute)
		cmd := exec.CommandContext(ctx, testenv.ProconBinary(t), args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		for _, out := range []string{stdout.String(), stderr.String()} {
			if strings.Contains(out, secret) || strings.Contains(out, "procon:procon@") {
				t.Errorf("convert %v printed a password:\n%s", args, out)
			}
		}
		return stdout.String(), stderr.String(), code
	}

	out := filepath.Join(dir, "procon.yaml")
	stdout, stderr, code := run("convert", "--debezium", props, "--dsn", db.DSN, "-o", out)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	yaml, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"PROCON_KAFKA_BROKERS": "k:9092", "PROCON_PG_PASSWORD": secret}[k]
		return v, ok
	}
	cfg, err := config.Parse(bytes.NewReader(yaml), lookup)
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	if got := strings.Join(cfg.SortedRelations(), ","); got != "inventory.customers,inventory.orders" {
		t.Errorf("relations %s", got)
	}
	if want := "host=db.example port=5432 user=app password=" + secret + " dbname=shop"; cfg.Postgres.DSN != want {
		t.Errorf("dsn does not hold the password from the environment")
	}
	if !strings.Contains(stderr, "database.password -> ${PROCON_PG_PASSWORD}") {
		t.Errorf("stderr does not say where the password went:\n%s", stderr)
	}

	// The outbox router maps to relation_configs.<table>.outbox of the tables its predicate
	// picks; a transform procon-cdc has no equivalent for (unwrap) is exit 1.
	write(props, base+"transforms=outbox\ntransforms.outbox.type=io.debezium.transforms.outbox.EventRouter\n"+
		"transforms.outbox.predicate=orders\npredicates=orders\npredicates.orders.type=org.apache.kafka.connect.transforms.predicates.TopicNameMatches\n"+
		"predicates.orders.pattern=shop\\\\.inventory\\\\.orders\ntransforms.outbox.route.topic.replacement=${routedByValue}.events\n")
	stdout, stderr, code = run("convert", "--debezium", props, "--dsn", db.DSN)
	if code != 0 || !strings.Contains(stdout, "inventory.customers: {}") ||
		!strings.Contains(stdout, "inventory.orders:\n    outbox:\n      route.topic.replacement: $${routedByValue}.events") {
		t.Errorf("outbox: exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	write(props, base+"transforms=unwrap\ntransforms.unwrap.type=io.debezium.transforms.ExtractNewRecordState\n")
	stdout, stderr, code = run("convert", "--debezium", props, "--dsn", db.DSN)
	if code != 1 || !strings.Contains(stdout, "relation_configs:") ||
		!strings.Contains(stderr, "UNSUPPORTED transforms.unwrap.type") || !strings.Contains(stderr, "could not be mapped: transforms.unwrap.type") {
		t.Errorf("unwrap: exit %d, stderr:\n%s", code, stderr)
	}

	write(props, "connector.class=io.debezium.connector.mysql.MySqlConnector\ndatabase.password="+secret+"\n")
	if _, stderr, code = run("convert", "--debezium", props); code != 2 || !strings.Contains(stderr, "MySqlConnector") {
		t.Errorf("a MySQL connector: exit %d, stderr:\n%s", code, stderr)
	}
}
