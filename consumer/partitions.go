package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/retrylog"
	"github.com/procon-cdc/procon/sink"
)

// assigned starts a worker for each new partition, from its stored offset, and tells the
// reader where each starts. ctx is the run's, actx the assignment's (ended by a revocation).
func (c *Consumer) assigned(ctx, actx context.Context, parts map[string][]int32) (map[string]map[int32]int64, error) {
	starts := map[string]map[int32]int64{}
	for topic, ps := range parts {
		e := c.entities[topic]
		if e == nil {
			return nil, fmt.Errorf("assigned %s, which no entity reads", topic)
		}
		var rows map[int32]stored
		err := retryTransient(actx, c, "read the stored offsets", func() error {
			var err error
			rows, err = c.offsets.load(actx, topic, ps)
			return err
		}, "topic", topic)
		if err != nil {
			return nil, err
		}
		starts[topic] = map[int32]int64{}
		for _, p := range ps {
			tp := topicPartition{topic, p}
			// Not the run's context: a stop lets the batch in flight finish (within
			// stopGrace) rather than abort it.
			wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			w := &worker{c: c, tp: tp, entity: e.Entity, applier: e.applier,
				in: make(chan []sink.ConsumedRecord, 4), stop: make(chan struct{}), done: make(chan struct{}),
				ctx: wctx, cancel: cancel, state: rows[p]}
			w.next.Store(rows[p].next)
			c.mu.Lock()
			old := c.workers[tp]
			c.workers[tp] = w
			c.mu.Unlock()
			if old != nil { // assigned again without a revocation in between
				old.halt()
			}
			go w.run()
			starts[topic][p] = rows[p].next
			c.log.Info("partition assigned", "topic", topic, "partition", p, "next_offset", rows[p].next)
		}
		c.cfg.Meter.Rebalanced(len(ps), 0)
	}
	return starts, nil
}

// revoked stops the workers of partitions leaving this member; it returns once none of them
// is in a transaction.
func (c *Consumer) revoked(parts map[string][]int32) {
	for topic, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			c.mu.Lock()
			w := c.workers[tp]
			delete(c.workers, tp)
			c.mu.Unlock()
			if w != nil {
				w.halt()
				c.log.Info("partition revoked", "topic", topic, "partition", p)
			}
		}
		c.cfg.Meter.Rebalanced(0, len(ps))
	}
}

// stopWorkers stops every worker (the run is ending).
func (c *Consumer) stopWorkers() {
	c.mu.Lock()
	ws := c.workers
	c.workers = map[topicPartition]*worker{}
	c.mu.Unlock()
	for _, w := range ws {
		close(w.stop)
	}
	for _, w := range ws {
		w.wait()
	}
}

// PartitionState is an assigned partition's stored offset.
type PartitionState struct {
	Topic     string
	Partition int32
	Next      int64 // the next offset to apply
}

// Partitions returns the partitions this member applies now, sorted. Any goroutine may call
// it.
func (c *Consumer) Partitions() []PartitionState {
	c.mu.Lock()
	out := make([]PartitionState, 0, len(c.workers))
	for tp, w := range c.workers {
		out = append(out, PartitionState{Topic: tp.topic, Partition: tp.partition, Next: w.next.Load()})
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b PartitionState) int {
		if a.Topic != b.Topic {
			return strings.Compare(a.Topic, b.Topic)
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// EndOffsets returns the end offsets of the consumer's topics (see sink.GroupReader), or an
// error before Run has joined the group.
func (c *Consumer) EndOffsets(ctx context.Context) (map[string]map[int32]int64, error) {
	r := c.reader.Load()
	if r == nil {
		return nil, errors.New("not reading Kafka yet")
	}
	topics := make([]string, 0, len(c.entities))
	for t := range c.entities {
		topics = append(topics, t)
	}
	return r.EndOffsets(ctx, topics...)
}

// halt stops a worker and waits for it.
func (w *worker) halt() {
	close(w.stop)
	w.wait()
}

// wait waits for a stopped worker, and after stopGrace abandons its transaction.
func (w *worker) wait() {
	defer w.cancel()
	select {
	case <-w.done:
		return
	case <-time.After(stopGrace):
		w.c.log.Warn("partition worker did not stop in time; abandoning its transaction", "topic", w.tp.topic, "partition", w.tp.partition)
		w.cancel()
		<-w.done
	}
}

// bound is the records of one partition polled under one assignment, and the worker of that
// assignment.
type bound struct {
	w    *worker
	recs []sink.ConsumedRecord
}

// bind splits polled records by partition and binds each run to the partition's current
// worker. It is called between a Poll and AllowRebalance, when no partition can be revoked:
// records fetched under an assignment go to that assignment's worker, never to the worker of
// a later one (which starts from the stored offset and would see them as a gap). Records of a
// partition with no worker are dropped: their next owner reads them from the stored offset.
func (c *Consumer) bind(recs []sink.ConsumedRecord) []bound {
	var out []bound
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(recs) > 0 {
		tp := topicPartition{recs[0].Topic, recs[0].Partition}
		n := 1
		for n < len(recs) && recs[n].Topic == tp.topic && recs[n].Partition == tp.partition {
			n++
		}
		if w := c.workers[tp]; w != nil {
			out = append(out, bound{w: w, recs: recs[:n:n]})
		}
		recs = recs[n:]
	}
	return out
}

// dispatch hands bound records to their workers, in order. A worker stopped since (revoked)
// no longer takes them.
func (c *Consumer) dispatch(ctx context.Context, bs []bound) error {
	for _, b := range bs {
		select {
		case b.w.in <- b.recs:
		case <-b.w.done:
		case <-ctx.Done():
			return nil
		case err := <-c.fatal:
			return err
		}
	}
	return nil
}

// fail records the first error that stops the consumer.
func (c *Consumer) fail(err error) {
	select {
	case c.fatal <- err:
	default:
	}
}

// retryTransient runs fn until it succeeds, fails with an error retrying cannot fix, or ctx
// ends. what and attrs say what it does, in the log.
func retryTransient(ctx context.Context, c *Consumer, what string, fn func() error, attrs ...any) error {
	backoff := 100 * time.Millisecond
	attrs = append([]any{"what", what}, attrs...)
	var failing retrylog.Outage
	for {
		err := fn()
		if err == nil || !pg.Transient(err) {
			if err == nil {
				failing.Recovered(c.log, "succeeded after retrying", attrs...)
			}
			return err
		}
		c.cfg.Meter.Retrying(err)
		failing.Failed(c.log, "retrying", err, attrs...)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
