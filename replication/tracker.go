package replication

import (
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// Tracker decides which LSN may be confirmed to the server. The rule it enforces:
//
//	the confirmed flush LSN moves to X only when every event of every transaction that
//	committed at or before X has been acknowledged by Kafka.
//
// Transactions enter in commit order (pgoutput v1 sends each whole transaction after its
// commit) when their Begin is decoded. Each record produced for a transaction is counted with
// Add and uncounted with Ack when Kafka acknowledges it; Seal marks that no more records will
// come. The confirmed LSN is the end LSN of the longest prefix of sealed transactions whose
// records are all acknowledged. When nothing is open, it follows the server's WAL end from
// keepalives, so that an idle slot never retains WAL.
//
// Begin and ServerWALEnd are called by the stream goroutine; Add, Ack and Seal by the pipeline
// and Kafka's promise goroutines; all methods are safe for concurrent use. A record's
// acknowledgement reaches the tracker through its transaction: *Tx implements Ack.
type Tracker struct {
	mu        sync.Mutex
	queue     []*txn // open transactions in commit order; queue[head:] are live
	head      int
	confirmed pglogrepl.LSN
	serverEnd pglogrepl.LSN
	changed   chan struct{} // closed and replaced whenever confirmed moves
	// acknowledged, when set, is told the commit time of each transaction whose records are
	// all acknowledged (for the commit-to-acknowledgement latency); it runs under mu.
	acknowledged func(commit time.Time)
}

type txn struct {
	tracker *Tracker
	end     pglogrepl.LSN
	commit  time.Time
	pending int
	records bool // a record was counted: only then is the transaction's latency observed
	sealed  bool
}

// NewTracker starts at start, the slot's confirmed flush LSN.
func NewTracker(start pglogrepl.LSN) *Tracker {
	return &Tracker{confirmed: start, changed: make(chan struct{})}
}

// Begin queues tx, whose Begin was just decoded, behind every transaction begun before it.
// The stream calls it in stream order, which is commit order; so can tests that drive a
// pipeline without a server.
func (t *Tracker) Begin(tx *Tx) {
	x := &tx.entry
	*x = txn{tracker: t, commit: tx.CommitTime}
	t.mu.Lock()
	t.queue = append(t.queue, x)
	t.mu.Unlock()
	tx.txn = x
}

// Add counts n more records in flight for tx.
func (t *Tracker) Add(tx *Tx, n int) {
	t.mu.Lock()
	tx.txn.pending += n
	tx.txn.records = true
	t.mu.Unlock()
}

// Ack uncounts one record of tx that Kafka acknowledged.
func (t *Tracker) Ack(tx *Tx) {
	t.mu.Lock()
	tx.txn.pending--
	if tx.txn.pending < 0 {
		t.mu.Unlock()
		panic("replication: Tracker.Ack without a matching Add") // a bug in the caller, never data
	}
	if tx.txn.pending == 0 && tx.txn.sealed {
		t.done(tx.txn)
	}
	t.advance()
	t.mu.Unlock()
}

// Seal records that every record of tx has been handed to Add: once they are all
// acknowledged, the transaction's end LSN may be confirmed.
func (t *Tracker) Seal(tx *Tx) {
	t.mu.Lock()
	tx.txn.end = tx.EndLSN
	tx.txn.sealed = true
	if tx.txn.pending == 0 {
		t.done(tx.txn)
	}
	t.advance()
	t.mu.Unlock()
}

// done reports a sealed transaction whose records are all acknowledged. t.mu must be held.
func (t *Tracker) done(x *txn) {
	if t.acknowledged != nil && x.records {
		t.acknowledged(x.commit)
	}
}

// abandon drops a transaction that the server will send again from its start (the connection
// broke before its Commit). Records already in flight are still counted, but the entry no
// longer holds the confirmed LSN back once they are acknowledged.
func (t *Tracker) abandon(x *txn) {
	t.mu.Lock()
	x.sealed = true
	x.end = 0
	x.records = false // sent again whole: its latency is the resent one's
	t.advance()
	t.mu.Unlock()
}

// ServerWALEnd records the server's WAL end from a keepalive. Every transaction that committed
// before it has already been received, so once they are all done it is safe to confirm.
func (t *Tracker) ServerWALEnd(lsn pglogrepl.LSN) {
	t.mu.Lock()
	if lsn > t.serverEnd {
		t.serverEnd = lsn
	}
	t.advance()
	t.mu.Unlock()
}

// advance pops finished transactions off the head of the queue. t.mu must be held.
func (t *Tracker) advance() {
	old := t.confirmed
	for t.head < len(t.queue) {
		x := t.queue[t.head]
		if !x.sealed || x.pending > 0 {
			break
		}
		if x.end > t.confirmed {
			t.confirmed = x.end
		}
		t.queue[t.head] = nil
		t.head++
	}
	if t.head == len(t.queue) {
		t.queue, t.head = t.queue[:0], 0
		if t.serverEnd > t.confirmed {
			t.confirmed = t.serverEnd
		}
	} else if t.head > 1024 && t.head*2 > len(t.queue) {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue, t.head = t.queue[:n], 0
	}
	if t.confirmed != old {
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

// Confirmed returns the LSN that may be confirmed to the server now.
func (t *Tracker) Confirmed() pglogrepl.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.confirmed
}

// Open returns the number of transactions not yet confirmable.
func (t *Tracker) Open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.queue) - t.head
}

// Oldest returns the commit time of the oldest transaction not yet confirmable, and false
// when every transaction received is.
func (t *Tracker) Oldest() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head == len(t.queue) {
		return time.Time{}, false
	}
	return t.queue[t.head].commit, true
}

// Changed returns a channel closed the next time the confirmed LSN moves.
func (t *Tracker) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}
