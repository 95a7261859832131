package envelope

import (
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/replication"
)

// Kind says what an Event is.
type Kind uint8

// Event kinds.
const (
	KindData      Kind = iota + 1 // a c/u/d/r/t change event
	KindTombstone                 // the null-valued record after a delete
	KindTxBegin                   // transaction metadata BEGIN
	KindTxEnd                     // transaction metadata END
	KindMessage                   // a logical decoding message (op m)
	KindHeartbeat
	KindOutbox // an outbox event (package eventrouter): Outbox holds its key, value and headers
)

// Event is one record to produce, before serialization: a Debezium key and value described by
// Connect schemas.
type Event struct {
	Kind        Kind
	Topic       string
	KeySchema   *Schema // nil: the record has no key
	Key         *Value
	ValueSchema *Schema
	Value       *Value // nil: a tombstone
	// OldKey and NewKey become the __debezium.oldkey / __debezium.newkey headers of a
	// primary-key change.
	OldKey, NewKey *Value
	// Relation is the schema.table the event is about ("" for messages, metadata, heartbeats).
	Relation string
	// Partition is set for records that Debezium always writes to one partition (heartbeats).
	Partition int32
	// Outbox is what an outbox event has instead of Key and Value; nil for other kinds.
	Outbox *OutboxRecord
}

// OutboxRecord is the part of an outbox event that change events do not have: a key and a
// value of any schema (a column's, or the expanded JSON payload's) rather than structs, headers
// of its own, and possibly a partition and a timestamp chosen by the row.
type OutboxRecord struct {
	Key   any // described by Event.KeySchema
	Value any // described by Event.ValueSchema; a nil ValueSchema is a tombstone
	// Headers are encoded already (the header converter is the router's, not the topic's).
	Headers []Header
	// Partition is the partition the row chose, or -1 for the key's hash.
	Partition int32
	// TimestampMS is the record's timestamp in milliseconds since the epoch.
	TimestampMS int64
}

// Header is an encoded record header.
type Header struct {
	Key   string
	Value []byte
}

// Config configures a Builder.
type Config struct {
	Name     string // logical server name: source.name and topic prefix
	Database string // source.db
	Version  string // source.version
	// Topics maps each captured "schema.table" to its topic.
	Topics map[string]string
	// SchemaNames maps a captured "schema.table" to the prefix of its schema names
	// (<prefix>.Key, .Value, .Envelope) where that is not its topic.
	SchemaNames map[string]string
	Options     Options

	Tombstones bool            // tombstones.on.delete
	Skip       map[string]bool // skipped.operations: c, u, d, t
	// Publish, when set, holds the operations (c, u, d, t) Debezium's own publication would
	// carry: when skipped.operations is set explicitly, Debezium creates its publication with
	// publish = the others, so PostgreSQL never sends it a transaction made only of skipped
	// operations (no BEGIN/END, no source.sequence step). nil: all operations.
	Publish map[string]bool
	// EmptyTransactions says the server sends every transaction, even one none of whose
	// changes the publication carries (PostgreSQL before 15; 15 skips them): Debezium's
	// connector then sees each transaction's Begin and Commit whatever Publish leaves out of
	// its publication, and its transaction events and lsn_commit count them.
	EmptyTransactions bool
	TxMetadata        bool // provide.transaction.metadata
	TxTopic           string
	// MessageTopic receives logical decoding messages; MessageInclude/Exclude are regular
	// expressions on their prefix (message.prefix.include.list / exclude.list).
	MessageTopic   string
	MessageInclude []*regexp.Regexp
	MessageExclude []*regexp.Regexp
	Logger         *slog.Logger
	// Now is the connector clock (envelope ts_ms); time.Now when nil.
	Now func() time.Time
}

