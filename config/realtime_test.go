package config

import (
	"strings"
	"testing"
)

func TestRealtimeDefaults(t *testing.T) {
	cfg, err := Parse(strings.NewReader(minimal+"realtime: {enabled: true}\n"), env(map[string]string{"DSN": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Realtime
	checks := []struct{ got, want any }{
		{r.On(), true},
		{cfg.RealtimeUsed(), true},
		{r.Topic, "procon-realtime"},
		{r.Table, "public.procon_realtimes"},
		{r.Prefix, "procon-realtime"},
		{*r.RTThreshold, 1000},
		{r.RTCoalesce, false},
		{r.CleanupOn(), true},
		{r.MaxPending, 100},
		{r.MessagesOn(), true},
		{r.MaxNotificationBytes, 8000},
		{r.MaxQueueBytes, 16 << 20},
	}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("check %d: got %v, want %v", i, c.got, c.want)
		}
	}
	cfg, err = Parse(strings.NewReader(minimal), env(map[string]string{"DSN": "x"}))
	if err != nil || cfg.RealtimeUsed() {
		t.Fatalf("realtime must be off by default: %v", err)
	}
	cfg, err = Parse(strings.NewReader(minimal+"realtime: {enabled: true, messages: false}\n"), env(map[string]string{"DSN": "x"}))
	if err != nil || !cfg.Realtime.On() || cfg.Realtime.MessagesOn() {
		t.Fatalf("messages: false turns the message path off and leaves the table path on: %v", err)
	}
	withRule := strings.Replace(minimal, "public.accounts: {}", "public.accounts: {realtime: {channel: room}}", 1)
	cfg, err = Parse(strings.NewReader(withRule), env(map[string]string{"DSN": "x"}))
	if err != nil || cfg.Realtime.On() || !cfg.RealtimeUsed() {
		t.Fatalf("a relation's realtime uses realtime without the table: %v", err)
	}
}

func TestRealtimeAndInstanceErrors(t *testing.T) {
	vars := map[string]string{"DSN": "x"}
	rel := func(s string) string {
		return strings.Replace(minimal, "public.accounts: {}", "public.accounts: "+s, 1)
	}
	cases := []struct{ name, yaml, want string }{
		{"no channel", rel("{realtime: {session_id: sid}}"), "relation_configs.public.accounts.realtime.channel: is required"},
		{"bad operation", rel("{realtime: {channel: c, operations: [insert, upsert]}}"), `relation_configs.public.accounts.realtime.operations: "upsert" is not one of insert, update, delete`},
		{"negative threshold", minimal + "realtime: {rt_threshold: -1}\n", "realtime.rt_threshold"},
		{"topic taken", minimal + "realtime: {enabled: true, topic: demo-orders}\n", `realtime.topic: "demo-orders" is also the topic of public.orders`},
		{"bad table", minimal + "realtime: {enabled: true, table: a.b.c}\n", "realtime.table"},
		{"messages without enabled", minimal + "realtime: {messages: true}\n", "realtime.messages: is true but realtime.enabled is not"},
		{"messages not a boolean", minimal + "realtime:\n  enabled: true\n  messages: sometimes\n", "realtime.messages: line"},
		{"negative notification bytes", minimal + "realtime: {max_notification_bytes: -1}\n", "realtime.max_notification_bytes: must be an integer from 1 to 1048576 bytes, got -1"},
		{"notification bytes too large", minimal + "realtime: {max_notification_bytes: 2000000}\n", "realtime.max_notification_bytes: must be an integer from 1 to 1048576 bytes, got 2000000"},
		{"queue bytes too large", minimal + "realtime: {max_queue_bytes: 2000000000}\n", "realtime.max_queue_bytes: must be an integer from 1 to 1073741824 bytes, got 2000000000"},
		{"queue smaller than a notification", minimal + "realtime: {max_notification_bytes: 9000, max_queue_bytes: 8000}\n",
			"realtime.max_queue_bytes: 8000 is less than realtime.max_notification_bytes (9000)"},
		{"queue smaller than the default notification", minimal + "realtime: {max_queue_bytes: 100}\n", "realtime.max_queue_bytes: 100 is less than realtime.max_notification_bytes (8000)"},
		{"instance string", minimal + "instance_num: abc\n", `instance_num: "abc" is not an integer from 0 to 65535`},
		{"instance fraction", minimal + "instance_num: 1.5\n", `instance_num: "1.5" is not an integer from 0 to 65535`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tc.yaml), env(vars))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	cfg, err := Parse(strings.NewReader(minimal+"instance_num: 0x10\n"), env(vars))
	if err != nil || *cfg.InstanceNum != 16 {
		t.Fatalf("instance_num 0x10: got %v", err)
	}
}
