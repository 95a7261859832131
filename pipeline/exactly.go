package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/progress"
	"github.com/procon-cdc/procon/sink"
)

// Transactions ends the Kafka transactions records are produced in (kafka.delivery:
// exactly_once); *sink.Writer implements it when transactional.
type Transactions interface {
	// TxnOpen tells when the open Kafka transaction began and how many records it holds;
	// ok is false when none is open.
	TxnOpen() (opened time.Time, records int, ok bool)
	// Commit commits the open transaction with progress as its last record.
	Commit(ctx context.Context, progress *sink.Record) error
}

// ExactlyOnce configures the pipeline for exactly-once delivery. Every record goes into a
// Kafka transaction, which the pipeline commits together with a progress record saying how
// far its records go; a restart skips every record at or before Resume.
type ExactlyOnce struct {
	Transactions  Transactions
	ProgressTopic string
	// A Kafka transaction is committed at a source transaction's end once it is
	// CommitInterval old or holds CommitRecords records, and as soon as the pipeline has
	// caught up (and it is caughtUpAge old).
	CommitInterval time.Duration
	CommitRecords  int
	// A source transaction is split over Kafka transactions when more than MaxRecords of its
	// records are in one, or that one is SplitAge old.
	MaxRecords int
	SplitAge   time.Duration
	// Resume is the stream position of the last committed progress record: records at or
	// before it are already in Kafka. nil when there is none.
	Resume *progress.Position
}

// caughtUpAge is how old a Kafka transaction must be to be committed because the pipeline has
// caught up: a few milliseconds gather the transactions of a steady load into one Kafka
// transaction (bench steady: 5,000 transactions/s), and add only that much to their latency.
const caughtUpAge = 10 * time.Millisecond

// exactly is the Run goroutine's state of exactly-once delivery.
type exactly struct {
	cfg  ExactlyOnce
	tick time.Duration

	pos      *progress.Position // the last record handed over, or Resume before the first
	inSource bool               // between a source transaction's Begin and its Commit
	sourceN  int                // records of the open source transaction in the open Kafka transaction
	split    bool               // the open source transaction was split (logged once)
	// snapshot is the in-stream snapshot's progress as of the last record handed over (nil
	// before this run emitted a chunk: the progress table was brought up to date at start).
	snapshot *progress.Snapshot
	skipped  int
}

func newExactly(cfg *ExactlyOnce) *exactly {
	if cfg == nil {
		return nil
	}
	x := &exactly{cfg: *cfg, tick: min(caughtUpAge, cfg.CommitInterval)}
	if cfg.Resume != nil {
		pos := *cfg.Resume
		x.pos = &pos
	}
	return x
}

// written reports whether a record at pos is in Kafka already: committed by an earlier run, or
// handed over by this one before the replication connection was cut and the server sent the
// stream again from the confirmed position. The second happens when a source transaction was
// split over Kafka transactions and its first part committed: the transaction is abandoned
// with the connection, its commit is not confirmed, and it comes again whole. Everything
// handed over stays in the Kafka transaction it went into, which commits or ends the run.
func (x *exactly) written(pos progress.Position) bool {
	if x.pos != nil && x.pos.Covers(pos) {
		x.skipped++
		return true
	}
	return false
}

// handed notes a record of the stream handed to the producer at pos.
func (x *exactly) handed(pos progress.Position) {
	x.pos = &pos
	x.sourceN++
}

// beginSource and endSource bracket a source transaction's records.
func (x *exactly) beginSource() { x.inSource, x.sourceN, x.split = true, 0, false }
func (x *exactly) endSource()   { x.inSource = false }

// commitDue decides whether to commit now: at a source transaction's end once the Kafka
// transaction is old or large enough (or, caught up, caughtUpAge old), inside one only to split it when
// the Kafka transaction nears its timeout (the record count is checked before each record,
// splitFull).
func (x *exactly) commitDue(idle bool) bool {
	opened, n, ok := x.cfg.Transactions.TxnOpen()
	if !ok {
		return false
	}
	age := time.Since(opened)
	if x.inSource {
		return age >= x.cfg.SplitAge
	}
	return age >= x.cfg.CommitInterval || n >= x.cfg.CommitRecords || idle && age >= x.tick
}

// maybeCommit commits the open Kafka transaction when it is due.
func (p *Pipeline) maybeCommit(ctx context.Context, idle bool) error {
	x := p.eos
	if x == nil || !x.commitDue(idle) {
		return nil
	}
	if x.inSource {
		return p.split(ctx)
	}
	return p.commit(ctx)
}

// splitFull splits the open source transaction before its next record when the Kafka
// transaction already holds max_records of its records.
func (p *Pipeline) splitFull(ctx context.Context) error {
	if x := p.eos; x.inSource && x.sourceN >= x.cfg.MaxRecords {
		return p.split(ctx)
	}
	return nil
}

// split commits the open Kafka transaction inside a source transaction, after the record at
// x.pos: the rest of the source transaction goes into the next one.
func (p *Pipeline) split(ctx context.Context) error {
	x := p.eos
	if x.sourceN > 0 && !x.split { // with none of its records in yet, the source transaction is not split
		x.split = true
		p.log.Warn("a source transaction is split over Kafka transactions (over kafka.transactions.max_records records, or open at half of kafka.transactions.timeout): "+
			"read_committed consumers see it in parts; exactly-once still holds",
			"commit_lsn", pglogrepl.LSN(x.pos.CommitLSN).String(), "records_so_far", x.sourceN)
	}
	return p.commit(ctx)
}

// commit commits the open Kafka transaction with the progress record of what it holds.
func (p *Pipeline) commit(ctx context.Context) error {
	x := p.eos
	st := &progress.State{Source: string(p.cfg.Source), Instance: p.cfg.Instance, Stream: x.pos, Snapshot: x.snapshot}
	rec := &sink.Record{Topic: x.cfg.ProgressTopic, Key: p.cfg.Source, Value: progress.Encode(st), Partition: -1}
	start := time.Now()
	opened, n, _ := x.cfg.Transactions.TxnOpen()
	if err := x.cfg.Transactions.Commit(ctx, rec); err != nil {
		return err
	}
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.Debug("kafka transaction committed", "records", n, "age", start.Sub(opened), "commit", time.Since(start))
	}
	x.sourceN = 0
	if x.skipped > 0 {
		p.log.Info("skipped records already in Kafka (committed by an earlier run, or handed over before a reconnection)", "records", x.skipped)
		x.skipped = 0
	}
	return nil
}
