package event

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	hamba "github.com/hamba/avro/v2"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// DefaultPlaceholder is Debezium's unavailable.value.placeholder.
const DefaultPlaceholder = "__debezium_unavailable_value"

// Options configure a Decoder. The modes matter for what a record does not say itself: the
// schemas of JSON with schemas and of Avro name every semantic type, schemaless JSON does not.
type Options struct {
	// Registry fetches the writer schemas of Avro records by id; nil makes an Avro record an
	// error.
	Registry *registry.Client
	// Placeholder is the producer's unavailable.value.placeholder (default
	// "__debezium_unavailable_value"; a "hex:" prefix gives bytes in hex, as in Debezium).
	Placeholder string
	// TimePrecisionMode is the producer's time.precision.mode, for schemaless JSON only:
	// adaptive (default), adaptive_time_microseconds, connect, isostring, microseconds or
	// nanoseconds. It says in which unit a number for a time or timestamp column is.
	TimePrecisionMode string
	// DecimalHandlingMode is the producer's decimal.handling.mode, for schemaless JSON only:
	// precise (default: a string for a numeric(p,s) column is a base64 Decimal), string or
	// double (a string is the number's text).
	DecimalHandlingMode string
	// BinaryHandlingMode is the producer's binary.handling.mode: bytes (default), base64,
	// base64-url-safe or hex. It says how a string for a bytea column is encoded; with bytes,
	// schemaless JSON carries bytes as base64 and a string with a schema is bytea's own text.
	BinaryHandlingMode string
}

// settings are a Decoder's options as every Value it makes reads them.
type settings struct {
	placeholder      string // the placeholder as text
	placeholderBytes []byte
	timeMode         string
	decimalMode      string
	binaryMode       string

	// The placeholder as the other encodings write it, made once: Unchanged is asked of
	// every value.
	placeholderBase64, placeholderHstore, placeholderUUID string
}

// derive fills the placeholder's other encodings.
func (c *settings) derive() *settings {
	c.placeholderBase64 = base64.StdEncoding.EncodeToString(c.placeholderBytes)
	b, _ := json.Marshal(map[string]string{c.placeholder: c.placeholder})
	c.placeholderHstore = string(b)
	c.placeholderUUID = nameUUID3(c.placeholderBytes)
	return c
}

// defaults are the settings of a Value made without a Decoder.
var defaults = (&settings{placeholder: DefaultPlaceholder, placeholderBytes: []byte(DefaultPlaceholder),
	timeMode: "adaptive", decimalMode: "precise", binaryMode: "bytes"}).derive()

func (v Value) settings() *settings {
	if v.cfg == nil {
		return defaults
	}
	return v.cfg
}

// timeUnit is the unit, in nanoseconds, of a schemaless number for a time column.
func (c *settings) timeUnit(t *pgType) int64 {
	switch c.timeMode {
	case "connect":
		return 1e6
	case "nanoseconds":
		return 1
	case "adaptive":
		if t.precision() <= 3 {
			return 1e6
		}
	}
	return 1e3
}

// timestampUnit is the unit, in nanoseconds, of a schemaless number for a timestamp column.
func (c *settings) timestampUnit(t *pgType) int64 {
	switch c.timeMode {
	case "connect":
		return 1e6
	case "nanoseconds":
		return 1
	case "adaptive", "adaptive_time_microseconds":
		if t.precision() <= 3 {
			return 1e6
		}
	}
	return 1e3
}

func (c *settings) decodeBinary(s string) ([]byte, error) {
	var b []byte
	var err error
	switch c.binaryMode {
	case "hex":
		b, err = hex.DecodeString(s)
	case "base64-url-safe":
		b, err = base64.URLEncoding.DecodeString(s)
	default:
		b, err = base64.StdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, fmt.Errorf("not %s-encoded binary (binary.handling.mode)", c.binaryMode)
	}
	return b, nil
}

