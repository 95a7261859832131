package pipeline

import (
	"context"
	"fmt"

	"github.com/procon-cdc/procon/txid"
)

// position orders the records of the stream: a record's transaction commit LSN, then its
// place in the transaction. Stream order is commit order, so in each partition that only the
// pipeline writes to, positions strictly increase.
type position struct {
	commit uint64
	seq    int
}

func (p position) after(q position) bool {
	return p.commit > q.commit || (p.commit == q.commit && p.seq > q.seq)
}

type topicPartition struct {
	topic     string
	partition int32
}

// resume remembers, per partition, the position of the last record written, starting from
// what Kafka holds (the tail of each partition, read once per topic). After a crash or a lost
// connection the slot replays transactions whose records may already be in Kafka; those are
// skipped, so each committed change is written once and per-key order never goes backwards.
type resume struct {
	tails  Tails
	loaded map[string]bool
	last   map[topicPartition]position
}

func newResume(t Tails) *resume {
	return &resume{tails: t, loaded: map[string]bool{}, last: map[topicPartition]position{}}
}

// written reports whether the record at pos in tp is already in Kafka; if not, it records pos
// as the partition's last position.
func (r *resume) written(ctx context.Context, tp topicPartition, pos position) (bool, error) {
	if !r.loaded[tp.topic] {
		if err := r.load(ctx, tp.topic); err != nil {
			return false, err
		}
	}
	if last, ok := r.last[tp]; ok && !pos.after(last) {
		return true, nil
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
		// Records without Procon's headers (written by something else) say nothing.
		if k, err := txid.FromRecordHeaders(headers); err == nil {
			r.last[topicPartition{topic, part}] = position{commit: k.Tx.CommitLSN(), seq: k.Seq}
		}
	}
	r.loaded[topic] = true
	return nil
}
