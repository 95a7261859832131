package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pglogrepl"
	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

type topicPartition struct {
	topic     string
	partition int32
}

// resume remembers, per partition, the position of the last record written, starting from
// what Kafka holds (the tail of each partition, read once per topic). After a crash or a lost
// connection the slot replays transactions whose records may already be in Kafka; those are
// skipped, so each committed change is written once and per-key order never goes backwards.
//
// A tail counts only when this pipeline wrote it: its procon.source names this pipeline's
// server, database and slot, its procon.tx this instance_num, and its commit position is not
// ahead of the server's WAL. Anything else at a tail (another pipeline sharing the topic, any
// producer setting Procon's headers) could otherwise make real changes be skipped and their
// LSN confirmed; ignoring it costs at most records written twice.
type resume struct {
	tails     Tails
	source    []byte
	instance  uint16
	walAtOpen uint64
	log       *slog.Logger

	loaded  map[string]bool
	last    map[topicPartition]progress.Position
	skipped map[topicPartition]int // records skipped since the last one written
}

func newResume(cfg Config) *resume {
	return &resume{tails: cfg.Tails, source: cfg.Source, instance: cfg.Instance, walAtOpen: cfg.WALAtOpen, log: cfg.Logger,
		loaded: map[string]bool{}, last: map[topicPartition]progress.Position{}, skipped: map[topicPartition]int{}}
}

// written reports whether the record at pos in tp is already in Kafka; if not, it records pos
// as the partition's last position.
func (r *resume) written(ctx context.Context, tp topicPartition, pos progress.Position) (bool, error) {
	if !r.loaded[tp.topic] {
		if err := r.load(ctx, tp.topic); err != nil {
			return false, err
		}
	}
	if last, ok := r.last[tp]; ok && last.Covers(pos) {
		r.skipped[tp]++
		return true, nil
	}
	if n := r.skipped[tp]; n > 0 {
		r.log.Info("resume: skipped records that Kafka already has from the previous run", "topic", tp.topic,
			"partition", tp.partition, "skipped", n, "first_written_commit_lsn", pglogrepl.LSN(pos.CommitLSN).String(), "seq", pos.Seq)
		delete(r.skipped, tp)
	}
	r.last[tp] = pos
	return false, nil
}

func (r *resume) load(ctx context.Context, topic string) error {
	tails, err := r.tails.LastHeaders(ctx, topic)
	if err != nil {
		return fmt.Errorf("find where the last run stopped in %s: %w", topic, err)
	}
	for part, headers := range tails {
		if pos, ok := r.own(topic, part, headers); ok {
			r.last[topicPartition{topic, part}] = pos
		}
	}
	r.loaded[topic] = true
	return nil
}

// own returns the position of a partition's last record if this pipeline wrote it.
func (r *resume) own(topic string, part int32, headers []sink.Header) (progress.Position, bool) {
	k, err := txid.FromRecordHeaders(headers)
	if err != nil {
		return progress.Position{}, false // not Procon's: nothing to resume from
	}
	source, _ := txid.HeaderValue(headers, txid.HeaderSource)
	pos := progress.Position{CommitLSN: k.Tx.CommitLSN(), Seq: k.Seq}
	switch {
	case !bytes.Equal(source, r.source) || k.Tx.Instance() != r.instance:
		r.log.Info("resume: the last record of the partition was written by another pipeline; not skipping anything there",
			"topic", topic, "partition", part, "its_source", string(source), "its_instance", k.Tx.Instance(), "source", string(r.source))
		return progress.Position{}, false
	case pos.CommitLSN > r.walAtOpen:
		r.log.Warn("resume: the last record of the partition claims a position ahead of the server's WAL; ignoring it",
			"topic", topic, "partition", part, "commit_lsn", pglogrepl.LSN(pos.CommitLSN).String(), "wal", pglogrepl.LSN(r.walAtOpen).String())
		return progress.Position{}, false
	}
	return pos, true
}
