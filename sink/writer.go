package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/retrylog"
)

// TopicSpec is how a topic is created when it is missing.
type TopicSpec struct {
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]*string
}

// Acker is a record's acknowledgement: Ack is called once, when Kafka has acknowledged the
// record. Each owner of records implements it (a source transaction, an initial snapshot
// chunk, a realtime notification). Ack runs on the client's promise goroutine: it must not
// block.
type Acker interface {
	Ack()
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one record to produce.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte // nil for a tombstone
	Headers []Header
	// Partition is the partition to write to, or -1 to hash the key as Kafka's default
	// partitioner does (murmur2), so that a key always lands where Debezium would put it.
	Partition int32
	// Timestamp is the record's timestamp; zero: when it is produced.
	Timestamp time.Time
	// Ack is told once Kafka acknowledges the record; nil when nothing waits for it (a
	// heartbeat). A record that fails is never acknowledged: the writer stops instead.
	Ack Acker
}

// Writer produces records to Kafka with an idempotent producer (acks=all), creating topics on
// first use; with a transactional id, in Kafka transactions (txn.go). Transient errors are retried by the client without limit, in order; the first
// error that retrying cannot fix is kept and returned by Err, and nothing after it is
// acknowledged. All methods are safe for concurrent use; acknowledgements run on the client's
// promise goroutine, in produce order per partition.
type Writer struct {
	cfg   Config
	cl    *kgo.Client
	adm   *kadm.Client
	log   *slog.Logger
	specs func(topic string) TopicSpec

	mu     sync.Mutex
	topics map[string]topicInfo // topics known to exist

	// records is the context of every produced record. kgo fails a buffered record whose
	// context ends, so records must not carry a caller's context: on shutdown they are
	// drained, and only Abort (the drain deadline) gives them up.
	records context.Context
	abort   context.CancelFunc

	fatal    atomic.Pointer[error]
	fatalCh  chan struct{}
	fatalOne sync.Once
	written  atomic.Int64 // records Kafka acknowledged

	txn *txn // nil unless transactional (txn.go)

	promise func(*kgo.Record, error) // of every record produced outside a transaction
}

// produced is a record handed to the client, with its headers and its acknowledgement, in one
// allocation (three otherwise: the record, its headers, the promise's closure). The record's
// context carries the acknowledgement to the one promise function of the writer.
type produced struct {
	rec kgo.Record
	hdr [6]kgo.RecordHeader // Procon's three and Debezium's two key-change headers fit
	ctx ackContext
}

// ackContext is a record's context: the writer's records context (which kgo watches to give
// buffered records up), and the record's acknowledgement.
type ackContext struct {
	context.Context
	ack Acker
}

// topicInfo is what the writer knows of a topic that exists.
type topicInfo struct {
	partitions int32
	// maxBytes is the largest batch the topic takes: kafka.max_record_bytes, or the topic's
	// max.message.bytes when that is smaller.
	maxBytes int
}

