package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestKafkaSASLEverywhere runs every command that talks to Kafka against a listener that
// requires SASL: run, check, tail and drop --topics must all authenticate with kafka.sasl
// (check, tail and drop used to connect without it), and the wrong password must be refused.
func TestKafkaSASLEverywhere(t *testing.T) {
	s := newSetup(t, `public.secured: {}`, "")
	s.requireSASL(t)
	original := s.config
	s.config = s.withSASL(original, s.env.SASLPassword)
	good, bad := writeConfig(t, s.config), writeConfig(t, s.withSASL(original, "wrong-"+s.env.SASLPassword))
	command := func(ctx context.Context, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, testenv.ProconBinary(t), args...).CombinedOutput()
		return string(out), err
	}
	ctx := context.Background()
	s.db.Exec(t, `CREATE TABLE secured (id int PRIMARY KEY, note text)`)

	if out, err := command(ctx, "check", "--config", good); err != nil || !strings.Contains(out, "ok    kafka") {
		t.Fatalf("check with the right password: %v\n%s", err, out)
	}
	out, err := command(ctx, "check", "--config", bad)
	if err == nil || !strings.Contains(out, "error kafka") {
		t.Fatalf("check with the wrong password passed: %v\n%s", err, out)
	}

	run := s.startEngine(t) // in-process, from the same configuration
	s.db.Exec(t, `INSERT INTO secured SELECT g, 'n' || g FROM generate_series(1, 3) g`)
	testenv.WaitFor(t, time.Minute, "3 records on the secured listener", func() (bool, error) {
		return s.countIfExists(t, s.topic("secured")) == 3, nil
	})
	run.stop(t)

	// tail prints until stopped: read its output until the three records are there.
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tail := exec.CommandContext(tctx, testenv.ProconBinary(t), "tail", "--config", good, "--from-beginning")
	stdout, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	buf := make([]byte, 64<<10)
	var acc string
	for len(lines) < 3 {
		n, err := stdout.Read(buf)
		if err != nil {
			t.Fatalf("tail ended after %d lines: %v", len(lines), err)
		}
		acc += string(buf[:n])
		for {
			line, rest, ok := strings.Cut(acc, "\n")
			if !ok {
				break
			}
			lines, acc = append(lines, line), rest
		}
	}
	_ = tail.Process.Signal(os.Interrupt)
	_ = tail.Wait()
	for i, line := range lines {
		if !strings.Contains(line, `"topic":"`+s.topic("secured")+`"`) || !strings.Contains(line, `"note":"n`) {
			t.Fatalf("tail line %d: %s", i, line)
		}
	}

	out, err = command(ctx, "drop", "--config", good, "--topics")
	if err != nil || !strings.Contains(out, "topic "+s.topic("secured")+": deleted") {
		t.Fatalf("drop --topics: %v\n%s", err, out)
	}
	var exit *exec.ExitError
	if _, err := command(ctx, "drop", "--config", bad, "--topics"); !errors.As(err, &exit) {
		t.Fatalf("drop --topics with the wrong password: %v", err)
	}
}
