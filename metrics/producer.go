package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StateFunc returns the engine's State at the moment of a scrape or a /status request.
type StateFunc func() State

// Producer is the metrics of procon-cdc run. Its counting methods implement
// pipeline.Meter, sink.Observer and replication.Observer; its gauges read the State.
type Producer struct {
	relations map[string]bool // configured relations: the only relation label values
	state     StateFunc

	events, bytes    *prometheus.CounterVec // relation, topic
	produced         map[eventKey]eventCounters
	skipped          prometheus.Counter
	transactions     prometheus.Counter
	ackedRecords     *prometheus.CounterVec // topic
	ackedBytes       *prometheus.CounterVec
	acked            sync.Map               // topic → ackCounters
	requestErrors    *prometheus.CounterVec // kind
	produceErrors    *prometheus.CounterVec // kind
	kafkaConnects    *prometheus.CounterVec // outcome
	kafkaDisconnects prometheus.Counter
	pgReconnects     prometheus.Counter
	ackLatency       prometheus.Histogram
	slotPollErrors   prometheus.Counter
	streamingGauge   prometheus.Gauge
	streaming        atomic.Bool
	streamedOnce     atomic.Bool
	kafkaReachable   atomic.Bool
	eventsTotal      atomic.Int64 // every record Produced, for /status's throughput
	throughput       *window
	lastErr          atomic.Pointer[LastError]
	readyMaxLag      time.Duration
	now              func() time.Time
}

type eventKey struct{ relation, topic string }

type eventCounters struct{ events, bytes prometheus.Counter }

type ackCounters struct{ records, bytes prometheus.Counter }

