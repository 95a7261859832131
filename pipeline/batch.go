package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/realtime"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

const (
	encodeWorkers = 2  // goroutines encoding a batch's events
	minParallel   = 32 // events below which a batch is encoded inline
)

// batch is the Run goroutine's state across batches.
type batch struct {
	seq   int    // position of the last record in the open transaction
	txHdr []byte // procon.tx of the open transaction

	steps  []step
	jobs   []job
	events []*envelope.Event
	// newSchema records the value schemas already encoded once. An event of a schema not yet
	// seen is encoded in the build step, in stream order, so that schema registrations (Avro)
	// happen in the order of the relation versions.
	newSchema map[*envelope.Schema]bool
}

// step is one change of a batch.
type step struct {
	c     *replication.Change
	first int // index of its first job
	n     int // number of its jobs (events)
	note  *realtime.Pending
	// snap is the snapshot progress once its jobs are handed over, when it changed (a
	// watermark's chunk, with exactly-once delivery).
	snap    *progress.Snapshot
	hasSnap bool
}

// job is one event of a batch and, once encoded, its record.
type job struct {
	ev    *envelope.Event
	c     *replication.Change
	txHdr []byte
	seq   int
	rec   *sink.Record
	err   error
}

func (p *Pipeline) run(ctx context.Context, changes []*replication.Change) error {
	b := &p.batch
	b.steps, b.jobs = b.steps[:0], b.jobs[:0]
	for _, c := range changes {
		if c.Op == replication.OpBegin {
			b.seq = 0
			// A new buffer each time: records of the previous transaction may still wait in the
			// producer with theirs as their procon.tx header.
			b.txHdr = txid.New(txTime(c.Tx), p.cfg.Instance, uint64(c.Tx.CommitLSN)).AppendText(nil)
		}
		var err error
		var handled bool
		events := b.events[:0]
		if p.cfg.Notifier == nil || !p.cfg.Notifier.Suppress(c) { // the realtime table's own rows and cleanup
			if events, handled, err = p.build(ctx, c, events); err != nil {
				return err
			}
			if p.cfg.Router != nil && len(events) > 0 {
				if events, err = p.cfg.Router.Route(c, events); err != nil {
					return err
				}
			}
		}
		st := step{c: c, first: len(b.jobs), n: len(events)}
		if handled && p.eos != nil {
			st.snap, st.hasSnap = p.cfg.Snapshots.Progress(), true
		}
		for _, ev := range events {
			b.seq++
			j := job{ev: ev, c: c, txHdr: b.txHdr, seq: b.seq}
			if ev.ValueSchema != nil && !b.newSchema[ev.ValueSchema] {
				b.newSchema[ev.ValueSchema] = true
				p.encode(ctx, &j)
				if j.err != nil {
					return j.err
				}
			}
			b.jobs = append(b.jobs, j)
		}
		clear(events)
		b.events = events
		if p.cfg.Notifier != nil {
			// Realtime notifications follow the change's events in the transaction's positions.
			st.note, b.seq = p.cfg.Notifier.Derive(c, b.txHdr, b.seq)
		}
		b.steps = append(b.steps, st)
	}
	if err := p.encodeAll(ctx); err != nil {
		return err
	}
	for _, st := range b.steps {
		if p.eos != nil && st.c.Op == replication.OpBegin {
			p.eos.beginSource()
		}
		for i := st.first; i < st.first+st.n; i++ {
			if err := p.produce(ctx, &b.jobs[i]); err != nil {
				return err
			}
		}
		if st.hasSnap {
			p.eos.snapshot = st.snap
		}
		if st.note != nil {
			// Counted in the transaction before it is sealed; produced when the channel allows.
			if err := p.cfg.Notifier.Submit(ctx, st.note); err != nil {
				return err
			}
		}
		if c := st.c; c.Op == replication.OpCommit {
			p.cfg.Tracker.Seal(c.Tx)
			p.cfg.Meter.Transaction()
			if p.log.Enabled(ctx, slog.LevelDebug) {
				p.log.Debug("transaction handed to kafka", "xid", c.Tx.XID, "commit_lsn", c.Tx.CommitLSN.String(), "records", b.seq)
			}
			if p.eos != nil {
				p.eos.endSource()
				if err := p.maybeCommit(ctx, false); err != nil {
					return err
				}
			}
		}
	}
	if p.eos != nil && p.eos.inSource {
		if err := p.maybeCommit(ctx, false); err != nil { // a split, when the source transaction is too large
			return err
		}
	}
	clear(b.jobs) // drop references to events and records
	p.forgetRetired()
	return nil
}

