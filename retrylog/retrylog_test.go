package retrylog

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOutageIsTwoLines: however many attempts fail, an outage is one warning when it starts
// and one info line when it ends; the attempts between are at debug level.
func TestOutageIsTwoLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	o := &Outage{now: func() time.Time { return now }}
	if o.Recovered(log, "back") || buf.Len() != 0 {
		t.Fatalf("Recovered without a failure logged %q", buf.String())
	}
	args := []any{"slot", "s1"}
	for i := range 5 {
		o.Failed(log, "cannot connect; retrying", fmt.Errorf("refused %d", i), args...)
		now = now.Add(time.Second)
	}
	if len(args) != 2 {
		t.Fatalf("Failed changed its caller's args: %v", args)
	}
	if !o.Failing() {
		t.Fatal("Failing is false after failed attempts")
	}
	if !o.Recovered(log, "connected again", "slot", "s1") || o.Failing() {
		t.Fatal("Recovered did not end the outage")
	}
	o.Failed(log, "cannot connect; retrying", errors.New("refused again"))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var levels []string
	for _, l := range lines {
		levels = append(levels, strings.Fields(l)[1])
	}
	want := "level=WARN level=DEBUG level=DEBUG level=DEBUG level=DEBUG level=INFO level=WARN"
	if got := strings.Join(levels, " "); got != want {
		t.Fatalf("levels %s, want %s:\n%s", got, want, buf.String())
	}
	for i, sub := range map[int]string{
		0: `msg="cannot connect; retrying" slot=s1 err="refused 0"`,
		4: `err="refused 4" failures=5`,
		5: `msg="connected again" slot=s1 failures=5 after=5s last_err="refused 4"`,
		6: `err="refused again"`,
	} {
		if !strings.Contains(lines[i], sub) {
			t.Errorf("line %d is %q, want it to contain %q", i, lines[i], sub)
		}
	}
}
