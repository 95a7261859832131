package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/test/testenv"
)

// setupOn prepares an engine configuration on an existing database. The server name keeps
// underscores (no '-') so that default schema names are valid Avro names.
func setupOn(t *testing.T, env *testenv.Env, db *testenv.DB, relations, extra string) *setup {
	t.Helper()
	s := &setup{env: env, db: db}
	s.name = testenv.Name(t, "p")
	s.slot = s.name
	env.DeleteTopicsAtCleanup(t, s.name)
	s.config = fmt.Sprintf(`name: %s
postgres:
  dsn: %s
  slot: %s
  publication: %s
  status_interval: 200ms
kafka:
  brokers: %s
schema_registry:
  url: %s
log:
  level: debug
relation_configs:
%s
%s`, s.name, db.DSN, s.slot, s.slot, strings.Join(env.Brokers, ","), env.RegistryURL, indent(relations), extra)
	return s
}

// registryClient is a plain client of the registry for the tests' own checks. Subjects whose
// name starts with one of prefixes are deleted at cleanup unless the test failed.
func registryClient(t *testing.T, env *testenv.Env, prefixes ...string) *sr.Client {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(env.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		subjects, err := cl.Subjects(ctx)
		if err != nil {
			return
		}
		for _, s := range subjects {
			for _, p := range prefixes {
				if strings.HasPrefix(s, p) {
					_, _ = cl.DeleteSubject(ctx, s, sr.SoftDelete)
					_, _ = cl.DeleteSubject(ctx, s, sr.HardDelete)
				}
			}
		}
	})
	return cl
}

// avroReader decodes Confluent-framed records with hamba/avro, an implementation independent of
// Procon's writer, using the schema the registry holds under the record's id.
type avroReader struct {
	cl      *sr.Client
	mu      sync.Mutex
	schemas map[int]avro.Schema
}

func newAvroReader(cl *sr.Client) *avroReader {
	return &avroReader{cl: cl, schemas: map[int]avro.Schema{}}
}

func (r *avroReader) schema(t *testing.T, id int) avro.Schema {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.schemas[id]; ok {
		return s
	}
	ss, err := r.cl.SchemaByID(context.Background(), id)
	if err != nil {
		t.Fatalf("schema id %d: %v", id, err)
	}
	s, err := avro.ParseWithCache(ss.Schema, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatalf("schema id %d does not parse: %v\n%s", id, err, ss.Schema)
	}
	r.schemas[id] = s
	return s
}

// decode returns the JSON-comparable form of a framed record and its schema id; a nil record
// decodes to nil.
func (r *avroReader) decode(t *testing.T, b []byte) (any, int) {
	t.Helper()
	if b == nil {
		return nil, 0
	}
	if len(b) < 5 || b[0] != 0 {
		t.Fatalf("not Confluent-framed Avro: %.40q", b)
	}
	id := int(binary.BigEndian.Uint32(b[1:5]))
	s := r.schema(t, id)
	var v any
	if err := avro.Unmarshal(s, b[5:], &v); err != nil {
		t.Fatalf("decode with schema id %d: %v", id, err)
	}
	out, err := avroToJSON(s, v)
	if err != nil {
		t.Fatalf("schema id %d: %v", id, err)
	}
	return out, id
}

// avroToJSON turns hamba's generic values into what Kafka's JsonConverter writes for the same
// Connect data: unions unwrapped, bytes and decimals as base64, numbers as exact rationals.
func avroToJSON(s avro.Schema, v any) (any, error) {
	if r, ok := s.(*avro.RefSchema); ok {
		s = r.Schema()
	}
	if v == nil {
		return nil, nil
	}
	switch s := s.(type) {
	case *avro.UnionSchema:
		var nonNull []avro.Schema
		for _, b := range s.Types() {
			if b.Type() != avro.Null {
				nonNull = append(nonNull, b)
			}
		}
		if m, ok := v.(map[string]any); ok && len(m) == 1 {
			for k, x := range m {
				for _, b := range nonNull {
					name := string(b.Type())
					if n, ok := b.(avro.NamedSchema); ok {
						name = n.FullName()
					} else if r, ok := b.(*avro.RefSchema); ok {
						name = r.Schema().FullName()
					}
					if name == k {
						return avroToJSON(b, x)
					}
				}
			}
		}
		if len(nonNull) != 1 {
			return nil, fmt.Errorf("ambiguous union value %T for %s", v, s)
		}
		return avroToJSON(nonNull[0], v)
	case *avro.RecordSchema:
		m := v.(map[string]any)
		out := map[string]any{}
		for _, f := range s.Fields() {
			x, err := avroToJSON(f.Type(), m[f.Name()])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name(), err)
			}
			out[f.Name()] = x
		}
		return out, nil
	case *avro.ArraySchema:
		var out []any
		for _, x := range v.([]any) {
			y, err := avroToJSON(s.Items(), x)
			if err != nil {
				return nil, err
			}
			out = append(out, y)
		}
		if out == nil {
			out = []any{}
		}
		return out, nil
	case *avro.MapSchema:
		out := map[string]any{}
		for k, x := range v.(map[string]any) {
			y, err := avroToJSON(s.Values(), x)
			if err != nil {
				return nil, err
			}
			out[k] = y
		}
		return out, nil
	case *avro.PrimitiveSchema:
		if d, ok := s.Logical().(*avro.DecimalLogicalSchema); ok {
			r, ok := v.(*big.Rat)
			if !ok {
				return nil, fmt.Errorf("decimal decoded as %T", v)
			}
			scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d.Scale())), nil)))
			if !scaled.IsInt() {
				return nil, fmt.Errorf("decimal %s has more than %d fraction digits", r.FloatString(10), d.Scale())
			}
			return base64.StdEncoding.EncodeToString(twos(scaled.Num())), nil
		}
		switch x := v.(type) {
		case []byte:
			return base64.StdEncoding.EncodeToString(x), nil
		case int:
			return ratString(strconv.Itoa(x)), nil
		case int32:
			return ratString(strconv.FormatInt(int64(x), 10)), nil
		case int64:
			return ratString(strconv.FormatInt(x, 10)), nil
		case float32:
			return ratString(strconv.FormatFloat(float64(x), 'g', -1, 32)), nil
		case float64:
			return ratString(strconv.FormatFloat(x, 'g', -1, 64)), nil
		case time.Time:
			switch s.Logical().Type() {
			case avro.Date:
				return ratString(strconv.FormatInt(x.Unix()/86400, 10)), nil
			default:
				return ratString(strconv.FormatInt(x.UnixMilli(), 10)), nil
			}
		case time.Duration:
			return ratString(strconv.FormatInt(x.Milliseconds(), 10)), nil
		}
		return v, nil
	}
	return nil, fmt.Errorf("unexpected schema %s", s.Type())
}