// LastError is the last problem the process met, for /status.
type LastError struct {
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// ProducerConfig configures NewProducer.
type ProducerConfig struct {
	// Relations are the configured relations ("schema.table"): events of any other relation
	// are counted under relation="".
	Relations []string
	// State is read at each scrape and status request.
	State StateFunc
	// ReadyMaxLag makes /readyz fail while the replication lag in seconds is above it; zero
	// puts no bound.
	ReadyMaxLag time.Duration
}

// NewProducer registers procon-cdc run's metrics in reg.
func NewProducer(reg prometheus.Registerer, cfg ProducerConfig) *Producer {
	p := &Producer{
		relations:   map[string]bool{},
		state:       cfg.State,
		produced:    map[eventKey]eventCounters{},
		readyMaxLag: cfg.ReadyMaxLag,
		throughput:  newWindow(time.Minute),
		now:         time.Now,
	}
	for _, r := range cfg.Relations {
		p.relations[r] = true
	}
	p.kafkaReachable.Store(true)
	f := newFactory(reg)
	p.events = f.counterVec("events_produced_total", "Records handed to Kafka by the pipeline: change events, tombstones, in-stream snapshot rows, messages, transaction metadata and heartbeats (relation is empty for the last three). The initial snapshot's rows are counted by procon_snapshot_rows.", "relation", "topic")
	p.bytes = f.counterVec("event_bytes_produced_total", "Key and value bytes of the records counted by procon_events_produced_total.", "relation", "topic")
	p.skipped = f.counter("records_skipped_total", "Records not produced because Kafka has them from an earlier run (the resume check, or the progress record of exactly-once delivery).")
	p.transactions = f.counter("transactions_total", "Source transactions handed to Kafka whole.")
	p.ackedRecords = f.counterVec("kafka_acknowledged_records_total", "Records Kafka's brokers acknowledged, from every producer of the process (change events, initial snapshot rows, realtime notifications, heartbeats); with exactly-once delivery, written in a Kafka transaction whether it later commits or aborts.", "topic")
	p.ackedBytes = f.counterVec("kafka_acknowledged_bytes_total", "Uncompressed bytes of the batches counted by procon_kafka_acknowledged_records_total.", "topic")
	p.requestErrors = f.counterVec("kafka_request_errors_total", "Requests to a Kafka broker that failed and are retried, by error (a Kafka error code name, timeout, network, canceled or other).", "kind")
	p.produceErrors = f.counterVec("kafka_produce_errors_total", "Records Kafka refused for good, by error; procon-cdc stops at the first, keeping the slot's position.", "kind")
	p.kafkaConnects = f.counterVec("kafka_connects_total", "Connection attempts to Kafka brokers, by outcome (ok, error).", "outcome")
	p.kafkaDisconnects = f.counter("kafka_disconnects_total", "Kafka broker connections that closed.")
	p.pgReconnects = f.counter("postgres_reconnects_total", "Replication connections lost (each is followed by reconnecting until it succeeds).")
	p.slotPollErrors = f.counter("slot_poll_errors_total", "Failed reads of the slot's state from pg_replication_slots.")
	p.ackLatency = f.histogram("commit_to_ack_seconds", "Time from a source transaction's commit to Kafka's acknowledgement of its last record (the commit of its Kafka transaction, with exactly-once delivery).",
		[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300})
	p.streamingGauge = f.gauge("streaming", "1 while the replication stream is connected and streaming.")
	if cfg.State != nil {
		reg.MustRegister(&producerCollector{p: p})
	}
	return p
}

// Produced implements pipeline.Meter. The pipeline calls it from its one goroutine.
func (p *Producer) Produced(relation, topic string, bytes int) {
	k := eventKey{relation, topic}
	c, ok := p.produced[k]
	if !ok {
		rel := relation
		if !p.relations[rel] {
			rel = ""
		}
		c = eventCounters{p.events.WithLabelValues(rel, topic), p.bytes.WithLabelValues(rel, topic)}
		p.produced[k] = c
	}
	c.events.Inc()
	c.bytes.Add(float64(bytes))
	p.eventsTotal.Add(1)
}

// Skipped implements pipeline.Meter.
func (p *Producer) Skipped() { p.skipped.Inc() }

// Transaction implements pipeline.Meter.
func (p *Producer) Transaction() { p.transactions.Inc() }

// BatchWritten implements sink.Observer.
func (p *Producer) BatchWritten(topic string, records, bytes int) {
	c, ok := p.acked.Load(topic)
	if !ok {
		c, _ = p.acked.LoadOrStore(topic, ackCounters{p.ackedRecords.WithLabelValues(topic), p.ackedBytes.WithLabelValues(topic)})
	}
	ac := c.(ackCounters)
	ac.records.Add(float64(records))
	ac.bytes.Add(float64(bytes))
	p.kafkaReachable.Store(true)
}

// RequestFailed implements sink.Observer.
func (p *Producer) RequestFailed(kind string) {
	p.requestErrors.WithLabelValues(kind).Inc()
	p.setErr("a Kafka request failed (retried): " + kind)
}

// ProduceFailed implements sink.Observer.
func (p *Producer) ProduceFailed(kind string) {
	p.produceErrors.WithLabelValues(kind).Inc()
	p.setErr("Kafka refused a record: " + kind)
}

// Connected implements sink.Observer.
func (p *Producer) Connected(err error) {
	if err != nil {
		p.kafkaConnects.WithLabelValues("error").Inc()
		p.kafkaReachable.Store(false)
		p.setErr("cannot connect to a Kafka broker: " + err.Error())
		return
	}
	p.kafkaConnects.WithLabelValues("ok").Inc()
	p.kafkaReachable.Store(true)
}

// Disconnected implements sink.Observer.
func (p *Producer) Disconnected() { p.kafkaDisconnects.Inc() }

// Streaming implements replication.Observer.
func (p *Producer) Streaming(on bool) {
	p.streaming.Store(on)
	if on {
		p.streamedOnce.Store(true)
		p.streamingGauge.Set(1)
		return
	}
	p.streamingGauge.Set(0)
	p.pgReconnects.Inc()
	p.setErr("the replication connection was lost; reconnecting")
}

// IsStreaming reports whether the replication stream last said it streams, and whether it
// ever did (a stream that never did is starting, not reconnecting).
func (p *Producer) IsStreaming() (now, ever bool) { return p.streaming.Load(), p.streamedOnce.Load() }

// Reconnecting implements replication.Observer.
func (p *Producer) Reconnecting(err error) {
	p.setErr("cannot reconnect to PostgreSQL: " + err.Error())
}

// TxAcknowledged implements replication.Observer.
func (p *Producer) TxAcknowledged(commit time.Time) {
	p.ackLatency.Observe(max(0, p.now().Sub(commit).Seconds()))
}

// SlotPollFailed counts a failed poll of the slot's state.
func (p *Producer) SlotPollFailed(err error) {
	p.slotPollErrors.Inc()
	p.setErr("cannot read the slot's state: " + err.Error())
}

// Error records a problem for /status (the last one is shown).
func (p *Producer) setErr(msg string) {
	p.lastErr.Store(&LastError{At: p.now(), Message: msg})
}

// Status is what /status returns for procon-cdc run.
type Status struct {
	State
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// EventsPerSecond is the rate of records produced over the last minute (or since the
	// start, when that is shorter).
	EventsPerSecond float64    `json:"events_per_second"`
	EventsProduced  int64      `json:"events_produced"`
	KafkaReachable  bool       `json:"kafka_reachable"`
	Ready           bool       `json:"ready"`
	NotReady        string     `json:"not_ready,omitempty"`
	LastError       *LastError `json:"last_error,omitempty"`
}

// SampleRates keeps the throughput's window sampled until ctx ends (every 5 s), so /status
// has the rate of the last minute even when nobody asked before.
func (p *Producer) SampleRates(ctx context.Context) {
	p.throughput.sampleEvery(ctx, rateSampling, p.eventsTotal.Load)
}

// rateSampling is how often SampleRates samples.
const rateSampling = 5 * time.Second

// Status returns the process's view for /status.
func (p *Producer) Status() Status {
	now := p.now()
	st := Status{State: p.state()}
	st.LagBytes = st.State.LagBytes()
	st.LagSeconds = st.State.LagSeconds(now)
	st.EventsProduced = p.eventsTotal.Load()
	st.EventsPerSecond = p.throughput.rate(now, st.EventsProduced)
	st.KafkaReachable = p.kafkaReachable.Load()
	st.LastError = p.lastErr.Load()
	if err := p.ready(&st); err != "" {
		st.NotReady = err
	} else {
		st.Ready = true
	}
	return st
}

// ready says why the process is not ready, or "".
func (p *Producer) ready(st *Status) string {
	switch {
	case st.Phase != PhaseStreaming:
		return "not streaming: " + st.Phase
	case !st.KafkaReachable:
		return "Kafka is not reachable"
	case p.readyMaxLag > 0 && st.LagSeconds > p.readyMaxLag.Seconds():
		return "replication lag " + time.Duration(st.LagSeconds*float64(time.Second)).Round(time.Second).String() + " is above metrics.ready_max_lag " + p.readyMaxLag.String()
	}
	return ""
}

// producerCollector emits the gauges of the State at each scrape.
type producerCollector struct{ p *Producer }

var (
	descConfirmed   = desc("confirmed_lsn", "The position the slot may be confirmed at (everything before it is in Kafka), as a byte position in the WAL.")
	descServerLSN   = desc("server_wal_lsn", "The server's WAL end as last seen, as a byte position in the WAL.")
	descLagBytes    = desc("replication_lag_bytes", "WAL the server has written past the confirmed position.")
	descLagSeconds  = desc("replication_lag_seconds", "Time since the commit of the oldest transaction not all in Kafka; 0 when every transaction received is.")
	descBufRecords  = desc("kafka_buffered_records", "Records handed to the Kafka client and not yet acknowledged (in flight).")
	descBufBytes    = desc("kafka_buffered_bytes", "Bytes of the records counted by procon_kafka_buffered_records.")
	descMaxRecords  = desc("kafka_buffered_records_limit", "kafka.max_buffered_records: producing blocks (backpressure) at this many buffered records.")
	descMaxBytes    = desc("kafka_buffered_bytes_limit", "kafka.max_buffered_bytes: producing blocks (backpressure) at this many buffered bytes; 0 when unlimited.")
	descSlotActive  = desc("slot_active", "1 when the server reports the slot in use (pg_replication_slots.active).")
	descRetained    = desc("slot_retained_wal_bytes", "WAL the slot keeps on the server (pg_current_wal_lsn() - restart_lsn).")
	descSafeWAL     = desc("slot_safe_wal_size_bytes", "WAL that may still be written before the slot is in danger of losing its position (max_slot_wal_keep_size); absent when unlimited.")
	descSnapRows    = desc("snapshot_rows", "Rows of a table read and handed to Kafka by the running (or last) snapshot.", "table")
	descSnapTotal   = desc("snapshot_rows_estimated", "The estimated rows of a table in the running (or last) snapshot; 0 when unknown.", "table")
	descSnapChunks  = desc("snapshot_chunks", "Chunks of a table read by the running (or last) snapshot.", "table")
	descSnapETA     = desc("snapshot_eta_seconds", "Estimated time until the running snapshot has read a table; absent when unknown.", "table")
	descSnapRunning = desc("snapshot_running", "1 while a snapshot runs.")
	descRTWaiting   = desc("realtime_queue_length", "Realtime notifications waiting for their channel's spacing.")
	descRTBytes     = desc("realtime_queue_bytes", "Bytes of the waiting realtime notifications.")
	descRTSent      = desc("realtime_notifications_sent_total", "Realtime notifications Kafka acknowledged.")
	descRTCoalesced = desc("realtime_notifications_coalesced_total", "Realtime notifications replaced by a newer one of their channel and session before they were sent.")
	descRTDelayed   = desc("realtime_notifications_delayed_total", "Realtime notifications that waited for their channel's spacing (rt_threshold).")
	descRTTooLarge  = desc("realtime_notifications_too_large_total", "Realtime notifications dropped for being over realtime.max_notification_bytes.")
	descDeadLetters = desc("dead_letter_records_total", "Records too large for their topic, by kind (row, message, realtime) and outcome (dead_letter: a reference went to the dead-letter topic; skipped).", "kind", "outcome")
	descPhase       = desc("phase", "1 for the phase procon-cdc is in (starting, standby, snapshotting, streaming, reconnecting, stopping): standby while it waits for the slot's lock, held by another procon-cdc.", "phase")
)

var phases = []string{PhaseStarting, PhaseStandby, PhaseSnapshotting, PhaseStreaming, PhaseReconnecting, PhaseStopping}

func (c *producerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConfirmed, descServerLSN, descLagBytes, descLagSeconds, descBufRecords, descBufBytes,
		descMaxRecords, descMaxBytes, descSlotActive, descRetained, descSafeWAL, descSnapRows, descSnapTotal, descSnapChunks,
		descSnapETA, descSnapRunning, descRTWaiting, descRTBytes, descRTSent, descRTCoalesced, descRTDelayed, descRTTooLarge,
		descDeadLetters, descPhase} {
		ch <- d
	}
}

