// Package eventrouter turns the change events of outbox tables (relation_configs.<table>.outbox)
// into outbox events, as Debezium's outbox event router (io.debezium.transforms.outbox.EventRouter,
// 3.6) turns a connector's records: an insert becomes a record on the topic its route column
// names, keyed by the aggregate id, whose value is the payload column (or an envelope holding
// it), with the event id and chosen columns as headers; deletes, tombstones and truncates of
// the outbox table produce nothing, and updates follow table.op.invalid.behavior.
//
// The router works on events built by envelope.Builder (and by the snapshot readers), so
// column values are exactly what Debezium's change events hold, and the outbox event is made
// of them as the router makes it of the "after" struct.
//
// Concurrency: a Router is used by one goroutine at a time (the pipeline's, or an initial
// snapshot worker's under Route's own lock).
package eventrouter

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
)

// Config configures a Router.
type Config struct {
	// Tables holds the outbox options of each outbox relation, by "schema.table".
	Tables map[string]*config.Outbox
	// JSONSchemas is json.schemas: header.converter json writes headers with it.
	JSONSchemas bool
	Logger      *slog.Logger
}

// Router routes the events of outbox relations. See the package documentation.
type Router struct {
	mu      sync.Mutex
	log     *slog.Logger
	tables  map[string]*table
	schemas map[string]*envelope.Schema // interned by rendering: key, payload and envelope schemas
	// envelopes are the envelope schemas by payload schema (or schema version): see envelopeSchema.
	envelopes map[string]*envelope.Schema
	retired   []*envelope.Schema
}

// maxSchemas bounds the interned schemas: expanded payloads make a schema per distinct
// document shape, which whoever writes the outbox table chooses.
const maxSchemas = 1024

type table struct {
	relation string
	opt      *config.Outbox
	route    *regexp.Regexp
	expand   *expander
	header   func(*envelope.Schema, any) ([]byte, error)
	layouts  map[*envelope.Schema]*layout // by the "after" struct's schema: one per relation version
}

// layout is where an outbox row's parts are in one relation version's "after" struct.
type layout struct {
	id, key, payload, route    int // field indexes
	timestamp, version, partit int // -1 when not configured
	tsDivisor                  int64
	headers                    []placed
	envelope                   []placed
	afterName                  string
}

type placed struct {
	alias string
	index int // -1: the column is missing and table.field.additional.missing is ignore
}

// New returns a Router for the outbox tables of cfg.
func New(cfg Config) (*Router, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{log: cfg.Logger, tables: map[string]*table{}, schemas: map[string]*envelope.Schema{}, envelopes: map[string]*envelope.Schema{}}
	for rel, opt := range cfg.Tables {
		re, err := opt.RouteRegexp()
		if err != nil {
			return nil, fmt.Errorf("relation_configs.%s.outbox.route.topic.regex: %w", rel, err)
		}
		t := &table{relation: rel, opt: opt, route: re, layouts: map[*envelope.Schema]*layout{},
			expand: &expander{fieldName: func(s string) string { return s }, optionalBytes: opt.JSONPayloadNull == "optional_bytes"}}
		if opt.FieldNameAdjustment == "avro" {
			t.expand.fieldName = envelope.AvroFieldName
		}
		t.header = envelope.SimpleHeaderValue
		if opt.HeaderConverter == "json" {
			enc := &envelope.JSONEncoder{Schemas: cfg.JSONSchemas}
			t.header = enc.EncodeValue
		}
		r.tables[rel] = t
	}
	return r, nil
}

// Routes reports whether relation ("schema.table") is an outbox table.
func (r *Router) Routes(relation string) bool {
	_, ok := r.tables[relation]
	return ok
}

// Check finds the outbox columns of relation in the schema of its change events (a relation
// version's envelope), as the first of its inserts will: a column the options name and the
// table lacks, or one of a type they cannot use, is an error naming them.
func (r *Router) Check(relation string, envelopeSchema *envelope.Schema) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tables[relation]
	i := envelopeSchema.FieldIndex("after")
	if t == nil || i < 0 {
		return nil
	}
	_, err := t.layoutOf(envelopeSchema.Fields[i].Schema)
	return err
}

