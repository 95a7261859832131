package avro

import (
	"context"
	"fmt"
	"testing"
)

// A reconnect makes a new version of every relation, with the same schemas as new objects; a
// DDL makes a new schema. Forgetting the replaced versions keeps the encoder's writers and
// registered ids to those in use, and a reconnect's versions find their id without calling the
// registry again.
func TestForgetKeepsOneVersion(t *testing.T) {
	reg := newFakeRegistry()
	enc := NewEncoder(Config{Registry: reg})
	b := testBuilder()
	ctx := context.Background()
	encodeVersion := func() {
		t.Helper()
		for _, ev := range testEvents(t, b, testRelation()) { // a new *Relation: a new version
			if _, _, err := enc.Encode(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		enc.Forget(b.Retired()) // as the pipeline does once the batch is encoded
	}
	encodeVersion()
	calls := reg.calls
	for i := range 30 {
		encodeVersion()
		enc.mu.Lock()
		writers, fast, keys, ids := len(enc.writers), len(enc.fast), len(enc.keyOf), len(enc.ids)
		enc.mu.Unlock()
		if writers != 2 || fast != 2 || keys != 1 || ids != 2 {
			t.Fatalf("after %d reconnects: %d writers, %d by schema, %d key writers, %d ids; want 2, 2, 1, 2 (key and value of one version)",
				i+1, writers, fast, keys, ids)
		}
	}
	if reg.calls != calls {
		t.Fatalf("the registry was called %d more times for versions of schemas already registered", reg.calls-calls)
	}

	// DDLs: each changes the value schema (score's default); the old text's id goes with the
	// last writer that used it, while the key's, unchanged, stays.
	for i := range 5 {
		rel := testRelation()
		rel.Columns[2].Default = fmt.Sprint(100 + i)
		for _, ev := range testEvents(t, b, rel) {
			if _, _, err := enc.Encode(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		enc.Forget(b.Retired())
		enc.mu.Lock()
		writers, ids := len(enc.writers), len(enc.ids)
		enc.mu.Unlock()
		if writers != 2 || ids != 2 {
			t.Fatalf("after %d DDLs: %d writers, %d ids; want 2 and 2", i+1, writers, ids)
		}
	}
}