// twos is the minimal big-endian two's complement of n, as Java's BigInteger.toByteArray.
func twos(n *big.Int) []byte {
	if n.Sign() >= 0 {
		b := n.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	size := 1
	for {
		lim := new(big.Int).Lsh(big.NewInt(1), uint(8*size-1))
		if n.Cmp(new(big.Int).Neg(lim)) >= 0 {
			break
		}
		size++
	}
	m := new(big.Int).Add(n, new(big.Int).Lsh(big.NewInt(1), uint(8*size)))
	b := m.Bytes()
	for len(b) < size {
		b = append([]byte{0}, b...)
	}
	return b
}

func ratString(s string) string {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return s
	}
	return r.RatString()
}

// jsonComparable parses a JSON record (no schemas) into the form avroToJSON produces.
func jsonComparable(t *testing.T, b []byte) any {
	t.Helper()
	if b == nil {
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %.200q", err, b)
	}
	var norm func(any) any
	norm = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			return ratString(x.String())
		case map[string]any:
			for k, y := range x {
				x[k] = norm(y)
			}
		case []any:
			for i, y := range x {
				x[i] = norm(y)
			}
		}
		return v
	}
	return norm(v)
}

// withoutClock drops what differs between two engines reading the same transactions: the
// connector clock (envelope ts_*) and the server name.
func withoutClock(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	delete(m, "ts_ms")
	delete(m, "ts_us")
	delete(m, "ts_ns")
	if src, ok := m["source"].(map[string]any); ok {
		delete(src, "name")
	}
	return m
}

const typesTable = `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE types (
	id bigint PRIMARY KEY,
	i2 smallint NOT NULL DEFAULT 7,
	i4 integer,
	f4 real,
	f8 double precision,
	num numeric(12,3),
	vnum numeric,
	cash money,
	b boolean,
	t text NOT NULL DEFAULT 'none',
	vc varchar(20),
	ch char(3),
	ts timestamp,
	ts3 timestamp(3),
	tstz timestamptz,
	d date,
	tm time,
	tm3 time(3),
	tmtz timetz,
	iv interval,
	u uuid,
	j jsonb,
	x xml,
	by bytea,
	ia integer[],
	ta text[],
	bits bit(4),
	vb varbit,
	ip inet,
	m mood,
	r int4range
)`

const typesRow1 = `INSERT INTO types VALUES (1, -32768, 2147483647, 1.1, -2.5e300, -123456789.125, 3.14159265358979323846, -12.34,
	true, 'héllo "q" <\>', 'vc', 'ab', '2024-03-01 12:00:00.123456', '1999-12-31 23:59:59.999', '2024-03-01 12:00:00+02',
	'2024-02-29', '23:59:59.999999', '12:00:00.5', '10:00:00+05:30', '1 year 2 mons 3 days 04:05:06.7', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	'{"k": [1, 2]}', '<a>x</a>', '\x00ff7f80', '{1,NULL,3}', '{"a b",NULL,c}', B'1010', B'101', '192.168.0.1/24', 'happy', '[1,5)')`

