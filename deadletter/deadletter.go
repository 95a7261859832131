// Package deadletter decides what happens to a record too large for its Kafka topic
// (errors.record_too_large). By the policy of its kind (row changes, logical messages,
// realtime notifications) such a record stops the engine (Fail), is left out and counts as
// delivered (Skip), or is replaced by a small reference record on the dead-letter topic (DLQ)
// that carries the original record's acknowledgement, so the slot's position moves past it
// only once Kafka has the reference.
//
// The decision is made before the record is produced, from its size as the producer counts
// it (sink.Size) against the topic's limit (kafka.max_record_bytes, or the topic's
// max.message.bytes when that is smaller): a record Kafka would refuse never reaches Kafka,
// where the refusal could only stop the engine.
//
// Concurrency: a Guard is safe for concurrent use; the pipeline, the realtime producer and
// the initial snapshot's workers share one.
package deadletter

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/txid"
)

// Policy is what happens to a record too large for its topic.
type Policy uint8

// Policies.
const (
	Fail Policy = iota + 1 // stop the engine before producing it; the slot's position stays before its transaction
	Skip                   // leave it out: it counts as delivered, with a warning
	DLQ                    // write a reference record to the dead-letter topic in its place
)

// ParsePolicy reads a policy by its configuration name: fail, skip or dlq.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "fail":
		return Fail, nil
	case "skip":
		return Skip, nil
	case "dlq":
		return DLQ, nil
	}
	return 0, fmt.Errorf("%q is not one of fail, skip, dlq", s)
}

