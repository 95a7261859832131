package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/snapshot"
)

// TestMessageFieldErrors: on a server that decodes no logical decoding messages, each setting
// that relies on them is refused by name, with the version it needs and what to do instead;
// settings that do not rely on them pass.
func TestMessageFieldErrors(t *testing.T) {
	parse := func(extra string) *config.Config {
		t.Helper()
		text := "name: demo\npostgres: {dsn: x}\nkafka: {brokers: 127.0.0.1:9092}\n" + extra
		if !strings.Contains(extra, "relation_configs:") {
			text += "relation_configs:\n  public.a: {}\n"
		}
		cfg, err := config.Parse(strings.NewReader(text), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tc := range []struct {
		name, extra string
		want        []string // the keys refused
	}{
		{"plain", "", nil},
		{"realtime without messages", "realtime: {enabled: true, messages: false}\n", nil},
		{"realtime messages by default", "realtime: {enabled: true}\n", []string{"realtime.messages"}},
		{"cleanup of a listed realtime table", "realtime: {enabled: true, messages: false}\nrelation_configs:\n  public.a: {}\n  public.procon_realtimes: {}\n", []string{"realtime.cleanup"}},
		{"listed realtime table without cleanup", "realtime: {enabled: true, messages: false, cleanup: false}\nrelation_configs:\n  public.a: {}\n  public.procon_realtimes: {}\n", nil},
		{"signal table", "snapshot: {signal_table: public.signals}\n", []string{"snapshot.signal_table"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := messageFieldErrors(parse(tc.extra), 13)
			var keys []string
			for _, err := range errs {
				var fe *config.FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("%v is not a *config.FieldError", err)
				}
				if !strings.Contains(fe.Problem, "from version 14; this server is 13") {
					t.Errorf("%v does not name the versions", err)
				}
				keys = append(keys, fe.Key)
			}
			if strings.Join(keys, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("refused %v, want %v", keys, tc.want)
			}
		})
	}
}

// TestInStreamSnapshotError: the in-stream snapshots a start would run are refused before 14
// (their watermarks would never come back), and nothing is refused from 14.
func TestInStreamSnapshotError(t *testing.T) {
	cfg := &config.Config{}
	cfg.Postgres.Slot = "s"
	cfg.Snapshot.Mode = snapshot.ModeAlways
	resume := snapshot.Decision{Resume: &snapshot.Snapshot{ID: snapshot.InitialID}}
	running := []*snapshot.Snapshot{{ID: "sig-1", Kind: snapshot.KindIncremental, Status: snapshot.StatusRunning}}
	for _, tc := range []struct {
		name    string
		major   int
		d       snapshot.Decision
		running []*snapshot.Snapshot
		want    string
	}{
		{"resume on 13", 13, resume, nil, "interrupted initial snapshot of slot s"},
		{"always on 13", 13, snapshot.Decision{Full: true}, nil, "snapshot.mode always on the existing slot s"},
		{"running on 13", 13, snapshot.Decision{}, running, "in-stream snapshot sig-1"},
		{"streaming only on 13", 13, snapshot.Decision{}, nil, ""},
		{"resume on 14", 14, resume, running, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := inStreamSnapshotError(cfg, tc.major, tc.d, tc.running)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "snapshot.mode: ") {
				t.Fatalf("got %v, want a snapshot.mode refusal naming %q", err, tc.want)
			}
		})
	}
}
