package envelope

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/procon-cdc/procon/replication"
)

// relSchema is everything derived from one version of a relation: its topic, the Connect
// schemas of key, row and envelope, and one converter per column. JSON and Avro render these
// same schemas.
type relSchema struct {
	rel       *replication.Relation
	qualified string
	topic     string
	cols      []columnType
	value     *Schema // <topic>.Value, optional
	key       *Schema // <topic>.Key, nil when keyless
	envelope  *Schema // <topic>.Envelope
	keyCols   []int   // indexes into the row of the key fields
}

func (b *Builder) relSchema(rel *replication.Relation) (*relSchema, error) {
	if rs, ok := b.rels[rel]; ok {
		return rs, nil
	}
	rs, err := newRelSchema(rel, b.cfg.Topics[rel.QualifiedName()], &b.cfg.Options)
	if err != nil {
		return nil, fmt.Errorf("relation %s: %w", rel.QualifiedName(), err)
	}
	for i, c := range rs.cols {
		if c.unknown {
			col := rel.Columns[i]
			b.log.Warn("Debezium cannot map this column's type; Procon sends its text form as a string",
				"relation", rel.QualifiedName(), "column", col.Name, "type", col.Type.Name)
		}
	}
	// Relations replaced by a newer version are dropped from the cache; events in flight keep
	// their own pointer.
	for old := range b.rels {
		if old.ID == rel.ID {
			delete(b.rels, old)
		}
	}
	b.rels[rel] = rs
	return rs, nil
}

// Schemas returns the key schema (nil when keyless) and the envelope schema that events of
// this relation version get, without caching anything. The engine uses it to check a relation
// against its serialization before streaming.
func (b *Builder) Schemas(rel *replication.Relation) (key, envelope *Schema, err error) {
	rs, err := newRelSchema(rel, b.cfg.Topics[rel.QualifiedName()], &b.cfg.Options)
	if err != nil {
		return nil, nil, fmt.Errorf("relation %s: %w", rel.QualifiedName(), err)
	}
	return rs.key, rs.envelope, nil
}

func newRelSchema(rel *replication.Relation, topic string, o *Options) (*relSchema, error) {
	if topic == "" {
		return nil, fmt.Errorf("no topic configured")
	}
	rs := &relSchema{rel: rel, qualified: rel.QualifiedName(), topic: topic, cols: make([]columnType, len(rel.Columns))}
	base := o.adjustSchemaName(topic)
	fields := make([]Field, len(rel.Columns))
	for i := range rel.Columns {
		col := &rel.Columns[i]
		ct, err := o.columnTypeOf(col)
		if err != nil {
			return nil, err
		}
		s := *ct.schema
		s.Optional = !col.NotNull
		if def, ok := parseDefault(col.Default, ct); ok {
			s.Default, s.HasDefault = def, true
		}
		ct.schema = &s
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
func (rs *relSchema) row(tuple, prior []replication.Datum, o *Options) (*Value, error) {
	if len(tuple) != len(rs.cols) {
		return nil, fmt.Errorf("tuple has %d columns, relation has %d", len(tuple), len(rs.cols))
	}
	v := NewValue(rs.value)
	for i, d := range tuple {
		if d.Kind == replication.DatumUnchanged && o.FillUnchangedToast && prior != nil && prior[i].Kind == replication.DatumText {
			d = prior[i]
		}
		x, err := rs.datum(i, d, o)
		if err != nil {
			return nil, err
		}
		v.Fields[i] = x
	}
	return v, nil
}

// oldRow converts the old tuple of an update or delete. With only the key sent ('K'), the
// other columns are absent: Debezium fills required ones with their default or zero value.
func (rs *relSchema) oldRow(tuple []replication.Datum, kind byte, o *Options) (*Value, error) {
	if tuple == nil {
		return nil, nil
	}
	v, err := rs.row(tuple, nil, o)
	if err != nil || kind != 'K' {
		return v, err
	}
	for i, d := range tuple {
		if d.Kind == replication.DatumNull && v.Fields[i] == nil && !rs.value.Fields[i].Schema.Optional {
			v.Fields[i] = zeroValue(rs.value.Fields[i].Schema)
		}
	}
	return v, nil
}

func (rs *relSchema) datum(i int, d replication.Datum, o *Options) (any, error) {
	switch d.Kind {
	case replication.DatumNull:
		return nil, nil
	case replication.DatumUnchanged:
		return placeholder(rs.cols[i].schema, o.Placeholder), nil
	case replication.DatumText:
		x, err := rs.cols[i].conv(d.Data)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", rs.rel.Columns[i].Name, err)
		}
		return x, nil
	}
	return nil, fmt.Errorf("column %s: binary tuple data is not supported", rs.rel.Columns[i].Name)
}

// keyOf extracts the key struct from a row value.
func (rs *relSchema) keyOf(row *Value) *Value {
	if rs.key == nil || row == nil {
		return nil
	}
	k := NewValue(rs.key)
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

// placeholder is the value written for an unchanged TOASTed column, by type, as Debezium does.
func placeholder(s *Schema, text string) any {
	switch s.Type {
	case String:
		return text
	case Bytes:
		if s.Name == "" {
			return []byte(text)
		}
	case Array:
		switch s.Items.Type {
		case String:
			return []any{text}
		case Bytes:
			return []any{[]byte(text)}
		}
	case Map:
		return []MapEntry{{Key: text, Value: text}}
	}
	return nil
}

// zeroValue is the value Debezium uses for a required column the server did not send.
func zeroValue(s *Schema) any {
	if s.HasDefault && s.Default != nil {
		return s.Default
	}
	switch s.Type {
	case Boolean:
		return false
	case Int8:
		return int8(0)
	case Int16:
		return int16(0)
	case Int32:
		return int32(0)
	case Int64:
		return int64(0)
	case Float32:
		return float32(0)
	case Float64:
		return float64(0)
	case String:
		return ""
	case Bytes:
		if s.Name == nameDecimal {
			return Decimal{Unscaled: bigInt(0), Scale: 0}
		}
		return []byte{}
	case Array:
		return []any{}
	case Map:
		return []MapEntry{}
	}
	return nil
}

// parseDefault turns a column DEFAULT expression into a schema default, for the literal forms
// Debezium's default value converter understands: 42, -1.5, 'text'::type, true/false.
// Expressions (nextval(), now()) give no default.
func parseDefault(expr string, ct columnType) (any, bool) {
	if expr == "" || ct.unknown {
		return nil, false
	}
	e := strings.TrimSpace(expr)
	for strings.HasPrefix(e, "(") && strings.HasSuffix(e, ")") {
		e = strings.TrimSpace(e[1 : len(e)-1])
	}
	var lit string
	switch {
	case strings.HasPrefix(e, "'"):
		end := strings.Index(e[1:], "'::")
		if end < 0 {
			if !strings.HasSuffix(e, "'") {
				return nil, false
			}
			end = len(e) - 2
		}
		lit = strings.ReplaceAll(e[1:end+1], "''", "'")
	case strings.HasPrefix(strings.ToUpper(e), "NULL"):
		return nil, false
	case e == "true" || e == "false":
		lit = e
	default:
		// A bare or cast numeric literal.
		lit, _, _ = strings.Cut(e, "::")
		lit = strings.Trim(lit, "()")
		for _, r := range lit {
			if !(r >= '0' && r <= '9' || r == '-' || r == '.' || r == '+' || r == 'e' || r == 'E') {
				return nil, false
			}
		}
	}
	v, err := ct.conv([]byte(lit))
	if err != nil {
		return nil, false
	}
	return v, true
}