// TestAvroRoundTrip runs an Avro engine and a JSON engine on the same table and checks that
// every record of every type decodes, with the registry's schema and an independent decoder, to
// the JSON engine's record; that subjects follow TopicNameStrategy; and that tombstones stay null.
func TestAvroRoundTrip(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, typesTable)
	av := setupOn(t, env, db, `public.types: {}`, "serialization: avro")
	js := setupOn(t, env, db, `public.types: {}`, "")
	reg := registryClient(t, env, av.name)
	av.runEngine(t)
	js.runEngine(t)
	av.waitSlot(t)
	js.waitSlot(t)

	db.Exec(t, typesRow1)
	db.Exec(t, `INSERT INTO types (id) VALUES (2)`)
	db.Exec(t, `INSERT INTO types (id, num, vnum, f4, ta, ts) VALUES (3, 0, -0.000001, 'NaN', '{}', 'infinity')`)
	db.Exec(t, `UPDATE types SET i4 = -1, vnum = 99999999999999999999999999.5, m = 'sad' WHERE id = 1`)
	db.Exec(t, `DELETE FROM types WHERE id = 2`)
	db.Exec(t, `ALTER TABLE types REPLICA IDENTITY FULL`)
	db.Exec(t, `UPDATE types SET id = 10 WHERE id = 1`)

	const n = 9 // 3 inserts, 1 update, delete + tombstone, key change: delete + tombstone + create
	topic := av.topic("types")
	recsAvro := env.ReadN(t, topic, n, time.Minute)
	recsJSON := env.ReadN(t, js.topic("types"), n, time.Minute)
	r := newAvroReader(reg)
	ids := map[string]map[int]bool{"key": {}, "value": {}}
	// Before 15 the server also sends transactions without a published change, and the two
	// slots, made one after the other, see different ones (the JSON engine's start commits
	// after the Avro engine's slot exists): source.sequence's last commit then tells where
	// each slot began, not how the record was encoded.
	sameStart := func(v any) any { return v }
	if env.ServerMajor(t) < 15 {
		sameStart = func(v any) any {
			if m, ok := v.(map[string]any); ok {
				if src, ok := m["source"].(map[string]any); ok {
					delete(src, "sequence")
				}
			}
			return v
		}
	}
	for i := range recsAvro {
		a, j := recsAvro[i], recsJSON[i]
		gotKey, kid := r.decode(t, a.Key)
		ids["key"][kid] = true
		if want := jsonComparable(t, j.Key); !reflect.DeepEqual(gotKey, want) {
			t.Errorf("record %d key:\ngot  %v\nwant %v", i, gotKey, want)
		}
		if (a.Value == nil) != (j.Value == nil) {
			t.Fatalf("record %d: Avro value nil=%v, JSON value nil=%v", i, a.Value == nil, j.Value == nil)
		}
		if a.Value == nil {
			continue
		}
		gotValue, vid := r.decode(t, a.Value)
		ids["value"][vid] = true
		want := sameStart(withoutClock(jsonComparable(t, j.Value)))
		if got := sameStart(withoutClock(gotValue)); !reflect.DeepEqual(got, want) {
			t.Errorf("record %d value:\ngot  %v\nwant %v", i, got, want)
		} else if i == 0 {
			t.Logf("record 0 decodes to the JSON engine's value: %v", got)
		}
		for _, h := range a.Headers {
			if h.Key == "__debezium.oldkey" {
				got, _ := r.decode(t, h.Value)
				if fmt.Sprint(got) != "map[id:1]" {
					t.Errorf("record %d: oldkey header %v", i, got)
				}
			}
		}
	}
	// TopicNameStrategy: <topic>-key and <topic>-value, and the records carry their ids.
	ctx := testenv.Context(t, time.Minute)
	for role, seen := range ids {
		subject := topic + "-" + role
		latest, err := reg.SchemaByVersion(ctx, subject, -1)
		if err != nil {
			t.Fatalf("subject %s: %v", subject, err)
		}
		if !seen[latest.ID] {
			t.Errorf("subject %s: latest id %d, records used %v", subject, latest.ID, seen)
		}
	}
	// The derived value schema has Debezium's names and field order.
	vs, _ := reg.SchemaByVersion(ctx, topic+"-value", 1)
	for _, want := range []string{`"name":"Envelope","namespace":"` + topic + `"`, `"connect.name":"io.debezium.connector.postgresql.Source"`,
		`{"name":"i2","type":{"type":"int","connect.default":7,"connect.type":"int16"},"default":7}`,
		`"logicalType":"decimal"`, `{"name":"after","type":["null","Value"],"default":null}`} {
		if !strings.Contains(vs.Schema.Schema, want) {
			t.Errorf("registered value schema lacks %s:\n%s", want, vs.Schema.Schema)
		}
	}
}

