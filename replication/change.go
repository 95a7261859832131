package replication

import (
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
)

// ApplicationName is the application_name of the replication connection (unless the DSN sets
// one): it tells procon-cdc's walsenders from other clients of a slot.
const ApplicationName = "procon-cdc"

// Op is the kind of a Change.
type Op uint8

// The kinds of Change, in the order a transaction delivers them: Begin, then row changes,
// truncates and transactional messages, then Commit. A non-transactional Message stands alone.
const (
	OpBegin Op = iota + 1
	OpInsert
	OpUpdate
	OpDelete
	OpTruncate
	OpMessage
	OpCommit
)

func (o Op) String() string {
	switch o {
	case OpBegin:
		return "begin"
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	case OpMessage:
		return "message"
	case OpCommit:
		return "commit"
	}
	return "unknown"
}

// Datum kinds, as pgoutput sends them.
const (
	DatumNull      = 'n' // SQL NULL
	DatumUnchanged = 'u' // an unchanged TOASTed value that the server did not send
	DatumText      = 't'
	DatumBinary    = 'b'
)

// Datum is one column value of a tuple: a kind and, for text and binary, the bytes.
type Datum struct {
	Kind byte
	Data []byte
}

// Tx is one source transaction. All changes of a transaction share one *Tx.
type Tx struct {
	XID        uint32
	CommitLSN  pglogrepl.LSN // LSN of the commit record (Begin's final LSN)
	EndLSN     pglogrepl.LSN // end of the commit record; set when Commit arrives
	CommitTime time.Time
	// Changes counts the row changes and messages delivered for this transaction so far.
	Changes int

	txn *txn // the tracker's entry, set by Tracker.Begin

	// The tracker's entry and the transaction's Begin and Commit changes are allocated with
	// it: a single-row transaction is otherwise four more allocations.
	entry         txn
	begin, commit Change
}

// Ack tells the transaction's tracker that Kafka acknowledged one of its records (counted
// with Tracker.Add). It makes *Tx the acknowledgement of the records of its transaction.
func (tx *Tx) Ack() { tx.txn.tracker.Ack(tx) }

// String names the transaction in errors about its records. It reads only what Begin set, so
// any goroutine may call it.
func (tx *Tx) String() string {
	return fmt.Sprintf("transaction xid %d committed at LSN %s", tx.XID, tx.CommitLSN)
}

// Change is one decoded WAL message, in stream order.
type Change struct {
	Op Op
	// Tx is the change's transaction. A non-transactional message gets a Tx of its own whose
	// commit LSN is the message's LSN.
	Tx  *Tx
	LSN pglogrepl.LSN // the WAL position of this change
	// Seq is the change's position in its transaction, from 1; 0 for Begin and Commit.
	Seq int

	Rel *Relation // Insert, Update, Delete
	// Old is the old tuple of an Update or Delete: the replica identity key columns
	// (OldKind 'K') or the whole row (OldKind 'O', REPLICA IDENTITY FULL); nil when absent.
	Old     []Datum
	OldKind byte
	New     []Datum

	// Truncate
	Truncated       []*Relation
	Cascade         bool
	RestartIdentity bool

	// Message (pg_logical_emit_message)
	Prefix        string
	Content       []byte
	Transactional bool
}
