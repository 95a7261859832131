package metrics

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ConsumerState is the consuming side's view at one moment: the gauges and /status of
// procon-cdc consume.
type ConsumerState struct {
	Group string `json:"group"`
	// Partitions are the partitions this member applies now.
	Partitions []PartitionState `json:"partitions"`
	// EndOffsetsErr is why the partitions' end offsets could not be read, when they could
	// not (their lag is then unknown).
	EndOffsetsErr string `json:"end_offsets_error,omitempty"`
}

// PartitionState is an assigned partition's position.
type PartitionState struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Next is the next offset to apply (the stored offset); End is the partition's end
	// offset (the high watermark: one past its last record), -1 when unknown.
	Next int64 `json:"next_offset"`
	End  int64 `json:"end_offset"`
}

// Lag is the records of the partition not applied yet; -1 when the end is unknown.
func (p PartitionState) Lag() int64 {
	if p.End < 0 {
		return -1
	}
	return max(0, p.End-p.Next)
}

// ConsumerStateFunc returns the consumer's state at a scrape or a /status request.
type ConsumerStateFunc func() ConsumerState

// CommitStats is what one committed batch of a partition did.
type CommitStats struct {
	// Records were decided by the batch: Applied, Repeats (an at-least-once producer's
	// repeats, not applied) and DeadLettered.
	Applied, Repeats, DeadLettered int
	// Row effects of the applied records.
	Upserted, Deleted, MissingDeletes int
	// Duration is the batch's transaction, from BEGIN to COMMIT.
	Duration time.Duration
	// Newest is the Kafka timestamp of the batch's last record (zero when unknown).
	Newest time.Time
}

// Consumer is the metrics of procon-cdc consume; it implements consumer.Meter.
type Consumer struct {
	state    ConsumerStateFunc
	maxLag   time.Duration
	now      func() time.Time
	perTopic sync.Map // topic → *topicCounters

	records   *prometheus.CounterVec   // topic, outcome
	rows      *prometheus.CounterVec   // topic, effect
	batches   *prometheus.CounterVec   // topic
	applySecs *prometheus.HistogramVec // topic
	batchSize *prometheus.HistogramVec // topic
	age       *prometheus.HistogramVec // topic
	retries   prometheus.Counter
	rebalance *prometheus.CounterVec // event
	lastErr   atomic.Pointer[LastError]
	applied   atomic.Int64
	newest    atomic.Int64 // unix nanos of the newest record applied, for readiness
	rate      *window
}

type topicCounters struct {
	applied, repeats, dead        prometheus.Counter
	upserted, deleted, missingDel prometheus.Counter
	batches                       prometheus.Counter
	applySecs, batchSize, age     prometheus.Observer
}

// ConsumerConfig configures NewConsumer.
type ConsumerConfig struct {
	State ConsumerStateFunc
	// ReadyMaxLag makes /readyz fail while the newest record applied is older than it and
	// records wait; zero puts no bound.
	ReadyMaxLag time.Duration
}

// NewConsumer registers procon-cdc consume's metrics in reg.
func NewConsumer(reg prometheus.Registerer, cfg ConsumerConfig) *Consumer {
	c := &Consumer{state: cfg.State, maxLag: cfg.ReadyMaxLag, now: time.Now, rate: newWindow(time.Minute)}
	f := newFactory(reg)
	c.records = f.counterVec("consumer_records_total", "Records a batch committed, by outcome: applied, repeat (sent again by an at-least-once producer; no effect) or dead_letter.", "topic", "outcome")
	c.rows = f.counterVec("consumer_row_effects_total", "Effects of applied records on the target table, by effect: upserted, deleted, missing_delete (a delete of a row that was not there).", "topic", "effect")
	c.batches = f.counterVec("consumer_batches_total", "Batches committed (each one database transaction with its offset).", "topic")
	c.applySecs = f.histogramVec("consumer_apply_seconds", "Duration of a batch's transaction, from BEGIN to COMMIT.",
		[]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, "topic")
	c.batchSize = f.histogramVec("consumer_batch_records", "Records in a committed batch.",
		[]float64{1, 10, 50, 100, 500, 1000, 2500, 5000, 10000}, "topic")
	c.age = f.histogramVec("consumer_record_age_seconds", "Time from a batch's last record's Kafka timestamp to the batch's commit: how far behind the source the target is.",
		[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}, "topic")
	c.retries = f.counter("consumer_retries_total", "Batches and offset reads retried after an error retrying can fix (the database or Kafka away, a serialization failure).")
	c.rebalance = f.counterVec("consumer_rebalances_total", "Partitions assigned to and revoked from this member.", "event")
	if cfg.State != nil {
		reg.MustRegister(&consumerCollector{c})
	}
	return c
}

func (c *Consumer) topic(t string) *topicCounters {
	if v, ok := c.perTopic.Load(t); ok {
		return v.(*topicCounters)
	}
	tc := &topicCounters{
		applied: c.records.WithLabelValues(t, "applied"), repeats: c.records.WithLabelValues(t, "repeat"),
		dead:     c.records.WithLabelValues(t, "dead_letter"),
		upserted: c.rows.WithLabelValues(t, "upserted"), deleted: c.rows.WithLabelValues(t, "deleted"),
		missingDel: c.rows.WithLabelValues(t, "missing_delete"),
		batches:    c.batches.WithLabelValues(t),
		applySecs:  c.applySecs.WithLabelValues(t), batchSize: c.batchSize.WithLabelValues(t), age: c.age.WithLabelValues(t),
	}
	v, _ := c.perTopic.LoadOrStore(t, tc)
	return v.(*topicCounters)
}