// TestAvroCustomSubjects registers under configured subjects instead of <topic>-key/-value.
func TestAvroCustomSubjects(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY, label text)`)
	prefix := testenv.Name(t, "subj")
	s := setupOn(t, env, db, fmt.Sprintf(`public.items: {serialization: avro, avro_key_schema: %s-k, avro_value_schema: %s-v}`, prefix, prefix), "")
	reg := registryClient(t, env, prefix, s.name)
	s.runEngine(t)
	s.waitSlot(t)
	db.Exec(t, `INSERT INTO items VALUES (1, 'one'), (2, NULL)`)
	recs := env.ReadN(t, s.topic("items"), 2, time.Minute)
	r := newAvroReader(reg)
	ctx := testenv.Context(t, time.Minute)
	k, _ := reg.SchemaByVersion(ctx, prefix+"-k", 1)
	v, _ := reg.SchemaByVersion(ctx, prefix+"-v", 1)
	for i, rec := range recs {
		key, kid := r.decode(t, rec.Key)
		value, vid := r.decode(t, rec.Value)
		if kid != k.ID || vid != v.ID {
			t.Errorf("record %d: ids %d/%d, want %d/%d from the custom subjects", i, kid, vid, k.ID, v.ID)
		}
		if want := fmt.Sprintf("map[id:%d]", i+1); fmt.Sprint(key) != want {
			t.Errorf("record %d key: got %v, want %s", i, key, want)
		}
		if after := value.(map[string]any)["after"].(map[string]any); after["id"] != strconv.Itoa(i+1) {
			t.Errorf("record %d: after %v", i, after)
		}
	}
	for _, def := range []string{s.topic("items") + "-key", s.topic("items") + "-value"} {
		if _, err := reg.SchemaByVersion(ctx, def, 1); err == nil {
			t.Errorf("subject %s exists; the custom subjects should have been used", def)
		}
	}
	// The record body is the same as the wire format of the pinned schema text, so tail shows it.
}

// addField returns schema text with one more field in the row record (before/after's Value).
func addField(t *testing.T, text string, field map[string]any) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatal(err)
	}
	before := doc["fields"].([]any)[0].(map[string]any)
	row := before["type"].([]any)[1].(map[string]any)
	row["fields"] = append(row["fields"].([]any), field)
	b, _ := json.Marshal(doc)
	return string(b)
}

// TestAvroPinnedVersion pins an older version of a custom subject: events keep using it after
// newer versions are registered, with field defaults taken from it.
func TestAvroPinnedVersion(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE pins (id int PRIMARY KEY, label text)`)
	subject := testenv.Name(t, "pin") + "-value"
	first := setupOn(t, env, db, fmt.Sprintf(`public.pins: {serialization: avro, avro_value_schema: %s}`, subject), "")
	reg := registryClient(t, env, subject, first.name)
	ctx := testenv.Context(t, 2*time.Minute)

	// Version 1: what Procon derives, registered by a first engine.
	func() {
		ectx, cancel := context.WithCancel(ctx)
		defer cancel()
		e, err := engine.New(ectx, first.cfg(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.Run(ectx) }()
		first.waitSlot(t)
		db.Exec(t, `INSERT INTO pins VALUES (1, 'one')`)
		env.ReadN(t, first.topic("pins"), 1, time.Minute)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	v1, err := reg.SchemaByVersion(ctx, subject, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Version 2 adds a field with a default; it is the one pinned.
	v2, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: addField(t, v1.Schema.Schema, map[string]any{"name": "region", "type": "string", "default": "eu"})})
	if err != nil || v2.Version != 2 {
		t.Fatalf("register version 2: %v (version %d)", err, v2.Version)
	}
	// no_data: row 1 is already in the topic; only the new rows are of interest here.
	s := setupOn(t, env, db, fmt.Sprintf(`public.pins: {serialization: avro, avro_value_schema: %s, avro_value_schema_version: 2}`, subject), "snapshot:\n  mode: no_data")
	s.runEngine(t)
	s.waitSlot(t)
	db.Exec(t, `INSERT INTO pins VALUES (2, 'two')`)
	// A newer version 3 is registered while the engine runs; it must not be picked up.
	v3, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: addField(t, v1.Schema.Schema, map[string]any{"name": "zone", "type": []any{"null", "string"}, "default": nil})})
	if err != nil || v3.Version != 3 {
		t.Fatalf("register version 3: %v (version %d)", err, v3.Version)
	}
	db.Exec(t, `INSERT INTO pins VALUES (3, 'three')`)
	recs := env.ReadN(t, s.topic("pins"), 2, time.Minute)
	r := newAvroReader(reg)
	for i, rec := range recs {
		value, id := r.decode(t, rec.Value)
		if id != v2.ID {
			t.Errorf("record %d: schema id %d, want the pinned version 2's %d (v1 %d, v3 %d)", i, id, v2.ID, v1.ID, v3.ID)
		}
		after := value.(map[string]any)["after"].(map[string]any)
		if after["region"] != "eu" || after["id"] != strconv.Itoa(i+2) {
			t.Errorf("record %d: after %v, want region eu (the pinned default)", i, after)
		}
	}
}

