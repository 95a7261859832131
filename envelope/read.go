package envelope

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/replication"
)

// ReadSource is what the source block of a snapshot row says beyond the relation.
type ReadSource struct {
	// Marker is source.snapshot: first, first_in_data_collection, true,
	// last_in_data_collection, last or incremental.
	Marker string
	// Time is source.ts_ms: when the snapshot read the table (the snapshot transaction's
	// CURRENT_TIMESTAMP for an initial snapshot).
	Time time.Time
	// TxID and LSN are source.txId and source.lsn (the snapshot transaction and the slot's
	// consistent point); zero leaves them null, as Debezium does for incremental rows.
	TxID int64
	LSN  pglogrepl.LSN
	// LastCommit and SeqLSN make source.sequence ["<LastCommit>","<SeqLSN>"]; a zero
	// LastCommit is written as null.
	LastCommit, SeqLSN pglogrepl.LSN
}

// Reader builds the read events (op "r") of one relation version from text tuples, with the
// same schemas and converters as streamed changes, so snapshot rows and streamed rows render
// a value identically. It only reads the Builder's configuration: unlike Builder, a Reader is
// safe for concurrent use.
type Reader struct {
	cfg *Config
	rs  *relSchema
	// last is the source block built last: every row of a table read at once shares one, as
	// encoders only read values.
	last atomic.Pointer[cachedSource]
}

type cachedSource struct {
	src ReadSource
	v   *Value
}

// Reader returns a Reader for rel, as described by the catalog (replication.DescribeTable).
func (b *Builder) Reader(rel *replication.Relation) (*Reader, error) {
	rs, err := newRelSchema(rel, &b.cfg)
	if err != nil {
		return nil, fmt.Errorf("relation %s: %w", rel.QualifiedName(), err)
	}
	return &Reader{cfg: &b.cfg, rs: rs}, nil
}

// Topic is the topic of the relation's events.
func (r *Reader) Topic() string { return r.rs.topic }

// Read builds the event of one row, given as text datums in the relation's column order.
func (r *Reader) Read(row []replication.Datum, src ReadSource) (*Event, error) {
	after, err := r.rs.row(nil, row, nil, &r.cfg.Options)
	if err != nil {
		return nil, fmt.Errorf("snapshot row of %s: %w", r.rs.qualified, err)
	}
	v := NewValue(r.rs.envelope)
	v.Fields[envAfter] = after
	c := r.last.Load()
	if c == nil || c.src != src {
		c = &cachedSource{src: src, v: r.source(src)}
		r.last.Store(c)
	}
	v.Fields[envSource] = c.v
	v.Fields[envOp] = "r"
	now := r.cfg.Now()
	v.Fields[envTsMs] = now.UnixMilli()
	v.Fields[envTsUs] = now.UnixMicro()
	v.Fields[envTsNs] = now.UnixNano()
	return &Event{Kind: KindData, Topic: r.rs.topic, KeySchema: r.rs.key, Key: r.rs.keyOf(nil, after),
		ValueSchema: r.rs.envelope, Value: v, Relation: r.rs.qualified}, nil
}

func (r *Reader) source(src ReadSource) *Value {
	s := NewValue(sourceSchema)
	s.Fields[srcVersion] = r.cfg.Version
	s.Fields[srcConnector] = "postgresql"
	s.Fields[srcName] = r.cfg.Name
	s.Fields[srcTsMs] = src.Time.UnixMilli()
	s.Fields[srcTsUs] = src.Time.UnixMicro()
	s.Fields[srcTsNs] = src.Time.UnixMicro() * 1000
	if src.Marker != "" {
		s.Fields[srcSnapshot] = src.Marker
	}
	s.Fields[srcDB] = r.cfg.Database
	s.Fields[srcSequence] = sequenceText(src.LastCommit, src.SeqLSN)
	s.Fields[srcSchema] = r.rs.rel.Schema
	s.Fields[srcTable] = r.rs.rel.Table
	if src.TxID != 0 {
		s.Fields[srcTxID] = src.TxID
	}
	if src.LSN != 0 {
		s.Fields[srcLSN] = int64(src.LSN)
	}
	return s
}

// LastCommit is the commit LSN of the last transaction built, the first half of
// source.sequence; snapshot rows emitted in the stream carry it as Debezium does. It is called
// from the Builder's goroutine.
func (b *Builder) LastCommit() pglogrepl.LSN { return b.lastCommit }

func sequenceText(lastCommit, lsn pglogrepl.LSN) string {
	buf := make([]byte, 0, 48)
	buf = append(buf, '[')
	if lastCommit == 0 {
		buf = append(buf, "null"...)
	} else {
		buf = append(buf, '"')
		buf = strconv.AppendUint(buf, uint64(lastCommit), 10)
		buf = append(buf, '"')
	}
	buf = append(buf, ',')
	if lsn == 0 {
		buf = append(buf, "null"...)
	} else {
		buf = append(buf, '"')
		buf = strconv.AppendUint(buf, uint64(lsn), 10)
		buf = append(buf, '"')
	}
	return string(append(buf, ']'))
}