// Limits on what a record can make the Decoder do: Kafka bounds a record's size, but a small
// record can still claim deep nesting or large allocations.
const (
	// maxRecordBytes bounds a key or value (Kafka's own default limit is 1 MiB; procon-cdc's
	// kafka.max_record_bytes can raise it).
	maxRecordBytes = 64 << 20
	// maxSchemaDepth bounds the nesting of a Connect schema (Debezium's go three deep).
	maxSchemaDepth = 32
)

// Decoder reads Kafka records into Events. It is safe for concurrent use.
type Decoder struct {
	cfg *settings
	// schemaByID fetches an Avro writer schema's text (the registry; a fixed table in the
	// fuzz test).
	schemaByID func(ctx context.Context, id int) (string, error)

	mu      sync.Mutex
	schemas map[int]*avroSchema
	// jsonSchemas are the Connect schemas of JSON records by their text: with
	// schemas.enable=true every record of a topic repeats its schema, parsed once here.
	jsonSchemas map[string]*envelope.Schema
	// parsedJSON are the last JSON schemas the fast path parsed, with their texts: a record
	// whose schema begins with one of these texts needs no scan for its end (fastDocument).
	parsedJSON [8]parsedSchema
	parsedNext int
}

type parsedSchema struct {
	text   string
	schema *envelope.Schema
}

// maxJSONSchemas bounds the cache of JSON schemas; it is emptied when full (a topic has a
// few schemas at a time: key, value, and a new value schema after each change of the table).
const maxJSONSchemas = 256

// NewDecoder returns a Decoder; it checks the options.
func NewDecoder(opts Options) (*Decoder, error) {
	c := &settings{placeholder: opts.Placeholder, timeMode: opts.TimePrecisionMode,
		decimalMode: opts.DecimalHandlingMode, binaryMode: opts.BinaryHandlingMode}
	if c.placeholder == "" {
		c.placeholder = DefaultPlaceholder
	}
	c.placeholderBytes = []byte(c.placeholder)
	if h, ok := strings.CutPrefix(c.placeholder, "hex:"); ok {
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("event: placeholder %q: invalid hex after hex:", c.placeholder)
		}
		c.placeholderBytes = b
		c.placeholder = envelope.JavaString(b)
	}
	check := func(field string, v *string, def string, allowed ...string) error {
		if *v == "" {
			*v = def
			return nil
		}
		for _, a := range allowed {
			if *v == a {
				return nil
			}
		}
		return fmt.Errorf("event: %s %q: want one of %s", field, *v, strings.Join(allowed, ", "))
	}
	if err := check("TimePrecisionMode", &c.timeMode, "adaptive", "adaptive", "adaptive_time_microseconds", "connect", "isostring", "microseconds", "nanoseconds"); err != nil {
		return nil, err
	}
	if err := check("DecimalHandlingMode", &c.decimalMode, "precise", "precise", "string", "double"); err != nil {
		return nil, err
	}
	if err := check("BinaryHandlingMode", &c.binaryMode, "bytes", "bytes", "base64", "base64-url-safe", "hex"); err != nil {
		return nil, err
	}
	c.derive()
	d := &Decoder{cfg: c, schemas: map[int]*avroSchema{}, jsonSchemas: map[string]*envelope.Schema{}}
	if opts.Registry != nil {
		d.schemaByID = opts.Registry.SchemaByID
	}
	return d, nil
}