// TestAvroPinnedMismatch refuses, in engine.New, a pinned version that cannot encode the table.
func TestAvroPinnedMismatch(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE fits (id int PRIMARY KEY, label text, qty int)`)
	subject := testenv.Name(t, "bad") + "-value"
	reg := registryClient(t, env, subject)
	ctx := testenv.Context(t, time.Minute)
	row := func(fields ...string) string {
		return `{"type":"record","name":"Envelope","namespace":"x","fields":[` +
			`{"name":"before","type":["null",{"type":"record","name":"Value","fields":[` + strings.Join(fields, ",") + `]}],"default":null},` +
			`{"name":"after","type":["null","Value"],"default":null},{"name":"op","type":"string"}]}`
	}
	for _, tc := range []struct {
		name, schema, want string
	}{
		{"field without default", row(`{"name":"id","type":"int"}`, `{"name":"label","type":["null","string"],"default":null}`,
			`{"name":"qty","type":["null","int"],"default":null}`, `{"name":"owner","type":"string"}`),
			"field before.owner: the schema has this field without a default"},
		{"incompatible type", row(`{"name":"id","type":"int"}`, `{"name":"label","type":["null","long"],"default":null}`,
			`{"name":"qty","type":["null","int"],"default":null}`),
			"field before.label: a string cannot be written as Avro long"},
		{"column missing", row(`{"name":"id","type":"int"}`, `{"name":"label","type":["null","string"],"default":null}`),
			"column(s) qty are not in the schema's record x.Value"},
	} {
		ss, err := reg.CreateSchema(ctx, subject, sr.Schema{Schema: tc.schema})
		if err != nil {
			t.Fatalf("%s: register: %v", tc.name, err)
		}
		s := setupOn(t, env, db, fmt.Sprintf(`public.fits: {serialization: avro, avro_value_schema: %s, avro_value_schema_version: %d}`, subject, ss.Version), "")
		e, err := engine.New(ctx, s.cfg(t), nil)
		if err == nil {
			e.Stream().Close(ctx)
			t.Fatalf("%s: engine.New accepted version %d", tc.name, ss.Version)
		}
		for _, want := range []string{"relation_configs.public.fits", tc.want, fmt.Sprintf("version %d of subject %s", ss.Version, subject)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, want)
			}
		}
		// The refused start created the slot to describe the table; it must not stay behind
		// retaining WAL.
		var slots int
		if err := db.Conn(t).QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, s.cfg(t).Postgres.Slot).Scan(&slots); err != nil {
			t.Fatal(err)
		}
		if slots != 0 {
			t.Errorf("%s: slot %s left behind by the refused start", tc.name, s.cfg(t).Postgres.Slot)
		}
	}
	s := setupOn(t, env, db, fmt.Sprintf(`public.fits: {serialization: avro, avro_value_schema: %s, avro_value_schema_version: 99}`, subject), "")
	if _, err := engine.New(ctx, s.cfg(t), nil); err == nil || !strings.Contains(err.Error(), "version 99 of subject "+subject) {
		t.Errorf("missing version: got %v", err)
	}
}

// serialWriter inserts rows numbered 1, 2, 3... in single-row transactions until stopped, and
// counts what committed.
type serialWriter struct {
	next    atomic.Int64
	lastErr atomic.Value // error
	cancel  context.CancelFunc
	done    chan struct{}
}

func startWriter(t *testing.T, db *testenv.DB, insert string) *serialWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &serialWriter{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			id := w.next.Load() + 1
			if _, err := db.Pool.Exec(ctx, insert, id); err != nil {
				w.lastErr.Store(err)
				if ctx.Err() == nil {
					time.Sleep(5 * time.Millisecond) // e.g. a lock held by ALTER TABLE
				}
				continue
			}
			w.next.Store(id)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *serialWriter) stop() {
	w.cancel()
	<-w.done
}

// waitRows waits until the writer has committed at least n rows.
func (w *serialWriter) waitRows(t *testing.T, n int64) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, fmt.Sprintf("%d committed rows", n), func() (bool, error) {
		err, _ := w.lastErr.Load().(error)
		return w.next.Load() >= n, err
	})
}

// TestAvroEvolution changes the table while a writer commits: ADD COLUMN, DROP COLUMN and a
// widened type each become a new registered schema version; every event decodes with the schema
// it names, the events of each shape carry the matching columns, and no row is lost.
func TestAvroEvolution(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE evo (id bigint PRIMARY KEY, qty int, note text)`)
	s := setupOn(t, env, db, `public.evo: {}`, "serialization: avro")
	reg := registryClient(t, env, s.name)
	s.runEngine(t)
	s.waitSlot(t)
	w := startWriter(t, db, `INSERT INTO evo (id, qty) VALUES ($1::bigint, $1::int)`)
	w.waitRows(t, 50)
	db.Exec(t, `ALTER TABLE evo ADD COLUMN extra text DEFAULT 'x'`)
	w.waitRows(t, w.next.Load()+50)
	db.Exec(t, `ALTER TABLE evo DROP COLUMN note`)
	w.waitRows(t, w.next.Load()+50)
	db.Exec(t, `ALTER TABLE evo ALTER COLUMN qty TYPE bigint`)
	w.waitRows(t, w.next.Load()+50)
	w.stop()
	total := int(w.next.Load())

	recs := env.ReadN(t, s.topic("evo"), total, 2*time.Minute)
	r := newAvroReader(reg)
	seen := map[string]bool{}
	shapes := map[int]string{} // schema id -> the row's fields
	var order []int
	for i, rec := range recs {
		value, id := r.decode(t, rec.Value)
		after := value.(map[string]any)["after"].(map[string]any)
		idv, _ := after["id"].(string)
		seen[idv] = true
		if _, ok := shapes[id]; !ok {
			row := r.schema(t, id).(*avro.RecordSchema).Fields()[1].Type().(*avro.UnionSchema).Types()[1]
			var names []string
			for _, f := range row.(*avro.RefSchema).Schema().(*avro.RecordSchema).Fields() {
				names = append(names, f.Name()+":"+typeOf(f.Type()))
			}
			shapes[id] = strings.Join(names, ",")
			order = append(order, id)
		}
		if id != order[len(order)-1] {
			t.Errorf("record %d uses schema id %d after the stream moved on to %d", i, id, order[len(order)-1])
		}
		if len(after) != strings.Count(shapes[id], ",")+1 {
			t.Errorf("record %d: after %v does not match its schema %s", i, after, shapes[id])
		}
	}
	for i := 1; i <= total; i++ {
		if !seen[strconv.Itoa(i)] {
			t.Errorf("row %d is missing", i)
		}
	}
	var got []string
	for _, id := range order {
		got = append(got, shapes[id])
	}
	want := []string{
		"id:long,qty:int,note:string",
		"id:long,qty:int,note:string,extra:string",
		"id:long,qty:int,extra:string",
		"id:long,qty:long,extra:string",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schema versions in stream order:\ngot  %v\nwant %v", got, want)
	}
	versions, err := reg.SubjectVersions(testenv.Context(t, time.Minute), s.topic("evo")+"-value")
	if err != nil || len(versions) != 4 {
		t.Errorf("subject versions: %v (%v), want 4", versions, err)
	}
}

