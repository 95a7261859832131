package sink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txn is the state of a transactional Writer (kafka.delivery: exactly_once).
//
// A transaction begins with the first record produced after the last commit. Records are
// produced under mu's read lock, Commit holds the write lock: every record handed to the
// client before Commit took the lock is in the transaction it commits, none after. A record's
// acknowledgement waits for its transaction: the promise keeps it in acks, and Commit calls
// them once Kafka says the transaction committed. A transaction that does not commit (the
// writer failed, or the process dies) is aborted, by Abort or by the fencing of the next
// instance, and none of its records is ever acknowledged.
type txn struct {
	mu     sync.RWMutex
	open   bool
	opened time.Time
	count  int // records produced in the open transaction

	ackMu sync.Mutex
	acks  []ackRun // acknowledgements of records Kafka has, awaiting the commit

	// committing is set while Commit waits for Kafka (the flush, EndTxn): the records are
	// out of the client's buffer then, but the transaction still waits for Kafka.
	committing atomic.Bool
}

// Committing reports whether a Commit is waiting for Kafka. Any goroutine may call it.
func (w *Writer) Committing() bool { return w.txn != nil && w.txn.committing.Load() }

// ackRun is n records in a row with the same acknowledgement.
type ackRun struct {
	ack Acker
	n   int
}

// Transactional reports whether records go to Kafka in transactions.
func (w *Writer) Transactional() bool { return w.txn != nil }

// Fence makes this writer the only one of its transactional id: Kafka bumps the id's epoch,
// so a previous instance still running can commit nothing more (it is fenced), and aborts
// what such an instance left open. It returns once that is done; only then is the last
// committed state final.
func (w *Writer) Fence(ctx context.Context) error {
	if w.txn == nil {
		return errors.New("sink: Fence on a writer without a transactional id")
	}
	if _, _, err := w.cl.ProducerID(ctx); err != nil {
		return fmt.Errorf("initialize kafka transactions for transactional.id %q: %w", w.cfg.TransactionalID, describeTxn(err))
	}
	return nil
}

// produceInTxn hands a record to the open transaction, beginning one if none is open.
func (w *Writer) produceInTxn(rec *kgo.Record, ack Acker) error {
	t := w.txn
	for {
		t.mu.RLock()
		if t.open {
			break
		}
		t.mu.RUnlock()
		t.mu.Lock()
		if !t.open {
			if err := w.cl.BeginTransaction(); err != nil {
				t.mu.Unlock()
				err = fmt.Errorf("begin kafka transaction: %w", describeTxn(err))
				w.fail(err)
				return err
			}
			t.open, t.opened, t.count = true, time.Now(), 0
		}
		t.mu.Unlock()
	}
	defer t.mu.RUnlock()
	t.ackMu.Lock()
	t.count++
	t.ackMu.Unlock()
	w.cl.Produce(w.records, rec, func(rec *kgo.Record, err error) {
		if err != nil {
			w.failed(rec, ack, err)
			return
		}
		w.written.Add(1)
		if ack == nil {
			return
		}
		t.ackMu.Lock()
		if n := len(t.acks); n > 0 && t.acks[n-1].ack == ack {
			t.acks[n-1].n++
		} else {
			t.acks = append(t.acks, ackRun{ack, 1})
		}
		t.ackMu.Unlock()
	})
	return nil
}

// TxnOpen returns when the open transaction began and how many records it holds; ok is false
// when none is open.
func (w *Writer) TxnOpen() (opened time.Time, records int, ok bool) {
	t := w.txn
	if t == nil {
		return time.Time{}, 0, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	t.ackMu.Lock()
	defer t.ackMu.Unlock()
	return t.opened, t.count, t.open
}

// Commit commits the open transaction with progress, the record that says how far it goes
// (nil for none), as its last record; then it acknowledges every record of the transaction.
// Without an open transaction it does nothing: progress describes records, and there are
// none. After an error the transaction is not committed and none of its records is
// acknowledged (a refused EndTxn also leaves the writer failed); AbortTxn, or the next
// instance's Fence, aborts it.
func (w *Writer) Commit(ctx context.Context, progress *Record) error {
	t := w.txn
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		return nil
	}
	if err := w.Err(); err != nil {
		return err
	}
	t.committing.Store(true)
	defer t.committing.Store(false)
	if progress != nil {
		n, err := w.EnsureTopic(ctx, progress.Topic)
		if err != nil {
			return err
		}
		rec := &kgo.Record{Topic: progress.Topic, Key: progress.Key, Value: progress.Value, Partition: Partition(progress.Key, n)}
		w.cl.Produce(w.records, rec, func(rec *kgo.Record, err error) {
			if err != nil {
				w.failed(rec, nil, err)
			}
		})
	}
	if err := w.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush the kafka transaction: %w", err)
	}
	if err := w.Err(); err != nil {
		return err // a record failed: the transaction must not commit
	}
	if w.records.Err() != nil {
		// Abort gave records up without an error of their own: they are not in Kafka.
		return errors.New("kafka transaction not committed: its records were given up at the drain deadline")
	}
	if err := w.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		err = fmt.Errorf("commit kafka transaction (transactional.id %q): %w", w.cfg.TransactionalID, describeTxn(err))
		if restartable(err) {
			err = fmt.Errorf("%w: %w", ErrRestart, err)
		}
		w.fail(err)
		return err
	}
	t.open = false
	t.ackMu.Lock()
	acks := t.acks
	t.acks = nil
	t.ackMu.Unlock()
	for _, r := range acks {
		for range r.n {
			r.ack.Ack()
		}
	}
	return nil
}

