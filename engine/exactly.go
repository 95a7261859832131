package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/pipeline"
	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/snapshot"
)

// Exactly-once delivery (kafka.delivery: exactly_once). The writer is transactional; New
// fences the previous instance of the transactional id before anything reads Kafka, then
// reads the last progress record (committed, so exactly what read_committed consumers see):
// its stream position tells the pipeline which replayed records are already in Kafka, and its
// snapshot progress is written to the snapshot progress table, which can lag behind Kafka by
// the commits whose acknowledgement a crash cut short. Realtime notifications go through a
// writer of their own, outside transactions (README, "Exactly-once delivery").

// loadProgress reads this pipeline's last committed progress record; nil when there is none
// it can trust.
func (e *Engine) loadProgress(ctx context.Context) (*progress.State, error) {
	topic := e.cfg.Kafka.Transactions.ProgressTopic
	if _, err := e.writer.EnsureTopic(ctx, topic); err != nil {
		return nil, err
	}
	tails, err := e.writer.LastRecords(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("read the progress topic %s: %w", topic, err)
	}
	var last *sink.ConsumedRecord
	for _, r := range tails {
		if string(r.Key) == string(e.source) {
			last = r
		}
	}
	if last == nil {
		if len(tails) > 0 {
			e.log.Warn("the progress topic's last record is not this pipeline's: starting without a position, so records of an earlier run may be written again; give each pipeline a progress topic of its own",
				"topic", topic)
		} else {
			e.log.Info("exactly-once delivery: no progress recorded yet", "topic", topic)
		}
		return nil, nil
	}
	st, err := progress.Decode(last.Value)
	switch {
	case err != nil:
		e.log.Warn("the progress topic's last record cannot be read: starting without a position, so records of an earlier run may be written again",
			"topic", topic, "offset", last.Offset, "err", err)
		return nil, nil
	case !last.Transactional:
		// procon-cdc writes it only in a transaction: this one came from elsewhere.
		e.log.Warn("the progress topic's last record was not written in a transaction: ignored (only procon-cdc may write that topic)",
			"topic", topic, "offset", last.Offset)
		return nil, nil
	case st.Source != string(e.source) || st.Instance != uint16(*e.cfg.InstanceNum):
		e.log.Warn("the progress topic's last record names another pipeline or instance_num: ignored", "topic", topic, "offset", last.Offset,
			"its_source", st.Source, "its_instance", st.Instance)
		return nil, nil
	case st.Stream != nil && st.Stream.CommitLSN > uint64(e.stream.WALAtOpen()):
		e.log.Warn("the progress topic's last record is ahead of the server's WAL: ignored (was the database restored from a backup?)",
			"topic", topic, "offset", last.Offset, "commit_lsn", pglogrepl.LSN(st.Stream.CommitLSN).String(), "wal", e.stream.WALAtOpen().String())
		return nil, nil
	}
	attrs := []any{"topic", topic, "offset", last.Offset}
	if st.Stream != nil {
		attrs = append(attrs, "commit_lsn", pglogrepl.LSN(st.Stream.CommitLSN).String(), "seq", st.Stream.Seq)
	}
	if st.Snapshot != nil {
		attrs = append(attrs, "snapshot", st.Snapshot.ID)
	}
	e.log.Info("exactly-once delivery: resuming after the last committed position", attrs...)
	return st, nil
}

// applySnapshotProgress writes the snapshot progress of a progress record to the snapshot
// progress table, if that snapshot is still running there.
func (e *Engine) applySnapshotProgress(ctx context.Context, st *progress.State) error {
	s := e.snap
	if st == nil || st.Snapshot == nil || s == nil || s.store == nil {
		return nil
	}
	p := st.Snapshot
	recorded, err := s.store.Snapshots(ctx)
	if err != nil {
		return err
	}
	for _, snap := range recorded {
		if snap.ID != p.ID || snap.Kind != p.Kind || snap.Status != snapshot.StatusRunning ||
			snap.Kind == snapshot.KindInitial && uint64(snap.LSN) != p.LSN {
			continue
		}
		ups := make([]snapshot.RangeUpdate, len(p.Ranges))
		for i, r := range p.Ranges {
			ups[i] = snapshot.RangeUpdate{Relation: r.Relation, Part: r.Part, Last: r.Last, Rows: r.Rows, Done: r.Done}
		}
		if err := s.store.SaveProgress(ctx, snap.ID, ups); err != nil {
			return err
		}
		e.log.Info("exactly-once delivery: snapshot progress taken from the progress topic", "snapshot", snap.ID, "ranges", len(ups))
		if r := s.decision.Resume; r != nil && r.ID == snap.ID {
			// The start decided on the progress read before: the remaining ranges are those
			// recorded now.
			if s.decision.Resume, err = s.recorded(ctx, snap.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

// exactlyOnce is the pipeline's configuration of exactly-once delivery; nil when off.
func (e *Engine) exactlyOnce() *pipeline.ExactlyOnce {
	if !e.writer.Transactional() {
		return nil
	}
	t := e.cfg.Kafka.Transactions
	x := &pipeline.ExactlyOnce{
		Transactions:   e.writer,
		ProgressTopic:  t.ProgressTopic,
		CommitInterval: time.Duration(t.CommitInterval),
		CommitRecords:  t.CommitRecords,
		MaxRecords:     t.MaxRecords,
		SplitAge:       time.Duration(t.Timeout) / 2,
	}
	if e.resume != nil {
		x.Resume = e.resume.Stream
	}
	return x
}

// commitInitial commits the initial snapshot's records handed over so far, with ranges, the
// progress they make.
func (e *Engine) commitInitial(lsn pglogrepl.LSN) func(ctx context.Context, ranges []snapshot.RangeUpdate) error {
	return func(ctx context.Context, ranges []snapshot.RangeUpdate) error {
		st := &progress.State{Source: string(e.source), Instance: uint16(*e.cfg.InstanceNum),
			Snapshot: progressOf(snapshot.InitialID, snapshot.KindInitial, lsn, ranges)}
		if e.resume != nil {
			st.Stream = e.resume.Stream // not streamed yet: the position stays what it was
		}
		rec := &sink.Record{Topic: e.cfg.Kafka.Transactions.ProgressTopic, Key: e.source, Value: progress.Encode(st), Partition: -1}
		return e.writer.Commit(ctx, rec)
	}
}