func (c *producerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.state()
	now := c.p.now()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	cnt := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	for _, ph := range phases {
		g(descPhase, boolValue(st.Phase == ph), ph)
	}
	g(descConfirmed, float64(st.ConfirmedLSN))
	g(descServerLSN, float64(max(st.ServerLSN, serverLSN(st.SlotPoll))))
	g(descLagBytes, float64(st.LagBytes()))
	g(descLagSeconds, st.LagSeconds(now))
	g(descBufRecords, float64(st.BufferedRecords))
	g(descBufBytes, float64(st.BufferedBytes))
	g(descMaxRecords, float64(st.MaxBufferedRecords))
	g(descMaxBytes, float64(st.MaxBufferedBytes))
	if s := st.SlotPoll; s != nil && s.Err == "" {
		g(descSlotActive, boolValue(s.Active))
		g(descRetained, float64(s.RetainedBytes))
		if s.SafeWALSize != nil {
			g(descSafeWAL, float64(*s.SafeWALSize))
		}
	}
	if s := st.Snapshot; s != nil {
		g(descSnapRunning, boolValue(s.Running))
		for _, t := range s.Tables {
			g(descSnapRows, float64(t.Rows), t.Relation)
			g(descSnapTotal, float64(t.Total), t.Relation)
			g(descSnapChunks, float64(t.Chunks), t.Relation)
			if t.ETASeconds >= 0 && s.Running {
				g(descSnapETA, t.ETASeconds, t.Relation)
			}
		}
	} else {
		g(descSnapRunning, 0)
	}
	if r := st.Realtime; r != nil {
		g(descRTWaiting, float64(r.Waiting))
		g(descRTBytes, float64(r.QueueBytes))
		cnt(descRTSent, float64(r.Sent))
		cnt(descRTCoalesced, float64(r.Coalesced))
		cnt(descRTDelayed, float64(r.Delayed))
		cnt(descRTTooLarge, float64(r.TooLarge))
	}
	for _, d := range st.DeadLetters {
		cnt(descDeadLetters, float64(d.Records), d.Kind, d.Outcome)
	}
}

func serverLSN(s *SlotState) LSN {
	if s == nil {
		return 0
	}
	return s.ServerLSN
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}
