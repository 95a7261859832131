package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// pipeline turns changes into records, in stream order. For each transaction it counts every
// record with the tracker before producing it, and seals the transaction after its last
// record, so the tracker can tell when Kafka holds all of it.
func (e *Engine) pipeline(ctx context.Context, changes <-chan *replication.Change) error {
	tracker := e.stream.Tracker()
	instance := uint16(*e.cfg.InstanceNum)
	var (
		events []*envelope.Event
		seq    int
		txHdr  []byte
	)
	var heartbeat <-chan time.Time
	if ms := e.cfg.Debezium.HeartbeatIntervalMS; ms > 0 {
		t := time.NewTicker(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		heartbeat = t.C
	}
	action := &heartbeatAction{dsn: e.cfg.Postgres.DSN, query: e.cfg.Debezium.HeartbeatActionQuery, log: e.log}
	defer action.close()
	hbTopic := config.SanitizeTopic(e.cfg.Debezium.TopicHeartbeatPrefix + e.cfg.Debezium.TopicDelimiter + e.cfg.Name)
	resume := newResume(e.writer)

	for {
		var c *replication.Change
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-heartbeat:
			action.run(ctx)
			if err := e.produceHeartbeat(ctx, hbTopic); err != nil {
				return err
			}
			continue
		case c = <-changes:
		}
		if c.Op == replication.OpBegin {
			seq = 0
			// A new buffer each time: records of the previous transaction may still wait in the
			// producer with theirs as their procon.tx header.
			txHdr = txid.New(txTime(c.Tx), instance, uint64(c.Tx.CommitLSN)).AppendText(nil)
		}
		var err error
		if e.rt.Suppress(c) { // the realtime table's own rows and cleanup, realtime messages
			events = events[:0]
		} else if events, err = e.build(ctx, c, events[:0]); err != nil { // snapshot.go: snapshots see it first
			return err
		}
		for _, ev := range events {
			seq++
			rec, err := e.record(ctx, ev, txHdr, seq)
			if err != nil {
				return fmt.Errorf("encode %s at LSN %s (xid %d): %w", c.Op, c.LSN, c.Tx.XID, err)
			}
			partitions, err := e.writer.EnsureTopic(ctx, rec.Topic)
			if err != nil {
				return err
			}
			rec.Partition = e.writer.Partition(rec.Topic, rec.Key, partitions)
			dup, err := resume.written(ctx, topicPartition{rec.Topic, rec.Partition}, position{uint64(c.Tx.CommitLSN), seq})
			if err != nil {
				return err
			}
			if dup {
				continue
			}
			rec.Token = c.Tx
			tracker.Add(c.Tx, 1)
			if err := e.writer.Produce(ctx, rec); err != nil {
				return err
			}
		}
		// Realtime notifications follow the change's events in the transaction's positions and
		// are counted in it before it is sealed; they are produced when their channel allows.
		if seq, err = e.rt.Handle(ctx, c, txHdr, seq); err != nil {
			return err
		}
		if c.Op == replication.OpCommit {
			tracker.Seal(c.Tx)
			if e.log.Enabled(ctx, slog.LevelDebug) {
				e.log.Debug("transaction handed to kafka", "xid", c.Tx.XID, "commit_lsn", c.Tx.CommitLSN.String(), "records", seq)
			}
		}
	}
}

// txTime is the time part of a transaction's procon.tx id: its commit time. A non-transactional
// logical message has none (its Tx carries the time it was read), so its id uses time zero: the
// id must be the same when the message is read again after a crash.
func txTime(tx *replication.Tx) time.Time {
	if tx.XID == 0 {
		return time.UnixMilli(0)
	}
	return tx.CommitTime
}

// record encodes one event with its topic's encoder and adds Procon's and Debezium's headers.
func (e *Engine) record(ctx context.Context, ev *envelope.Event, txHdr []byte, seq int) (*sink.Record, error) {
	enc := e.enc.forTopic(ev.Topic)
	key, value, err := enc.Encode(ctx, ev)
	if err != nil {
		return nil, err
	}
	headers := make([]kgo.RecordHeader, 2, 4)
	headers[0] = kgo.RecordHeader{Key: txid.HeaderTx, Value: txHdr}
	headers[1] = kgo.RecordHeader{Key: txid.HeaderSeq, Value: strconv.AppendInt(nil, int64(seq), 10)}
	if ev.OldKey != nil {
		b, err := enc.EncodeKey(ctx, ev.KeySchema, ev.OldKey)
		if err != nil {
			return nil, err
		}
		headers = append(headers, kgo.RecordHeader{Key: "__debezium.oldkey", Value: b})
	}
	if ev.NewKey != nil {
		b, err := enc.EncodeKey(ctx, ev.KeySchema, ev.NewKey)
		if err != nil {
			return nil, err
		}
		headers = append(headers, kgo.RecordHeader{Key: "__debezium.newkey", Value: b})
	}
	return &sink.Record{Topic: ev.Topic, Key: key, Value: value, Headers: headers, Partition: -1}, nil
}

// produceHeartbeat sends a heartbeat record. It belongs to no transaction: its acknowledgement
// moves nothing, the tracker follows the server's WAL end on its own when idle.
func (e *Engine) produceHeartbeat(ctx context.Context, topic string) error {
	ev := e.builder.Heartbeat(topic)
	key, value, err := e.enc.forTopic(topic).Encode(ctx, ev)
	if err != nil {
		return err
	}
	return e.writer.Produce(ctx, &sink.Record{Topic: topic, Key: key, Value: value, Partition: 0, Token: nil})
}
