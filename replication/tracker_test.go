package replication

import (
	"sync"
	"testing"

	"github.com/jackc/pglogrepl"
)

func newTx(tr *Tracker, end pglogrepl.LSN) *Tx {
	tx := &Tx{EndLSN: end}
	tr.Begin(tx)
	return tx
}

func TestTrackerConfirmsOnlyAcknowledgedPrefix(t *testing.T) {
	tr := NewTracker(100)
	a, b := newTx(tr, 200), newTx(tr, 300)
	tr.Add(a, 2)
	tr.Add(b, 1)
	tr.Seal(a)
	tr.Seal(b)
	// b is fully acknowledged first: it must not be confirmed before a.
	tr.Ack(b)
	if got := tr.Confirmed(); got != 100 {
		t.Fatalf("after acking only the later transaction: got %s, want 0/64", got)
	}
	tr.Ack(a)
	if got := tr.Confirmed(); got != 100 {
		t.Fatalf("with one record of the first transaction in flight: got %s, want 0/64", got)
	}
	tr.Ack(a)
	if got := tr.Confirmed(); got != 300 {
		t.Fatalf("after everything: got %s, want %s", got, pglogrepl.LSN(300))
	}
}

func TestTrackerUnsealedHoldsBack(t *testing.T) {
	tr := NewTracker(10)
	a := newTx(tr, 50)
	tr.Add(a, 1)
	tr.Ack(a) // all records so far acknowledged, but the commit has not been seen
	tr.ServerWALEnd(1000)
	if got := tr.Confirmed(); got != 10 {
		t.Fatalf("got %s, want 0/A: an open transaction holds the position", got)
	}
	tr.Seal(a)
	if got := tr.Confirmed(); got != 1000 {
		t.Fatalf("got %s, want the server WAL end 0/3E8 once nothing is open", got)
	}
}

func TestTrackerIdleFollowsServer(t *testing.T) {
	tr := NewTracker(10)
	tr.ServerWALEnd(500)
	if got := tr.Confirmed(); got != 500 {
		t.Fatalf("idle: got %s, want 0/1F4", got)
	}
	tr.ServerWALEnd(400) // never backwards
	if got := tr.Confirmed(); got != 500 {
		t.Fatalf("got %s, want 0/1F4", got)
	}
}

func TestTrackerEmptyTransaction(t *testing.T) {
	tr := NewTracker(10)
	a := newTx(tr, 60)
	tr.Seal(a) // a transaction with no captured records
	if got := tr.Confirmed(); got != 60 {
		t.Fatalf("got %s, want 0/3C", got)
	}
}

func TestTrackerAbandonedTransaction(t *testing.T) {
	tr := NewTracker(10)
	a := newTx(tr, 0)
	tr.Add(a, 1)
	tr.abandon(a.txn) // the connection broke before its commit
	b := newTx(tr, 90)
	tr.Add(b, 1)
	tr.Seal(b)
	tr.Ack(b)
	if got := tr.Confirmed(); got != 10 {
		t.Fatalf("got %s, want 0/A while the abandoned copy's record is in flight", got)
	}
	tr.Ack(a)
	if got := tr.Confirmed(); got != 90 {
		t.Fatalf("got %s, want 0/5A", got)
	}
}

func TestTrackerConcurrentAcks(t *testing.T) {
	tr := NewTracker(1)
	const n = 200
	txs := make([]*Tx, n)
	for i := range txs {
		txs[i] = newTx(tr, pglogrepl.LSN(10+i))
		tr.Add(txs[i], 5)
		tr.Seal(txs[i])
	}
	var wg sync.WaitGroup
	for i := range txs {
		for range 5 {
			wg.Add(1)
			go func() { defer wg.Done(); tr.Ack(txs[n-1-i]) }()
		}
	}
	wg.Wait()
	if got := tr.Confirmed(); got != pglogrepl.LSN(10+n-1) {
		t.Fatalf("got %s, want %s", got, pglogrepl.LSN(10+n-1))
	}
	if tr.Open() != 0 {
		t.Fatalf("%d transactions still open", tr.Open())
	}
}