// forgetRetired drops what is kept of the schemas of relation versions that newer ones
// replaced (each reconnect and each DDL makes new ones). Build runs in stream order, so once
// a newer version is built no change of the old one follows; this batch's events, the last
// that could use it, are encoded by now.
func (p *Pipeline) forgetRetired() {
	retired := p.cfg.Builder.Retired()
	if p.cfg.Router != nil {
		retired = append(retired, p.cfg.Router.Retired()...)
	}
	if len(retired) == 0 {
		return
	}
	for _, s := range retired {
		delete(p.batch.newSchema, s)
	}
	p.cfg.Encoders.Forget(retired)
}

// build turns a change into events: the in-stream snapshots see it first, and may take it
// (watermarks, signals) or emit a chunk's rows in its place.
func (p *Pipeline) build(ctx context.Context, c *replication.Change, out []*envelope.Event) (_ []*envelope.Event, handled bool, err error) {
	if p.cfg.Snapshots != nil {
		if out, handled, err = p.cfg.Snapshots.Observe(ctx, c, out); err != nil || handled {
			return out, handled, err
		}
	}
	out, err = p.buildEvents(c, out)
	return out, false, err
}

// buildEvents is Builder.Build with a panic turned into an error naming the change. The
// converters are fuzzed, but a value none foresaw must stop the stream at its LSN, confirming
// nothing past it, with an error saying where, rather than kill the process without one.
func (p *Pipeline) buildEvents(c *replication.Change, out []*envelope.Event) (events []*envelope.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic building events", "op", c.Op.String(), "lsn", c.LSN.String(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("build events of %s at LSN %s (xid %d): panic: %v", c.Op, c.LSN, c.Tx.XID, r)
		}
	}()
	return p.cfg.Builder.Build(c, out)
}

// encodeAll encodes the jobs not encoded yet, in parallel when there are enough of them.
func (p *Pipeline) encodeAll(ctx context.Context) error {
	jobs := p.batch.jobs
	n := len(jobs)
	if n < minParallel {
		for i := range jobs {
			p.encode(ctx, &jobs[i])
		}
	} else {
		var wg sync.WaitGroup
		per := (n + encodeWorkers - 1) / encodeWorkers
		for lo := per; lo < n; lo += per {
			hi := min(lo+per, n)
			wg.Go(func() {
				for i := lo; i < hi; i++ {
					p.encode(ctx, &jobs[i])
				}
			})
		}
		for i := range min(per, n) { // the first part here: one goroutine fewer to start and wake
			p.encode(ctx, &jobs[i])
		}
		wg.Wait()
	}
	for i := range jobs {
		if err := jobs[i].err; err != nil {
			return err
		}
	}
	return nil
}

func (p *Pipeline) encode(ctx context.Context, j *job) {
	if j.rec != nil || j.err != nil {
		return
	}
	c := j.c
	defer func() { // as in buildEvents
		if r := recover(); r != nil {
			p.log.Error("panic encoding an event", "op", c.Op.String(), "lsn", c.LSN.String(), "panic", r, "stack", string(debug.Stack()))
			j.rec, j.err = nil, fmt.Errorf("encode %s at LSN %s (xid %d): panic: %v", c.Op, c.LSN, c.Tx.XID, r)
		}
	}()
	if j.rec, j.err = NewRecord(ctx, p.cfg.Encoders.ForEvent(j.ev), j.ev, p.cfg.Source, j.txHdr, j.seq); j.err != nil {
		j.err = fmt.Errorf("encode %s at LSN %s (xid %d): %w", c.Op, c.LSN, c.Tx.XID, j.err)
	}
}