func typeOf(s avro.Schema) string {
	if u, ok := s.(*avro.UnionSchema); ok {
		for _, b := range u.Types() {
			if b.Type() != avro.Null {
				return string(b.Type())
			}
		}
	}
	return string(s.Type())
}

// TestAvroIncompatibleSchema: a change the subject's compatibility rule refuses (HTTP 409) stops
// the engine with the registry's message and the subject, and the slot does not move past the
// transaction that could not be encoded.
func TestAvroIncompatibleSchema(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE strict (id int PRIMARY KEY, a text)`)
	s := setupOn(t, env, db, `public.strict: {}`, "serialization: avro")
	reg := registryClient(t, env, s.name)
	ctx := testenv.Context(t, 2*time.Minute)
	subject := s.topic("strict") + "-value"

	e, err := engine.New(ctx, s.cfg(t), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	s.waitSlot(t)
	db.Exec(t, `INSERT INTO strict VALUES (1, 'a')`)
	env.ReadN(t, s.topic("strict"), 1, time.Minute)
	if r := reg.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject); r[0].Err != nil {
		t.Fatal(r[0].Err)
	}
	testenv.WaitFor(t, 30*time.Second, "the first transaction to be confirmed", func() (bool, error) {
		var lag int64
		err := db.Pool.QueryRow(ctx, `SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&lag)
		return err == nil && lag < 1<<20, err
	})
	before := s.confirmedLSN(t)
	// A required column without a default: old data cannot be read with the new schema.
	db.Exec(t, `ALTER TABLE strict ADD COLUMN b int NOT NULL DEFAULT 0`)
	db.Exec(t, `ALTER TABLE strict ALTER COLUMN b DROP DEFAULT`)
	var lsn string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO strict VALUES (2, 'b', 2) RETURNING pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	insertLSN, _ := pglogrepl.ParseLSN(lsn)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), subject) || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "incompatible") {
			t.Fatalf("engine stopped with %v; want the registry's 409 naming subject %s", err, subject)
		}
		t.Logf("engine stopped as expected: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the engine did not stop on an incompatible schema")
	}
	// The refused insert is at insertLSN; its commit comes after. The slot may reach the insert
	// (the end of the transactions before it) but not pass it.
	if got := s.confirmedLSN(t); got > insertLSN || got < before {
		t.Errorf("confirmed_flush_lsn %s: want it held before the refused transaction (%s), not before %s", got, insertLSN, before)
	}
	if n := len(env.ReadN(t, s.topic("strict"), 1, 10*time.Second)); n != 1 {
		t.Errorf("records: %d", n)
	}
}