// Builder turns replication changes into Debezium events. It keeps per-relation schemas and
// the position of the last commit (source.sequence), so one Builder serves one stream, from
// one goroutine.
type Builder struct {
	cfg  Config
	log  *slog.Logger
	rels map[*replication.Relation]*relSchema
	// retired are the schemas of versions dropped from rels, until Retired hands them over.
	retired []*Schema
	// unknownLogged are the columns of unknown types already logged ("relation.column type"):
	// each version of a relation (a reconnect, any DDL) would log them again.
	unknownLogged map[string]bool

	lastCommit pglogrepl.LSN
	lastTxTime time.Time // commit time of the last transaction begun
	// The open transaction's Begin, and whether Debezium's publication would carry any of
	// it (Config.Publish).
	pendingBegin *replication.Change
	txSeen       bool
	// per transaction, for transaction metadata
	totalOrder int64
	perTable   map[string]int64
	tableOrder []string

	msgBody, msgValue *Schema // logical decoding message schemas

	// Values boxed once rather than per event: storing a string or an int64 in an interface
	// allocates, and the source block repeats them in every event.
	boxedVersion, boxedName, boxedDB any
	txBox                            struct {
		tx                     *replication.Tx
		tsMs, tsUs, tsNs, txID any
	}
	// mem holds the memory of the row events built (see arena); seqBuf is source.sequence's
	// scratch text.
	mem    arena
	seqBuf []byte
}

var boxedOps = map[string]any{"c": "c", "u": "u", "d": "d", "t": "t", "r": "r", "m": "m"}

func boxOp(op string) any {
	if b, ok := boxedOps[op]; ok {
		return b
	}
	return op
}

// NewBuilder returns a Builder.
func NewBuilder(cfg Config) *Builder {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Builder{cfg: cfg, log: cfg.Logger, rels: map[*replication.Relation]*relSchema{}, perTable: map[string]int64{},
		unknownLogged: map[string]bool{}}
}

// Build appends the events of one change to out.
func (b *Builder) Build(c *replication.Change, out []*Event) ([]*Event, error) {
	switch c.Op {
	case replication.OpBegin:
		b.totalOrder = 0
		clear(b.perTable)
		b.tableOrder = b.tableOrder[:0]
		b.pendingBegin, b.txSeen = c, false
		if b.cfg.Publish == nil || b.cfg.EmptyTransactions {
			out = b.seen(out)
		}
		return out, nil
	case replication.OpCommit:
		if !b.txSeen {
			// Debezium's publication would not have carried any of it: PostgreSQL 15 and
			// newer send it no empty transaction (older ones do: EmptyTransactions).
			return out, nil
		}
		if b.cfg.TxMetadata && c.Tx.XID != 0 {
			out = append(out, b.txEvent(c, "END"))
		}
		if c.Tx.XID != 0 {
			// Debezium's lsn_commit is where the commit record ends (the position of
			// pgoutput's Commit message).
			b.lastCommit = c.Tx.EndLSN
		}
		return out, nil
	}
	if b.cfg.Publish != nil && c.Op != replication.OpMessage && !b.cfg.Publish[opLetters[c.Op]] {
		// Not in Debezium's publication: not even an update that changes the key.
		return out, nil
	}
	if !b.txSeen {
		out = b.seen(out)
	}
	switch c.Op {
	case replication.OpInsert, replication.OpUpdate, replication.OpDelete:
		rs, err := b.relSchema(c.Rel)
		if err != nil {
			return out, err
		}
		return b.rowEvents(rs, c, out)
	case replication.OpTruncate:
		if b.cfg.Skip["t"] {
			return out, nil
		}
		for _, rel := range c.Truncated {
			rs, err := b.relSchema(rel)
			if err != nil {
				return out, err
			}
			v := b.envelope(rs, c, "t")
			out = append(out, &Event{Kind: KindData, Topic: rs.topic, ValueSchema: rs.envelope, Value: v, Relation: rs.qualified})
		}
		return out, nil
	case replication.OpMessage:
		if !c.Transactional {
			// Debezium commits a non-transactional message's position before building it.
			b.lastCommit = c.LSN
		}
		if !b.messageWanted(c.Prefix) {
			return out, nil
		}
		return append(out, b.messageEvent(c)), nil
	}
	return out, fmt.Errorf("envelope: unexpected change %s", c.Op)
}

var opLetters = map[replication.Op]string{replication.OpInsert: "c", replication.OpUpdate: "u",
	replication.OpDelete: "d", replication.OpTruncate: "t"}

// seen marks the open transaction as one Debezium receives: its BEGIN (with transaction
// metadata) goes out, and its commit time becomes the source time of later messages that
// have none.
func (b *Builder) seen(out []*Event) []*Event {
	b.txSeen = true
	c := b.pendingBegin
	if c == nil || c.Tx.XID == 0 {
		return out
	}
	b.lastTxTime = c.Tx.CommitTime
	if b.cfg.TxMetadata {
		out = append(out, b.txEvent(c, "BEGIN"))
	}
	return out
}

