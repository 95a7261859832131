package integration

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestNoSecretInAnyOutput runs every command, the failing ways too, with passwords in the
// PostgreSQL DSN, in kafka.sasl and in the schema registry URL, and looks for them in
// everything procon-cdc prints and logs: there must be none.
func TestNoSecretInAnyOutput(t *testing.T) {
	s := newSetup(t, `public.secret_items: {serialization: avro}`, "")
	s.requireSASL(t)
	ctx := context.Background()
	s.db.Exec(t, `CREATE TABLE secret_items (id int PRIMARY KEY, note text)`)

	// A role of its own, so that its password appears nowhere but where the test puts it.
	role := testenv.Name(t, "r")
	pgPassword := "pg-" + testenv.Name(t, "pw")
	s.db.Exec(t, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` SUPERUSER LOGIN PASSWORD '`+pgPassword+`'`)
	t.Cleanup(func() {
		conn := s.db.Conn(t)
		_, _ = conn.Exec(ctx, `REASSIGN OWNED BY `+pgx.Identifier{role}.Sanitize()+` TO CURRENT_USER`)
		_, _ = conn.Exec(ctx, `DROP OWNED BY `+pgx.Identifier{role}.Sanitize())
		_, _ = conn.Exec(ctx, `DROP ROLE `+pgx.Identifier{role}.Sanitize())
	})
	dsn, err := url.Parse(s.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	dsn.User = url.UserPassword(role, pgPassword)
	registryPassword := "reg-" + testenv.Name(t, "pw")
	reg, err := url.Parse(s.env.RegistryURL)
	if err != nil {
		t.Fatal(err)
	}
	reg.User = url.UserPassword("procon", registryPassword)
	secrets := []string{pgPassword, registryPassword, s.env.SASLPassword}

	base := s.config
	config := func(dsn, password string) string {
		c := s.withSASL(strings.Replace(base, "dsn: "+s.db.DSN, "dsn: '"+dsn+"'", 1), password)
		return c + "schema_registry:\n  url: " + reg.String() + "\ndebezium:\n  schema.name.adjustment.mode: avro\n"
	}
	good := config(dsn.String(), s.env.SASLPassword)
	badPort := *dsn
	badPort.Host = "127.0.0.1:1"
	spaced := "host=127.0.0.1 port=1 user=" + role + " password = " + pgPassword + " dbname=" + s.db.Name
	var outputs []string
	runCmd := func(path string, args ...string) {
		cctx, cancel := context.WithTimeout(ctx, 40*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, testenv.ProconBinary(t), append([]string{args[0], "--config", path}, args[1:]...)...)
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		out, err := cmd.CombinedOutput()
		outputs = append(outputs, strings.Join(args, " ")+": "+string(out))
		t.Logf("procon-cdc %s: %v, last line: %s", strings.Join(args, " "), err, lastLine(string(out)))
	}

	goodPath := writeConfig(t, good)
	runCmd(goodPath, "check")
	s.config = good
	p := s.startProcess(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO secret_items VALUES (1, 'one'), (2, 'two')`)
	testenv.WaitFor(t, time.Minute, "the rows in Kafka", func() (bool, error) {
		return s.countIfExists(t, s.topic("secret_items")) == 2, nil
	})
	runCmd(goodPath, "status")
	runCmd(goodPath, "status", "--json")
	runCmd(goodPath, "snapshot", "--table", "public.secret_items") // fails: no signal table
	tailCtx, stopTail := context.WithTimeout(ctx, 5*time.Second)
	tail := exec.CommandContext(tailCtx, testenv.ProconBinary(t), "tail", "--config", goodPath, "--from-beginning")
	tail.Cancel = func() error { return tail.Process.Signal(os.Interrupt) }
	out, _ := tail.CombinedOutput()
	stopTail()
	if !strings.Contains(string(out), `"note":"one"`) {
		t.Errorf("tail printed no row:\n%s", out)
	}
	outputs = append(outputs, "tail: "+string(out))
	_ = p.signal(t, os.Interrupt)
	outputs = append(outputs, "run: "+p.output())

	runCmd(writeConfig(t, config(dsn.String(), "wrong-"+s.env.SASLPassword)), "check") // Kafka refuses
	runCmd(writeConfig(t, config(badPort.String(), s.env.SASLPassword)), "check")      // PostgreSQL unreachable
	runCmd(writeConfig(t, config(badPort.String(), s.env.SASLPassword)), "run")
	runCmd(writeConfig(t, config(spaced, s.env.SASLPassword)), "run")
	runCmd(writeConfig(t, config(spaced+" connect_timeout=x", s.env.SASLPassword)), "status") // a DSN that does not parse
	runCmd(goodPath, "drop", "--topics")

	for _, o := range outputs {
		for _, secret := range secrets {
			if strings.Contains(o, secret) {
				t.Errorf("a password appears in the output of %s", o)
			}
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
