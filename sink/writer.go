package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Config configures the Kafka writer.
type Config struct {
	Brokers            []string
	ClientID           string
	MaxBufferedRecords int
	MaxBufferedBytes   int
	Linger             time.Duration
	Compression        string // none | gzip | snappy | lz4 | zstd
	MaxRecordBytes     int
	TLS                *tls.Config
	SASLMechanism      string
	SASLUser, SASLPass string
	// ConnectTimeout bounds the reachability check at start.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// TopicSpec is how a topic is created when it is missing.
type TopicSpec struct {
	Partitions        int32
	ReplicationFactor int16
	Configs           map[string]*string
}

// Acker is told when Kafka has acknowledged a record. The replication tracker implements it.
type Acker interface {
	Ack(token any)
}

// Record is one record to produce.
type Record struct {
	Topic   string
	Key     []byte
	Value   []byte // nil for a tombstone
	Headers []kgo.RecordHeader
	// Partition is the partition to write to, or -1 to hash the key as Kafka's default
	// partitioner does (murmur2), so that a key always lands where Debezium would put it.
	Partition int32
	// Token is handed to the Acker once Kafka acknowledges the record.
	Token any
}

// Writer produces records to Kafka with an idempotent producer (acks=all), creating topics on
// first use. Transient errors are retried by the client without limit, in order; the first
// error that retrying cannot fix is kept and returned by Err, and nothing after it is
// acknowledged.
type Writer struct {
	opts  []kgo.Opt // connection options, for the short-lived readers of LastHeaders
	cl    *kgo.Client
	adm   *kadm.Client
	acker Acker
	log   *slog.Logger

	specFn func(topic string) TopicSpec

	mu     sync.Mutex
	topics map[string]int32 // partitions of topics known to exist

	// records is the context of every produced record. kgo fails a buffered record whose
	// context ends, so records must not carry a caller's context: on shutdown they are
	// drained, and only Abort (the drain deadline) gives them up.
	records context.Context
	abort   context.CancelFunc

	fatal    atomic.Pointer[error]
	fatalCh  chan struct{}
	fatalOne sync.Once
}

// New connects to Kafka and checks that a broker answers within cfg.ConnectTimeout.
// specFn gives the settings of a topic that must be created.
func New(ctx context.Context, cfg Config, acker Acker, specFn func(topic string) TopicSpec) (*Writer, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.UnknownTopicRetries(-1),
		// Topics are created on first use; a short metadata age lets the producer see them at once.
		kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.MaxBufferedBytes(cfg.MaxBufferedBytes),
		kgo.ProducerLinger(cfg.Linger),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxRecordBytes)),
	}
	if c, err := codec(cfg.Compression); err != nil {
		return nil, err
	} else {
		opts = append(opts, kgo.ProducerBatchCompression(c))
	}
	if cfg.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLS))
	}
	switch cfg.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.SASLUser, Pass: cfg.SASLPass}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASLUser, Pass: cfg.SASLPass}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASLUser, Pass: cfg.SASLPass}.AsSha512Mechanism()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	w := &Writer{
		opts: connOpts(opts),
		cl:   cl, adm: kadm.NewClient(cl), acker: acker, log: cfg.Logger,
		specFn: specFn,
		topics: map[string]int32{}, fatalCh: make(chan struct{}),
	}
	w.records, w.abort = context.WithCancel(context.Background())
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka brokers %v do not answer within %s: %w", cfg.Brokers, cfg.ConnectTimeout, err)
	}
	return w, nil
}

// connOpts keeps the options that say how to reach the cluster (the first ones built by New,
// before any producer setting), dropping producer-only options.
func connOpts(opts []kgo.Opt) []kgo.Opt {
	var out []kgo.Opt
	for _, o := range opts {
		if _, producer := o.(kgo.ProducerOpt); !producer {
			out = append(out, o)
		}
	}
	return out
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("unknown compression %q", name)
}