// RowError is an outbox row that cannot become an outbox event, under
// table.op.invalid.behavior: fatal.
type RowError struct {
	Relation string
	LSN      string
	Problem  string
}

func (e *RowError) Error() string {
	return fmt.Sprintf("outbox table %s: the change at LSN %s cannot become an outbox event: %s; the slot stays before its transaction. Set relation_configs.%s.outbox.table.op.invalid.behavior to warn to skip such rows with a warning",
		e.Relation, e.LSN, e.Problem, e.Relation)
}

// Route replaces, in events (those built from change c; c may be nil for an initial snapshot
// row), the events of outbox relations with their outbox events, in place, and returns the
// events that remain.
func (r *Router) Route(c *replication.Change, events []*envelope.Event) ([]*envelope.Event, error) {
	if len(r.tables) == 0 {
		return events, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := events[:0]
	for _, ev := range events {
		t := r.tables[ev.Relation]
		if t == nil || (ev.Kind != envelope.KindData && ev.Kind != envelope.KindTombstone) {
			out = append(out, ev)
			continue
		}
		if ev.Kind == envelope.KindTombstone {
			continue
		}
		op, _ := ev.Value.Get("op").(string)
		switch op {
		case "c", "r":
		case "u":
			if err := r.invalid(t, c, "an update of the outbox table (outbox rows are only inserted, and deleted)"); err != nil {
				return nil, err
			}
			continue
		default: // d, t
			continue
		}
		routed, problem, err := r.outbox(t, ev)
		if err != nil {
			return nil, err
		}
		if problem != "" {
			if err := r.invalid(t, c, problem); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, routed)
	}
	clear(events[len(out):])
	return out, nil
}

// invalid applies table.op.invalid.behavior to a change that makes no outbox event.
func (r *Router) invalid(t *table, c *replication.Change, problem string) error {
	lsn, xid := "", uint32(0)
	if c != nil {
		lsn = c.LSN.String()
		if c.Tx != nil {
			xid = c.Tx.XID
		}
	}
	switch t.opt.OpInvalidBehavior {
	case "fatal":
		return &RowError{Relation: t.relation, LSN: lsn, Problem: problem}
	case "error":
		r.log.Error("outbox: change skipped", "relation", t.relation, "lsn", lsn, "xid", xid, "problem", problem)
	default:
		r.log.Warn("outbox: change skipped", "relation", t.relation, "lsn", lsn, "xid", xid, "problem", problem)
	}
	return nil
}

// outbox makes the outbox event of an insert. A problem is a row that cannot be routed (it is
// the row's, and table.op.invalid.behavior decides); an error is the configuration's or the
// table's (a column the options name is missing, of a type they cannot use).
func (r *Router) outbox(t *table, ev *envelope.Event) (_ *envelope.Event, problem string, err error) {
	after, _ := ev.Value.Get("after").(*envelope.Value)
	if after == nil {
		return nil, "the change has no row image", nil
	}
	l, err := t.layoutOf(after.Schema)
	if err != nil {
		return nil, "", err
	}
	fields := after.Schema.Fields
	opt := t.opt

	routedBy, ok := after.Fields[l.route].(string)
	if !ok {
		return nil, fmt.Sprintf("its %s (route.by.field) is null", opt.RouteByField), nil
	}
	topic, problem := t.topic(routedBy)
	if problem != "" {
		return nil, problem, nil
	}

	o := &envelope.OutboxRecord{Partition: -1}
	if ts, ok := ev.Value.Get("ts_ms").(int64); ok {
		o.TimestampMS = ts
	}
	if l.timestamp >= 0 {
		if ts, ok := after.Fields[l.timestamp].(int64); ok {
			o.TimestampMS = ts / l.tsDivisor
		}
	}

	// Headers: the event id, then the columns placed in headers, in their order.
	if o.Headers, err = t.appendHeader(o.Headers, "id", fields[l.id].Schema, after.Fields[l.id]); err != nil {
		return nil, "", err
	}
	for _, h := range l.headers {
		if h.index < 0 {
			continue
		}
		if o.Headers, err = t.appendHeader(o.Headers, h.alias, fields[h.index].Schema, after.Fields[h.index]); err != nil {
			return nil, "", err
		}
	}
	if l.partit >= 0 {
		if p, ok := after.Fields[l.partit].(int32); ok {
			o.Partition = p
		}
	}

	payloadSchema, payload := fields[l.payload].Schema, after.Fields[l.payload]
	if text, isText := payload.(string); isText && opt.ExpandJSONPayload {
		s, v, err := t.expand.expand(opt.FieldEventPayload, text)
		if err != nil {
			if !errors.Is(err, errExpand) {
				return nil, "", err
			}
			r.log.Warn("outbox: JSON expansion failed; the payload is sent as it is", "relation", t.relation, "topic", topic, "problem", err.Error())
		} else {
			payloadSchema, payload = s, v
		}
	}
	if payloadSchema, err = r.intern(payloadSchema); err != nil {
		return nil, "", err
	}

	out := &envelope.Event{Kind: envelope.KindOutbox, Topic: topic, Relation: ev.Relation, Outbox: o}
	o.Key = after.Fields[l.key]
	if out.KeySchema, err = r.intern(fields[l.key].Schema); err != nil {
		return nil, "", err
	}

	empty := payload == nil
	if s, ok := payload.(string); ok && blank(s) {
		empty = true
	}
	switch {
	case empty && opt.TombstoneOnEmpty:
		// A tombstone: no value schema.
	case len(l.envelope) == 0:
		out.ValueSchema, o.Value = payloadSchema, payload
	default:
		values := []any{payload}
		for _, e := range l.envelope {
			if e.index >= 0 {
				values = append(values, after.Fields[e.index])
			}
		}
		if out.ValueSchema, err = r.envelopeSchema(t, l, after, routedBy, payloadSchema); err != nil {
			return nil, "", err
		}
		o.Value = &envelope.Value{Schema: out.ValueSchema, Fields: values}
	}
	return out, "", nil
}

// blank reports whether Java's String.trim leaves s empty: every character is at most a space
// (the control characters included, other Unicode spaces not).
func blank(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] > ' ' {
			return false
		}
	}
	return true
}