func (b *Builder) rowEvents(rs *relSchema, c *replication.Change, out []*Event) ([]*Event, error) {
	rel := rs.qualified
	switch c.Op {
	case replication.OpInsert:
		if b.cfg.Skip["c"] {
			return out, nil
		}
		after, err := rs.row(&b.mem, c.New, nil, &b.cfg.Options)
		if err != nil {
			return out, b.rowError(c, err)
		}
		key := rs.keyOf(&b.mem, after)
		v := b.envelope(rs, c, "c")
		v.Fields[envAfter] = after
		return append(out, b.event(Event{Kind: KindData, Topic: rs.topic, KeySchema: rs.key, Key: key, ValueSchema: rs.envelope, Value: v, Relation: rel})), nil

	case replication.OpUpdate:
		var before *Value
		var err error
		if c.Old != nil {
			if before, err = rs.oldRow(&b.mem, c.Old, c.OldKind, &b.cfg.Options); err != nil {
				return out, b.rowError(c, err)
			}
		}
		var prior []replication.Datum
		if c.OldKind == 'O' {
			prior = c.Old
		}
		after, err := rs.row(&b.mem, c.New, prior, &b.cfg.Options)
		if err != nil {
			return out, b.rowError(c, err)
		}
		newKey := rs.keyOf(&b.mem, after)
		if before != nil && rs.key != nil {
			if oldKey := rs.keyOf(&b.mem, before); !keysEqual(oldKey, newKey) {
				return b.keyChange(rs, c, before, after, oldKey, newKey, out), nil
			}
		}
		if b.cfg.Skip["u"] {
			return out, nil
		}
		v := b.envelope(rs, c, "u")
		v.Fields[envBefore] = before
		v.Fields[envAfter] = after
		return append(out, b.event(Event{Kind: KindData, Topic: rs.topic, KeySchema: rs.key, Key: newKey, ValueSchema: rs.envelope, Value: v, Relation: rel})), nil

	default: // delete
		before, err := rs.oldRow(&b.mem, c.Old, c.OldKind, &b.cfg.Options)
		if err != nil {
			return out, b.rowError(c, err)
		}
		if b.cfg.Skip["d"] {
			return out, nil
		}
		key := rs.keyOf(&b.mem, before)
		v := b.envelope(rs, c, "d")
		v.Fields[envBefore] = before
		out = append(out, b.event(Event{Kind: KindData, Topic: rs.topic, KeySchema: rs.key, Key: key, ValueSchema: rs.envelope, Value: v, Relation: rel}))
		if b.cfg.Tombstones {
			out = append(out, b.event(Event{Kind: KindTombstone, Topic: rs.topic, KeySchema: rs.key, Key: key, Relation: rel}))
		}
		return out, nil
	}
}

// keyChange renders an update that changed the key as Debezium does: a delete under the old
// key (with its tombstone), then a create under the new one, linked by headers.
func (b *Builder) keyChange(rs *relSchema, c *replication.Change, before, after, oldKey, newKey *Value, out []*Event) []*Event {
	rel := rs.qualified
	if !b.cfg.Skip["d"] {
		d := b.envelope(rs, c, "d")
		d.Fields[envBefore] = before
		out = append(out, &Event{Kind: KindData, Topic: rs.topic, KeySchema: rs.key, Key: oldKey, ValueSchema: rs.envelope, Value: d, NewKey: newKey, Relation: rel})
		if b.cfg.Tombstones {
			out = append(out, &Event{Kind: KindTombstone, Topic: rs.topic, KeySchema: rs.key, Key: oldKey, NewKey: newKey, Relation: rel})
		}
	}
	if !b.cfg.Skip["c"] {
		cr := b.envelope(rs, c, "c")
		cr.Fields[envAfter] = after
		out = append(out, &Event{Kind: KindData, Topic: rs.topic, KeySchema: rs.key, Key: newKey, ValueSchema: rs.envelope, Value: cr, OldKey: oldKey, Relation: rel})
	}
	return out
}

func (b *Builder) rowError(c *replication.Change, err error) error {
	return fmt.Errorf("%s of %s at LSN %s (xid %d): %w", c.Op, c.Rel.QualifiedName(), c.LSN, c.Tx.XID, err)
}

