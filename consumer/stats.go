package consumer

import (
	"context"
	"sync/atomic"

	"github.com/procon-cdc/procon/consumer/apply"
)

// Counters are what a consumer has done since it started.
type Counters struct {
	Batches, Records  atomic.Int64
	Upserted, Deleted atomic.Int64
	// MissingDeletes are deletes of rows that were not there (no-ops).
	MissingDeletes atomic.Int64
	// Repeats are records an at-least-once producer sent again, recognised and not applied.
	Repeats      atomic.Int64
	DeadLettered atomic.Int64
}

// Counters returns the consumer's counters.
func (c *Consumer) Counters() *Counters { return &c.counters }

// committed counts a committed batch and notes the partition's next offset for the group.
func (c *Consumer) committed(tp topicPartition, next int64, s apply.Stats, repeats, dead int) {
	c.counters.Batches.Add(1)
	c.counters.Upserted.Add(int64(s.Upserted))
	c.counters.Deleted.Add(int64(s.Deleted + s.SoftDeleted))
	c.counters.MissingDeletes.Add(int64(s.MissingDeletes))
	c.counters.Repeats.Add(int64(repeats))
	c.counters.DeadLettered.Add(int64(dead))
	c.mu.Lock()
	c.groupOffsets[tp] = next
	c.mu.Unlock()
}

func addStats(a, b apply.Stats) apply.Stats {
	a.Upserted += b.Upserted
	a.Deleted += b.Deleted
	a.SoftDeleted += b.SoftDeleted
	a.MissingDeletes += b.MissingDeletes
	a.Truncated += b.Truncated
	a.Ignored += b.Ignored
	return a
}

// commitGroupOffsets copies the committed offsets to the consumer group, where Kafka's tools
// show the group's lag. They are not what the consumer starts from.
func (c *Consumer) commitGroupOffsets(ctx context.Context) {
	c.mu.Lock()
	if len(c.groupOffsets) == 0 {
		c.mu.Unlock()
		return
	}
	out := map[string]map[int32]int64{}
	for tp, o := range c.groupOffsets {
		if out[tp.topic] == nil {
			out[tp.topic] = map[int32]int64{}
		}
		out[tp.topic][tp.partition] = o
	}
	c.groupOffsets = map[topicPartition]int64{}
	c.mu.Unlock()
	if err := c.reader.Load().CommitOffsets(ctx, out); err != nil {
		c.log.Debug("copy offsets to the consumer group", "err", err)
	}
}
