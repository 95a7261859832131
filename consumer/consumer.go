// Package consumer applies change events from Kafka topics (written by procon-cdc or by
// Debezium) to tables of a PostgreSQL database with exactly-once effects: the records of one
// partition are applied in batches, each in one database transaction that also moves the
// partition's offset in the target's own table (OffsetsTable) by compare-and-set. A crash
// loses the whole transaction or none of it; a member that lost its partition cannot commit;
// and a new owner starts where the last commit left off.
//
// Every partition has a worker goroutine; Run's goroutine polls Kafka and hands each worker
// its records. Hooks run on the workers' goroutines (one partition's batches in order).
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/procon-cdc/procon/consumer/apply"
	"github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/sink"
)

// OnError is what a record that can never apply does.
type OnError uint8

// Error policies.
const (
	// Stop: the consumer applies the records before it and stops with an error naming it.
	Stop OnError = iota
	// DeadLetter: the record goes to the dead-letter topic with the reason, and the rest of
	// its batch applies.
	DeadLetter
)

// Entity is what the events of one topic do to one table.
type Entity struct {
	apply.Entity
	// Realtime, when set, inserts a notification for each applied event in the same
	// transaction.
	Realtime *Realtime
}

// Realtime builds a notification row (procon_realtimes) from an applied event.
type Realtime struct {
	Channel string
	// SessionField is the event field holding the session id ("" for none).
	SessionField string
	// Metadata maps metadata keys to event fields (dotted paths allowed).
	Metadata map[string]string
	// Ops are the operations notified (all when empty).
	Ops []event.Op
}

// Config configures a Consumer.
type Config struct {
	Group string
	// InstanceID makes this member static (group.instance.id); SessionTimeout is the group's
	// wait for a member that stopped answering (0: 45s).
	InstanceID     string
	SessionTimeout time.Duration
	Entities       []Entity
	// BatchRecords bounds a batch; Linger is how long a smaller one waits for more records.
	BatchRecords int
	Linger       time.Duration
	OnError      OnError
	DLQTopic     string
	// RealtimeTable is where notifications go (Realtime, Notify).
	RealtimeTable string
	Hooks         Hooks
	// Meter counts what the consumer does (metrics); nil counts nothing.
	Meter Meter
}

// Meter is told what the consumer does, for metrics. Its methods are called from the
// workers' goroutines and must be quick.
type Meter interface {
	// Committed reports a committed batch of a partition of topic.
	Committed(topic string, s CommitStats)
	// Retrying reports an error that retrying can fix, about to be retried.
	Retrying(err error)
	// Rebalanced reports partitions assigned to and revoked from this member.
	Rebalanced(assigned, revoked int)
}

// CommitStats is what one committed batch did.
type CommitStats struct {
	// Applied, Repeats (an at-least-once producer's repeats, not applied) and DeadLettered
	// records.
	Applied, Repeats, DeadLettered int
	Effects                        apply.Stats
	// Duration is the batch's transaction, from BEGIN to COMMIT.
	Duration time.Duration
	// Newest is the Kafka timestamp of the batch's last record.
	Newest time.Time
}

type nopMeter struct{}

func (nopMeter) Committed(string, CommitStats) {}
func (nopMeter) Retrying(error)                {}
func (nopMeter) Rebalanced(int, int)           {}

// Record is a consumed record and its event.
type Record struct {
	sink.ConsumedRecord
	Event *event.Event
}

// Batch is the records of one partition applied in one transaction.
type Batch struct {
	Topic     string
	Partition int32
	Records   []Record
}

// Hooks are the user's code around a batch's effects. An error from BeforeApply or AfterApply
// rolls the transaction back: a transient one (pg.Transient) is retried, any other stops the
// consumer.
type Hooks struct {
	BeforeApply func(ctx context.Context, tx pgx.Tx, b *Batch) error
	AfterApply  func(ctx context.Context, tx pgx.Tx, b *Batch) error
	// AfterCommit runs once the batch is committed.
	AfterCommit func(ctx context.Context, b *Batch)
}

// Decoder reads a record's event.
type Decoder interface {
	Decode(ctx context.Context, rec *sink.ConsumedRecord) (*event.Event, error)
}

// Consumer applies its entities' topics to the target database.
type Consumer struct {
	cfg      Config
	db       *pgxpool.Pool
	kafka    sink.Config
	dec      Decoder
	log      *slog.Logger
	offsets  offsets
	entities map[string]*entity               // by topic
	dlq      *sink.Writer                     // nil unless OnError is DeadLetter
	reader   atomic.Pointer[sink.GroupReader] // set by Run
	counters Counters

	mu           sync.Mutex
	workers      map[topicPartition]*worker
	groupOffsets map[topicPartition]int64 // committed since the last copy to the group
	fatal        chan error               // the first worker error that stops the consumer
}