// EnsureTopic makes sure topic exists, creating it from its spec if needed, and returns its
// partition count. Broker errors are retried until ctx ends: topics are created before any
// record of theirs is produced, so waiting holds the LSN.
func (w *Writer) EnsureTopic(ctx context.Context, topic string) (int32, error) {
	w.mu.Lock()
	n, ok := w.topics[topic]
	w.mu.Unlock()
	if ok {
		return n, nil
	}
	backoff := 100 * time.Millisecond
	for {
		n, err := w.ensureTopic(ctx, topic)
		if err == nil {
			w.mu.Lock()
			w.topics[topic] = n
			w.mu.Unlock()
			return n, nil
		}
		if !retriable(err) {
			return 0, err
		}
		w.log.Warn("creating topic; retrying", "topic", topic, "err", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Writer) ensureTopic(ctx context.Context, topic string) (int32, error) {
	details, err := w.adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		return int32(len(d.Partitions)), nil
	}
	spec := w.specFn(topic)
	resp, err := w.adm.CreateTopic(ctx, spec.Partitions, spec.ReplicationFactor, spec.Configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return 0, fmt.Errorf("create topic %s (%d partitions, replication factor %d): %w", topic, spec.Partitions, spec.ReplicationFactor, err)
	}
	w.log.Info("created topic", "topic", topic, "partitions", spec.Partitions, "replication_factor", spec.ReplicationFactor)
	if err == nil {
		return resp.NumPartitions, nil
	}
	// Someone else created it meanwhile: ask for its partitions until the metadata shows it.
	for {
		details, err := w.adm.ListTopics(ctx, topic)
		if err == nil {
			if d, ok := details[topic]; ok && d.Err == nil && len(d.Partitions) > 0 {
				return int32(len(d.Partitions)), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LastHeaders returns the headers of the last record of each non-empty partition of topic,
// read from Kafka. The engine uses them to find where a previous run stopped.
func (w *Writer) LastHeaders(ctx context.Context, topic string) (map[int32][]kgo.RecordHeader, error) {
	starts, err := w.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := w.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	want := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); ok && o.Err == nil && o.Offset > s.Offset {
			want[o.Partition] = kgo.NewOffset().At(o.Offset - 1)
		}
	})
	out := map[int32][]kgo.RecordHeader{}
	if len(want) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(append(w.opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: want}))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for len(out) < len(want) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read the last records of %s: %w", topic, err)
		}
		for _, fe := range fs.Errors() {
			return nil, fmt.Errorf("read the last records of %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset == want[r.Partition].EpochOffset().Offset {
				out[r.Partition] = r.Headers
			}
		})
	}
	return out, nil
}

// Partition returns the partition Kafka's default partitioner would choose for key.
func (w *Writer) Partition(topic string, key []byte, partitions int32) int32 {
	if key == nil || partitions <= 1 {
		return 0
	}
	// Kafka's default partitioner: murmur2 of the key, sign bit cleared, modulo the count.
	return int32(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is the hash Kafka's Java client partitions keys with. (kgo's partitioner computes the
// same, but asking it allocates a fresh sticky partitioner, with its random source, per call.)
func murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
	)
	h := seed ^ uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		k := uint32(b[3])<<24 | uint32(b[2])<<16 | uint32(b[1])<<8 | uint32(b[0])
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
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
		part = w.Partition(r.Topic, r.Key, n)
	}
	rec := &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers, Partition: part}
	token := r.Token
	w.cl.Produce(w.records, rec, func(rec *kgo.Record, err error) {
		if err != nil {
			if w.records.Err() == nil {
				w.fail(fmt.Errorf("produce to %s[%d]: %w", rec.Topic, rec.Partition, describe(err)))
			}
			return
		}
		w.acker.Ack(token)
	})
	return nil
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

// Abort gives up the records not yet acknowledged (they are never confirmed, so they are sent
// again after a restart) and releases a Produce waiting for buffer space.
func (w *Writer) Abort() { w.abort() }

// Close closes the client; records not yet acknowledged are abandoned (and never confirmed).
func (w *Writer) Close() {
	w.abort()
	w.cl.Close()
}

// Client exposes the underlying client for reading topics (tail, resume).
func (w *Writer) Client() *kgo.Client { return w.cl }

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
		return fmt.Errorf("%w: the record is larger than the topic's max.message.bytes or kafka.max_record_bytes; raise them", err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed),
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return fmt.Errorf("%w: grant the producer WRITE (and IDEMPOTENT_WRITE) on the topic", err)
	}
	return err
}

// TLSConfig builds a client TLS configuration from files.
func TLSConfig(caFile, certFile, keyFile string, insecure bool) (*tls.Config, error) {
	c := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // only when the user asks
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