// TestAvroRegistryDown stops the registry while the engine streams: known schemas keep working;
// a new schema version makes the engine wait, holding the slot, and once the registry is back
// everything arrives.
func TestAvroRegistryDown(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE outage (id bigint PRIMARY KEY, v text)`)
	s := setupOn(t, env, db, `public.outage: {}`, "serialization: avro")
	reg := registryClient(t, env, s.name)
	s.runEngine(t)
	s.waitSlot(t)
	ctx := testenv.Context(t, 3*time.Minute)
	db.Exec(t, `INSERT INTO outage SELECT g, 'before' FROM generate_series(1, 10) g`)
	topic := s.topic("outage")
	env.ReadN(t, topic, 10, time.Minute)

	env.StopService(t, "registry")
	// The cached schema keeps working while the registry is down.
	db.Exec(t, `INSERT INTO outage SELECT g, 'cached' FROM generate_series(11, 20) g`)
	env.ReadN(t, topic, 20, time.Minute)
	testenv.WaitFor(t, 30*time.Second, "the cached-schema rows to be confirmed", func() (bool, error) {
		var lag int64
		err := db.Pool.QueryRow(ctx, `SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1`, s.slot).Scan(&lag)
		return err == nil && lag < 1<<16, err
	})
	// A new relation version needs a registry call: the engine waits.
	db.Exec(t, `ALTER TABLE outage ADD COLUMN w int`)
	var lsn string
	if err := db.Pool.QueryRow(ctx, `INSERT INTO outage VALUES (21, 'new', 21) RETURNING pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	blocked, _ := pglogrepl.ParseLSN(lsn)
	db.Exec(t, `INSERT INTO outage SELECT g, 'new', g FROM generate_series(22, 40) g`)
	time.Sleep(3 * time.Second) // several retries and status updates
	if got := s.confirmedLSN(t); got > blocked {
		t.Fatalf("confirmed_flush_lsn %s passed %s, a transaction that is not in Kafka", got, blocked)
	}
	if recs, _ := env.ReadUntil(topic, 3*time.Second, func(r []*kgo.Record) bool { return len(r) > 20 }); len(recs) != 20 {
		t.Fatalf("%d records while the registry is down, want 20", len(recs))
	}

	env.StartService(t, "registry")
	recs := env.ReadN(t, topic, 40, 2*time.Minute)
	r := newAvroReader(reg)
	for i, rec := range recs {
		value, _ := r.decode(t, rec.Value)
		after := value.(map[string]any)["after"].(map[string]any)
		if after["id"] != strconv.Itoa(i+1) {
			t.Errorf("record %d: id %v, want %d", i, after["id"], i+1)
		}
		if _, has := after["w"]; has != (i >= 20) {
			t.Errorf("record %d: after %v", i, after)
		}
	}
	testenv.WaitFor(t, time.Minute, "the slot to move past the held transaction", func() (bool, error) {
		return s.confirmedLSN(t) > blocked, nil
	})
}

// TestAvroTail reads Avro topics with procon-cdc tail, which prints JSON events.
func TestAvroTail(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE tailed (id int PRIMARY KEY, price numeric(8,2), note text)`)
	s := setupOn(t, env, db, `public.tailed: {}`, "serialization: avro")
	registryClient(t, env, s.name)
	s.runEngine(t)
	s.waitSlot(t)
	db.Exec(t, `INSERT INTO tailed VALUES (1, 12.5, 'hello'), (2, NULL, NULL)`)
	db.Exec(t, `DELETE FROM tailed WHERE id = 2`)
	env.ReadN(t, s.topic("tailed"), 4, time.Minute)

	path := filepath.Join(t.TempDir(), "procon.yaml")
	if err := os.WriteFile(path, []byte(s.config), 0o600); err != nil {
		t.Fatal(err)
	}
	sc, stderr := startTail(t, "--config", path, "--from-beginning")
	var lines []map[string]any
	for len(lines) < 4 && sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("tail printed %q: %v", sc.Text(), err)
		}
		lines = append(lines, line)
	}
	if len(lines) < 4 {
		t.Fatalf("tail printed %d lines; stderr: %s", len(lines), stderr.String())
	}
	for i, l := range lines {
		if l["error"] != nil {
			t.Errorf("line %d: error %v", i, l["error"])
		}
		if k, ok := l["key"].(map[string]any); !ok || k["id"] == nil {
			t.Errorf("line %d: key %v is not a decoded object", i, l["key"])
		}
	}
	v := lines[0]["value"].(map[string]any)
	after := v["after"].(map[string]any)
	if after["note"] != "hello" || after["price"] != "BOI=" || v["op"] != "c" {
		t.Errorf("line 0: value %v", v)
	}
	if lines[3]["value"] != nil {
		t.Errorf("line 3: tombstone value %v, want null", lines[3]["value"])
	}
}

// TestAvroNameAdjustment: a column name Avro refuses ("my col") stops the engine at start,
// naming field.name.adjustment.mode; with the adjustment modes, records flow under adjusted
// names, as Debezium's SchemaNameAdjuster makes them.
func TestAvroNameAdjustment(t *testing.T) {
	bad := newSetup(t, `public.dashed: {}`, "serialization: avro\nschema_registry: {url: "+testenv.Get(t).RegistryURL+"}")
	bad.db.Exec(t, `CREATE TABLE dashed (id int PRIMARY KEY, "my col" text)`)
	ctx := testenv.Context(t, time.Minute)
	if _, err := engine.New(ctx, bad.cfg(t), nil); err == nil || !strings.Contains(err.Error(), "field.name.adjustment.mode: avro") {
		t.Fatalf("engine.New with a column \"my col\": got %v, want an error pointing at field.name.adjustment.mode", err)
	}
	good := newSetup(t, `public.dashed: {}`, "serialization: avro\nschema_registry: {url: "+bad.env.RegistryURL+"}\n"+
		"debezium: {schema.name.adjustment.mode: avro, field.name.adjustment.mode: avro}")
	good.db.Exec(t, `CREATE TABLE dashed (id int PRIMARY KEY, "my col" text)`)
	reg := registryClient(t, good.env, good.name)
	good.runEngine(t)
	good.waitSlot(t)
	good.db.Exec(t, `INSERT INTO dashed VALUES (1, 'x')`)
	rec := good.env.ReadN(t, good.topic("dashed"), 1, time.Minute)[0]
	value, _ := newAvroReader(reg).decode(t, rec.Value)
	if after := value.(map[string]any)["after"].(map[string]any); after["my_col"] != "x" {
		t.Errorf("after: %v", after)
	}
	ss, err := reg.SchemaByVersion(ctx, good.topic("dashed")+"-value", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"namespace":"` + strings.ReplaceAll(good.topic("dashed"), "-", "_") + `"`; !strings.Contains(ss.Schema.Schema, want) {
		t.Errorf("registered schema lacks %s: %.300s", want, ss.Schema.Schema)
	}
}

