package avro

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	hamba "github.com/hamba/avro/v2"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/registry"
)

// Registry is what the Avro encoder needs of a Confluent-compatible schema registry. Its calls
// may block while the registry is unreachable; they return when ctx ends.
type Registry interface {
	// Register registers an Avro schema under subject, or finds it already registered there,
	// and returns its id.
	Register(ctx context.Context, subject, schema string) (int, error)
	// SchemaByVersion returns the id and text of a registered version of subject.
	SchemaByVersion(ctx context.Context, subject string, version int) (int, string, error)
}

// Subjects names the registry subjects of one topic's keys and values and, optionally,
// the registered versions to encode with.
type Subjects struct {
	Key, Value string
	// KeyVersion and ValueVersion pin a registered version of the subject: events are written
	// with that schema (fields matched by name, defaults from it). 0 derives the schema from
	// the relation and registers it.
	KeyVersion, ValueVersion int
}

// Config configures an Encoder.
type Config struct {
	Registry Registry
	// Topics gives the subjects of each topic; a topic not listed uses Confluent's
	// TopicNameStrategy, <topic>-key and <topic>-value, and registers its schemas.
	Topics map[string]Subjects
	Logger *slog.Logger
}

// Encoder writes Confluent's wire format: a zero byte, the 4-byte big-endian schema id,
// then the Avro binary body. Each Connect schema (one per relation version) is turned into an
// Avro schema, registered and compiled into a writer once; events are then written without
// calling the registry. A nil key or value stays nil (a tombstone stays a tombstone).
//
// An Encoder is safe for concurrent use.
type Encoder struct {
	reg    Registry
	log    *slog.Logger
	topics map[string]Subjects

	mu      sync.Mutex
	fast    map[*envelope.Schema]*writer // by schema alone: each schema serves one topic and role
	writers map[writerKey]*writer
	keyOf   map[*envelope.Schema]*writer // the key writer of a key schema, for EncodeKey
	pinned  map[pinKey]*pinnedSchema
	ids     map[string]int // subject + "\x00" + schema text → registered id
	// adjusted are the subjects whose registry refused a namespace outside the Avro
	// specification: their schemas are registered with adjusted names from then on.
	adjusted map[string]bool
}

type writerKey struct {
	schema *envelope.Schema
	topic  string
	key    bool
}

type pinKey struct {
	subject string
	version int
}

type pinnedSchema struct {
	id     int
	text   string
	schema hamba.Schema
}

// writer is one compiled schema with its registry id.
type writer struct {
	header  [5]byte
	node    *node
	subject string
	topic   string
	isKey   bool
	size    atomic.Int64 // last encoded size: the next buffer's capacity
	// registered is its key in ids ("" for a pinned version): kept while a writer uses it,
	// so that a reconnect's new relation versions, of the same schema, find their id here.
	registered string
}

// NewEncoder returns an encoder; it does not contact the registry.
func NewEncoder(cfg Config) *Encoder {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Encoder{
		reg:     cfg.Registry,
		log:     cfg.Logger,
		topics:  cfg.Topics,
		fast:    map[*envelope.Schema]*writer{},
		writers: map[writerKey]*writer{},
		keyOf:   map[*envelope.Schema]*writer{},
		pinned:  map[pinKey]*pinnedSchema{},
		ids:     map[string]int{},

		adjusted: map[string]bool{},
	}
}

// Subjects returns the subjects of a topic.
func (e *Encoder) Subjects(topic string) Subjects {
	s, ok := e.topics[topic]
	if !ok {
		s = Subjects{}
	}
	if s.Key == "" {
		s.Key = topic + "-key"
	}
	if s.Value == "" {
		s.Value = topic + "-value"
	}
	return s
}

