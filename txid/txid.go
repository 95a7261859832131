// Package txid builds and reads the per-transaction identity that Procon puts on every record:
// the procon.tx header (a ULID for the source transaction) and the procon.seq header (the
// record's position in it). Together they are an idempotency key: a consumer that has seen
// (tx, seq) can drop the record when at-least-once delivery sends it again after a crash.
//
// The ULID is deterministic: its 48-bit time is the commit time in Unix milliseconds, and its
// 80 "random" bits are the engine's instance number (16 bits) followed by the transaction's
// commit LSN (64 bits). The same transaction re-sent after a crash gets the same id, and ids
// sort by commit time, then instance, then commit position.
//
// Everything here is a pure function of its arguments and safe for concurrent use.
package txid

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"
)

// Header names.
const (
	HeaderTx  = "procon.tx"
	HeaderSeq = "procon.seq"
	// HeaderSource names the pipeline that wrote the record: the source server's system
	// identifier, its database and the slot. Procon trusts a partition's last record to tell
	// where its previous run stopped only when the record is its own.
	HeaderSource = "procon.source"
)

// ID is a transaction id.
type ID ulid.ULID

// New returns the id of the transaction that committed at commitTime and commitLSN, read by
// the engine numbered instance.
func New(commitTime time.Time, instance uint16, commitLSN uint64) ID {
	var id ulid.ULID
	_ = id.SetTime(ulid.Timestamp(commitTime))
	var entropy [10]byte
	binary.BigEndian.PutUint16(entropy[0:2], instance)
	binary.BigEndian.PutUint64(entropy[2:10], commitLSN)
	_ = id.SetEntropy(entropy[:])
	return ID(id)
}

// Parse reads the text of a procon.tx header.
func Parse(s string) (ID, error) {
	id, err := ulid.ParseStrict(s)
	if err != nil {
		return ID{}, fmt.Errorf("txid: %q is not a ULID: %w", s, err)
	}
	return ID(id), nil
}

// String returns the 26-character ULID text.
func (id ID) String() string { return ulid.ULID(id).String() }

// AppendText appends the ULID text to b.
func (id ID) AppendText(b []byte) []byte {
	var buf [ulid.EncodedSize]byte
	_ = ulid.ULID(id).MarshalTextTo(buf[:])
	return append(b, buf[:]...)
}

// Time is the transaction's commit time, to the millisecond.
func (id ID) Time() time.Time { return ulid.Time(ulid.ULID(id).Time()) }

// Instance is the instance_num of the engine that produced the id.
func (id ID) Instance() uint16 { return binary.BigEndian.Uint16(id[6:8]) }

// CommitLSN is the transaction's commit position in the WAL.
func (id ID) CommitLSN() uint64 { return binary.BigEndian.Uint64(id[8:16]) }

// Compare orders ids by commit time, then instance, then commit LSN: -1, 0 or +1.
func (id ID) Compare(other ID) int { return ulid.ULID(id).Compare(ulid.ULID(other)) }

// ParseSeq reads the text of a procon.seq header.
func ParseSeq(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("txid: %q is not a record position (1, 2, ...)", s)
	}
	return n, nil
}

// Key is the idempotency key of a record: its transaction and position in it.
type Key struct {
	Tx  ID
	Seq int
}

// FromHeaders reads the key from a record's headers, given as name/value pairs through get.
func FromHeaders(get func(name string) (string, bool)) (Key, error) {
	txs, ok := get(HeaderTx)
	if !ok {
		return Key{}, fmt.Errorf("txid: record has no %s header", HeaderTx)
	}
	seqs, ok := get(HeaderSeq)
	if !ok {
		return Key{}, fmt.Errorf("txid: record has no %s header", HeaderSeq)
	}
	tx, err := Parse(txs)
	if err != nil {
		return Key{}, err
	}
	seq, err := ParseSeq(seqs)
	if err != nil {
		return Key{}, err
	}
	return Key{Tx: tx, Seq: seq}, nil
}

// Compare orders keys by transaction, then position: -1, 0 or +1.
func (k Key) Compare(other Key) int {
	if c := k.Tx.Compare(other.Tx); c != 0 {
		return c
	}
	switch {
	case k.Seq < other.Seq:
		return -1
	case k.Seq > other.Seq:
		return 1
	}
	return 0
}

// String returns the key as "<ULID>/<seq>", e.g. to store the keys of records already seen
// (it does not sort like Compare: use Compare to order keys).
func (k Key) String() string { return k.Tx.String() + "/" + strconv.Itoa(k.Seq) }

// Header is the shape of a Kafka record header in the Go clients: franz-go's kgo.RecordHeader
// and confluent-kafka-go's kafka.Header both have it, so FromRecordHeaders takes their
// slices as they are.
type Header interface {
	~struct {
		Key   string
		Value []byte
	}
}

// FromRecordHeaders reads the idempotency key from a record's headers, e.g. a kgo.Record's
// Headers:
//
//	key, err := txid.FromRecordHeaders(rec.Headers)
func FromRecordHeaders[H Header](headers []H) (Key, error) {
	return FromHeaders(func(name string) (string, bool) {
		v, ok := HeaderValue(headers, name)
		return string(v), ok
	})
}

// AppendHeaders appends a record's procon.source, procon.tx and procon.seq headers to
// headers: source names the pipeline (nil leaves the header out), tx is the text of the
// record's transaction id (ID.AppendText), seq its position in the transaction. Every record of
// a transaction may share the tx slice, which must not change afterwards: a Kafka client keeps
// a record, and its headers, until the record is sent.
func AppendHeaders[H Header](headers []H, source, tx []byte, seq int) []H {
	return AppendHeadersInto(headers, source, tx, seq, nil)
}

// AppendHeadersInto is AppendHeaders writing the procon.seq value's text into seqBuf's
// memory when it has the room (20 bytes take any int), so that a caller can allocate it with
// the record.
func AppendHeadersInto[H Header](headers []H, source, tx []byte, seq int, seqBuf []byte) []H {
	if source != nil {
		headers = append(headers, H{Key: HeaderSource, Value: source})
	}
	return append(headers,
		H{Key: HeaderTx, Value: tx},
		H{Key: HeaderSeq, Value: strconv.AppendInt(seqBuf[:0], int64(seq), 10)})
}

// HeaderValue returns the value of the last header named name.
func HeaderValue[H Header](headers []H, name string) ([]byte, bool) {
	for i := len(headers) - 1; i >= 0; i-- {
		h := struct {
			Key   string
			Value []byte
		}(headers[i])
		if h.Key == name {
			return h.Value, true
		}
	}
	return nil, false
}
