package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/realtime"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// pipeline turns changes into records, in stream order. For each transaction it counts every
// record with the tracker before producing it, and seals the transaction after its last
// record, so the tracker can tell when Kafka holds all of it.
//
// Changes are taken in batches of what is already queued (up to batchChanges) and go through
// three steps: build, in order, with everything that carries state (the envelope builder,
// snapshot windows, positions, realtime derivation); encode, the CPU-heavy part, spread over
// encodeWorkers goroutines; then produce, in order (resume check, Add, Produce, realtime submit,
// Seal). Only encoding runs in parallel, so records, positions and acknowledgements are exactly
// what a one-at-a-time loop would give.
func (e *Engine) pipeline(ctx context.Context, changes <-chan *replication.Change) error {
	p := &pipe{e: e, tracker: e.stream.Tracker(), instance: uint16(*e.cfg.InstanceNum), resume: newResume(e.writer),
		newSchema: map[*envelope.Schema]bool{}}
	var heartbeat <-chan time.Time
	if ms := e.cfg.Debezium.HeartbeatIntervalMS; ms > 0 {
		t := time.NewTicker(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		heartbeat = t.C
	}
	action := &heartbeatAction{dsn: e.cfg.Postgres.DSN, query: e.cfg.Debezium.HeartbeatActionQuery, log: e.log}
	defer action.close()
	hbTopic := config.SanitizeTopic(e.cfg.Debezium.TopicHeartbeatPrefix + e.cfg.Debezium.TopicDelimiter + e.cfg.Name)

	batch := make([]*replication.Change, 0, batchChanges)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-heartbeat:
			action.run(ctx)
			if err := e.produceHeartbeat(ctx, hbTopic); err != nil {
				return err
			}
			continue
		case c, ok := <-changes:
			if !ok {
				return nil // the stream stopped and everything it sent is handed over
			}
			batch = append(batch, c)
		}
	more:
		for len(batch) < batchChanges {
			select {
			case c, ok := <-changes:
				if !ok {
					break more
				}
				batch = append(batch, c)
			default:
				break more
			}
		}
		if err := p.run(ctx, batch); err != nil {
			return err
		}
	}
}

const (
	batchChanges  = 256 // changes taken at once, at most
	encodeWorkers = 2   // goroutines encoding a batch's events
	minParallel   = 32  // events below which a batch is encoded inline
)

