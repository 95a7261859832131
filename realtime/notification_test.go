package realtime

import (
	"strings"
	"testing"

	"github.com/procon-cdc/procon/replication"
)

func TestParseMessage(t *testing.T) {
	cases := []struct {
		content, channel, session, metadata, err string
	}{
		{content: `{"channel":"c"}`, channel: "c", metadata: `{}`},
		{content: `{"channel":"c","session_id":null,"metadata":null}`, channel: "c", metadata: `{}`},
		{content: `{"channel":"c","session_id":"s","metadata":{"z":[1,2.50],"a":"<b>","n":12345678901234567890}}`,
			channel: "c", session: "s", metadata: `{"a":"<b>","n":12345678901234567890,"z":[1,2.50]}`},
		{content: `{"channel":"c","extra":1}`, channel: "c", metadata: `{}`},
		{content: `not json`, err: "not a JSON object"},
		{content: `{"session_id":"s"}`, err: `no "channel"`},
		{content: `{"channel":""}`, err: `no "channel"`},
		{content: `{"channel":"c","metadata":[1]}`, err: "must be a JSON object"},
		{content: `{"channel":7}`, err: "not a JSON object"},
		{content: `{"channel":"c","metadata":"secret"}`, err: "must be a JSON object, not a string"},
	}
	for _, tc := range cases {
		n, err := parseMessage([]byte(tc.content), DefaultMaxNotificationBytes)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: got error %v, want one containing %q", tc.content, err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: the error %q repeats the metadata: a log line must not carry what anyone wrote", tc.content, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.content, err)
			continue
		}
		session := ""
		if n.SessionID != nil {
			session = *n.SessionID
		}
		if n.Channel != tc.channel || session != tc.session || string(n.Metadata) != tc.metadata {
			t.Errorf("%s: got %q %q %s, want %q %q %s", tc.content, n.Channel, session, n.Metadata, tc.channel, tc.session, tc.metadata)
		}
	}
}

func TestRuleDerive(t *testing.T) {
	rel := &replication.Relation{Schema: "public", Table: "docs", Key: []int{0},
		Columns: []replication.Column{{Name: "id"}, {Name: "room"}, {Name: "meta"}, {Name: "metadata"}}}
	rule := &Rule{Channel: "room", SessionID: "meta.user", Metadata: "meta"}
	row := []replication.Datum{text("1"), text("r1"), text(`{"user": 42, "op": "mine"}`), text(`{"ignored": true}`)}

	n, err := rule.derive(&replication.Change{Op: replication.OpInsert, Rel: rel, New: row}, DefaultMaxNotificationBytes)
	if err != nil {
		t.Fatal(err)
	}
	if n.Channel != "r1" || n.SessionID == nil || *n.SessionID != "42" {
		t.Fatalf("got channel %q session %v", n.Channel, n.SessionID)
	}
	if got, want := string(n.Metadata), `{"op":"mine","relation":"public.docs","user":42}`; got != want {
		t.Fatalf("got metadata %s, want %s (the row's keys win)", got, want)
	}

	// An update whose TOASTed JSON column is unchanged reads it from the old row (FULL).
	upd := []replication.Datum{text("1"), text("r1"), {Kind: replication.DatumUnchanged}, null}
	n, err = rule.derive(&replication.Change{Op: replication.OpUpdate, Rel: rel, New: upd, OldKind: 'O', Old: row}, DefaultMaxNotificationBytes)
	if err != nil || n.SessionID == nil || *n.SessionID != "42" {
		t.Fatalf("got %+v, %v", n, err)
	}

	// A delete reads the old row; without REPLICA IDENTITY FULL it lacks the channel.
	if _, err := rule.derive(&replication.Change{Op: replication.OpDelete, Rel: rel, OldKind: 'K', Old: []replication.Datum{text("1"), null, null, null}}, DefaultMaxNotificationBytes); err == nil {
		t.Fatal("want an error: no channel in a key-only old row")
	}
	n, err = rule.derive(&replication.Change{Op: replication.OpDelete, Rel: rel, OldKind: 'O', Old: row}, DefaultMaxNotificationBytes)
	if err != nil || n.Channel != "r1" || !strings.Contains(string(n.Metadata), `"op":"mine"`) {
		t.Fatalf("got %+v, %v", n, err)
	}

	// Without a Metadata setting, a column named metadata is merged.
	n, err = (&Rule{Channel: "room"}).derive(&replication.Change{Op: replication.OpDelete, Rel: rel, OldKind: 'O', Old: row}, DefaultMaxNotificationBytes)
	if err != nil || string(n.Metadata) != `{"ignored":true,"op":"delete","relation":"public.docs"}` {
		t.Fatalf("got %s, %v", n.Metadata, err)
	}
	if _, err := (&Rule{Channel: "nope"}).derive(&replication.Change{Op: replication.OpInsert, Rel: rel, New: row}, DefaultMaxNotificationBytes); err == nil ||
		!strings.Contains(err.Error(), `column "nope" does not exist`) {
		t.Fatalf("got %v, want a missing column error", err)
	}
}
