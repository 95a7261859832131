package avro

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strings"

	hamba "github.com/hamba/avro/v2"

	"github.com/procon-cdc/procon/envelope"
)

// A node is one step of a compiled Avro writer: how to write a value described by a Connect
// schema as a given Avro type. Writers are compiled once per schema pair (a relation version
// and the registered or pinned Avro schema) and then write *envelope.Value trees straight
// into the output buffer, with no intermediate generic form and no per-field allocation.
type node struct {
	op  opcode
	src envelope.Type // the Connect type of the values written

	fields []field // record
	items  *node   // array items, map values, map-entry values
	keys   *node   // map-entry keys (Connect maps with non-string keys)

	// union: the branch index of null (-1 if none) and of the value.
	nullIdx, valIdx int
	val             *node
}

type opcode uint8

const (
	opNull opcode = iota + 1
	opBoolean
	opInt
	opLong
	opFloat
	opDouble
	opBytes
	opString
	opRecord
	opArray
	opMap      // Avro map: string keys
	opMapArray // Avro array of {key, value} records
	opUnion
)

// field writes one field of a record: the Connect field at src, or, when the Connect
// struct has no such field, the Avro field's default (already encoded).
type field struct {
	name string
	src  int
	conn *envelope.Schema // the Connect field's schema, whose default replaces a null value
	node *node
	def  []byte
}

// compile builds the writer of Connect schema cs as Avro schema as. Record fields are
// matched by name, so a pinned schema may order fields differently, omit envelope fields the
// relation has, or add fields that have defaults. strictRows makes a column the Avro record
// lacks an error for the row structs (the key itself, and before/after of an envelope).
func compile(as hamba.Schema, cs *envelope.Schema, strictRows bool) (*node, error) {
	c := compiler{}
	if cs.Type == envelope.Struct && strictRows {
		if cs.FieldIndex("before") >= 0 && cs.FieldIndex("after") >= 0 {
			c.strict = map[*envelope.Schema]bool{cs.Fields[cs.FieldIndex("before")].Schema: true, cs.Fields[cs.FieldIndex("after")].Schema: true}
		} else {
			c.strict = map[*envelope.Schema]bool{cs: true}
		}
	}
	return c.compile(as, cs, "")
}

type compiler struct {
	strict map[*envelope.Schema]bool
}

// compile handles nullability, then the type.
func (c *compiler) compile(as hamba.Schema, cs *envelope.Schema, path string) (*node, error) {
	as = deref(as)
	nullable := cs.Optional && !(cs.HasDefault && cs.Default != nil)
	if u, ok := as.(*hamba.UnionSchema); ok {
		n := &node{op: opUnion, src: cs.Type, nullIdx: -1, valIdx: -1}
		var firstErr error
		for i, b := range u.Types() {
			b = deref(b)
			if b.Type() == hamba.Null {
				if n.nullIdx < 0 {
					n.nullIdx = i
				}
				continue
			}
			if n.val != nil {
				continue
			}
			v, err := c.compileType(b, cs, path)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			n.valIdx, n.val = i, v
		}
		if n.val == nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%s: the union %s has no branch for a %s", pathName(path), u.String(), describe(cs))
			}
			return nil, firstErr
		}
		if nullable && n.nullIdx < 0 {
			return nil, fmt.Errorf("%s: the column is nullable but the schema's type %s does not allow null", pathName(path), u.String())
		}
		return n, nil
	}
	if nullable {
		return nil, fmt.Errorf("%s: the column is nullable but the schema's type %s does not allow null", pathName(path), typeName(as))
	}
	return c.compileType(as, cs, path)
}

