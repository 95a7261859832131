package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/test/testenv"
)

// TestMessageSettingsRefusedBefore14: on a server whose pgoutput decodes no logical decoding
// messages (13), procon-cdc refuses each setting that relies on them at start, naming it and
// the version it needs, exits non-zero and leaves no slot or publication; procon-cdc check
// names them too. (make
// test-pg-versions runs it on 13; newer servers serve these settings.)
func TestMessageSettingsRefusedBefore14(t *testing.T) {
	s := newSetup(t, `public.good: {}`, "")
	if major := s.env.ServerMajor(t); major >= engine.MessagesSince {
		t.Skipf("the refusals are for servers before %d; this one is %d", engine.MessagesSince, major)
	}
	s.db.Exec(t, `CREATE TABLE good (id int PRIMARY KEY)`)
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"realtime messages", "realtime: {enabled: true}\n", "realtime.messages: turning realtime.message_prefix messages into notifications relies on logical decoding messages, which PostgreSQL decodes from version 14; this server is 13"},
		{"signal table", "snapshot: {signal_table: public.signals}\n", "snapshot.signal_table: an in-stream snapshot (its watermarks) relies on logical decoding messages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(s.config+"\n"+tc.extra), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(testenv.ProconBinary(t), "run", "--config", path).CombinedOutput()
			if err == nil {
				t.Fatalf("exit 0, want a refusal; output:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output does not say %q:\n%s", tc.want, out)
			}
			// procon-cdc check says the same, beside its other findings.
			c := *s
			c.config = s.config + "\n" + tc.extra
			if out, code := c.check(t); code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("check exited %d; its output does not say %q:\n%s", code, tc.want, out)
			}
			var slots, pubs, signals int
			ctx := context.Background()
			_ = s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&slots)
			_ = s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname = $1`, s.slot).Scan(&pubs)
			_ = s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_class WHERE relname = 'signals'`).Scan(&signals)
			if slots != 0 || pubs != 0 || signals != 0 {
				t.Fatalf("the refused run left %d slot(s), %d publication(s), %d signal table(s)", slots, pubs, signals)
			}
		})
	}
}
