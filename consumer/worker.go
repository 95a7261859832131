package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/procon-cdc/procon/consumer/apply"
	"github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/retrylog"
	"github.com/procon-cdc/procon/sink"
)

// worker applies the records of one partition, one batch per transaction.
type worker struct {
	c       *Consumer
	tp      topicPartition
	entity  *Entity
	applier *apply.Applier

	in   chan []sink.ConsumedRecord
	stop chan struct{} // closed: finish the batch being applied and return
	done chan struct{} // closed when run returns

	ctx    context.Context // cancelled only when a stop's grace period is over
	cancel context.CancelFunc

	state stored // the partition's row as of this worker's last commit
	// next is state.next for other goroutines (the consumer's state for metrics).
	next atomic.Int64
}

// stopGrace bounds how long a stopping worker may take to end its transaction.
const stopGrace = 30 * time.Second

// item is one record of a batch and what became of it.
type item struct {
	rec    *sink.ConsumedRecord
	ev     *event.Event
	poison error // it can never apply: the reason
	repeat bool  // an at-least-once producer's repeat of an applied record
}

// errRedo asks for the batch to be tried again (a record was found to be poison).
var errRedo = errors.New("redo the batch")

// stopError is a poison record under the Stop policy.
type stopError struct {
	tp     topicPartition
	offset int64
	err    error
}

func (e *stopError) Error() string {
	return fmt.Sprintf("%s offset %d can never apply: %v (on_error: stop; fix the cause, or set on_error: dlq to send such records to the dead-letter topic)", e.tp, e.offset, e.err)
}

// run applies batches until the worker is stopped. Records are read and decoded one batch
// ahead, on a goroutine of their own, while the previous batch is applied: decoding is CPU
// and applying mostly waits for the database.
func (w *worker) run() {
	defer close(w.done)
	decoded := make(chan []item, 1)
	go w.decodeBatches(decoded)
	// The decoder may be blocked handing over a batch: it ends at w.stop, which a failed
	// worker's consumer closes too.
	defer func() {
		go func() {
			for range decoded {
			}
		}()
	}()
	next := w.state.next // the offset the next record must be at or after
	for items := range decoded {
		select {
		case <-w.stop: // revoked or stopping: a batch decoded ahead is not begun
			return
		default:
		}
		// Records before it (a repeat of a fetch) are dropped here, where the offsets are known.
		live := items[:0]
		for _, it := range items {
			if it.rec.Offset >= next {
				live = append(live, it)
				next = it.rec.Offset + 1
			}
		}
		if len(live) == 0 {
			continue
		}
		err := w.applyBatch(live)
		switch {
		case err == nil:
		case errors.Is(err, errMoved):
			w.fenced(decoded)
			return
		default:
			if w.ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				w.c.fail(err)
			}
			return
		}
	}
}

// fenced is a worker whose partition another member has applied records of: this member lost
// it (a session that expired, a pause longer than the session timeout) and is about to be
// told. It applies nothing more and waits for the revocation; the partition's next owner
// starts from the stored offset. Should no revocation come, the consumer stops.
func (w *worker) fenced(decoded <-chan []item) {
	wait := w.c.cfg.SessionTimeout
	if wait <= 0 {
		wait = 45 * time.Second
	}
	wait = 2*wait + 30*time.Second
	w.c.log.Warn("another consumer applied records of this partition: it was taken from this member; waiting to be told",
		"topic", w.tp.topic, "partition", w.tp.partition, "for", wait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-decoded: // dropped: the next owner reads them from the stored offset
			if !ok {
				decoded = nil
			}
		case <-w.stop:
			return
		case <-timer.C:
			w.c.fail(fmt.Errorf("consumer %s: another consumer applied records of this partition, and the group did not take it from this member within %s", w.tp, wait))
			return
		}
	}
}

// decodeBatches collects batches and decodes their records until the worker is stopped.
func (w *worker) decodeBatches(out chan<- []item) {
	defer close(out)
	var carry []sink.ConsumedRecord
	for {
		batch, rest, ok := w.collect(carry)
		if !ok {
			return
		}
		carry = rest
		items := make([]item, len(batch))
		for i := range batch {
			it := &items[i]
			it.rec = &batch[i]
			it.ev, it.poison = w.c.dec.Decode(w.ctx, it.rec)
		}
		select {
		case out <- items:
		case <-w.stop:
			return
		}
	}
}

