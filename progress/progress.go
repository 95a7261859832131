// Package progress is the record of exactly-once delivery (kafka.delivery: exactly_once): the
// position of the stream, and the progress of the snapshot being read, written to the
// progress topic in the same Kafka transaction as the records they describe. Whatever a
// read_committed consumer sees, the last progress record says exactly how far it goes, so a
// restart skips every change at or before Position and resumes a snapshot after its ranges'
// Last keys: nothing is written twice.
//
// The record's key is the pipeline's procon.source, its value JSON. Both come back from Kafka,
// where another principal could have written them: Decode bounds and checks everything it
// reads, and the engine trusts a record only if it names this pipeline.
//
// Everything here is a pure function of its arguments and safe for concurrent use.
package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Version is the format of the record's value.
const Version = 1

// Bounds of a decoded record: it is read from Kafka, where it may not be ours.
const (
	MaxRecordBytes = 1 << 20
	maxRanges      = 10_000
	maxKeyColumns  = 64
)

// Position is where a record lies in the stream: the commit LSN of its source transaction
// and its procon.seq there. Positions of the records a pipeline writes strictly increase.
type Position struct {
	CommitLSN uint64 `json:"commit_lsn"`
	Seq       int    `json:"seq"`
}

// Covers reports whether a record at q was written by the transactions up to p.
func (p Position) Covers(q Position) bool {
	return q.CommitLSN < p.CommitLSN || q.CommitLSN == p.CommitLSN && q.Seq <= p.Seq
}

// State is one progress record.
type State struct {
	// Source is the pipeline's procon.source (system identifier, database, slot) and
	// Instance its instance_num: a record that names another pipeline is not its progress.
	Source   string `json:"source"`
	Instance uint16 `json:"instance"`
	// Stream is the position of the last streamed record committed; nil before streaming.
	Stream *Position `json:"stream,omitempty"`
	// Snapshot is the progress of the snapshot being read, as of the same records; nil when
	// none runs.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
}

// Snapshot is a snapshot's progress: for each range, the last key whose row was written.
type Snapshot struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// LSN is the initial snapshot's consistent point: it tells the snapshot of this slot
	// from one of an earlier slot of the same name.
	LSN    uint64  `json:"lsn,omitempty"`
	Ranges []Range `json:"ranges"`
}

// Range is the progress of one key range of a snapshot.
type Range struct {
	Relation string   `json:"relation"`
	Part     int      `json:"part"`
	Last     []string `json:"last,omitempty"` // nil: no row written yet
	Rows     int64    `json:"rows"`
	Done     bool     `json:"done,omitempty"`
}

// record is the value's JSON form.
type record struct {
	Version int `json:"version"`
	State
}

// Encode returns the record's value.
func Encode(s *State) []byte {
	b, err := json.Marshal(record{Version: Version, State: *s})
	if err != nil {
		panic(fmt.Sprintf("progress: encode: %v", err)) // only strings and numbers: cannot fail
	}
	return b
}

// Decode reads a record's value, refusing one that is not a well-formed progress record of
// this version.
func Decode(b []byte) (*State, error) {
	if len(b) > MaxRecordBytes {
		return nil, fmt.Errorf("progress record of %d bytes is over %d", len(b), MaxRecordBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("progress record: %w", err)
	}
	if dec.More() {
		return nil, errors.New("progress record: data after the JSON value")
	}
	if r.Version != Version {
		return nil, fmt.Errorf("progress record of version %d; this procon-cdc reads version %d", r.Version, Version)
	}
	if r.Source == "" {
		return nil, errors.New("progress record without a source")
	}
	if p := r.Stream; p != nil && (p.Seq < 0 || p.CommitLSN == 0) {
		return nil, fmt.Errorf("progress record with an impossible position %d/%d", p.CommitLSN, p.Seq)
	}
	if s := r.Snapshot; s != nil {
		if s.ID == "" {
			return nil, errors.New("progress record: snapshot without an id")
		}
		if len(s.Ranges) > maxRanges {
			return nil, fmt.Errorf("progress record: %d snapshot ranges, more than %d", len(s.Ranges), maxRanges)
		}
		for i, rg := range s.Ranges {
			if rg.Relation == "" || rg.Part < 0 || rg.Rows < 0 || len(rg.Last) > maxKeyColumns {
				return nil, fmt.Errorf("progress record: impossible snapshot range %q part %d", rg.Relation, rg.Part)
			}
			if len(rg.Last) == 0 {
				s.Ranges[i].Last = nil // no key: no row written yet, however it was spelled
			}
		}
	}
	return &r.State, nil
}