// TestAvroDashedNames: a server name with '-' (default topics) and a relation routed to a
// topic such as orders-v1 need no setting. Debezium names the schemas after the topic
// ("orders-v1.Envelope": the record Envelope in the namespace orders-v1, which Java's Avro
// before 1.12 takes); this registry (Apicurio 3, Avro 1.12's parser) refuses such a namespace,
// as Confluent's from 8.0.3 does, so Debezium works here only with schema.name.adjustment.mode:
// avro, and procon-cdc registers what that gives. tail's decoder reads the records back.
func TestAvroDashedNames(t *testing.T) {
	env := testenv.Get(t)
	s := newSetup(t, "public.dashed: {}\npublic.orders: {topic: ORDERS}\npublic.items: {topic: ITEMS, schema_name: NAMES}",
		"serialization: avro\nschema_registry: {url: "+env.RegistryURL+"}")
	routed, items := s.name+"-orders-v1", s.name+"_items"
	s.config = strings.NewReplacer("ORDERS", routed, "ITEMS", items, "NAMES", s.topic("items")).Replace(s.config)
	s.db.Exec(t, `CREATE TABLE dashed (id int PRIMARY KEY, note text)`)
	s.db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY, total bigint NOT NULL)`)
	s.db.Exec(t, `CREATE TABLE items (id int PRIMARY KEY)`)
	reg := registryClient(t, env, s.name)
	s.runEngine(t)
	s.waitSlot(t)
	s.db.Exec(t, `INSERT INTO dashed VALUES (1, 'x')`)
	s.db.Exec(t, `INSERT INTO orders VALUES (7, 700)`)
	s.db.Exec(t, `INSERT INTO items VALUES (3)`)

	ctx := testenv.Context(t, time.Minute)
	rc, err := engine.RegistryClient(s.cfg(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	dec := registry.NewDecoder(rc)
	// items is routed as Kafka Connect's RegexRouter routes: its schemas keep the names of its
	// unrouted topic (schema_name).
	for _, tc := range []struct{ topic, names, after string }{
		{s.topic("dashed"), s.topic("dashed"), `{"id":1,"note":"x"}`},
		{routed, routed, `{"id":7,"total":700}`},
		{items, s.topic("items"), `{"id":3}`},
	} {
		rec := env.ReadN(t, tc.topic, 1, time.Minute)[0]
		key, err := reg.SchemaByVersion(ctx, tc.topic+"-key", 1)
		if err != nil {
			t.Fatal(err)
		}
		ns := strings.ReplaceAll(tc.names, "-", "_")
		if want := `{"type":"record","name":"Key","namespace":"` + ns + `","fields":[{"name":"id","type":"int"}],"connect.name":"` + ns + `.Key"}`; key.Schema.Schema != want {
			t.Errorf("%s: key schema\n got %s\nwant %s", tc.topic, key.Schema.Schema, want)
		}
		value, err := reg.SchemaByVersion(ctx, tc.topic+"-value", 1)
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"type":"record","name":"Envelope","namespace":"` + ns + `","fields":[{"name":"before","type":["null",{"type":"record","name":"Value","fields":[`; !strings.HasPrefix(value.Schema.Schema, want) ||
			!strings.Contains(value.Schema.Schema, `{"name":"after","type":["null","Value"],"default":null}`) ||
			!strings.HasSuffix(value.Schema.Schema, `"connect.version":2,"connect.name":"`+ns+`.Envelope"}`) {
			t.Errorf("%s: value schema %s", tc.topic, value.Schema.Schema)
		}
		js, _, err := dec.Decode(ctx, rec.Value)
		if err != nil {
			t.Fatalf("%s: decode: %v", tc.topic, err)
		}
		var v struct{ After json.RawMessage }
		if err := json.Unmarshal(js, &v); err != nil || string(v.After) != tc.after {
			t.Errorf("%s: after %s (%v), want %s", tc.topic, v.After, err, tc.after)
		}
	}
}