func (c *compiler) compileType(as hamba.Schema, cs *envelope.Schema, path string) (*node, error) {
	mismatch := func() error {
		return fmt.Errorf("%s: a %s cannot be written as Avro %s", pathName(path), describe(cs), typeName(as))
	}
	at := as.Type()
	n := &node{src: cs.Type}
	switch cs.Type {
	case envelope.Boolean:
		if at != hamba.Boolean {
			return nil, mismatch()
		}
		n.op = opBoolean
	case envelope.Int8, envelope.Int16, envelope.Int32, envelope.Int64:
		switch {
		case at == hamba.Int && cs.Type != envelope.Int64:
			n.op = opInt
		case at == hamba.Long:
			n.op = opLong
		case at == hamba.Float:
			n.op = opFloat
		case at == hamba.Double:
			n.op = opDouble
		default:
			return nil, mismatch()
		}
	case envelope.Float32:
		switch at {
		case hamba.Float:
			n.op = opFloat
		case hamba.Double:
			n.op = opDouble
		default:
			return nil, mismatch()
		}
	case envelope.Float64:
		if at != hamba.Double {
			return nil, mismatch()
		}
		n.op = opDouble
	case envelope.String:
		if at != hamba.String {
			return nil, mismatch()
		}
		n.op = opString
	case envelope.Bytes:
		if at != hamba.Bytes {
			return nil, mismatch()
		}
		_, scale, isDecimal, err := decimalParams(cs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pathName(path), err)
		}
		if ps, ok := as.(*hamba.PrimitiveSchema); ok && ps.Logical() != nil {
			d, isAvroDecimal := ps.Logical().(*hamba.DecimalLogicalSchema)
			if isAvroDecimal != isDecimal || (isDecimal && d.Scale() != scale) {
				return nil, mismatch()
			}
		}
		n.op = opBytes
	case envelope.Array:
		a, ok := as.(*hamba.ArraySchema)
		if !ok {
			return nil, mismatch()
		}
		items, err := c.compile(a.Items(), cs.Items, path+"[]")
		if err != nil {
			return nil, err
		}
		n.op, n.items = opArray, items
	case envelope.Map:
		if cs.Keys.Type == envelope.String && !cs.Keys.Optional {
			m, ok := as.(*hamba.MapSchema)
			if !ok {
				return nil, mismatch()
			}
			values, err := c.compile(m.Values(), cs.Values, path+"{}")
			if err != nil {
				return nil, err
			}
			n.op, n.items = opMap, values
			break
		}
		a, ok := as.(*hamba.ArraySchema)
		if !ok {
			return nil, mismatch()
		}
		rec, ok := deref(a.Items()).(*hamba.RecordSchema)
		if !ok || len(rec.Fields()) != 2 || rec.Fields()[0].Name() != "key" || rec.Fields()[1].Name() != "value" {
			return nil, mismatch()
		}
		keys, err := c.compile(rec.Fields()[0].Type(), cs.Keys, path+"{key}")
		if err != nil {
			return nil, err
		}
		values, err := c.compile(rec.Fields()[1].Type(), cs.Values, path+"{}")
		if err != nil {
			return nil, err
		}
		n.op, n.keys, n.items = opMapArray, keys, values
	case envelope.Struct:
		rec, ok := as.(*hamba.RecordSchema)
		if !ok {
			return nil, mismatch()
		}
		return c.record(rec, cs, path)
	default:
		return nil, mismatch()
	}
	return n, nil
}