// entity is an Entity and the Applier of its table, which all its partitions' workers share.
type entity struct {
	*Entity
	applier *apply.Applier
}

type topicPartition struct {
	topic     string
	partition int32
}

func (tp topicPartition) String() string { return fmt.Sprintf("%s[%d]", tp.topic, tp.partition) }

// New checks the target database (the offsets table, each entity's table) and, with
// DeadLetter, connects the dead-letter producer.
func New(ctx context.Context, cfg Config, db *pgxpool.Pool, kafka sink.Config, dec Decoder, log *slog.Logger) (*Consumer, error) {
	if cfg.BatchRecords <= 0 {
		cfg.BatchRecords = 5000
	}
	if cfg.Meter == nil {
		cfg.Meter = nopMeter{}
	}
	c := &Consumer{cfg: cfg, db: db, kafka: kafka, dec: dec, log: log,
		offsets:  offsets{pool: db, group: cfg.Group},
		entities: map[string]*entity{}, workers: map[topicPartition]*worker{}, groupOffsets: map[topicPartition]int64{},
		fatal: make(chan error, 1)}
	if err := c.offsets.ensure(ctx); err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	for i := range cfg.Entities {
		e := &cfg.Entities[i]
		if _, dup := c.entities[e.Topic]; dup {
			return nil, fmt.Errorf("consumer: topic %s has two entities", e.Topic)
		}
		// Made here, so that a wrong table or key stops the start, not the first batch; one
		// Applier serves every partition of the topic.
		a, err := apply.New(ctx, db, e.Entity, log)
		if err != nil {
			return nil, fmt.Errorf("consumer: entity of topic %s: %w", e.Topic, err)
		}
		c.entities[e.Topic] = &entity{Entity: e, applier: a}
	}
	if cfg.OnError == DeadLetter {
		if cfg.DLQTopic == "" {
			return nil, errors.New("consumer: the dead-letter policy needs a topic")
		}
		w, err := sink.New(ctx, kafka, func(string) sink.TopicSpec { return sink.TopicSpec{Partitions: 1, ReplicationFactor: -1} })
		if err != nil {
			return nil, fmt.Errorf("consumer: dead-letter producer: %w", err)
		}
		c.dlq = w
	}
	return c, nil
}

// Close closes the dead-letter producer. The database pool is the caller's.
func (c *Consumer) Close() {
	if c.dlq != nil {
		c.dlq.Close()
	}
}

// Run applies records until ctx ends (then it returns nil once the batches in flight are
// committed or rolled back) or until an error stops it. It is called once.
func (c *Consumer) Run(ctx context.Context) error {
	topics := make([]string, 0, len(c.entities))
	for t := range c.entities {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	reader, err := sink.NewGroupReader(runCtx, c.kafka, sink.GroupConfig{
		Group: c.cfg.Group, Topics: topics, InstanceID: c.cfg.InstanceID, SessionTimeout: c.cfg.SessionTimeout,
		Assigned: func(actx context.Context, parts map[string][]int32) (map[string]map[int32]int64, error) {
			return c.assigned(runCtx, actx, parts)
		},
		Revoked: func(_ context.Context, parts map[string][]int32) { c.revoked(parts) },
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	c.reader.Store(reader)
	c.log.Info("consuming", "group", c.cfg.Group, "topics", topics)

	polled := make(chan pollResult)
	go func() {
		defer close(polled)
		for {
			recs, err := reader.Poll(runCtx, 4*c.cfg.BatchRecords)
			bs := c.bind(recs)
			reader.AllowRebalance()
			select {
			case polled <- pollResult{bs, err}:
			case <-runCtx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	commitTicker := time.NewTicker(time.Second)
	defer commitTicker.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-c.fatal:
			break loop
		case <-commitTicker.C:
			c.commitGroupOffsets(runCtx)
		case r, ok := <-polled:
			if !ok {
				break loop
			}
			if r.err != nil {
				if ctx.Err() == nil {
					runErr = fmt.Errorf("consumer: read Kafka: %w", r.err)
				}
				break loop
			}
			if err := c.dispatch(ctx, r.bound); err != nil {
				runErr = err
				break loop
			}
		}
	}
	// Workers finish the batch they are applying; the rest is read again by whoever owns the
	// partitions next, from the stored offsets.
	c.stopWorkers()
	cancel()
	reader.Close()
	if runErr == nil {
		select {
		case runErr = <-c.fatal:
		default:
		}
	}
	return runErr
}

type pollResult struct {
	bound []bound
	err   error
}