// Decode reads one record. The error of a record that cannot be read says what is wrong with
// it and names its topic, partition and offset; it wraps the registry's error when a schema
// could not be fetched (which may be transient).
func (d *Decoder) Decode(ctx context.Context, rec *sink.ConsumedRecord) (*Event, error) {
	ev, err := d.decode(ctx, rec)
	if err != nil {
		return nil, fmt.Errorf("event: record %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
	}
	return ev, nil
}

func (d *Decoder) decode(ctx context.Context, rec *sink.ConsumedRecord) (*Event, error) {
	ev := &Event{}
	if err := d.headers(rec, ev); err != nil {
		return nil, err
	}
	if len(rec.Key) > 0 {
		key, err := d.row(ctx, rec.Key)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		ev.Key = key
	}
	v, err := d.document(ctx, rec.Value)
	if err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	if v == nil {
		ev.Tombstone = true
		return ev, nil
	}
	if err := d.envelopeOf(v, ev); err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	return ev, nil
}

func (d *Decoder) headers(rec *sink.ConsumedRecord, ev *Event) error {
	_, hasTx := txid.HeaderValue(rec.Headers, txid.HeaderTx)
	_, hasSeq := txid.HeaderValue(rec.Headers, txid.HeaderSeq)
	if hasTx || hasSeq {
		k, err := txid.FromRecordHeaders(rec.Headers)
		if err != nil {
			return fmt.Errorf("headers: %w", err)
		}
		ev.Tx, ev.HasTx = k, true
	}
	if src, ok := txid.HeaderValue(rec.Headers, txid.HeaderSource); ok {
		ev.SourceHeader = string(src)
	}
	return nil
}

// doc is a decoded key or value: a Connect value with its schema, or schemaless JSON whose
// top-level object keeps its field order.
type doc struct {
	schema *envelope.Schema // nil: schemaless
	value  any              // with a schema: the Connect value
	fields []jsonField      // schemaless: the object's fields in order
}

type jsonField struct {
	name string
	raw  json.RawMessage
}

// document decodes a key or value; nil for a null one.
func (d *Decoder) document(ctx context.Context, b []byte) (*doc, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > maxRecordBytes {
		return nil, fmt.Errorf("%d bytes, more than the %d a record may have", len(b), maxRecordBytes)
	}
	if b[0] == 0 {
		return d.avroDocument(ctx, b)
	}
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("only white space")
	}
	switch trimmed[0] {
	case '{':
	case 'n':
		if string(bytes.TrimSpace(trimmed)) == "null" {
			return nil, nil
		}
		fallthrough
	default:
		return nil, fmt.Errorf("neither a JSON object nor Confluent-framed Avro (first byte 0x%02x)", b[0])
	}
	// Records with schemas mostly have the shape the fast path reads; it declines the rest.
	if dc, ok := d.fastDocument(trimmed); ok {
		return dc, nil
	}
	return d.jsonDocument(trimmed)
}

// jsonDocument is the general path of a JSON object (b starts with '{'): any shape, every
// error explained.
func (d *Decoder) jsonDocument(b []byte) (*doc, error) {
	fields, err := orderedObject(b)
	if err != nil {
		return nil, err
	}
	if len(fields) == 2 && ((fields[0].name == "schema" && fields[1].name == "payload") || (fields[0].name == "payload" && fields[1].name == "schema")) {
		// JsonConverter with schemas.enable=true.
		var rawSchema, rawPayload json.RawMessage
		for _, f := range fields {
			if f.name == "schema" {
				rawSchema = f.raw
			} else {
				rawPayload = f.raw
			}
		}
		if string(rawSchema) == "null" {
			if string(rawPayload) == "null" {
				return nil, nil
			}
			return nil, errors.New(`"schema" is null but "payload" is not`)
		}
		s, err := d.connectSchema(rawSchema)
		if err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		p, err := decodeJSONDoc(rawPayload)
		if err != nil {
			return nil, fmt.Errorf("payload: %w", err)
		}
		v, err := connectFromJSON(s, p, "")
		if err != nil {
			return nil, fmt.Errorf("payload does not match its schema: %w", err)
		}
		if v == nil {
			return nil, nil
		}
		return &doc{schema: s, value: v}, nil
	}
	return &doc{fields: fields}, nil
}

// connectSchema parses a JsonConverter schema, or finds it parsed. The schemas it returns are
// shared by every record that carries the same text, and never modified.
func (d *Decoder) connectSchema(raw json.RawMessage) (*envelope.Schema, error) {
	return d.cachedSchema(raw, false)
}

