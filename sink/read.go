package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func headersOf(r *kgo.Record) []Header {
	if len(r.Headers) == 0 {
		return nil
	}
	hs := make([]Header, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = Header(h)
	}
	return hs
}

// ConsumedRecord is a record read from Kafka.
type ConsumedRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	// Timestamp is the record's Kafka timestamp (set by GroupReader.Poll).
	Timestamp time.Time
	// Transactional: written in a Kafka transaction (set by LastRecords only).
	Transactional bool
}

// Reader reads topics from their start or from their end, without a consumer group (procon-cdc
// tail). It is used by one goroutine.
type Reader struct {
	cl *kgo.Client
}

// NewReader returns a Reader of topics, starting at their first record when fromStart is set
// and at their end otherwise. With committed it reads as a read_committed consumer: records of
// Kafka transactions appear once committed, never when aborted.
func NewReader(cfg Config, topics []string, fromStart, committed bool) (*Reader, error) {
	cfg.defaults()
	start := kgo.NewOffset().AtEnd()
	if fromStart {
		start = kgo.NewOffset().AtStart()
	}
	level := kgo.ReadUncommitted()
	if committed {
		level = kgo.ReadCommitted()
	}
	cl, err := cfg.newClient(context.Background(), false, kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(start), kgo.FetchIsolationLevel(level))
	if err != nil {
		return nil, err
	}
	return &Reader{cl: cl}, nil
}

// Poll waits for the next records. Errors of single partitions are returned beside the records
// read from the others; when ctx ends it returns ctx's error.
func (r *Reader) Poll(ctx context.Context) ([]ConsumedRecord, []error, error) {
	fs := r.cl.PollFetches(ctx)
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var errs []error
	for _, fe := range fs.Errors() {
		if errors.Is(fe.Err, context.Canceled) {
			return nil, nil, fe.Err
		}
		errs = append(errs, fmt.Errorf("%s[%d]: %w", fe.Topic, fe.Partition, fe.Err))
	}
	var recs []ConsumedRecord
	fs.EachRecord(func(rec *kgo.Record) {
		recs = append(recs, ConsumedRecord{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
			Key: rec.Key, Value: rec.Value, Headers: headersOf(rec)})
	})
	return recs, errs, nil
}

// Close closes the Reader's client.
func (r *Reader) Close() { r.cl.Close() }

// Admin is a client for the cluster itself: whether it answers, topic limits, and deleting
// topics.
type Admin struct {
	cl *kgo.Client
}

// NewAdmin connects and checks that a broker answers within cfg.ConnectTimeout.
func NewAdmin(ctx context.Context, cfg Config) (*Admin, error) {
	cfg.defaults()
	cl, err := cfg.newClient(ctx, true)
	if err != nil {
		return nil, err
	}
	return &Admin{cl: cl}, nil
}

// DeleteTopics deletes topics and reports, for each, nil or why it was not deleted.
func (a *Admin) DeleteTopics(ctx context.Context, topics ...string) (map[string]error, error) {
	resp, err := kadm.NewClient(a.cl).DeleteTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("delete topics: %w", err)
	}
	out := map[string]error{}
	for _, r := range resp.Sorted() {
		out[r.Topic] = r.Err
	}
	return out, nil
}

// MaxMessageBytes returns the max.message.bytes of those of topics that exist.
func (a *Admin) MaxMessageBytes(ctx context.Context, topics ...string) (map[string]int, error) {
	return maxMessageBytes(ctx, kadm.NewClient(a.cl), topics...)
}

// Close closes the Admin's client.
func (a *Admin) Close() { a.cl.Close() }
