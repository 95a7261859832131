package consumer

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/metrics"
)

// observer is procon-cdc consume's metrics listener (metrics.listen) and its state.
type observer struct {
	metrics *metrics.Consumer
	server  *metrics.Server
	stop    context.CancelFunc // ends the rate sampling
	c       atomic.Pointer[Consumer]
	group   atomic.Pointer[string]
}

// endOffsetsTimeout bounds the read of the end offsets at a scrape.
const endOffsetsTimeout = 3 * time.Second

func listenMetrics(cfg *config.Consume, version string, log *slog.Logger) (*observer, error) {
	o := &observer{}
	reg := metrics.NewRegistry(version)
	o.metrics = metrics.NewConsumer(reg, metrics.ConsumerConfig{State: o.state, ReadyMaxLag: time.Duration(cfg.Metrics.ReadyMaxLag)})
	srv, err := metrics.Listen(cfg.Metrics.Listen, reg, metrics.Probes{
		Alive:  func() error { return nil },
		Ready:  o.metrics.Ready,
		Status: func() any { return o.metrics.Status() },
	}, log)
	if err != nil {
		return nil, &config.FieldError{Key: "metrics.listen", Problem: err.Error()}
	}
	o.server = srv
	var ctx context.Context
	ctx, o.stop = context.WithCancel(context.Background())
	go o.metrics.SampleRates(ctx)
	return o, nil
}

func (o *observer) built(c *Consumer, group string) {
	if o != nil {
		o.c.Store(c)
		o.group.Store(&group)
	}
}

func (o *observer) close() {
	if o != nil {
		o.stop()
		o.server.Close()
	}
}

// state reads the assigned partitions and their end offsets.
func (o *observer) state() metrics.ConsumerState {
	var st metrics.ConsumerState
	c := o.c.Load()
	if c == nil {
		return st
	}
	st.Group = *o.group.Load()
	parts := c.Partitions()
	if len(parts) == 0 {
		return st
	}
	ctx, cancel := context.WithTimeout(context.Background(), endOffsetsTimeout)
	defer cancel()
	ends, err := c.EndOffsets(ctx)
	if err != nil {
		st.EndOffsetsErr = err.Error()
	}
	for _, p := range parts {
		end, ok := ends[p.Topic][p.Partition]
		if !ok {
			end = -1
		}
		st.Partitions = append(st.Partitions, metrics.PartitionState{Topic: p.Topic, Partition: p.Partition, Next: p.Next, End: end})
	}
	return st
}

// meter adapts metrics.Consumer to the Meter the workers call.
type meter struct{ m *metrics.Consumer }

func (m meter) Committed(topic string, s CommitStats) {
	m.m.Committed(topic, metrics.CommitStats{Applied: s.Applied, Repeats: s.Repeats, DeadLettered: s.DeadLettered,
		Upserted: s.Effects.Upserted, Deleted: s.Effects.Deleted + s.Effects.SoftDeleted, MissingDeletes: s.Effects.MissingDeletes,
		Duration: s.Duration, Newest: s.Newest})
}

func (m meter) Retrying(err error)               { m.m.Retrying(err) }
func (m meter) Rebalanced(assigned, revoked int) { m.m.Rebalanced(assigned, revoked) }
