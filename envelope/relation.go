package envelope

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/procon-cdc/procon/replication"
)

// relSchema is everything derived from one version of a relation: its topic, the Connect
// schemas of key, row and envelope, and one converter per column. JSON and Avro render these
// same schemas.
type relSchema struct {
	rel                     *replication.Relation
	qualified               string
	topic                   string
	cols                    []columnType
	value                   *Schema // <topic>.Value, optional
	key                     *Schema // <topic>.Key, nil when keyless
	envelope                *Schema // <topic>.Envelope
	keyCols                 []int   // indexes into the row of the key fields
	boxedSchema, boxedTable any     // source.schema and source.table, boxed once
}

func (b *Builder) relSchema(rel *replication.Relation) (*relSchema, error) {
	if rs, ok := b.rels[rel]; ok {
		return rs, nil
	}
	rs, err := newRelSchema(rel, &b.cfg)
	if err != nil {
		return nil, fmt.Errorf("relation %s: %w", rel.QualifiedName(), err)
	}
	for i, c := range rs.cols {
		if !c.unknown {
			continue
		}
		col := rel.Columns[i]
		if k := rel.QualifiedName() + "." + col.Name + " " + col.Type.Name; !b.unknownLogged[k] {
			b.unknownLogged[k] = true
			msg := "Debezium cannot map this column's type (it leaves the column out); Procon sends its text form as a string"
			if b.cfg.Options.IncludeUnknown {
				msg = "Debezium cannot map this column's type; with include.unknown.datatypes its text is sent as binary, as Debezium does"
			}
			b.log.Warn(msg, "relation", rel.QualifiedName(), "column", col.Name, "type", col.Type.Name)
		}
	}
	// Relations replaced by a newer version are dropped from the cache; events in flight keep
	// their own pointer. Build runs in stream order, so no change of an older version of the
	// relation comes after this one: a reconnect or a DDL makes a new version, as does a
	// table dropped and created again under its name (a new ID). Their schemas are retired,
	// for the encoders to forget once the events built so far are encoded.
	for old, ors := range b.rels {
		if old.ID == rel.ID || ors.qualified == rs.qualified {
			delete(b.rels, old)
			b.retire(ors)
		}
	}
	b.rels[rel] = rs
	return rs, nil
}

func (b *Builder) retire(rs *relSchema) {
	if rs.key != nil {
		b.retired = append(b.retired, rs.key)
	}
	b.retired = append(b.retired, rs.envelope)
}

// Retired returns the key and envelope schemas of the relation versions dropped from the
// cache since the last call: newer versions replaced them, and no change built from now on
// uses them. Encoders may forget what they derived from them once the events built so far are
// encoded.
func (b *Builder) Retired() []*Schema {
	r := b.retired
	b.retired = nil
	return r
}

// CachedVersions is the number of relation versions whose schemas the Builder keeps (one per
// relation), for tests and diagnostics.
func (b *Builder) CachedVersions() int { return len(b.rels) }

// RetireReader retires the schemas of a Reader nothing will read with again, as Retired
// returns them.
func (b *Builder) RetireReader(r *Reader) { b.retire(r.rs) }

// Schemas returns the key schema (nil when keyless) and the envelope schema that events of
// this relation version get, without caching anything. The engine uses it to check a relation
// against its serialization before streaming.
func (b *Builder) Schemas(rel *replication.Relation) (key, envelope *Schema, err error) {
	rs, err := newRelSchema(rel, &b.cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("relation %s: %w", rel.QualifiedName(), err)
	}
	return rs.key, rs.envelope, nil
}

