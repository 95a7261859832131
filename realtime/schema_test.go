package realtime

import (
	"context"
	"sync"
	"testing"

	hamba "github.com/hamba/avro/v2"

	"github.com/procon-cdc/procon/avro"
)

// memRegistry is a schema registry in memory.
type memRegistry struct {
	mu      sync.Mutex
	schemas map[string]string // subject -> schema
}

func (r *memRegistry) Register(_ context.Context, subject, schema string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.schemas == nil {
		r.schemas = map[string]string{}
	}
	r.schemas[subject] = schema
	return len(r.schemas), nil
}

func (r *memRegistry) SchemaByVersion(context.Context, string, int) (int, string, error) {
	panic("not used")
}

// The realtime record goes through envelope.Encoder: with Avro it is registered under the
// topic's subjects and decodes with the registered schema.
func TestRealtimeRecordAsAvro(t *testing.T) {
	reg := &memRegistry{}
	enc := avro.NewEncoder(avro.Config{Registry: reg})
	session := "s1"
	it := &item{n: Notification{Channel: "room", SessionID: &session, Metadata: []byte(`{"k":1}`)},
		commit: t0, txHdr: []byte("01JGGVQFX00K90000000000C00")}
	key, value, err := enc.Encode(context.Background(), it.event("procon-realtime"))
	if err != nil {
		t.Fatal(err)
	}
	for subject, b := range map[string][]byte{"procon-realtime-key": key, "procon-realtime-value": value} {
		text, ok := reg.schemas[subject]
		if !ok {
			t.Fatalf("nothing registered under %s: %v", subject, reg.schemas)
		}
		schema, err := hamba.Parse(text)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		var got map[string]any
		if err := hamba.Unmarshal(schema, b[5:], &got); err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if got["channel"] != "room" {
			t.Fatalf("%s: got %v", subject, got)
		}
		if subject == "procon-realtime-value" {
			if got["metadata"] != `{"k":1}` || got["commit_ts_ms"] != t0.UnixMilli() || got["tx_id"] != "01JGGVQFX00K90000000000C00" {
				t.Fatalf("got %v", got)
			}
			if s, ok := got["session_id"].(map[string]any); (ok && s["string"] != "s1") || (!ok && got["session_id"] != "s1") {
				t.Fatalf("session_id: got %#v", got["session_id"])
			}
		}
	}
}