// envelopeSchema is the schema of an outbox event's envelope: the payload and the columns
// placed in the envelope, named after the "after" struct and the routed value. Debezium keeps
// the first one it built for each payload schema (or, with table.field.event.schema.version,
// for each version) and uses it for every later event with that payload schema, whatever its
// routed value; so does this, so that the names are the ones Debezium writes.
func (r *Router) envelopeSchema(t *table, l *layout, after *envelope.Value, routedBy string, payload *envelope.Schema) (*envelope.Schema, error) {
	fields := after.Schema.Fields
	s := &envelope.Schema{Type: envelope.Struct, Name: envelopeName(l.afterName, routedBy),
		Fields: []envelope.Field{{Name: "payload", Schema: payload}}}
	for _, e := range l.envelope {
		if e.index >= 0 {
			s.Fields = append(s.Fields, envelope.Field{Name: e.alias, Schema: fields[e.index].Schema})
		}
	}
	var key string
	if l.version >= 0 {
		v, ok := after.Fields[l.version].(int32)
		if ok {
			s.Version = int(v)
		}
		key = fmt.Sprintf("%s\x00version %d %t", t.relation, v, ok)
	} else {
		text, err := envelope.AppendSchemaJSON(nil, payload)
		if err != nil {
			return nil, err
		}
		key = t.relation + "\x00" + string(text)
	}
	if have, ok := r.envelopes[key]; ok && sameFields(have, s) {
		return have, nil
	}
	s, err := r.intern(s)
	if err != nil {
		return nil, err
	}
	if len(r.envelopes) >= maxSchemas {
		clear(r.envelopes)
	}
	r.envelopes[key] = s
	return s, nil
}