func newRelSchema(rel *replication.Relation, cfg *Config) (*relSchema, error) {
	q := rel.QualifiedName()
	topic, o := cfg.Topics[q], &cfg.Options
	if topic == "" {
		return nil, fmt.Errorf("no topic configured")
	}
	// Debezium names the schemas after the topic, unless a RegexRouter moved it afterwards.
	prefix := topic
	if p := cfg.SchemaNames[q]; p != "" {
		prefix = p
	}
	rs := &relSchema{rel: rel, qualified: rel.QualifiedName(), topic: topic, cols: make([]columnType, len(rel.Columns)),
		boxedSchema: rel.Schema, boxedTable: rel.Table}
	base := o.adjustSchemaName(prefix)
	fields := make([]Field, len(rel.Columns))
	for i := range rel.Columns {
		col := &rel.Columns[i]
		ct, err := o.columnTypeOf(col)
		if err != nil {
			return nil, err
		}
		s := *ct.schema
		s.Optional = !col.NotNull
		if def, ok := parseDefault(col, ct); ok {
			s.Default, s.HasDefault = def, true
		}
		ct.schema = &s
		ct.inArena = ct.arenaConv() // resolved once: datum runs per value
		rs.cols[i] = ct
		fields[i] = field(o.adjustFieldName(col.Name), ct.schema)
	}
	rs.value = structSchema(base+".Value", 0, true, fields...)
	if len(rel.Key) > 0 {
		keyFields := make([]Field, len(rel.Key))
		rs.keyCols = rel.Key
		for i, ci := range rel.Key {
			keyFields[i] = fields[ci]
		}
		rs.key = structSchema(base+".Key", 0, false, keyFields...)
	}
	rs.envelope = envelopeSchema(base+".Envelope", rs.value)
	return rs, nil
}

// row converts a new tuple. prior, when the server sent the whole old row (REPLICA IDENTITY
// FULL), supplies unchanged TOASTed values if Options.FillUnchangedToast is set.
func (rs *relSchema) row(a *arena, tuple, prior []replication.Datum, o *Options) (*Value, error) {
	if len(tuple) != len(rs.cols) {
		return nil, fmt.Errorf("tuple has %d columns, relation has %d", len(tuple), len(rs.cols))
	}
	v := a.value(rs.value)
	for i, d := range tuple {
		if d.Kind == replication.DatumUnchanged && o.FillUnchangedToast && prior != nil && prior[i].Kind == replication.DatumText {
			d = prior[i]
		}
		x, err := rs.datum(a, i, d, o)
		if err != nil {
			return nil, err
		}
		v.Fields[i] = x
	}
	return v, nil
}

// oldRow converts the old tuple of an update or delete. With only the key sent ('K'), the
// other columns are absent: Debezium fills required ones with their default or zero value.
func (rs *relSchema) oldRow(a *arena, tuple []replication.Datum, kind byte, o *Options) (*Value, error) {
	if tuple == nil {
		return nil, nil
	}
	return rs.row(a, tuple, nil, o)
}

func (rs *relSchema) datum(a *arena, i int, d replication.Datum, o *Options) (any, error) {
	var x any
	switch d.Kind {
	case replication.DatumNull:
	case replication.DatumUnchanged:
		x = o.placeholder(&rs.rel.Columns[i], rs.cols[i].schema)
		if !fits(rs.cols[i].schema, x) {
			// Connect rejects the placeholder for this schema (a list of numbers for
			// date[] as ISO strings, say): Debezium logs the DataException and leaves the
			// field null.
			return nil, nil
		}
		return x, nil
	case replication.DatumText:
		var err error
		if conv := rs.cols[i].inArena; conv != nil && a != nil {
			x, err = conv(a, d.Data)
		} else {
			x, err = rs.cols[i].conv(d.Data)
		}
		if err != nil {
			col := &rs.rel.Columns[i]
			return nil, fmt.Errorf("column %s (%s): %w", col.Name, col.Type.Name, err)
		}
	default:
		return nil, fmt.Errorf("column %s: binary tuple data is not supported", rs.rel.Columns[i].Name)
	}
	if x == nil && !rs.cols[i].schema.Optional {
		// Debezium's converters give a required column without a value its default, else
		// their fallback (the non-key columns of a REPLICA IDENTITY DEFAULT old row).
		return zeroValue(rs.cols[i].schema), nil
	}
	return x, nil
}

// keyOf extracts the key struct from a row value.
func (rs *relSchema) keyOf(a *arena, row *Value) *Value {
	if rs.key == nil || row == nil {
		return nil
	}
	k := a.value(rs.key)
	for i, ci := range rs.keyCols {
		k.Fields[i] = row.Fields[ci]
	}
	return k
}

func keysEqual(a, b *Value) bool {
	if a == nil || b == nil {
		return a == b
	}
	var wa, wb jsonWriter
	if wa.value(a.Schema, a) != nil || wb.value(b.Schema, b) != nil {
		return false
	}
	return bytes.Equal(wa.buf, wb.buf)
}