// Committed implements consumer.Meter: a partition's batch is committed.
func (c *Consumer) Committed(topic string, s CommitStats) {
	tc := c.topic(topic)
	tc.applied.Add(float64(s.Applied))
	tc.repeats.Add(float64(s.Repeats))
	tc.dead.Add(float64(s.DeadLettered))
	tc.upserted.Add(float64(s.Upserted))
	tc.deleted.Add(float64(s.Deleted))
	tc.missingDel.Add(float64(s.MissingDeletes))
	tc.batches.Inc()
	tc.applySecs.Observe(s.Duration.Seconds())
	tc.batchSize.Observe(float64(s.Applied + s.Repeats + s.DeadLettered))
	c.applied.Add(int64(s.Applied))
	if !s.Newest.IsZero() {
		now := c.now()
		tc.age.Observe(max(0, now.Sub(s.Newest).Seconds()))
		for {
			old := c.newest.Load()
			if s.Newest.UnixNano() <= old || c.newest.CompareAndSwap(old, s.Newest.UnixNano()) {
				break
			}
		}
	}
}

// Retrying implements consumer.Meter.
func (c *Consumer) Retrying(err error) {
	c.retries.Inc()
	c.lastErr.Store(&LastError{At: c.now(), Message: err.Error()})
}

// Rebalanced implements consumer.Meter.
func (c *Consumer) Rebalanced(assigned, revoked int) {
	c.rebalance.WithLabelValues("assigned").Add(float64(assigned))
	c.rebalance.WithLabelValues("revoked").Add(float64(revoked))
}

// SampleRates keeps the applied rate's window sampled until ctx ends (see
// Producer.SampleRates).
func (c *Consumer) SampleRates(ctx context.Context) {
	c.rate.sampleEvery(ctx, rateSampling, c.applied.Load)
}

// ConsumerStatus is what /status returns for procon-cdc consume.
type ConsumerStatus struct {
	ConsumerState
	// LagRecords sums the partitions' lag (-1 when one is unknown).
	LagRecords int64 `json:"lag_records"`
	// AppliedPerSecond is the rate of applied records over the last minute.
	AppliedPerSecond float64    `json:"applied_per_second"`
	Applied          int64      `json:"applied"`
	NewestApplied    time.Time  `json:"newest_applied,omitzero"`
	Ready            bool       `json:"ready"`
	NotReady         string     `json:"not_ready,omitempty"`
	LastError        *LastError `json:"last_error,omitempty"`
}

// Status returns the consumer's view for /status.
func (c *Consumer) Status() ConsumerStatus {
	now := c.now()
	st := ConsumerStatus{ConsumerState: c.state()}
	for _, p := range st.Partitions {
		if l := p.Lag(); l < 0 || st.LagRecords < 0 {
			st.LagRecords = -1
		} else {
			st.LagRecords += l
		}
	}
	st.Applied = c.applied.Load()
	st.AppliedPerSecond = c.rate.rate(now, st.Applied)
	if n := c.newest.Load(); n != 0 {
		st.NewestApplied = time.Unix(0, n)
	}
	st.LastError = c.lastErr.Load()
	if err := c.ready(&st, now); err != nil {
		st.NotReady = err.Error()
	} else {
		st.Ready = true
	}
	return st
}

// ready: a member of its group with partitions, and, with a bound, records waiting are not
// older than it.
func (c *Consumer) ready(st *ConsumerStatus, now time.Time) error {
	switch {
	case len(st.Partitions) == 0:
		return errors.New("no partition assigned (joining the group, or more members than partitions)")
	case c.maxLag > 0 && behind(st.Partitions) && !st.NewestApplied.IsZero() && now.Sub(st.NewestApplied) > c.maxLag:
		return errors.New("records wait and the newest applied is older than metrics.ready_max_lag " + c.maxLag.String())
	}
	return nil
}

// behind reports a partition with records to apply. A lag of 1 does not count: in a
// partition written in Kafka transactions, the end lies one past the last commit marker, so
// a consumer that applied everything stays 1 behind.
func behind(parts []PartitionState) bool {
	for _, p := range parts {
		if p.Lag() > 1 {
			return true
		}
	}
	return false
}

// Ready is /readyz for the consumer.
func (c *Consumer) Ready() error {
	st := c.Status()
	if !st.Ready {
		return errors.New(st.NotReady)
	}
	return nil
}

var (
	descCLag        = desc("consumer_lag_records", "Offsets of an assigned partition not applied yet: its end offset for read_committed readers minus the stored offset (a partition written in Kafka transactions shows 1 when everything is applied: its last commit marker).", "topic", "partition")
	descCNext       = desc("consumer_next_offset", "The stored offset of an assigned partition: the next record to apply.", "topic", "partition")
	descCAssigned   = desc("consumer_partitions_assigned", "Partitions this member applies now.")
	descCEndOffsets = desc("consumer_end_offsets_ok", "1 when the partitions' end offsets could be read at this scrape (the lag is known).")
)

type consumerCollector struct{ c *Consumer }

func (cc *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descCLag
	ch <- descCNext
	ch <- descCAssigned
	ch <- descCEndOffsets
}

func (cc *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.state()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(descCAssigned, float64(len(st.Partitions)))
	g(descCEndOffsets, boolValue(st.EndOffsetsErr == ""))
	for _, p := range st.Partitions {
		part := itoa(p.Partition)
		g(descCNext, float64(p.Next), p.Topic, part)
		if l := p.Lag(); l >= 0 {
			g(descCLag, float64(l), p.Topic, part)
		}
	}
}