// AbortTxn aborts the open transaction, if any, so that read_committed consumers need not
// wait for its timeout; its records are never acknowledged. It is for shutdown after an
// error; a failed writer's transaction may not be abortable, and the next instance's Fence
// aborts it then.
func (w *Writer) AbortTxn(ctx context.Context) error {
	t := w.txn
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.open {
		return nil
	}
	t.open = false
	t.ackMu.Lock()
	t.acks = nil
	t.ackMu.Unlock()
	if err := w.cl.AbortBufferedRecords(ctx); err != nil {
		return fmt.Errorf("abort kafka transaction: %w", err)
	}
	if err := w.cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		return fmt.Errorf("abort kafka transaction: %w", describeTxn(err))
	}
	return nil
}

// describeTxn adds the fix for the errors of transactions users meet.
// ErrRestart marks a writer's failure that a new start recovers from without loss: a Kafka
// transaction's commit whose outcome is unknown (the connection broke under it: it may have
// committed or not), or a transaction Kafka ended (fenced, or aborted for outliving
// kafka.transactions.timeout). Its acknowledgements were held, so nothing of it was confirmed;
// a new start fences the transactional id and resumes after the last committed progress
// record. A procon-cdc that another one really fenced waits there for the slot's lock.
var ErrRestart = errors.New("the writer must start again")

// restartable reports whether a failed commit is one ErrRestart names: anything but a
// definite refusal (authorization, an unsupported broker).
func restartable(err error) bool {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return !errors.Is(err, context.Canceled) // a transport error: the outcome is unknown
	}
	switch {
	case errors.Is(err, kerr.ProducerFenced), errors.Is(err, kerr.InvalidProducerEpoch),
		errors.Is(err, kerr.InvalidTxnState), errors.Is(err, kerr.TransactionCoordinatorFenced):
		return true
	}
	return ke.Retriable || ke.Code == kerr.UnknownServerError.Code
}

func describeTxn(err error) error {
	switch {
	case errors.Is(err, kerr.ProducerFenced), errors.Is(err, kerr.InvalidProducerEpoch):
		return fmt.Errorf("%w: this procon-cdc was fenced: another one with the same name and slot started and took over the transactional id, "+
			"or Kafka aborted the open transaction for outliving kafka.transactions.timeout (Kafka unreachable that long); "+
			"nothing it did not commit was confirmed: run one procon-cdc per configuration", err)
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return fmt.Errorf("%w: grant the principal WRITE and DESCRIBE on the transactional id (e.g. kafka-acls --transactional-id 'procon-cdc/' --resource-pattern-type prefixed)", err)
	case errors.Is(err, kerr.UnsupportedVersion), errors.Is(err, kerr.UnsupportedForMessageFormat):
		return fmt.Errorf("%w: the brokers do not support transactions; kafka.delivery: exactly_once needs Kafka 0.11 or later (3.x or 4.x advised)", err)
	case errors.Is(err, kerr.InvalidTxnState), errors.Is(err, kerr.TransactionCoordinatorFenced), errors.Is(err, kerr.InvalidTransactionTimeout):
		return fmt.Errorf("%w: the transaction was aborted by Kafka, probably for outliving kafka.transactions.timeout (or the brokers' transaction.max.timeout.ms is below it); "+
			"nothing of it was confirmed, and a restart writes it again", err)
	}
	return err
}