// sameFields reports whether a and b have the same fields, schemas included: a remembered
// envelope is used only for values it describes.
func sameFields(a, b *envelope.Schema) bool {
	if len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if a.Fields[i].Name != b.Fields[i].Name || a.Fields[i].Schema != b.Fields[i].Schema {
			return false
		}
	}
	return true
}

// envelopeName is the name Debezium gives the envelope of an outbox event: the routed value
// inserted before the last part of the "after" struct's name (<topic>.Value).
func envelopeName(afterName, routedBy string) string {
	if afterName == "" {
		return routedBy
	}
	if i := strings.LastIndexByte(afterName, '.'); i >= 0 {
		return afterName[:i+1] + routedBy + "." + afterName[i+1:]
	}
	return routedBy + "." + afterName
}

func (t *table) appendHeader(hs []envelope.Header, name string, s *envelope.Schema, v any) ([]envelope.Header, error) {
	b, err := t.header(s, v)
	if err != nil {
		return nil, fmt.Errorf("outbox table %s: header %s: %w", t.relation, name, err)
	}
	return append(hs, envelope.Header{Key: name, Value: b}), nil
}

// topic is the routed value through route.topic.regex and route.topic.replacement, as Kafka's
// RegexRouter applies them (a value the regex does not match as a whole is the topic itself).
func (t *table) topic(routedBy string) (string, string) {
	// A copy: the routed value lives in the event's memory (DESIGN invariant 31), and the
	// writer and the resume check keep topic names for the process's life.
	topic := strings.Clone(routedBy)
	if m := t.route.FindStringSubmatchIndex(routedBy); m != nil {
		b, err := config.ExpandReplacement(nil, t.opt.RouteTopicReplace, t.route, routedBy, m)
		if err != nil {
			return "", err.Error()
		}
		topic = string(b)
	}
	if !validTopic(topic) {
		return "", fmt.Sprintf("its %s %q routes it to %q, which is not a valid Kafka topic name (1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'; not . or ..)", t.opt.RouteByField, clip(routedBy), clip(topic))
	}
	return topic, ""
}