// collect gathers the next batch: what is carried over, then records as they come, until
// BatchRecords or Linger.
func (w *worker) collect(carry []sink.ConsumedRecord) (batch, rest []sink.ConsumedRecord, ok bool) {
	max := w.c.cfg.BatchRecords
	batch = carry
	for len(batch) == 0 {
		select {
		case recs := <-w.in:
			batch = recs
		case <-w.stop:
			return nil, nil, false
		}
	}
	if len(batch) < max && w.c.cfg.Linger > 0 {
		timer := time.NewTimer(w.c.cfg.Linger)
	wait:
		for len(batch) < max {
			select {
			case recs := <-w.in:
				batch = append(batch, recs...)
			case <-timer.C:
				break wait
			case <-w.stop:
				timer.Stop()
				return nil, nil, false
			}
		}
		timer.Stop()
	}
	// Whatever is already queued joins without waiting.
drain:
	for len(batch) < max {
		select {
		case recs := <-w.in:
			batch = append(batch, recs...)
		default:
			break drain
		}
	}
	if len(batch) > max {
		return batch[:max:max], batch[max:], true
	}
	return batch, nil, true
}

// applyBatch applies a batch, retrying what may go away by retrying, until it is committed.
func (w *worker) applyBatch(items []item) error {
	pos := w.state.last
	for i := range items {
		it := &items[i]
		ev := it.ev
		if it.poison != nil {
			if !decodeCaused(it.poison) {
				return fmt.Errorf("consumer %s offset %d: %w", w.tp, it.rec.Offset, it.poison)
			}
			continue
		}
		if ev.HasTx {
			if pos.repeats(ev.SourceHeader, ev.Tx, ev.Op == event.Read) {
				it.repeat = true
				continue
			}
			pos = pos.after(ev.SourceHeader, ev.Tx)
		}
	}
	backoff := 100 * time.Millisecond
	isolate := false
	var failing retrylog.Outage
	for {
		// What an earlier attempt of this batch committed (the records before a poison
		// record, under Stop) is never applied again.
		for len(items) > 0 && items[0].rec.Offset < w.state.next {
			items = items[1:]
		}
		err := w.attempt(items, isolate)
		var recErr *apply.RecordError
		switch {
		case err == nil:
			failing.Recovered(w.c.log, "batch applied after retries", "topic", w.tp.topic, "partition", w.tp.partition)
			return nil
		case errors.Is(err, errRedo):
			isolate = false
			continue
		case errors.As(err, &recErr):
			// Index is into the events handed to Apply: the live items.
			if it := w.liveItem(items, recErr.Index); it != nil {
				it.poison = recErr.Err
				isolate = false
				continue
			}
			return fmt.Errorf("consumer %s: %w", w.tp, err)
		case errors.Is(err, errMoved):
			return err
		case errors.As(err, new(*stopError)), errors.Is(err, errHook):
			return err
		case pg.Transient(err) || errors.Is(err, errAmbiguous):
			w.c.cfg.Meter.Retrying(err)
			failing.Failed(w.c.log, "batch not applied; retrying", err, "topic", w.tp.topic, "partition", w.tp.partition)
		case isolate || !recordCaused(err):
			// No record causes it (a missing privilege or table, the server out of disk):
			// dead-lettering records would not cure it.
			return err
		default:
			// A record of the batch cannot apply: find which, one at a time.
			w.c.log.Warn("batch failed; applying its records one at a time to find the one that cannot apply",
				"topic", w.tp.topic, "partition", w.tp.partition, "err", err)
			isolate = true
			continue
		}
		select {
		case <-time.After(backoff):
		case <-w.stop:
			return context.Canceled
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// liveItem returns the i-th item that is handed to Apply.
func (w *worker) liveItem(items []item, i int) *item {
	for j := range items {
		if items[j].live() {
			if i == 0 {
				return &items[j]
			}
			i--
		}
	}
	return nil
}

func (it *item) live() bool { return it.poison == nil && !it.repeat }

// errAmbiguous: the commit's outcome is unknown; the stored offset tells.
var errAmbiguous = errors.New("commit outcome unknown")

// errHook wraps a hook's error that is not transient.
var errHook = errors.New("hook")

// attempt applies items in one transaction. Under Stop, a poison record ends the batch before
// it, and once the records before it are committed, attempt returns its stopError.
func (w *worker) attempt(items []item, isolate bool) error {
	var stopErr error
	if w.c.cfg.OnError == Stop {
		for i := range items {
			if items[i].poison != nil {
				stopErr = &stopError{tp: w.tp, offset: items[i].rec.Offset, err: items[i].poison}
				items = items[:i]
				break
			}
		}
	}
	if len(items) == 0 {
		return stopErr
	}
	target := stored{next: items[len(items)-1].rec.Offset + 1, last: w.state.last}
	batch := &Batch{Topic: w.tp.topic, Partition: w.tp.partition}
	var events []*event.Event
	var dead []*item
	for i := range items {
		it := &items[i]
		if it.ev != nil && it.ev.HasTx { // dead letters too: a repeat of one is not sent again
			target.last = target.last.after(it.ev.SourceHeader, it.ev.Tx)
		}
		switch {
		case it.poison != nil:
			dead = append(dead, it)
		case it.live():
			batch.Records = append(batch.Records, Record{ConsumedRecord: *it.rec, Event: it.ev})
			events = append(events, it.ev)
		}
	}
	ctx := w.ctx
	began := time.Now()
	tx, err := w.c.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit it does nothing
	if h := w.c.cfg.Hooks.BeforeApply; h != nil {
		if err := hookErr("BeforeApply", h(ctx, tx, batch)); err != nil {
			return err
		}
	}
	var stats apply.Stats
	if isolate {
		stats, err = w.applyOneByOne(ctx, tx, items)
	} else {
		stats, err = w.applier.Apply(ctx, tx, events)
	}
	if err != nil {
		return err
	}
	if err := w.c.notify(ctx, tx, w.entity, events); err != nil {
		return err
	}
	if h := w.c.cfg.Hooks.AfterApply; h != nil {
		if err := hookErr("AfterApply", h(ctx, tx, batch)); err != nil {
			return err
		}
	}
	if len(dead) > 0 {
		if err := w.c.deadLetter(ctx, w.tp, dead); err != nil {
			return err
		}
	}
	if err := w.c.offsets.store(ctx, tx, w.tp.topic, w.tp.partition, w.state, target); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		// The commit may have happened: the stored offset says.
		cur, rerr := w.c.offsets.current(ctx, w.tp.topic, w.tp.partition)
		switch {
		case rerr != nil:
			return fmt.Errorf("%w: %w (and reading the stored offset: %w)", errAmbiguous, err, rerr)
		case cur.next == target.next:
		case cur.next == w.state.next:
			return fmt.Errorf("commit: %w", err)
		default:
			return errMoved
		}
	}
	w.state = target
	w.next.Store(target.next)
	w.c.committed(w.tp, target.next, stats, len(items)-len(events)-len(dead), len(dead))
	w.c.cfg.Meter.Committed(w.tp.topic, CommitStats{Applied: len(events), Repeats: len(items) - len(events) - len(dead),
		DeadLettered: len(dead), Effects: stats, Duration: time.Since(began), Newest: items[len(items)-1].rec.Timestamp})
	if h := w.c.cfg.Hooks.AfterCommit; h != nil {
		h(ctx, batch)
	}
	return stopErr
}

// applyOneByOne applies the live items one at a time (Apply rolls a failed call back to its
// own savepoint, so the transaction goes on) to find a record that cannot apply: the first
// whose error retrying cannot fix is marked, and errRedo has the batch tried again without it.
// When all apply, their effects stand.
func (w *worker) applyOneByOne(ctx context.Context, tx pgx.Tx, items []item) (apply.Stats, error) {
	var total apply.Stats
	for i := range items {
		it := &items[i]
		if !it.live() {
			continue
		}
		stats, err := w.applier.Apply(ctx, tx, []*event.Event{it.ev})
		if err == nil {
			total = addStats(total, stats)
			continue
		}
		var recErr *apply.RecordError
		if errors.As(err, &recErr) {
			err = recErr.Err
		} else if !recordCaused(err) {
			return total, err
		}
		it.poison = err
		return total, errRedo
	}
	return total, nil
}

// decodeCaused reports whether a decoding error is the record's: not a stop (the context), nor
// the schema registry refusing procon-cdc consume's credentials, which no record causes.
func decodeCaused(err error) bool {
	var regErr *registry.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.As(err, &regErr):
		return regErr.StatusCode != 401 && regErr.StatusCode != 403
	}
	return true
}

// recordCaused reports whether err is PostgreSQL refusing a record's values: a data exception
// (class 22: a value its column cannot hold) or an integrity constraint violation (class 23).
func recordCaused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

func hookErr(name string, err error) error {
	if err == nil || pg.Transient(err) {
		return err
	}
	return fmt.Errorf("%w %s: %w", errHook, name, err)
}