// envelope starts an envelope value with its source block and timestamps.
func (b *Builder) envelope(rs *relSchema, c *replication.Change, op string) *Value {
	v := b.mem.value(rs.envelope)
	v.Fields[envSource] = b.source(c, rs.rel, rs)
	v.Fields[envOp] = boxOp(op)
	b.stamp(v, envTsMs, envTsUs, envTsNs)
	if b.cfg.TxMetadata {
		v.Fields[envTransaction] = b.txBlock(c, rs.qualified)
	}
	return v
}

func (b *Builder) stamp(v *Value, ms, us, ns int) {
	now := b.cfg.Now()
	v.Fields[ms] = b.mem.int64(now.UnixMilli())
	if us >= 0 {
		v.Fields[us] = b.mem.int64(now.UnixMicro())
		v.Fields[ns] = b.mem.int64(now.UnixNano())
	}
}

// source builds the source block of a streamed change.
func (b *Builder) source(c *replication.Change, rel *replication.Relation, rs *relSchema) *Value {
	if b.boxedVersion == nil {
		b.boxedVersion, b.boxedName, b.boxedDB = b.cfg.Version, b.cfg.Name, b.cfg.Database
	}
	if tb := &b.txBox; tb.tx != c.Tx {
		commit := c.Tx.CommitTime
		tb.tx, tb.tsMs, tb.tsUs, tb.tsNs = c.Tx, commit.UnixMilli(), commit.UnixMicro(), commit.UnixMicro()*1000
		tb.txID = nil
		if c.Tx.XID != 0 {
			tb.txID = int64(c.Tx.XID)
		}
	}
	s := b.mem.value(sourceSchema)
	s.Fields[srcVersion] = b.boxedVersion
	s.Fields[srcConnector] = "postgresql"
	s.Fields[srcName] = b.boxedName
	s.Fields[srcTsMs], s.Fields[srcTsUs], s.Fields[srcTsNs] = b.txBox.tsMs, b.txBox.tsUs, b.txBox.tsNs
	s.Fields[srcDB] = b.boxedDB
	s.Fields[srcSequence] = b.sequence(c.LSN)
	if rs != nil {
		s.Fields[srcSchema], s.Fields[srcTable] = rs.boxedSchema, rs.boxedTable
	} else {
		s.Fields[srcSchema] = ""
		s.Fields[srcTable] = ""
	}
	s.Fields[srcTxID] = b.txBox.txID
	s.Fields[srcLSN] = b.mem.int64(int64(c.LSN))
	return s
}

// event returns ev in memory of the arena.
func (b *Builder) event(ev Event) *Event {
	e := b.mem.event()
	*e = ev
	return e
}

// sequence is source.sequence: the JSON text ["<last commit LSN>","<this LSN>"].
func (b *Builder) sequence(lsn pglogrepl.LSN) any {
	buf := append(b.seqBuf[:0], '[')
	if b.lastCommit == 0 {
		buf = append(buf, "null"...)
	} else {
		buf = append(buf, '"')
		buf = strconv.AppendUint(buf, uint64(b.lastCommit), 10)
		buf = append(buf, '"')
	}
	buf = append(buf, ',', '"')
	buf = strconv.AppendUint(buf, uint64(lsn), 10)
	buf = append(buf, '"', ']')
	b.seqBuf = buf
	return b.mem.str(buf)
}

func (b *Builder) txID(c *replication.Change) string {
	return strconv.FormatUint(uint64(c.Tx.XID), 10) + ":" + strconv.FormatUint(uint64(c.LSN), 10)
}

func (b *Builder) txBlock(c *replication.Change, collection string) *Value {
	b.totalOrder++
	if _, seen := b.perTable[collection]; !seen {
		b.tableOrder = append(b.tableOrder, collection)
	}
	b.perTable[collection]++
	v := NewValue(transactionBlockSchema)
	v.Fields[0] = b.txID(c)
	v.Fields[1] = b.totalOrder
	v.Fields[2] = b.perTable[collection]
	return v
}