// FetchPinned fetches every pinned version the configuration names, so that a missing
// subject or version is reported before anything is produced.
func (e *Encoder) FetchPinned(ctx context.Context) error {
	for topic := range e.topics {
		s := e.Subjects(topic)
		if s.KeyVersion > 0 {
			if _, err := e.pin(ctx, s.Key, s.KeyVersion); err != nil {
				return err
			}
		}
		if s.ValueVersion > 0 {
			if _, err := e.pin(ctx, s.Value, s.ValueVersion); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check verifies, without registering anything, that events of a relation whose key and
// envelope schemas are given can be encoded for topic: a derived schema must be valid Avro (its
// names especially), and a pinned version must have a field, or a default, for every column,
// of a type the column's values can be written as.
func (e *Encoder) Check(ctx context.Context, topic string, key, value *envelope.Schema) error {
	s := e.Subjects(topic)
	check := func(cs *envelope.Schema, subject string, version int, what string) error {
		if cs == nil {
			return nil
		}
		if version > 0 {
			p, err := e.pin(ctx, subject, version)
			if err != nil {
				return err
			}
			if _, err := compile(p.schema, cs, true); err != nil {
				return fmt.Errorf("the %s cannot be encoded with version %d of subject %s: %w", what, version, subject, err)
			}
			return nil
		}
		if _, _, err := derive(cs); err != nil {
			return fmt.Errorf("the %s schema for subject %s: %w", what, subject, err)
		}
		return nil
	}
	if err := check(key, s.Key, s.KeyVersion, "key"); err != nil {
		return err
	}
	return check(value, s.Value, s.ValueVersion, "value")
}

// Encode implements envelope.Encoder. It calls the registry only for a schema it has not seen yet.
func (e *Encoder) Encode(ctx context.Context, ev *envelope.Event) (key, value []byte, err error) {
	if o := ev.Outbox; o != nil {
		// AvroConverter writes a null key or value as no bytes, whatever its schema.
		if o.Key != nil {
			if key, err = e.encodeRoot(ctx, ev.Topic, ev.KeySchema, o.Key, true); err != nil {
				return nil, nil, fmt.Errorf("key of %s: %w", ev.Topic, err)
			}
		}
		if ev.ValueSchema != nil && o.Value != nil {
			if value, err = e.encodeRoot(ctx, ev.Topic, ev.ValueSchema, o.Value, false); err != nil {
				return nil, nil, fmt.Errorf("value of %s: %w", ev.Topic, err)
			}
		}
		return key, value, nil
	}
	if ev.Key != nil {
		w, err := e.writerFor(ctx, ev.Topic, ev.KeySchema, true)
		if err != nil {
			return nil, nil, err
		}
		if key, err = w.encode(ev.Key); err != nil {
			return nil, nil, fmt.Errorf("key of %s: %w", ev.Topic, err)
		}
	}
	if ev.Value != nil {
		w, err := e.writerFor(ctx, ev.Topic, ev.ValueSchema, false)
		if err != nil {
			return nil, nil, err
		}
		if value, err = w.encode(ev.Value); err != nil {
			return nil, nil, fmt.Errorf("value of %s: %w", ev.Topic, err)
		}
	}
	return key, value, nil
}

// EncodeKey implements envelope.Encoder: a key struct in the wire format of its topic's keys, for the
// __debezium.oldkey/newkey headers. The key schema must have been used by Encode before.
func (e *Encoder) EncodeKey(_ context.Context, s *envelope.Schema, v *envelope.Value) ([]byte, error) {
	e.mu.Lock()
	w := e.keyOf[s]
	e.mu.Unlock()
	if w == nil {
		return nil, fmt.Errorf("avro: key schema %s was not registered", s.Name)
	}
	return w.encode(v)
}

// encodeRoot encodes a value of any schema (an outbox event's key or payload).
func (e *Encoder) encodeRoot(ctx context.Context, topic string, s *envelope.Schema, v any, isKey bool) ([]byte, error) {
	w, err := e.writerFor(ctx, topic, s, isKey)
	if err != nil {
		return nil, err
	}
	return w.encode(v)
}

func (w *writer) encode(v any) ([]byte, error) {
	buf := make([]byte, 5, w.size.Load()+16)
	copy(buf, w.header[:])
	buf, err := w.node.write(buf, v)
	if err != nil {
		return nil, err
	}
	w.size.Store(int64(len(buf)))
	return buf, nil
}

// writerFor returns the compiled writer of a schema on a topic, registering the schema first
// when needed.
func (e *Encoder) writerFor(ctx context.Context, topic string, s *envelope.Schema, isKey bool) (*writer, error) {
	e.mu.Lock()
	w := e.fast[s]
	if w == nil || w.topic != topic || w.isKey != isKey {
		w = e.writers[writerKey{schema: s, topic: topic, key: isKey}]
	}
	e.mu.Unlock()
	if w != nil {
		return w, nil
	}
	k := writerKey{schema: s, topic: topic, key: isKey}
	subs := e.Subjects(topic)
	subject, version, what := subs.Value, subs.ValueVersion, "value"
	if isKey {
		subject, version, what = subs.Key, subs.KeyVersion, "key"
	}
	w = &writer{subject: subject, topic: topic, isKey: isKey}
	var id int
	if version > 0 {
		p, err := e.pin(ctx, subject, version)
		if err != nil {
			return nil, err
		}
		if w.node, err = compile(p.schema, s, true); err != nil {
			return nil, fmt.Errorf("the %s of %s cannot be encoded with version %d of subject %s: %w", what, topic, version, subject, err)
		}
		id = p.id
	} else {
		text, parsed, err := derive(s)
		if err != nil {
			return nil, fmt.Errorf("the %s schema of %s for subject %s: %w", what, topic, subject, err)
		}
		if w.node, err = compile(parsed, s, false); err != nil {
			return nil, fmt.Errorf("the %s schema of %s for subject %s: %w", what, topic, subject, err)
		}
		if text, id, err = e.registerDerived(ctx, subject, topic, s, text); err != nil {
			return nil, err
		}
		w.registered = subject + "\x00" + text
	}
	w.header[0] = 0
	binary.BigEndian.PutUint32(w.header[1:], uint32(id))
	e.mu.Lock()
	e.writers[k] = w
	e.fast[s] = w
	if isKey {
		e.keyOf[s] = w
	}
	e.mu.Unlock()
	return w, nil
}

// Forget drops the writers of schemas that no event will use again (envelope.Builder.Retired),
// and the registered ids no remaining writer has. A reconnect or a DDL makes new relation
// versions, whose schemas are new objects: without this every version would stay.
func (e *Encoder) Forget(schemas []*envelope.Schema) {
	if len(schemas) == 0 {
		return
	}
	gone := make(map[*envelope.Schema]bool, len(schemas))
	for _, s := range schemas {
		gone[s] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	orphans := map[string]bool{}
	for k, w := range e.writers {
		if gone[k.schema] {
			delete(e.writers, k)
			if w.registered != "" {
				orphans[w.registered] = true
			}
		}
	}
	for s := range gone {
		delete(e.fast, s)
		delete(e.keyOf, s)
	}
	for _, w := range e.writers {
		delete(orphans, w.registered)
	}
	for ck := range orphans {
		delete(e.ids, ck)
	}
}

// registerDerived registers the derived schema text of s under subject and returns the text
// registered and its id.
//
// Debezium names a relation's schemas after its topic (orders-v1.Envelope), and Confluent's
// AvroData makes that the record Envelope in the namespace orders-v1: Java's Avro checks only
// the name, so registries on Avro 1.11 (Confluent Schema Registry before 8.0.3) take the
// schema as it is, and so does procon-cdc. Registries on Avro 1.12 (Confluent 8.0.3 and later
// with schema.validate.names, Apicurio 3) refuse it as invalid, and Debezium then works only
// with schema.name.adjustment.mode: avro; so on such a refusal the schema is registered with
// the names that mode gives (orders_v1.Envelope), which is what Debezium registers there.
func (e *Encoder) registerDerived(ctx context.Context, subject, topic string, s *envelope.Schema, text string) (string, int, error) {
	e.mu.Lock()
	adjust := e.adjusted[subject]
	e.mu.Unlock()
	if !adjust {
		id, err := e.register(ctx, subject, text, topic)
		var re *registry.Error
		if err == nil || !errors.As(err, &re) || re.StatusCode != http.StatusUnprocessableEntity || !namespaceOutsideSpec(s) {
			return text, id, err
		}
		e.log.Warn("the registry refuses namespaces outside the Avro specification (Avro 1.12 parsers do); registering the names schema.name.adjustment.mode: avro gives, as Debezium needs on this registry",
			"subject", subject, "topic", topic, "refused", re.Message)
		e.mu.Lock()
		e.adjusted[subject] = true
		e.mu.Unlock()
	}
	adjusted, err := AdjustedSchemaOf(s)
	if err != nil {
		return "", 0, err
	}
	id, err := e.register(ctx, subject, adjusted, topic)
	return adjusted, id, err
}

// register returns the id of schema text under subject, registering it once.
func (e *Encoder) register(ctx context.Context, subject, text, topic string) (int, error) {
	ck := subject + "\x00" + text
	e.mu.Lock()
	id, ok := e.ids[ck]
	e.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := e.reg.Register(ctx, subject, text)
	if err != nil {
		return 0, fmt.Errorf("avro: topic %s: %w", topic, err)
	}
	e.log.Info("Avro schema registered", "subject", subject, "schema_id", id, "topic", topic)
	e.mu.Lock()
	e.ids[ck] = id
	e.mu.Unlock()
	return id, nil
}

// pin fetches and parses a registered version, once.
func (e *Encoder) pin(ctx context.Context, subject string, version int) (*pinnedSchema, error) {
	k := pinKey{subject, version}
	e.mu.Lock()
	p := e.pinned[k]
	e.mu.Unlock()
	if p != nil {
		return p, nil
	}
	id, text, err := e.reg.SchemaByVersion(ctx, subject, version)
	if err != nil {
		return nil, fmt.Errorf("avro: pinned version %d of subject %s: %w", version, subject, err)
	}
	parsed, err := registry.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("avro: version %d of subject %s (id %d) does not parse: %w", version, subject, id, err)
	}
	p = &pinnedSchema{id: id, text: text, schema: parsed}
	e.log.Info("using pinned Avro schema", "subject", subject, "schema_version", version, "schema_id", id)
	e.mu.Lock()
	e.pinned[k] = p
	e.mu.Unlock()
	return p, nil
}

// derive renders and parses the Avro schema of a Connect schema.
func derive(s *envelope.Schema) (string, hamba.Schema, error) {
	text, err := SchemaOf(s)
	if err != nil {
		return "", nil, err
	}
	parsed, err := registry.Parse(text)
	if err != nil {
		return "", nil, fmt.Errorf("the derived Avro schema does not parse: %w", err)
	}
	return text, parsed, nil
}