// New connects to Kafka and checks that a broker answers within cfg.ConnectTimeout. specs
// gives the settings of a topic that must be created.
func New(ctx context.Context, cfg Config, specs func(topic string) TopicSpec) (*Writer, error) {
	cfg.defaults()
	c, err := codec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	if cfg.MaxRecordBytes < 0 || cfg.MaxRecordBytes > math.MaxInt32 {
		// int32 would wrap it, possibly into a value the client accepts.
		return nil, fmt.Errorf("sink: max record bytes %d does not fit Kafka's int32 sizes", cfg.MaxRecordBytes)
	}
	w := &Writer{
		cfg: cfg, log: cfg.Logger, specs: specs,
		topics: map[string]topicInfo{}, fatalCh: make(chan struct{}),
	}
	w.promise = w.onProduced
	opts := []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.UnknownTopicRetries(-1),
		// Topics are created on first use; a short metadata age lets the producer see them at once.
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.MaxBufferedBytes(cfg.MaxBufferedBytes),
		kgo.ProducerLinger(cfg.Linger),
		// Batches are bounded per topic: a topic whose max.message.bytes is below
		// kafka.max_record_bytes would refuse a batch of small records that fills the larger
		// limit. The client asks when it first meets a partition, which is after EnsureTopic
		// has read the topic's limit (Produce ensures the topic first).
		kgo.ProducerBatchMaxBytesFn(w.batchMaxBytes),
		kgo.ProducerBatchCompression(c),
	}
	if cfg.TransactionalID != "" {
		w.txn = &txn{}
		opts = append(opts, kgo.TransactionalID(cfg.TransactionalID))
		if cfg.TransactionTimeout > 0 {
			opts = append(opts, kgo.TransactionTimeout(cfg.TransactionTimeout))
		}
	}
	cl, err := cfg.newClient(ctx, true, opts...)
	if err != nil {
		return nil, err
	}
	w.cl, w.adm = cl, kadm.NewClient(cl)
	w.records, w.abort = context.WithCancel(context.Background())
	return w, nil
}

// minBatchBytes is the least batch limit the client accepts.
const minBatchBytes = 512

// batchMaxBytes is the client's batch limit for topic.
func (w *Writer) batchMaxBytes(topic string) int32 {
	n := w.cfg.MaxRecordBytes
	w.mu.Lock()
	if ti, ok := w.topics[topic]; ok {
		n = ti.maxBytes
	}
	w.mu.Unlock()
	return int32(max(n, minBatchBytes))
}

// MaxRecordBytes is the largest record topic takes, as Size counts it: kafka.max_record_bytes,
// or the topic's max.message.bytes when that is smaller. It makes sure the topic exists first
// (EnsureTopic), which is when its limit is read.
func (w *Writer) MaxRecordBytes(ctx context.Context, topic string) (int, error) {
	for {
		w.mu.Lock()
		ti, ok := w.topics[topic]
		w.mu.Unlock()
		if ok {
			return ti.maxBytes, nil
		}
		if _, err := w.EnsureTopic(ctx, topic); err != nil {
			return 0, err
		}
	}
}