func (c *compiler) record(rec *hamba.RecordSchema, cs *envelope.Schema, path string) (*node, error) {
	n := &node{op: opRecord, src: envelope.Struct, fields: make([]field, len(rec.Fields()))}
	used := make([]bool, len(cs.Fields))
	for i, af := range rec.Fields() {
		f := field{name: af.Name(), src: cs.FieldIndex(af.Name())}
		fpath := af.Name()
		if path != "" {
			fpath = path + "." + af.Name()
		}
		if f.src < 0 {
			if !af.HasDefault() {
				return nil, fmt.Errorf("%s: the schema has this field without a default, and the relation has no such column", pathName(fpath))
			}
			def, err := hamba.Marshal(af.Type(), af.Default())
			if err != nil {
				return nil, fmt.Errorf("%s: its default %v cannot be encoded: %v", pathName(fpath), af.Default(), err)
			}
			f.def = def
			n.fields[i] = f
			continue
		}
		used[f.src] = true
		f.conn = cs.Fields[f.src].Schema
		fn, err := c.compile(af.Type(), f.conn, fpath)
		if err != nil {
			return nil, err
		}
		f.node = fn
		n.fields[i] = f
	}
	if c.strict[cs] {
		var missing []string
		for i, u := range used {
			if !u {
				missing = append(missing, cs.Fields[i].Name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("column(s) %s are not in the schema's record %s, so they cannot be encoded with it", strings.Join(missing, ", "), rec.FullName())
		}
	}
	return n, nil
}

func deref(s hamba.Schema) hamba.Schema {
	if r, ok := s.(*hamba.RefSchema); ok {
		return r.Schema()
	}
	return s
}

func typeName(s hamba.Schema) string {
	s = deref(s)
	if n, ok := s.(hamba.NamedSchema); ok {
		return string(s.Type()) + " " + n.FullName()
	}
	if p, ok := s.(*hamba.PrimitiveSchema); ok && p.Logical() != nil {
		return string(s.Type()) + "/" + string(p.Logical().Type())
	}
	return string(s.Type())
}

func describe(cs *envelope.Schema) string {
	if cs.Name != "" {
		return cs.Type.String() + " (" + cs.Name + ")"
	}
	return cs.Type.String()
}

func pathName(path string) string {
	if path == "" {
		return "the record"
	}
	return "field " + path
}

// write appends the Avro binary form of x to buf.
func (n *node) write(buf []byte, x any) ([]byte, error) {
	if sv, ok := x.(*envelope.Value); ok && sv == nil {
		x = nil
	}
	if n.op == opUnion {
		if x == nil {
			if n.nullIdx < 0 {
				return buf, nullErr(n)
			}
			return appendLong(buf, int64(n.nullIdx)), nil
		}
		buf = appendLong(buf, int64(n.valIdx))
		n = n.val
	}
	if x == nil {
		if n.op == opNull {
			return buf, nil
		}
		return buf, nullErr(n)
	}
	switch n.op {
	case opBoolean:
		b, ok := x.(bool)
		if !ok {
			return buf, wrongGo(n, x)
		}
		if b {
			return append(buf, 1), nil
		}
		return append(buf, 0), nil
	case opInt, opLong, opFloat, opDouble:
		var i int64
		var f float64
		isFloat := false
		switch v := x.(type) {
		case int8:
			i = int64(v)
		case int16:
			i = int64(v)
		case int32:
			i = int64(v)
		case int64:
			i = v
		case float32:
			f, isFloat = float64(v), true
		case float64:
			f, isFloat = v, true
		default:
			return buf, wrongGo(n, x)
		}
		switch n.op {
		case opInt, opLong:
			return appendLong(buf, i), nil
		case opFloat:
			if !isFloat {
				f = float64(i)
			}
			return binary.LittleEndian.AppendUint32(buf, math.Float32bits(float32(f))), nil
		default:
			if !isFloat {
				f = float64(i)
			}
			return binary.LittleEndian.AppendUint64(buf, math.Float64bits(f)), nil
		}
	case opString:
		s, ok := x.(string)
		if !ok {
			return buf, wrongGo(n, x)
		}
		buf = appendLong(buf, int64(len(s)))
		return append(buf, s...), nil
	case opBytes:
		switch v := x.(type) {
		case []byte:
			buf = appendLong(buf, int64(len(v)))
			return append(buf, v...), nil
		case envelope.Decimal:
			return appendDecimal(buf, v.Unscaled), nil
		}
		return buf, wrongGo(n, x)
	case opRecord:
		sv, ok := x.(*envelope.Value)
		if !ok {
			return buf, wrongGo(n, x)
		}
		var err error
		for i := range n.fields {
			f := &n.fields[i]
			if f.src < 0 {
				buf = append(buf, f.def...)
				continue
			}
			v := sv.Fields[f.src]
			if v == nil && f.conn.HasDefault {
				v = f.conn.Default
			} else if p, ok := v.(*envelope.Value); ok && p == nil && f.conn.HasDefault {
				v = f.conn.Default
			}
			if buf, err = f.node.write(buf, v); err != nil {
				return buf, fieldErr(f.name, err)
			}
		}
		return buf, nil
	case opArray:
		items, ok := x.([]any)
		if !ok {
			return buf, wrongGo(n, x)
		}
		if len(items) > 0 {
			buf = appendLong(buf, int64(len(items)))
			var err error
			for _, it := range items {
				if buf, err = n.items.write(buf, it); err != nil {
					return buf, err
				}
			}
		}
		return append(buf, 0), nil
	case opMap, opMapArray:
		entries, ok := x.([]envelope.MapEntry)
		if !ok {
			return buf, wrongGo(n, x)
		}
		if len(entries) > 0 {
			buf = appendLong(buf, int64(len(entries)))
			var err error
			for _, e := range entries {
				if n.op == opMap {
					k, ok := e.Key.(string)
					if !ok {
						return buf, wrongGo(n, e.Key)
					}
					buf = appendLong(buf, int64(len(k)))
					buf = append(buf, k...)
				} else if buf, err = n.keys.write(buf, e.Key); err != nil {
					return buf, err
				}
				if buf, err = n.items.write(buf, e.Value); err != nil {
					return buf, err
				}
			}
		}
		return append(buf, 0), nil
	}
	return buf, wrongGo(n, x)
}

// The error constructors stay out of write, whose stack frame they would otherwise grow.

//go:noinline
func wrongGo(n *node, x any) error {
	return fmt.Errorf("a %s field holds a Go %T", n.src, x)
}

//go:noinline
func nullErr(n *node) error {
	return fmt.Errorf("null value for a required %s field", n.src)
}

//go:noinline
func fieldErr(name string, err error) error {
	return fmt.Errorf("field %s: %w", name, err)
}

// appendLong appends a zig-zag varint, Avro's int and long encoding.
func appendLong(buf []byte, n int64) []byte {
	u := uint64(n<<1) ^ uint64(n>>63)
	for u >= 0x80 {
		buf = append(buf, byte(u)|0x80)
		u >>= 7
	}
	return append(buf, byte(u))
}

// appendDecimal appends the Avro bytes of a decimal: the length, then the unscaled value in
// minimal big-endian two's complement (as Java's BigInteger.toByteArray), written in place.
func appendDecimal(buf []byte, n *big.Int) []byte {
	if n.IsInt64() {
		// The common case, without touching big.Int's word slices.
		v := n.Int64()
		size := 1
		for size < 8 && (v < -(1<<(8*size-1)) || v >= 1<<(8*size-1)) {
			size++
		}
		buf = appendLong(buf, int64(size))
		for i := size - 1; i >= 0; i-- {
			buf = append(buf, byte(v>>(8*i)))
		}
		return buf
	}
	// |n| needs BitLen bits; a non-negative value needs a sign bit on top. A negative value
	// -m fits in BitLen(m-1)+1 bits, which is BitLen(m) unless m is a power of two.
	bits := n.BitLen()
	if n.Sign() < 0 && n.TrailingZeroBits() == uint(bits-1) {
		bits--
	}
	size := bits/8 + 1
	buf = appendLong(buf, int64(size))
	start := len(buf)
	buf = append(buf, make([]byte, size)...)
	out := buf[start:]
	n.FillBytes(out) // |n|, big-endian
	if n.Sign() < 0 {
		// Two's complement of |n|: invert and add one.
		carry := true
		for i := len(out) - 1; i >= 0; i-- {
			out[i] = ^out[i]
			if carry {
				out[i]++
				carry = out[i] == 0
			}
		}
	}
	return buf
}
