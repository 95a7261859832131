// Package pipeline turns the changes of a replication stream into Kafka records, in stream
// order. For each transaction it counts every record with the acknowledgement tracker before
// producing it and seals the transaction after its last record; each record carries its
// transaction as its acknowledgement, so the tracker can tell when Kafka holds all of it.
//
// A Pipeline is built from small interfaces that name what it needs: a Builder of Debezium
// events, Encoders, a Producer, the Tracker, the Tails of partitions (for the resume check),
// and optionally the in-stream Snapshots and a realtime Notifier. The engine wires the real
// ones; tests use in-process fakes.
//
// Concurrency: Run is one goroutine and the only user of the Builder, the Snapshots observer
// and the Notifier's Suppress and Derive; it spreads encoding over a few goroutines of its own
// (the Encoders must be safe for concurrent use) and waits for them before producing.
// Heartbeat may be called from any goroutine.
package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/procon-cdc/procon/deadletter"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/realtime"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// Builder turns changes into Debezium events; *envelope.Builder implements it.
type Builder interface {
	// Build appends the events of c to out.
	Build(c *replication.Change, out []*envelope.Event) ([]*envelope.Event, error)
	// Heartbeat returns a heartbeat event for topic.
	Heartbeat(topic string) *envelope.Event
	// Retired returns the schemas no change built from now on uses (those of relation
	// versions newer ones replaced), once each.
	Retired() []*envelope.Schema
}

// Encoder serializes events; it must be safe for concurrent use.
type Encoder interface {
	// Encode returns the key and value bytes of ev (nil value: a tombstone; nil key: no key).
	Encode(ctx context.Context, ev *envelope.Event) (key, value []byte, err error)
	// EncodeKey serializes a key on its own, as the __debezium.oldkey/newkey headers carry it.
	EncodeKey(ctx context.Context, s *envelope.Schema, v *envelope.Value) ([]byte, error)
}

// Encoders picks the encoder of a topic, or of an event (an outbox event's is its outbox
// relation's, whatever topic it is routed to).
type Encoders interface {
	ForTopic(topic string) Encoder
	ForEvent(ev *envelope.Event) Encoder
	// Forget drops what the encoders keep of schemas no event will use again.
	Forget(schemas []*envelope.Schema)
}

// Producer hands records to Kafka; *sink.Writer implements it. Produce may block while the
// producer's buffer is full (backpressure); each record's Ack is called once Kafka has it.
type Producer interface {
	EnsureTopic(ctx context.Context, topic string) (partitions int32, err error)
	Produce(ctx context.Context, r *sink.Record) error
}

// Tails reads the headers of the last record of each partition of a topic; *sink.Writer
// implements it.
type Tails interface {
	LastHeaders(ctx context.Context, topic string) (map[int32][]sink.Header, error)
}

// Tracker counts the records of each transaction; *replication.Tracker implements it. The
// records' acknowledgements reach it through their transaction (*replication.Tx is their
// sink.Acker).
type Tracker interface {
	// Add counts n more records of tx; called before they are produced.
	Add(tx *replication.Tx, n int)
	// Seal says that every record of tx has been counted.
	Seal(tx *replication.Tx)
}

// Snapshots observes the stream for the in-stream snapshots (watermarks, signals, chunks).
type Snapshots interface {
	// Observe sees c before it becomes events. handled reports that c belongs to a snapshot
	// (a watermark or a signal): it makes no events of its own, but out may have gained a
	// chunk's rows, emitted at c's place in the stream.
	Observe(ctx context.Context, c *replication.Change, out []*envelope.Event) (_ []*envelope.Event, handled bool, err error)
	// Progress is the progress of the running snapshot as of the rows Observe has emitted
	// (nil when none runs), for exactly-once delivery's progress record.
	Progress() *progress.Snapshot
}

// Router turns the events of outbox relations into outbox events; *eventrouter.Router
// implements it.
type Router interface {
	// Route replaces, in the events built from c, those of outbox relations with their outbox
	// events, in place, and returns the events that remain.
	Route(c *replication.Change, events []*envelope.Event) ([]*envelope.Event, error)
	// Retired returns the schemas of outbox events no event built from now on uses.
	Retired() []*envelope.Schema
}

// Notifier derives realtime notifications from changes; *realtime.Service implements it.
type Notifier interface {
	// Suppress reports that c must not become events (the realtime table's own rows).
	Suppress(c *replication.Change) bool
	// Derive works out c's notification under the next position of its transaction after
	// seq, and returns it with the position it took.
	Derive(c *replication.Change, txHdr []byte, seq int) (*realtime.Pending, int)
	// Submit counts a derived notification in its transaction and queues it.
	Submit(ctx context.Context, p *realtime.Pending) error
}

// Meter counts what the pipeline hands to Kafka, for metrics. Its methods are called from the
// pipeline goroutine, once per record or transaction: they must be quick.
type Meter interface {
	// Produced counts a record handed to the producer: the relation its event is about (""
	// for messages, transaction metadata and heartbeats), its topic and its key and value
	// bytes.
	Produced(relation, topic string, bytes int)
	// Skipped counts a record not produced because Kafka has it from an earlier run.
	Skipped()
	// Transaction counts a source transaction handed over whole.
	Transaction()
}

