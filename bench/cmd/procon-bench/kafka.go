package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// topicConfigs are the settings of every topic a contender writes: Kafka stamps each record
// with its append time, which the steady scenario's latency is measured against.
var topicConfigs = map[string]*string{"message.timestamp.type": ptr("LogAppendTime")}

func ptr[T any](v T) *T { return &v }

func (b *bench) createTopic(ctx context.Context, topic string) error {
	resp, err := b.adm.CreateTopic(ctx, 1, 1, topicConfigs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

func (b *bench) deleteTopics(ctx context.Context, topics ...string) {
	if len(topics) == 0 {
		return
	}
	if _, err := b.adm.DeleteTopics(ctx, topics...); err != nil {
		b.logf("deleting topics: %v", err)
	}
}

func (b *bench) deleteTopicsWithPrefix(ctx context.Context, prefix string) {
	td, err := b.adm.ListTopics(ctx)
	if err != nil {
		return
	}
	var del []string
	for _, name := range td.Names() {
		if strings.HasPrefix(name, prefix) {
			del = append(del, name)
		}
	}
	if len(del) > 0 {
		b.logf("deleting %d leftover topics %s*", len(del), prefix)
		b.deleteTopics(ctx, del...)
	}
}

// recordCount is the number of records in topic: the sum of its partitions' end offsets
// (fresh topics, nothing deleted or compacted). An end offset is the high watermark, so every
// record counted has been acknowledged to its producer (acks=all).
func (b *bench) recordCount(ctx context.Context, topic string) (int64, error) {
	lo, err := b.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	var perr error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			perr = o.Err
			return
		}
		n += o.Offset
	})
	return n, perr
}

// latency is the distribution of commit-to-Kafka delays of a topic's records.
type latency struct {
	Records int64   `json:"records"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	Mean    float64 `json:"mean_ms"`
}

// measureLatency reads topic from the start (n records) and computes, for each record, its
// LogAppendTime minus source.ts_ms of its value: from the commit in PostgreSQL to the append in
// Kafka, in milliseconds (both clocks are this machine's).
func (b *bench) measureLatency(ctx context.Context, topic string, n int64, avroValues bool) (*latency, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.env.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	dec := &avroDecoder{url: b.env.Registry, schemas: map[uint32]avro.Schema{}}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	lat := make([]float64, 0, n)
	var read int64
	for read < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read %d of %d records of %s: %w", read, n, topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, ferr
		}
		var rerr error
		fs.EachRecord(func(r *kgo.Record) {
			read++
			if rerr != nil || r.Value == nil {
				return
			}
			if r.Attrs.TimestampType() != 1 {
				rerr = fmt.Errorf("record at offset %d of %s has CreateTime, want LogAppendTime (topic config)", r.Offset, topic)
				return
			}
			var tsMs int64
			var err error
			if avroValues {
				tsMs, err = dec.sourceTsMs(ctx, r.Value)
			} else {
				tsMs, err = jsonSourceTsMs(r.Value)
			}
			if err != nil {
				rerr = fmt.Errorf("offset %d of %s: %w", r.Offset, topic, err)
				return
			}
			lat = append(lat, float64(r.Timestamp.UnixMilli()-tsMs))
		})
		if rerr != nil {
			return nil, rerr
		}
	}
	return latencyOf(lat)
}

// latencyOf summarizes delays in milliseconds.
func latencyOf(lat []float64) (*latency, error) {
	if len(lat) == 0 {
		return nil, errors.New("no records with values")
	}
	lat = slices.Clone(lat)
	slices.Sort(lat)
	var sum float64
	for _, v := range lat {
		sum += v
	}
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return &latency{Records: int64(len(lat)), P50: q(0.50), P99: q(0.99), Max: lat[len(lat)-1], Mean: sum / float64(len(lat))}, nil
}

func jsonSourceTsMs(v []byte) (int64, error) {
	var ev struct {
		Source struct {
			TsMs *int64 `json:"ts_ms"`
		} `json:"source"`
		Payload *struct {
			Source struct {
				TsMs *int64 `json:"ts_ms"`
			} `json:"source"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(v, &ev); err != nil {
		return 0, err
	}
	if ev.Source.TsMs != nil {
		return *ev.Source.TsMs, nil
	}
	if ev.Payload != nil && ev.Payload.Source.TsMs != nil {
		return *ev.Payload.Source.TsMs, nil
	}
	return 0, errors.New("value has no source.ts_ms")
}

// avroDecoder decodes Confluent-framed Avro values with the registry's schemas.
type avroDecoder struct {
	url     string
	mu      sync.Mutex
	schemas map[uint32]avro.Schema
}

func (d *avroDecoder) sourceTsMs(ctx context.Context, v []byte) (int64, error) {
	if len(v) < 5 || v[0] != 0 {
		return 0, errors.New("value is not in Confluent's wire format")
	}
	id := binary.BigEndian.Uint32(v[1:5])
	s, err := d.schema(ctx, id)
	if err != nil {
		return 0, err
	}
	var ev map[string]any
	if err := avro.Unmarshal(s, v[5:], &ev); err != nil {
		return 0, fmt.Errorf("decode with schema %d: %w", id, err)
	}
	src, _ := ev["source"].(map[string]any)
	switch ts := src["ts_ms"].(type) {
	case int64:
		return ts, nil
	case int:
		return int64(ts), nil
	}
	return 0, fmt.Errorf("value has no source.ts_ms (got %T)", src["ts_ms"])
}