// cachedSchema is connectSchema; remember also keeps a schema it parses among the parsedJSON
// that fastDocument compares records with (only the fast path's: their nesting is bounded).
func (d *Decoder) cachedSchema(raw []byte, remember bool) (*envelope.Schema, error) {
	d.mu.Lock()
	s := d.jsonSchemas[string(raw)]
	d.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := parseConnectSchema(raw)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if len(d.jsonSchemas) >= maxJSONSchemas {
		clear(d.jsonSchemas)
		clear(d.parsedJSON[:]) // so that both give a text the same *Schema
	}
	text := string(raw)
	d.jsonSchemas[text] = s
	if remember {
		d.parsedJSON[d.parsedNext%len(d.parsedJSON)] = parsedSchema{text: text, schema: s}
		d.parsedNext++
	}
	d.mu.Unlock()
	return s, nil
}

// orderedObject splits a JSON object into its fields in order; duplicate names are an error.
func orderedObject(b []byte) ([]jsonField, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	var out []jsonField
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, fmt.Errorf("field %q appears twice", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("invalid JSON in field %q: %w", name, err)
		}
		out = append(out, jsonField{name: name, raw: raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the object")
	}
	return out, nil
}

// decodeJSONDoc decodes one JSON value with numbers kept as json.Number (encoding/json bounds
// its nesting).
func decodeJSONDoc(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: data after the value")
	}
	return v, nil
}

// row decodes a key: a struct, or a schemaless object.
func (d *Decoder) row(ctx context.Context, b []byte) (*Row, error) {
	dc, err := d.document(ctx, b)
	if err != nil || dc == nil {
		return nil, err
	}
	return d.rowOf(dc)
}

func (d *Decoder) rowOf(dc *doc) (*Row, error) {
	if dc.schema == nil {
		r := &Row{Fields: make([]Field, 0, len(dc.fields))}
		for _, f := range dc.fields {
			v, err := decodeJSONDoc(f.raw)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.name, err)
			}
			r.Fields = append(r.Fields, Field{Name: f.name, Value: Value{Raw: v, cfg: d.cfg}})
		}
		return r, nil
	}
	sv, ok := dc.value.(*envelope.Value)
	if !ok || dc.schema.Type != envelope.Struct {
		return nil, fmt.Errorf("a %s, not a struct", dc.schema.Type)
	}
	return d.structRow(sv), nil
}

func (d *Decoder) structRow(sv *envelope.Value) *Row {
	r := &Row{Fields: make([]Field, len(sv.Schema.Fields))}
	for i, f := range sv.Schema.Fields {
		r.Fields[i] = Field{Name: f.Name, Value: Value{Schema: f.Schema, Raw: sv.Fields[i], cfg: d.cfg}}
	}
	return r
}

// envelopeOf reads Debezium's envelope: op, before, after, source.
func (d *Decoder) envelopeOf(dc *doc, ev *Event) error {
	if dc.schema != nil {
		sv, ok := dc.value.(*envelope.Value)
		if !ok || dc.schema.Type != envelope.Struct {
			return fmt.Errorf("a %s, not a struct", dc.schema.Type)
		}
		op, ok := sv.Get("op").(string)
		if !ok {
			return errors.New(`no string "op" field`)
		}
		if err := setOp(ev, op); err != nil {
			return err
		}
		var err error
		get := func(name string) (*Row, error) {
			i := sv.Schema.FieldIndex(name)
			if i < 0 || sv.Fields[i] == nil {
				return nil, nil
			}
			x, ok := sv.Fields[i].(*envelope.Value)
			if !ok {
				return nil, fmt.Errorf("%q is a %s, not a struct", name, sv.Schema.Fields[i].Schema.Type)
			}
			if x == nil {
				return nil, nil
			}
			return d.structRow(x), nil
		}
		if ev.Before, err = get("before"); err != nil {
			return err
		}
		if ev.After, err = get("after"); err != nil {
			return err
		}
		if ev.Source, err = get("source"); err != nil {
			return err
		}
		return checkRows(ev)
	}
	var op string
	for _, f := range dc.fields {
		var err error
		switch f.name {
		case "op":
			if err := json.Unmarshal(f.raw, &op); err != nil {
				return errors.New(`"op" is not a string`)
			}
			if err := setOp(ev, op); err != nil {
				return err
			}
		case "before":
			ev.Before, err = d.jsonRow(f)
		case "after":
			ev.After, err = d.jsonRow(f)
		case "source":
			ev.Source, err = d.jsonRow(f)
		}
		if err != nil {
			return err
		}
	}
	if op == "" {
		return errors.New(`no "op" field: not a Debezium change event`)
	}
	return checkRows(ev)
}