// pipe is the pipeline's state across batches.
type pipe struct {
	e        *Engine
	tracker  *replication.Tracker
	instance uint16
	resume   *resume

	seq   int    // position of the last record in the open transaction
	txHdr []byte // procon.tx of the open transaction

	steps []step
	jobs  []job
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

func (p *pipe) run(ctx context.Context, batch []*replication.Change) error {
	e := p.e
	p.steps, p.jobs = p.steps[:0], p.jobs[:0]
	var events []*envelope.Event
	for _, c := range batch {
		if c.Op == replication.OpBegin {
			p.seq = 0
			// A new buffer each time: records of the previous transaction may still wait in the
			// producer with theirs as their procon.tx header.
			p.txHdr = txid.New(txTime(c.Tx), p.instance, uint64(c.Tx.CommitLSN)).AppendText(nil)
		}
		var err error
		events = events[:0]
		if !e.rt.Suppress(c) { // the realtime table's own rows and cleanup, realtime messages
			if events, err = e.build(ctx, c, events); err != nil { // snapshot.go: snapshots see it first
				return err
			}
		}
		st := step{c: c, first: len(p.jobs), n: len(events)}
		for _, ev := range events {
			p.seq++
			j := job{ev: ev, c: c, txHdr: p.txHdr, seq: p.seq}
			if ev.ValueSchema != nil && !p.newSchema[ev.ValueSchema] {
				p.newSchema[ev.ValueSchema] = true
				p.encode(ctx, &j)
				if j.err != nil {
					return j.err
				}
			}
			p.jobs = append(p.jobs, j)
		}
		// Realtime notifications follow the change's events in the transaction's positions.
		st.note, p.seq = e.rt.Derive(c, p.txHdr, p.seq)
		p.steps = append(p.steps, st)
	}
	if err := p.encodeAll(ctx); err != nil {
		return err
	}
	for _, st := range p.steps {
		c := st.c
		for i := st.first; i < st.first+st.n; i++ {
			if err := p.produce(ctx, &p.jobs[i]); err != nil {
				return err
			}
		}
		// Counted in the transaction before it is sealed; produced when the channel allows.
		if err := e.rt.Submit(ctx, st.note); err != nil {
			return err
		}
		if c.Op == replication.OpCommit {
			p.tracker.Seal(c.Tx)
			if e.log.Enabled(ctx, slog.LevelDebug) {
				e.log.Debug("transaction handed to kafka", "xid", c.Tx.XID, "commit_lsn", c.Tx.CommitLSN.String(), "records", p.seq)
			}
		}
	}
	clear(p.jobs) // drop references to events and records
	return nil
}

// encodeAll encodes the jobs not encoded yet, in parallel when there are enough of them.
func (p *pipe) encodeAll(ctx context.Context) error {
	n := len(p.jobs)
	if n < minParallel {
		for i := range p.jobs {
			p.encode(ctx, &p.jobs[i])
		}
	} else {
		var wg sync.WaitGroup
		per := (n + encodeWorkers - 1) / encodeWorkers
		for lo := 0; lo < n; lo += per {
			hi := min(lo+per, n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := lo; i < hi; i++ {
					p.encode(ctx, &p.jobs[i])
				}
			}()
		}
		wg.Wait()
	}
	for i := range p.jobs {
		if err := p.jobs[i].err; err != nil {
			return err
		}
	}
	return nil
}

func (p *pipe) encode(ctx context.Context, j *job) {
	if j.rec != nil || j.err != nil {
		return
	}
	c := j.c
	if j.rec, j.err = p.e.record(ctx, j.ev, j.txHdr, j.seq); j.err != nil {
		j.err = fmt.Errorf("encode %s at LSN %s (xid %d): %w", c.Op, c.LSN, c.Tx.XID, j.err)
	}
}

// produce hands one encoded record to Kafka unless a previous run already wrote it.
func (p *pipe) produce(ctx context.Context, j *job) error {
	rec, c := j.rec, j.c
	partitions, err := p.e.writer.EnsureTopic(ctx, rec.Topic)
	if err != nil {
		return err
	}
	rec.Partition = p.e.writer.Partition(rec.Topic, rec.Key, partitions)
	dup, err := p.resume.written(ctx, topicPartition{rec.Topic, rec.Partition}, position{uint64(c.Tx.CommitLSN), j.seq})
	if err != nil || dup {
		return err
	}
	rec.Token = c.Tx
	p.tracker.Add(c.Tx, 1)
	return p.e.writer.Produce(ctx, rec)
}

// txTime is the time part of a transaction's procon.tx id: its commit time. A non-transactional
// logical message has none (its Tx carries the time it was read), so its id uses time zero: the
// id must be the same when the message is read again after a crash.
func txTime(tx *replication.Tx) time.Time {
	if tx.XID == 0 {
		return time.UnixMilli(0)
	}
	return tx.CommitTime
}

// record encodes one event with its topic's encoder and adds Procon's and Debezium's headers.
func (e *Engine) record(ctx context.Context, ev *envelope.Event, txHdr []byte, seq int) (*sink.Record, error) {
	enc := e.enc.forTopic(ev.Topic)
	key, value, err := enc.Encode(ctx, ev)
	if err != nil {
		return nil, err
	}
	headers := make([]kgo.RecordHeader, 2, 4)
	headers[0] = kgo.RecordHeader{Key: txid.HeaderTx, Value: txHdr}
	headers[1] = kgo.RecordHeader{Key: txid.HeaderSeq, Value: strconv.AppendInt(nil, int64(seq), 10)}
	if ev.OldKey != nil {
		b, err := enc.EncodeKey(ctx, ev.KeySchema, ev.OldKey)
		if err != nil {
			return nil, err
		}
		headers = append(headers, kgo.RecordHeader{Key: "__debezium.oldkey", Value: b})
	}
	if ev.NewKey != nil {
		b, err := enc.EncodeKey(ctx, ev.KeySchema, ev.NewKey)
		if err != nil {
			return nil, err
		}
		headers = append(headers, kgo.RecordHeader{Key: "__debezium.newkey", Value: b})
	}
	return &sink.Record{Topic: ev.Topic, Key: key, Value: value, Headers: headers, Partition: -1}, nil
}

// produceHeartbeat sends a heartbeat record. It belongs to no transaction: its acknowledgement
// moves nothing, the tracker follows the server's WAL end on its own when idle.
func (e *Engine) produceHeartbeat(ctx context.Context, topic string) error {
	ev := e.builder.Heartbeat(topic)
	key, value, err := e.enc.forTopic(topic).Encode(ctx, ev)
	if err != nil {
		return err
	}
	return e.writer.Produce(ctx, &sink.Record{Topic: topic, Key: key, Value: value, Partition: 0, Token: nil})
}