func (d *avroDecoder) schema(ctx context.Context, id uint32) (avro.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.schemas[id]; ok {
		return s, nil
	}
	if d.url == "" {
		return nil, errors.New("PROCON_SCHEMA_REGISTRY_URL is unset")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/schemas/ids/%d", strings.TrimRight(d.url, "/"), id), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("registry: schema %d: %s: %s", id, resp.Status, body)
	}
	var r struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	s, err := avro.Parse(r.Schema)
	if err != nil {
		return nil, fmt.Errorf("schema %d: %w", id, err)
	}
	d.schemas[id] = s
	return s, nil
}

// deleteSubjects removes the registry subjects of topics (soft, then permanent), best effort.
func (b *bench) deleteSubjects(ctx context.Context, topics ...string) {
	if b.env.Registry == "" {
		return
	}
	base := strings.TrimRight(b.env.Registry, "/")
	for _, t := range topics {
		for _, subj := range []string{t + "-key", t + "-value"} {
			for _, q := range []string{"", "?permanent=true"} {
				req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, base+"/subjects/"+subj+q, nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}
}

// liveReader reads a topic as a read_committed consumer while a contender runs, timing when
// each record became visible after its commit in PostgreSQL (receive time minus source.ts_ms):
// commit-to-visible for exactly-once delivery, whose records a read_committed consumer sees
// only once their Kafka transaction commits.
type liveReader struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	lat []float64 // receive time - source.ts_ms
	app []float64 // LogAppendTime - source.ts_ms
	err error
}

func (b *bench) startLiveReader(ctx context.Context, topic string) (*liveReader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.env.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.MetadataMinAge(250*time.Millisecond),
		kgo.FetchMaxWait(50*time.Millisecond),
		kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &liveReader{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now().UnixMilli()
			fs.EachRecord(func(r *kgo.Record) {
				if r.Value == nil {
					return
				}
				ts, err := jsonSourceTsMs(r.Value)
				l.mu.Lock()
				if err != nil {
					l.err = err
				} else {
					l.lat = append(l.lat, float64(now-ts))
					l.app = append(l.app, float64(r.Timestamp.UnixMilli()-ts))
				}
				l.mu.Unlock()
			})
		}
	}()
	return l, nil
}

func (l *liveReader) close() {
	l.cancel()
	<-l.done
	l.cl.Close()
}

// appendLatency is the distribution of commit-to-append delays (LogAppendTime) of the same
// records.
func (l *liveReader) appendLatency() (*latency, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return latencyOf(l.app)
}

// latency is the distribution of commit-to-visible delays seen so far.
func (l *liveReader) latency() (*latency, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	return latencyOf(l.lat)
}

// committedCounter counts the records a read_committed consumer sees in partition 0 of a
// topic, from the record batches' headers alone: a consumer would decode every record, and its
// CPU, on this small machine, would come out of the contender's. It fetches with
// read_committed (up to the last stable offset) and counts the records of data batches;
// transaction markers are control batches. An aborted transaction (none is expected in a
// run without faults) is reported rather than counted out.
type committedCounter struct {
	cl      *kgo.Client
	topic   string
	next    int64
	n       int64
	aborted bool
}

func (b *bench) newCommittedCounter(topic string) (*committedCounter, error) {
	// Fetch up to v12 names topics (v13 wants topic ids).
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.env.Brokers...), kgo.MaxVersions(kversion.V3_0_0()))
	if err != nil {
		return nil, err
	}
	return &committedCounter{cl: cl, topic: topic}, nil
}

func (c *committedCounter) close() { c.cl.Close() }

// count reads what became visible since the last call and returns the total.
func (c *committedCounter) count(ctx context.Context) (int64, error) {
	for {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.IsolationLevel = -1, 0, 1, 64<<20, 1
		t := kmsg.NewFetchRequestTopic()
		t.Topic = c.topic
		p := kmsg.NewFetchRequestTopicPartition()
		p.Partition, p.FetchOffset, p.PartitionMaxBytes, p.CurrentLeaderEpoch, p.LogStartOffset = 0, c.next, 64<<20, -1, -1
		t.Partitions = append(t.Partitions, p)
		req.Topics = append(req.Topics, t)
		resp, err := req.RequestWith(ctx, c.cl)
		if err != nil {
			return c.n, err
		}
		if len(resp.Topics) == 0 || len(resp.Topics[0].Partitions) == 0 {
			return c.n, nil
		}
		rp := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return c.n, nil // not created yet
			}
			return c.n, err
		}
		if len(rp.AbortedTransactions) > 0 {
			c.aborted = true
		}
		moved := false
		for bs := rp.RecordBatches; len(bs) >= 61; {
			total := 12 + int(int32(binary.BigEndian.Uint32(bs[8:12])))
			if total > len(bs) {
				break // a partial batch at the end of the response
			}
			base := int64(binary.BigEndian.Uint64(bs[0:8]))
			attrs := binary.BigEndian.Uint16(bs[21:23])
			last := base + int64(int32(binary.BigEndian.Uint32(bs[23:27])))
			if attrs&0x20 == 0 && last >= c.next { // not a control batch, not read before
				c.n += int64(int32(binary.BigEndian.Uint32(bs[57:61])))
			}
			if last >= c.next {
				c.next, moved = last+1, true
			}
			bs = bs[total:]
		}
		if !moved {
			return c.n, nil
		}
	}
}