func (d *Decoder) jsonRow(f jsonField) (*Row, error) {
	if string(f.raw) == "null" {
		return nil, nil
	}
	if len(f.raw) == 0 || f.raw[0] != '{' {
		return nil, fmt.Errorf("%q is not an object", f.name)
	}
	fields, err := orderedObject(f.raw)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", f.name, err)
	}
	r, err := d.rowOf(&doc{fields: fields})
	if err != nil {
		return nil, fmt.Errorf("%q: %w", f.name, err)
	}
	return r, nil
}

func setOp(ev *Event, op string) error {
	switch op {
	case "c", "u", "d", "r", "t":
		ev.Op = Op(op[0])
		return nil
	}
	if len(op) > 8 {
		op = op[:8] + "..."
	}
	return fmt.Errorf("unknown op %q (want c, u, d, r or t)", op)
}

// checkRows refuses events without the row image their operation needs.
func checkRows(ev *Event) error {
	switch ev.Op {
	case Create, Read, Update:
		if ev.After == nil {
			return fmt.Errorf("op %c without an after image", ev.Op)
		}
	case Delete:
		if ev.Before == nil {
			return errors.New("op d without a before image")
		}
	}
	return nil
}

// avroSchema is a writer schema: its Avro form for decoding and the Connect schema rebuilt from
// its connect.* properties.
type avroSchema struct {
	avro    hamba.Schema
	connect *envelope.Schema
}

// avroConfigs bound what a body can make the Avro decoder allocate. hamba allocates a string
// or bytes value at the length the body claims before reading it, and an array at its count,
// so a few bytes could make it allocate megabytes; no value can be longer than the body, and
// no Connect array has more items than the body has bytes (each optional item takes one), so
// a body is decoded with the limits of the smallest tier it fits in.
var avroConfigs = func() (cs []struct {
	limit int
	api   hamba.API
}) {
	for _, limit := range []int{4 << 10, 64 << 10, 1 << 20, 16 << 20, maxRecordBytes} {
		cs = append(cs, struct {
			limit int
			api   hamba.API
		}{limit, hamba.Config{MaxByteSliceSize: limit, MaxSliceAllocSize: limit}.Freeze()})
	}
	return cs
}()

func avroDecoding(size int) hamba.API {
	for _, c := range avroConfigs {
		if size <= c.limit {
			return c.api
		}
	}
	return avroConfigs[len(avroConfigs)-1].api
}

func (d *Decoder) avroDocument(ctx context.Context, b []byte) (*doc, error) {
	if !registry.IsFramed(b) {
		return nil, fmt.Errorf("Confluent-framed Avro of %d bytes, shorter than its 5-byte header", len(b))
	}
	if d.schemaByID == nil {
		return nil, errors.New("Confluent-framed Avro, but no schema registry is configured")
	}
	id := int(binary.BigEndian.Uint32(b[1:5]))
	d.mu.Lock()
	as := d.schemas[id]
	d.mu.Unlock()
	if as == nil {
		text, err := d.schemaByID(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
		if as, err = parseAvroSchema(text); err != nil {
			return nil, fmt.Errorf("schema id %d: %w", id, err)
		}
		d.mu.Lock()
		d.schemas[id] = as
		d.mu.Unlock()
	}
	var v any
	if err := avroDecoding(len(b)).Unmarshal(as.avro, b[5:], &v); err != nil {
		return nil, fmt.Errorf("Avro body (schema id %d): %w", id, err)
	}
	cv, err := connectFromAvro(as.avro, as.connect, v, "")
	if err != nil {
		return nil, fmt.Errorf("Avro body (schema id %d): %w", id, err)
	}
	if cv == nil {
		return nil, nil
	}
	return &doc{schema: as.connect, value: cv}, nil
}
