package consumer

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/procon-cdc/procon/sink"
)

// Headers of a dead-letter record, beside the original record's own.
const (
	HeaderDLQReason    = "procon.dlq.reason"
	HeaderDLQTopic     = "procon.dlq.topic"
	HeaderDLQPartition = "procon.dlq.partition"
	HeaderDLQOffset    = "procon.dlq.offset"
	HeaderDLQGroup     = "procon.dlq.group"
	// HeaderDLQValueOmitted: the record was too large for the dead-letter topic; its value (of
	// this many bytes) is left out, and the origin headers say where to find it.
	HeaderDLQValueOmitted = "procon.dlq.value_omitted"
)

// maxReasonBytes bounds the reason header: an error can quote a whole statement.
const maxReasonBytes = 4096

// deadLetter writes records that can never apply to the dead-letter topic, with the reason and
// their origin, and returns once Kafka has them all: only then may the transaction that moves
// the offset past them commit. A crash between the two sends them again (the origin headers
// tell the copies apart).
func (c *Consumer) deadLetter(ctx context.Context, tp topicPartition, items []*item) error {
	var acks sync.WaitGroup
	for _, it := range items {
		reason := it.poison.Error()
		if len(reason) > maxReasonBytes {
			reason = reason[:maxReasonBytes]
		}
		headers := append(append([]sink.Header(nil), it.rec.Headers...),
			sink.Header{Key: HeaderDLQReason, Value: []byte(reason)},
			sink.Header{Key: HeaderDLQTopic, Value: []byte(tp.topic)},
			sink.Header{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(tp.partition), 10)},
			sink.Header{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, it.rec.Offset, 10)},
			sink.Header{Key: HeaderDLQGroup, Value: []byte(c.cfg.Group)})
		rec := &sink.Record{Topic: c.cfg.DLQTopic, Key: it.rec.Key, Value: it.rec.Value, Headers: headers, Partition: -1}
		limit, err := c.dlq.MaxRecordBytes(ctx, c.cfg.DLQTopic)
		if err != nil {
			return fmt.Errorf("dead-letter topic %s: %w", c.cfg.DLQTopic, err)
		}
		if sink.Size(rec) > limit {
			// Too large for the dead-letter topic with its reason: the reference to its origin
			// (topic, partition, offset) stays, the value is left out.
			rec.Value = nil
			rec.Headers = append(rec.Headers, sink.Header{Key: HeaderDLQValueOmitted, Value: strconv.AppendInt(nil, int64(len(it.rec.Value)), 10)})
			if sink.Size(rec) > limit {
				rec.Key, rec.Headers = nil, headers[len(it.rec.Headers):]
				rec.Headers = append(rec.Headers, sink.Header{Key: HeaderDLQValueOmitted, Value: strconv.AppendInt(nil, int64(len(it.rec.Value)), 10)})
			}
		}
		acks.Add(1)
		rec.Ack = ackFunc(acks.Done)
		if err := c.dlq.Produce(ctx, rec); err != nil {
			return fmt.Errorf("dead-letter %s offset %d: %w", tp, it.rec.Offset, err)
		}
		c.log.Warn("record sent to the dead-letter topic", "topic", tp.topic, "partition", tp.partition, "offset", it.rec.Offset,
			"dlq_topic", c.cfg.DLQTopic, "reason", reason)
	}
	if err := c.dlq.Flush(ctx); err != nil {
		return fmt.Errorf("dead-letter topic %s: %w", c.cfg.DLQTopic, err)
	}
	if err := c.dlq.Err(); err != nil {
		return fmt.Errorf("dead-letter topic %s: %w", c.cfg.DLQTopic, err)
	}
	acks.Wait()
	return nil
}

// ackFunc is a sink.Acker calling a function.
type ackFunc func()

func (f ackFunc) Ack() { f() }