func (p Policy) String() string {
	switch p {
	case Fail:
		return "fail"
	case Skip:
		return "skip"
	case DLQ:
		return "dlq"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// Kind is the kind of record a policy is chosen for.
type Kind uint8

// Kinds.
const (
	Row      Kind = iota // change events of captured tables, snapshot rows, transaction metadata
	Message              // logical decoding message events (the <name>.message topic)
	Realtime             // realtime notifications
	kinds
)

// String is the kind's name in reference records and logs.
func (k Kind) String() string {
	switch k {
	case Row:
		return "row"
	case Message:
		return "message"
	case Realtime:
		return "realtime"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// configKey is the kind's key under errors.record_too_large.
func (k Kind) configKey() string {
	switch k {
	case Row:
		return "rows"
	case Message:
		return "messages"
	}
	return k.String()
}

// Limits tells the largest record a topic takes, as sink.Size counts it; *sink.Writer
// implements it.
type Limits interface {
	MaxRecordBytes(ctx context.Context, topic string) (int, error)
}

// Config configures a Guard.
type Config struct {
	Limits Limits
	// Policies holds the policy of each kind, indexed by Kind.
	Policies [kinds]Policy
	// Topic is the dead-letter topic; required when a policy is DLQ.
	Topic  string
	Logger *slog.Logger
}

// Guard applies the policies. See the package documentation.
type Guard struct {
	cfg    Config
	log    *slog.Logger
	counts [kinds][2]atomic.Int64 // skipped, dead-lettered
}

// New returns a Guard.
func New(cfg Config) (*Guard, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Limits == nil {
		return nil, fmt.Errorf("deadletter: Limits is required")
	}
	for k, p := range cfg.Policies {
		if p < Fail || p > DLQ {
			return nil, fmt.Errorf("deadletter: no policy for %s records", Kind(k))
		}
		if p == DLQ && cfg.Topic == "" {
			return nil, fmt.Errorf("deadletter: %s records go to the dead-letter topic, but there is none", Kind(k))
		}
	}
	return &Guard{cfg: cfg, log: cfg.Logger}, nil
}

// Origin says where a record comes from, for the error, the warning and the reference record.
type Origin struct {
	Kind     Kind
	Relation string // a row's "schema.table"
	Prefix   string // a logical message's prefix
	Channel  string // a realtime notification's channel
	// LSN is the change's WAL position (an initial snapshot row's is the slot's consistent
	// point); 0 when unknown (a realtime notification).
	LSN pglogrepl.LSN
	// CommitLSN and XID are the transaction's; 0 when it has none (an initial snapshot row).
	CommitLSN pglogrepl.LSN
	XID       uint32
}

// Check returns what to produce in place of r: r itself when it fits its topic; nil when r is
// too large and skipped (the caller then treats it as delivered: it acknowledges it, or does
// not count it); a reference record on the dead-letter topic, carrying r's acknowledgement,
// when r is too large and dead-lettered. Under Fail it returns a *TooLargeError. A nil Guard
// returns r.
func (g *Guard) Check(ctx context.Context, r *sink.Record, o Origin) (*sink.Record, error) {
	if g == nil {
		return r, nil
	}
	limit, err := g.cfg.Limits.MaxRecordBytes(ctx, r.Topic)
	if err != nil {
		return nil, err
	}
	size := sink.Size(r)
	if size <= limit {
		return r, nil
	}
	policy := g.cfg.Policies[o.Kind]
	switch policy {
	case Skip:
		n := g.counts[o.Kind][0].Add(1)
		g.log.Warn("record too large for its topic; skipped", g.attrs(r, o, size, limit, "skipped_total", n)...)
		return nil, nil
	case DLQ:
		ref, err := g.reference(r, o, size, limit)
		if err != nil {
			return nil, err
		}
		dlqLimit, err := g.cfg.Limits.MaxRecordBytes(ctx, ref.Topic)
		if err != nil {
			return nil, err
		}
		if n := sink.Size(ref); n > dlqLimit {
			return nil, fmt.Errorf("the dead-letter record for a record too large for topic %s is %d bytes, over the %d bytes the dead-letter topic %s takes; raise its max.message.bytes",
				r.Topic, n, dlqLimit, ref.Topic)
		}
		n := g.counts[o.Kind][1].Add(1)
		g.log.Warn("record too large for its topic; a reference to it goes to the dead-letter topic",
			g.attrs(r, o, size, limit, "dlq_topic", g.cfg.Topic, "dead_lettered_total", n)...)
		return ref, nil
	}
	return nil, &TooLargeError{Origin: o, Topic: r.Topic, Size: size, Limit: limit}
}

// Counts returns how many records of kind k were skipped and dead-lettered so far.
func (g *Guard) Counts(k Kind) (skipped, deadLettered int64) {
	return g.counts[k][0].Load(), g.counts[k][1].Load()
}

// attrs are the log attributes of a record too large. Keys are logged by size only: logs
// often reach more people than the topics do.
func (g *Guard) attrs(r *sink.Record, o Origin, size, limit int, extra ...any) []any {
	a := []any{"kind", o.Kind.String(), "topic", r.Topic}
	switch o.Kind {
	case Row:
		a = append(a, "relation", o.Relation)
	case Message:
		a = append(a, "prefix", clip(o.Prefix))
	case Realtime:
		a = append(a, "channel", clip(o.Channel))
	}
	a = append(a, "key_bytes", len(r.Key), "record_bytes", size, "max_record_bytes", limit)
	if o.LSN != 0 {
		a = append(a, "lsn", o.LSN.String())
	}
	if o.CommitLSN != 0 {
		a = append(a, "commit_lsn", o.CommitLSN.String(), "xid", o.XID)
	}
	a = append(a, "policy", fmt.Sprintf("errors.record_too_large.%s: %s", o.Kind.configKey(), g.cfg.Policies[o.Kind]))
	return append(a, extra...)
}

// Reference is the value of a dead-letter record, as JSON.
type Reference struct {
	Reason   string `json:"reason"` // record_too_large
	Kind     string `json:"kind"`   // row, message or realtime
	Topic    string `json:"topic"`  // where the record was to go
	Relation string `json:"relation,omitempty"`
	Prefix   string `json:"prefix,omitempty"`  // its first MaxText bytes
	Channel  string `json:"channel,omitempty"` // its first MaxText bytes
	// Key is the record's key (base64 in JSON), absent when it has none or it is over MaxKey
	// bytes; KeyBytes is its length in either case.
	Key            []byte `json:"key,omitempty"`
	KeyBytes       int    `json:"key_bytes"`
	RecordBytes    int    `json:"record_bytes"`     // the record's size (sink.Size)
	MaxRecordBytes int    `json:"max_record_bytes"` // the topic's limit it was over
	LSN            string `json:"lsn,omitempty"`
	CommitLSN      string `json:"commit_lsn,omitempty"`
	XID            uint32 `json:"xid,omitempty"`
}

// Bounds of what a reference copies from the record, so that it stays small whatever the
// record holds (a message's prefix is any text its sender chose).
const (
	MaxKey  = 1024
	MaxText = 256
)

// ReasonTooLarge is the reason of a reference to a record too large for its topic.
const ReasonTooLarge = "record_too_large"

// reference builds the dead-letter record that stands for r: no key, partition 0 (so the
// topic keeps the order of the references), r's procon.tx, procon.seq and procon.source
// headers (consumers deduplicate on them as on r's), and r's acknowledgement.
func (g *Guard) reference(r *sink.Record, o Origin, size, limit int) (*sink.Record, error) {
	ref := Reference{
		Reason: ReasonTooLarge, Kind: o.Kind.String(), Topic: r.Topic,
		KeyBytes: len(r.Key), RecordBytes: size, MaxRecordBytes: limit, XID: o.XID,
	}
	switch o.Kind {
	case Row:
		ref.Relation = o.Relation
	case Message:
		ref.Prefix = clip(o.Prefix)
	case Realtime:
		ref.Channel = clip(o.Channel)
	}
	if len(r.Key) <= MaxKey {
		ref.Key = r.Key
	}
	if o.LSN != 0 {
		ref.LSN = o.LSN.String()
	}
	if o.CommitLSN != 0 {
		ref.CommitLSN = o.CommitLSN.String()
	}
	value, err := json.Marshal(&ref)
	if err != nil {
		return nil, fmt.Errorf("dead-letter record: %w", err)
	}
	var headers []sink.Header
	for _, h := range r.Headers {
		switch h.Key {
		case txid.HeaderTx, txid.HeaderSeq, txid.HeaderSource:
			headers = append(headers, h)
		}
	}
	return &sink.Record{Topic: g.cfg.Topic, Value: value, Headers: headers, Partition: 0, Ack: r.Ack}, nil
}

// clip cuts s to at most MaxText bytes, at a character boundary.
func clip(s string) string {
	if len(s) <= MaxText {
		return s
	}
	i := MaxText
	for j := 0; j < utf8.UTFMax && i > 0 && !utf8.RuneStart(s[i]); j++ {
		i-- // s[i] continues the character before it: cut before that character
	}
	return s[:i]
}

// TooLargeError is the error of a record too large for its topic under the Fail policy.
type TooLargeError struct {
	Origin Origin
	Topic  string
	Size   int // sink.Size of the record
	Limit  int // the topic's limit
}

func (e *TooLargeError) Error() string {
	var b strings.Builder
	o := e.Origin
	switch o.Kind {
	case Row:
		if o.Relation != "" {
			fmt.Fprintf(&b, "relation %s: ", o.Relation)
		}
		b.WriteString("a record")
	case Message:
		fmt.Fprintf(&b, "logical message with prefix %q: its record", clip(o.Prefix))
	case Realtime:
		fmt.Fprintf(&b, "realtime notification of channel %q: its record", clip(o.Channel))
	}
	fmt.Fprintf(&b, " for topic %s", e.Topic)
	var at []string
	if o.LSN != 0 {
		at = append(at, "change at LSN "+o.LSN.String())
	}
	if o.CommitLSN != 0 {
		at = append(at, fmt.Sprintf("transaction xid %d committed at LSN %s", o.XID, o.CommitLSN))
	}
	if len(at) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(at, ", "))
	}
	fmt.Fprintf(&b, " is %d bytes, over the %d bytes the topic takes (kafka.max_record_bytes, or the topic's max.message.bytes if lower); "+
		"raise them, or set errors.record_too_large.%s to dlq or skip; the slot's position stays before this record, so a restart sends it again",
		e.Size, e.Limit, o.Kind.configKey())
	return b.String()
}