// produce hands one encoded record to Kafka unless a previous run already wrote it. The
// record is counted in its transaction before Produce: its acknowledgement can come at once.
func (p *Pipeline) produce(ctx context.Context, j *job) error {
	rec, tx := j.rec, j.c.Tx
	partitions, err := p.cfg.Producer.EnsureTopic(ctx, rec.Topic)
	if err != nil {
		return err
	}
	rec.Partition = PartitionOf(j.ev, rec, partitions, p.log, j.c.LSN)
	pos := progress.Position{CommitLSN: uint64(tx.CommitLSN), Seq: j.seq}
	if p.eos != nil {
		if p.eos.written(pos) {
			p.cfg.Meter.Skipped()
			return nil
		}
		if err := p.splitFull(ctx); err != nil {
			return err
		}
		p.eos.handed(pos)
	} else {
		dup, err := p.resume.written(ctx, topicPartition{rec.Topic, rec.Partition}, pos)
		if err != nil {
			return err
		}
		if dup {
			p.cfg.Meter.Skipped()
			return nil
		}
	}
	rec.Ack = tx
	// A record too large for its topic is decided on here, before Kafka could refuse it:
	// under fail the pipeline stops before its transaction can be confirmed; a skipped
	// record is not counted, so its transaction is confirmed without it; a dead-letter
	// reference is counted in its place and carries its acknowledgement.
	if rec, err = p.cfg.Oversize.Check(ctx, rec, origin(j)); err != nil || rec == nil {
		return err
	}
	p.cfg.Tracker.Add(tx, 1)
	if err := p.cfg.Producer.Produce(ctx, rec); err != nil {
		return err
	}
	p.cfg.Meter.Produced(j.ev.Relation, rec.Topic, len(rec.Key)+len(rec.Value))
	return nil
}

// PartitionOf is the partition of ev's record rec in a topic of partitions: the one an outbox
// row chose (table.fields.additional.placement: <column>:partition), else the key's, as
// Kafka's default partitioner hashes it. A chosen partition the topic does not have would make
// Kafka refuse the record: it is warned about, and the key's partition keeps the record, and
// the stream, going; the warning names the change by its lsn (its message's, or the snapshot
// row's position).
func PartitionOf(ev *envelope.Event, rec *sink.Record, partitions int32, log *slog.Logger, lsn pglogrepl.LSN) int32 {
	if o := ev.Outbox; o != nil && o.Partition >= 0 {
		if o.Partition < partitions {
			return o.Partition
		}
		log.Warn("outbox: the row's partition does not exist; the record goes to its key's partition", "relation", ev.Relation,
			"topic", rec.Topic, "partition", o.Partition, "partitions", partitions, "lsn", lsn.String())
	}
	return sink.Partition(rec.Key, partitions)
}

// origin describes a job's record for the record-size policy.
func origin(j *job) deadletter.Origin {
	o := deadletter.Origin{Kind: deadletter.Row, Relation: j.ev.Relation, LSN: j.c.LSN}
	if j.ev.Kind == envelope.KindMessage {
		o.Kind, o.Prefix = deadletter.Message, j.c.Prefix
	}
	if tx := j.c.Tx; tx.XID != 0 { // a non-transactional message has no transaction
		o.CommitLSN, o.XID = tx.CommitLSN, tx.XID
	}
	return o
}

// NewRecord encodes ev with enc into a record with Procon's procon.source, procon.tx and
// procon.seq headers (source, txHdr, seq) and, for a key change, Debezium's __debezium.oldkey/newkey headers. The
// record's partition is left to the producer (-1) and it has no acknowledgement yet.
func NewRecord(ctx context.Context, enc Encoder, ev *envelope.Event, source, txHdr []byte, seq int) (*sink.Record, error) {
	key, value, err := enc.Encode(ctx, ev)
	if err != nil {
		return nil, err
	}
	m := &recordMem{}
	headers := txid.AppendHeadersInto(m.hdr[:0], source, txHdr, seq, m.seq[:])
	var ts time.Time
	if o := ev.Outbox; o != nil {
		for _, h := range o.Headers {
			headers = append(headers, sink.Header{Key: h.Key, Value: h.Value})
		}
		if o.TimestampMS != 0 {
			ts = time.UnixMilli(o.TimestampMS)
		}
	}
	if ev.OldKey != nil {
		b, err := enc.EncodeKey(ctx, ev.KeySchema, ev.OldKey)
		if err != nil {
			return nil, err
		}
		headers = append(headers, sink.Header{Key: "__debezium.oldkey", Value: b})
	}
	if ev.NewKey != nil {
		b, err := enc.EncodeKey(ctx, ev.KeySchema, ev.NewKey)
		if err != nil {
			return nil, err
		}
		headers = append(headers, sink.Header{Key: "__debezium.newkey", Value: b})
	}
	m.rec = sink.Record{Topic: ev.Topic, Key: key, Value: value, Headers: headers, Partition: -1, Timestamp: ts}
	return &m.rec, nil
}

// recordMem is a record with room for its headers, allocated at once.
type recordMem struct {
	rec sink.Record
	hdr [5]sink.Header
	seq [20]byte
}