func (b *Builder) txEvent(c *replication.Change, status string) *Event {
	id := b.txID(c)
	key := NewValue(txKeySchema)
	key.Fields[0] = id
	v := NewValue(txValueSchema)
	v.Fields[0] = status
	v.Fields[1] = id
	v.Fields[4] = c.Tx.CommitTime.UnixMilli()
	if status == "END" {
		v.Fields[2] = b.totalOrder
		// Debezium keeps the counts in a java.util.HashMap: they come out in its order.
		order := javaHashMapKeyOrder(b.tableOrder)
		cols := make([]any, len(order))
		for i, t := range order {
			ec := NewValue(eventCollectionSchema)
			ec.Fields[0] = t
			ec.Fields[1] = b.perTable[t]
			cols[i] = ec
		}
		v.Fields[3] = cols
	}
	kind := KindTxBegin
	if status == "END" {
		kind = KindTxEnd
	}
	return &Event{Kind: kind, Topic: b.cfg.TxTopic, KeySchema: txKeySchema, Key: key, ValueSchema: txValueSchema, Value: v}
}

func (b *Builder) messageWanted(prefix string) bool {
	if len(b.cfg.MessageInclude) > 0 {
		for _, re := range b.cfg.MessageInclude {
			if re.MatchString(prefix) {
				return true
			}
		}
		return false
	}
	for _, re := range b.cfg.MessageExclude {
		if re.MatchString(prefix) {
			return false
		}
	}
	return true
}

func (b *Builder) messageEvent(c *replication.Change) *Event {
	if b.msgValue == nil {
		// Built once: encoders cache per schema, so every message shares these.
		b.msgBody = messageBodySchema(b.cfg.Options.binaryType().schema.optional())
		b.msgValue = messageValueSchema(b.msgBody)
	}
	body, vs := b.msgBody, b.msgValue
	key := NewValue(messageKeySchema)
	key.Fields[0] = c.Prefix
	m := NewValue(body)
	m.Fields[0] = c.Prefix
	m.Fields[1] = b.cfg.Options.renderBinary(c.Content)
	v := NewValue(vs)
	v.Fields[0] = "m"
	b.stamp(v, 1, -1, -1)
	src := b.source(c, nil, nil)
	if !c.Transactional {
		// A non-transactional message has no commit time and no xid: Debezium's source block
		// keeps the commit time of the last transaction it saw.
		at := b.lastTxTime
		if at.IsZero() {
			at = b.cfg.Now()
		}
		src.Fields[srcTsMs] = at.UnixMilli()
		src.Fields[srcTsUs] = at.UnixMicro()
		src.Fields[srcTsNs] = at.UnixMicro() * 1000
	}
	v.Fields[2] = src
	if b.cfg.TxMetadata && c.Transactional {
		// Debezium counts each message as a data collection of its own, named by a Java
		// object's identity (LogicalDecodingMessageId@<identity hash>): the hash here is
		// derived from the message's position instead.
		id := "io.debezium.connector.postgresql.LogicalDecodingMessageMonitor$LogicalDecodingMessageId@" +
			strconv.FormatUint(uint64(uint32(c.LSN*0x9E3779B1>>7)&0x7fffffff), 16)
		v.Fields[3] = b.txBlock(c, id)
	}
	v.Fields[4] = m
	return &Event{Kind: KindMessage, Topic: b.cfg.MessageTopic, KeySchema: messageKeySchema, Key: key, ValueSchema: vs, Value: v}
}

// Heartbeat builds a heartbeat event for topic.
func (b *Builder) Heartbeat(topic string) *Event {
	key := NewValue(heartbeatKeySchema)
	key.Fields[0] = b.cfg.Name
	v := NewValue(heartbeatValueSchema)
	v.Fields[0] = b.cfg.Now().UnixMilli()
	return &Event{Kind: KindHeartbeat, Topic: topic, KeySchema: heartbeatKeySchema, Key: key, ValueSchema: heartbeatValueSchema, Value: v, Partition: 0}
}

// renderBinary renders raw bytes per binary.handling.mode.
func (o *Options) renderBinary(raw []byte) any {
	switch o.BinaryMode {
	case BinaryBase64, BinaryBase64URLSafe, BinaryHex:
		hexText := make([]byte, 0, 2+2*len(raw))
		hexText = append(hexText, `\x`...)
		for _, c := range raw {
			hexText = append(hexText, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		}
		v, _ := o.binaryType().conv(hexText)
		return v
	}
	return raw
}
