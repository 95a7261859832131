package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
)

// versionBuilder gives each relation version (each *Relation) a schema of its own and retires
// the previous version's when a newer one of the same ID is built, as envelope.Builder does.
type versionBuilder struct {
	rowBuilder
	schemas map[*replication.Relation]*envelope.Schema
	retired []*envelope.Schema
}

func (b *versionBuilder) Build(c *replication.Change, out []*envelope.Event) ([]*envelope.Event, error) {
	n := len(out)
	out, err := b.rowBuilder.Build(c, out)
	if err != nil || c.Rel == nil {
		return out, err
	}
	s := b.schemas[c.Rel]
	if s == nil {
		for old, os := range b.schemas {
			if old.ID == c.Rel.ID {
				delete(b.schemas, old)
				b.retired = append(b.retired, os)
			}
		}
		s = &envelope.Schema{Type: envelope.Struct, Name: fmt.Sprintf("v%p", c.Rel)}
		b.schemas[c.Rel] = s
	}
	for _, ev := range out[n:] {
		ev.KeySchema, ev.ValueSchema = s, s
	}
	return out, nil
}

func (b *versionBuilder) Retired() []*envelope.Schema {
	r := b.retired
	b.retired = nil
	return r
}

// forgettingEncoder remembers what it was told to forget, and reports an event encoded with a
// schema forgotten already: the pipeline must forget a schema only once its events are encoded.
type forgettingEncoder struct {
	*slowEncoder
	mu        sync.Mutex
	forgotten map[*envelope.Schema]bool
	late      []string
}

func (e *forgettingEncoder) Encode(ctx context.Context, ev *envelope.Event) ([]byte, []byte, error) {
	e.mu.Lock()
	if e.forgotten[ev.ValueSchema] {
		e.late = append(e.late, ev.ValueSchema.Name)
	}
	e.mu.Unlock()
	return e.slowEncoder.Encode(ctx, ev)
}

func (e *forgettingEncoder) ForTopic(string) Encoder          { return e }
func (e *forgettingEncoder) ForEvent(*envelope.Event) Encoder { return e }

func (e *forgettingEncoder) Forget(schemas []*envelope.Schema) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range schemas {
		e.forgotten[s] = true
	}
}

// Each reconnect and each DDL makes new relation versions, each with new schemas. The pipeline
// forgets the replaced ones (its own first-encode set and the encoders') once the events of
// their batch are encoded, so what it keeps stays the same size; no event is encoded with a
// schema already forgotten.
func TestRetiredSchemasAreForgotten(t *testing.T) {
	tr := replication.NewTracker(10)
	k := &fakeKafka{partitions: 2, ackAtOnce: true}
	s := &stream{tracker: tr}
	var versions []*replication.Relation
	for i := range 300 {
		// Every few transactions a new version of relation 1; relation 2 keeps its own.
		if i%3 == 0 {
			versions = append(versions, &replication.Relation{ID: 1})
		}
		s.tx(1 + i%5)
		for _, c := range s.changes {
			if c.Op == replication.OpInsert && c.Rel == nil {
				c.Rel = versions[len(versions)-1]
			}
		}
	}
	p := newTestPipeline(t, k, tr)
	b := &versionBuilder{schemas: map[*replication.Relation]*envelope.Schema{}}
	enc := &forgettingEncoder{slowEncoder: p.cfg.Encoders.(*slowEncoder), forgotten: map[*envelope.Schema]bool{}}
	p.cfg.Builder, p.cfg.Encoders = b, enc
	runAll(t, p, s.changes)

	if len(enc.late) > 0 {
		t.Fatalf("events encoded with schemas already forgotten: %v", enc.late)
	}
	if len(enc.forgotten) != len(versions)-1 {
		t.Fatalf("%d schemas forgotten, want %d (every version but the last)", len(enc.forgotten), len(versions)-1)
	}
	if n := len(p.batch.newSchema); n > 2 {
		t.Fatalf("the pipeline keeps %d schemas after %d versions, want at most 2", n, len(versions))
	}
	if got := len(k.records()); got != s.nextID {
		t.Fatalf("%d records, want %d", got, s.nextID)
	}
}