// EnsureTopic makes sure topic exists, creating it from its spec if needed, and returns its
// partition count. Broker errors are retried until ctx ends: topics are created before any
// record of theirs is produced, so waiting holds the LSN.
func (w *Writer) EnsureTopic(ctx context.Context, topic string) (int32, error) {
	w.mu.Lock()
	ti, ok := w.topics[topic]
	w.mu.Unlock()
	if ok {
		return ti.partitions, nil
	}
	backoff := 100 * time.Millisecond
	var failing retrylog.Outage
	for {
		ti, err := w.ensureTopic(ctx, topic)
		if err == nil {
			failing.Recovered(w.log, "topic ready after retries", "topic", topic)
			w.mu.Lock()
			w.topics[topic] = ti
			w.mu.Unlock()
			return ti.partitions, nil
		}
		if !retriable(err) {
			return 0, err
		}
		failing.Failed(w.log, "cannot create or describe a topic; retrying", err, "topic", topic)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Writer) ensureTopic(ctx context.Context, topic string) (topicInfo, error) {
	details, err := w.adm.ListTopics(ctx, topic)
	if err != nil {
		return topicInfo{}, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		return topicInfo{partitions: int32(len(d.Partitions)), maxBytes: w.existingLimit(ctx, topic)}, nil
	}
	spec := w.specs(topic)
	resp, err := w.adm.CreateTopic(ctx, spec.Partitions, spec.ReplicationFactor, spec.Configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return topicInfo{}, fmt.Errorf("create topic %s (%d partitions, replication factor %d): %w", topic, spec.Partitions, spec.ReplicationFactor, err)
	}
	if err == nil {
		w.log.Info("created topic", "topic", topic, "partitions", spec.Partitions, "replication_factor", spec.ReplicationFactor)
		ti := topicInfo{partitions: resp.NumPartitions, maxBytes: w.cfg.MaxRecordBytes}
		if v, ok := spec.Configs[MaxMessageBytes]; ok && v != nil {
			if n, err := strconv.Atoi(*v); err == nil {
				ti.maxBytes = min(ti.maxBytes, n)
			}
		}
		return ti, nil
	}
	// Someone else created it meanwhile: ask for its partitions until the metadata shows it.
	for {
		details, err := w.adm.ListTopics(ctx, topic)
		if err == nil {
			if d, ok := details[topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
				return topicInfo{partitions: int32(len(d.Partitions)), maxBytes: w.existingLimit(ctx, topic)}, nil
			}
		}
		select {
		case <-ctx.Done():
			return topicInfo{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// existingLimit is the batch limit of a topic that exists: kafka.max_record_bytes, or the
// topic's max.message.bytes when that is smaller. When the topic's configuration cannot be
// read (the principal may lack DESCRIBE_CONFIGS), it is kafka.max_record_bytes, with a warning:
// a larger record is then refused by the broker, which stops the engine.
func (w *Writer) existingLimit(ctx context.Context, topic string) int {
	limits, err := maxMessageBytes(ctx, w.adm, topic)
	n, ok := limits[topic]
	if err != nil || !ok {
		w.log.Warn("cannot read the topic's max.message.bytes; assuming kafka.max_record_bytes fits it",
			"topic", topic, "max_record_bytes", w.cfg.MaxRecordBytes, "err", err)
		return w.cfg.MaxRecordBytes
	}
	if n < w.cfg.MaxRecordBytes {
		w.log.Warn("the topic's max.message.bytes is below kafka.max_record_bytes: larger records are too large for it (errors.record_too_large)",
			"topic", topic, "max_message_bytes", n, "max_record_bytes", w.cfg.MaxRecordBytes)
		return n
	}
	return w.cfg.MaxRecordBytes
}

// MaxMessageBytes is the topic configuration that bounds a record batch on the broker.
const MaxMessageBytes = "max.message.bytes"

// maxMessageBytes reads the max.message.bytes of topics; topics that do not exist, or whose
// value is not a number, are left out.
func maxMessageBytes(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]int, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("describe the configuration of topics %v: %w", topics, err)
	}
	out := map[string]int{}
	for _, rc := range rcs {
		if rc.Err != nil {
			if errors.Is(rc.Err, kerr.UnknownTopicOrPartition) {
				continue
			}
			return nil, fmt.Errorf("describe the configuration of topic %s: %w", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key != MaxMessageBytes || c.Value == nil {
				continue
			}
			if n, err := strconv.Atoi(*c.Value); err == nil {
				out[rc.Name] = n
			}
		}
	}
	return out, nil
}

// Produce hands r to the client. It blocks while the client's buffer is full (backpressure)
// and returns an error when the writer has failed or was aborted; ctx bounds only the topic
// lookup. Once handed over, a record is sent whatever happens to ctx, until Abort.
func (w *Writer) Produce(ctx context.Context, r *Record) error {
	if err := w.Err(); err != nil {
		return err
	}
	n, err := w.EnsureTopic(ctx, r.Topic)
	if err != nil {
		return err
	}
	part := r.Partition
	if part < 0 {
		part = Partition(r.Key, n)
	}
	p := &produced{rec: kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Partition: part, Timestamp: r.Timestamp}}
	rec := &p.rec
	if len(r.Headers) > 0 {
		hdr := p.hdr[:0]
		if len(r.Headers) > len(p.hdr) {
			hdr = make([]kgo.RecordHeader, 0, len(r.Headers))
		}
		for _, h := range r.Headers {
			hdr = append(hdr, kgo.RecordHeader(h))
		}
		rec.Headers = hdr
	}
	ack := r.Ack
	if w.txn != nil {
		return w.produceInTxn(rec, ack)
	}
	p.ctx = ackContext{Context: w.records, ack: ack}
	rec.Context = &p.ctx
	w.cl.Produce(w.records, rec, w.promise)
	return nil
}

// onProduced is the promise of a record produced outside a transaction (Produce).
func (w *Writer) onProduced(rec *kgo.Record, err error) {
	ack := rec.Context.(*ackContext).ack
	if err != nil {
		w.failed(rec, ack, err)
		return
	}
	w.written.Add(1)
	if ack != nil {
		ack.Ack()
	}
}

// Written is how many records Kafka has acknowledged so far (in a transaction: written, not
// yet committed). Any goroutine may call it.
func (w *Writer) Written() int64 { return w.written.Load() }

// Buffered returns the records handed to the client and not yet acknowledged, and their
// bytes; the limits are MaxBuffered. Any goroutine may call it.
func (w *Writer) Buffered() (records, bytes int64) {
	return w.cl.BufferedProduceRecords(), w.cl.BufferedProduceBytes()
}

// MaxBuffered returns the buffer's limits: Produce blocks once either is reached.
func (w *Writer) MaxBuffered() (records, bytes int64) {
	return int64(w.cfg.MaxBufferedRecords), int64(w.cfg.MaxBufferedBytes)
}

// failed latches the error of a record Kafka refused: nothing after it is acknowledged.
func (w *Writer) failed(rec *kgo.Record, ack Acker, err error) {
	if w.records.Err() != nil {
		return // given up on purpose (Abort)
	}
	of := ""
	if s, ok := ack.(fmt.Stringer); ok {
		of = " (a record of " + s.String() + ")"
	}
	if w.cfg.Observer != nil {
		w.cfg.Observer.ProduceFailed(ErrorKind(err))
	}
	w.fail(fmt.Errorf("produce to %s[%d]%s: %w", rec.Topic, rec.Partition, of, describe(err)))
}

func (w *Writer) fail(err error) {
	w.fatalOne.Do(func() {
		w.fatal.Store(&err)
		close(w.fatalCh)
	})
}

// Err returns the error that stopped the writer, if any.
func (w *Writer) Err() error {
	if p := w.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Failed is closed when the writer hits an error that retrying cannot fix.
func (w *Writer) Failed() <-chan struct{} { return w.fatalCh }

// Flush waits until every produced record is acknowledged or has failed.
func (w *Writer) Flush(ctx context.Context) error {
	if err := w.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush kafka producer: %w", err)
	}
	return w.Err()
}

// Fail stops the writer with err, as a record Kafka refused would: Produce refuses further
// records, Failed is closed and Err returns err (if no error came first), and the records not
// yet acknowledged are given up (Abort), never to be acknowledged. The engine calls it when
// this process must stop producing at once (it lost the slot's lock).
func (w *Writer) Fail(err error) {
	w.fail(err)
	w.abort()
}

// Abort gives up the records not yet acknowledged (they are never confirmed, so they are sent
// again after a restart) and releases a Produce waiting for buffer space.
func (w *Writer) Abort() { w.abort() }

// Close closes the client; records not yet acknowledged are abandoned (and never confirmed).
func (w *Writer) Close() {
	w.abort()
	w.cl.Close()
}

// retriable reports whether a broker error may go away by trying again.
func retriable(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// describe adds the fix for the permanent errors users meet most.
func describe(err error) error {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		// Records too large for their topic are handled before they are produced
		// (errors.record_too_large), and batches are kept within the topic's limit as read at
		// its first use: the topic's limit must have been lowered since.
		return fmt.Errorf("%w: a batch is over the topic's max.message.bytes or kafka.max_record_bytes, though procon-cdc keeps records and batches "+
			"within the limits it read at the topic's first use: the topic's max.message.bytes was probably lowered since; set it to at least "+
			"kafka.max_record_bytes, or restart procon-cdc to apply errors.record_too_large under the new limit; the slot's position stays "+
			"before this transaction, so nothing is lost", err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("%w: grant the producer WRITE (and IDEMPOTENT_WRITE) on the topic", err)
	}
	return describeTxn(err)
}