func validTopic(s string) bool {
	if len(s) == 0 || len(s) > 249 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// clip bounds text from a row in a log line or an error.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// layoutOf finds the outbox columns in a relation version's "after" struct, once per version.
func (t *table) layoutOf(after *envelope.Schema) (*layout, error) {
	if l, ok := t.layouts[after]; ok {
		return l, nil
	}
	opt := t.opt
	at := "relation_configs." + t.relation + ".outbox."
	missing := func(option, column string) error {
		return fmt.Errorf("outbox table %s has no column %s, which %s%s names", t.relation, column, at, option)
	}
	l := &layout{key: after.FieldIndex(opt.FieldEventKey), timestamp: -1, version: -1, partit: -1, afterName: after.Name}
	if l.id = after.FieldIndex(opt.FieldEventID); l.id < 0 {
		return nil, missing("table.field.event.id", opt.FieldEventID)
	}
	if l.payload = after.FieldIndex(opt.FieldEventPayload); l.payload < 0 {
		return nil, missing("table.field.event.payload", opt.FieldEventPayload)
	}
	if l.key < 0 {
		return nil, missing("table.field.event.key", opt.FieldEventKey)
	}
	if l.route = after.FieldIndex(opt.RouteByField); l.route < 0 {
		return nil, missing("route.by.field", opt.RouteByField)
	}
	if s := after.Fields[l.route].Schema; s.Type != envelope.String {
		return nil, fmt.Errorf("outbox table %s: column %s (%sroute.by.field) is written as a %s; it must be text (a string)", t.relation, opt.RouteByField, at, s.Type)
	}
	if c := opt.FieldEventTimestamp; c != "" {
		if l.timestamp = after.FieldIndex(c); l.timestamp < 0 {
			return nil, missing("table.field.event.timestamp", c)
		}
		s := after.Fields[l.timestamp].Schema
		switch s.Name {
		case "io.debezium.time.Timestamp":
			l.tsDivisor = 1
		case "io.debezium.time.MicroTimestamp":
			l.tsDivisor = 1_000
		case "io.debezium.time.NanoTimestamp":
			l.tsDivisor = 1_000_000
		default:
			return nil, fmt.Errorf("outbox table %s: column %s (%stable.field.event.timestamp) is written as %s %q; the event timestamp must be a timestamp without time zone (io.debezium.time.Timestamp, MicroTimestamp or NanoTimestamp)", t.relation, c, at, s.Type, s.Name)
		}
	}
	if c := opt.FieldSchemaVersion; c != "" {
		if l.version = after.FieldIndex(c); l.version < 0 {
			return nil, missing("table.field.event.schema.version", c)
		}
		if s := after.Fields[l.version].Schema; s.Type != envelope.Int32 {
			return nil, fmt.Errorf("outbox table %s: column %s (%stable.field.event.schema.version) is written as a %s; it must be an integer (int32)", t.relation, c, at, s.Type)
		}
	}
	if opt.HeaderConverter == "simple" {
		if s := after.Fields[l.id].Schema; !envelope.SimpleHeaderType(s) {
			return nil, fmt.Errorf("outbox table %s: the event id column %s is written as a %s, which header.converter simple cannot write; set %sheader.converter: json", t.relation, opt.FieldEventID, s.Type, at)
		}
	}
	for _, p := range opt.Placements() {
		i := after.FieldIndex(p.Column)
		if i < 0 && opt.AdditionalMissing != "ignore" {
			return nil, missing("table.fields.additional.placement", p.Column)
		}
		switch p.Where {
		case "header":
			if i >= 0 && opt.HeaderConverter == "simple" && !envelope.SimpleHeaderType(after.Fields[i].Schema) {
				return nil, fmt.Errorf("outbox table %s: column %s is placed in a header and written as a %s, which header.converter simple cannot write; set %sheader.converter: json", t.relation, p.Column, after.Fields[i].Schema.Type, at)
			}
			l.headers = append(l.headers, placed{alias: p.Alias, index: i})
		case "envelope":
			l.envelope = append(l.envelope, placed{alias: p.Alias, index: i})
		case "partition":
			if i >= 0 {
				if s := after.Fields[i].Schema; s.Type != envelope.Int32 {
					return nil, fmt.Errorf("outbox table %s: column %s is placed at partition and written as a %s; it must be an integer (int32)", t.relation, p.Column, s.Type)
				}
			}
			l.partit = i
		}
	}
	if len(t.layouts) >= 64 { // relation versions retired long ago
		clear(t.layouts)
	}
	t.layouts[after] = l
	return l, nil
}

// intern returns the one schema object of s's rendering: encoders keep what they derive from
// a schema by its pointer (renderings, Avro registrations), and a schema per event would make
// them grow without end.
func (r *Router) intern(s *envelope.Schema) (*envelope.Schema, error) {
	text, err := envelope.AppendSchemaJSON(nil, s)
	if err != nil {
		return nil, err
	}
	if have, ok := r.schemas[string(text)]; ok {
		return have, nil
	}
	if len(r.schemas) >= maxSchemas {
		for _, old := range r.schemas {
			r.retired = append(r.retired, old)
		}
		clear(r.schemas)
	}
	r.schemas[string(text)] = s
	return s, nil
}

// Retired returns the schemas no event built from now on uses, once each: the encoders may
// forget them once the events built so far are encoded.
func (r *Router) Retired() []*envelope.Schema {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.retired
	r.retired = nil
	return out
}