// placeholder is the value Debezium writes for an unchanged TOASTed column the server did
// not send (UnchangedToastedPlaceholder): by the column's type name, the placeholder as text,
// as bytes, as a one-element list, as a list of its bytes as numbers, as a name-based UUID,
// or as a one-entry hstore.
func (o *Options) placeholder(col *replication.Column, s *Schema) any {
	raw := o.placeholderBytes()
	text := JavaString(raw)
	name := ""
	if col.Type != nil {
		name = col.Type.Name
	}
	switch name {
	case "_text", "_varchar", "_bpchar", "_json", "_jsonb":
		return []any{text}
	case "_bytea":
		return []any{raw}
	case "_int4", "_date":
		out := make([]any, len(raw))
		for i, b := range raw {
			out[i] = int32(int8(b))
		}
		return out
	case "_int8":
		out := make([]any, len(raw))
		for i, b := range raw {
			out[i] = int64(int8(b))
		}
		return out
	case "_uuid":
		return []any{javaNameUUID(raw)}
	case "hstore":
		if s.Type == Map {
			return []MapEntry{{Key: text, Value: text}}
		}
		w := jsonWriter{text: true}
		w.buf = append(w.buf, '{')
		w.str(text)
		w.buf = append(w.buf, ':')
		w.str(text)
		w.buf = append(w.buf, '}')
		return string(w.buf)
	}
	switch {
	case name == "bytea" && (o.BinaryMode == BinaryBase64 || o.BinaryMode == BinaryBase64URLSafe):
		// The base64 converters take the marker for an unexpected value: null.
		return nil
	case s.Type == String:
		return text
	case s.Type == Bytes && s.Name == "":
		return raw
	}
	return nil
}

// placeholderBytes is unavailable.value.placeholder as bytes: "hex:" introduces hex digits.
func (o *Options) placeholderBytes() []byte {
	if h, ok := strings.CutPrefix(o.Placeholder, "hex:"); ok {
		if b, err := hex.DecodeString(h); err == nil {
			return b
		}
	}
	return []byte(o.Placeholder)
}

// javaNameUUID is java.util.UUID.nameUUIDFromBytes(b).toString(): an MD5 (version 3) UUID.
func javaNameUUID(b []byte) string {
	sum := md5.Sum(b)
	sum[6] = sum[6]&0x0f | 0x30
	sum[8] = sum[8]&0x3f | 0x80
	h := hex.EncodeToString(sum[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// fits reports whether Connect's ConnectSchema.validateValue accepts v for s.
func fits(s *Schema, v any) bool {
	if v == nil {
		return s.Optional
	}
	switch s.Type {
	case Boolean:
		_, ok := v.(bool)
		return ok
	case Int8:
		_, ok := v.(int8)
		return ok
	case Int16:
		_, ok := v.(int16)
		return ok
	case Int32:
		_, ok := v.(int32)
		return ok
	case Int64:
		_, ok := v.(int64)
		return ok
	case Float32:
		_, ok := v.(float32)
		return ok
	case Float64:
		_, ok := v.(float64)
		return ok
	case String:
		_, ok := v.(string)
		return ok
	case Bytes:
		if s.Name == LogicalDecimal {
			_, ok := v.(Decimal)
			return ok
		}
		_, ok := v.([]byte)
		return ok
	case Array:
		items, ok := v.([]any)
		if !ok {
			return false
		}
		for _, it := range items {
			if !fits(s.Items, it) {
				return false
			}
		}
		return true
	case Map:
		entries, ok := v.([]MapEntry)
		if !ok {
			return false
		}
		for _, e := range entries {
			if !fits(s.Keys, e.Key) || !fits(s.Values, e.Value) {
				return false
			}
		}
		return true
	case Struct:
		sv, ok := v.(*Value)
		return ok && sv.Schema.Name == s.Name
	}
	return false
}

// JavaString decodes bytes as Java's new String(bytes, UTF_8) does, as Debezium reads a binary
// placeholder (and so must a reader of its events): each byte of a malformed sequence becomes
// U+FFFD.
func JavaString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			sb.WriteRune(utf8.RuneError)
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}