type nopMeter struct{}

func (nopMeter) Produced(string, string, int) {}
func (nopMeter) Skipped()                     {}
func (nopMeter) Transaction()                 {}

// Config is what a Pipeline is made of. Snapshots, Notifier and Oversize may be nil.
type Config struct {
	Builder   Builder
	Encoders  Encoders
	Producer  Producer
	Tails     Tails
	Tracker   Tracker
	Snapshots Snapshots
	Notifier  Notifier
	// Router, when set, routes the events of outbox relations (relation_configs.*.outbox).
	Router Router
	// Oversize decides on records too large for their topic (errors.record_too_large); nil
	// hands every record to the Producer.
	Oversize *deadletter.Guard
	// Instance is the instance_num in each transaction's procon.tx id.
	Instance uint16
	// Source names this pipeline (replication.Stream.Source); it goes on every record as
	// procon.source, and only records carrying it tell the resume check where to start.
	Source []byte
	// WALAtOpen is the server's WAL position when the stream opened: no record of a previous
	// run can lie ahead of it.
	WALAtOpen uint64
	// ExactlyOnce, when set, produces in Kafka transactions with a progress record, and
	// replaces the per-partition resume check with the progress record's position.
	ExactlyOnce *ExactlyOnce
	// HeartbeatTopic receives the records that Heartbeat asks for.
	HeartbeatTopic string
	// Meter counts records and transactions; nil counts nothing.
	Meter  Meter
	Logger *slog.Logger
}

// Pipeline turns changes into records. See the package documentation.
type Pipeline struct {
	cfg       Config
	log       *slog.Logger
	resume    *resume
	eos       *exactly // nil: at least once
	heartbeat chan struct{}
	batch     batch
}

// New returns a Pipeline; it starts nothing.
func New(cfg Config) *Pipeline {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Meter == nil {
		cfg.Meter = nopMeter{}
	}
	return &Pipeline{
		cfg:       cfg,
		log:       cfg.Logger,
		resume:    newResume(cfg),
		eos:       newExactly(cfg.ExactlyOnce),
		heartbeat: make(chan struct{}, 1),
		batch:     batch{newSchema: map[*envelope.Schema]bool{}},
	}
}

// Heartbeat asks Run to produce a heartbeat record when it is next between batches. It does
// not block; requests made while one is pending make one record.
func (p *Pipeline) Heartbeat() {
	select {
	case p.heartbeat <- struct{}{}:
	default:
	}
}

// maxBatch is the number of queued changes taken at once, at most.
const maxBatch = 256

// Run takes changes, in the batches the stream sends, until the channel is closed (it returns
// nil once it has handed every change over to the producer) or ctx ends, or an error stops it.
// It takes the changes already queued in batches and runs each batch through three steps:
// build, in order, with everything that carries state (the event builder, snapshot windows,
// positions, realtime derivation); encode, the CPU-heavy part, in parallel; produce, in order
// (resume check, Add, Produce, realtime submit, Seal). Only encoding is parallel, so records, positions and
// acknowledgements are exactly those of a one-change-at-a-time loop.
func (p *Pipeline) Run(ctx context.Context, changes <-chan []*replication.Change) error {
	batch := make([]*replication.Change, 0, maxBatch)
	var tick <-chan time.Time // exactly once: the commit checks while waiting
	if p.eos != nil {
		t := time.NewTicker(p.eos.tick)
		defer t.Stop()
		tick = t.C
	}
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if err := p.maybeCommit(ctx, len(changes) == 0); err != nil {
				return err
			}
			continue
		case <-p.heartbeat:
			if err := p.produceHeartbeat(ctx); err != nil {
				return err
			}
			continue
		case cs, ok := <-changes:
			if !ok {
				// The stream stopped, at a transaction boundary unless it gave up waiting
				// for one, and everything it sent is handed over.
				if p.eos != nil && !p.eos.inSource {
					return p.commit(ctx)
				}
				return nil
			}
			batch = append(batch, cs...)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case cs, ok := <-changes:
				if !ok {
					break more
				}
				batch = append(batch, cs...)
			default:
				break more
			}
		}
		if err := p.run(ctx, batch); err != nil {
			return err
		}
		// Caught up: nothing queued, and this batch was small. (A drain empties the queue
		// now and then too, but in full batches: committing there would only add commits.)
		caughtUp := len(changes) == 0 && len(batch) < maxBatch/4
		if err := p.maybeCommit(ctx, caughtUp); err != nil {
			return err
		}
	}
}

// produceHeartbeat sends a heartbeat record. It belongs to no transaction: nothing waits for
// its acknowledgement, and the tracker follows the server's WAL end on its own when idle.
func (p *Pipeline) produceHeartbeat(ctx context.Context) error {
	topic := p.cfg.HeartbeatTopic
	ev := p.cfg.Builder.Heartbeat(topic)
	key, value, err := p.cfg.Encoders.ForTopic(topic).Encode(ctx, ev)
	if err != nil {
		return err
	}
	if err := p.cfg.Producer.Produce(ctx, &sink.Record{Topic: topic, Key: key, Value: value, Partition: 0}); err != nil {
		return err
	}
	p.cfg.Meter.Produced("", topic, len(key)+len(value))
	return nil
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
