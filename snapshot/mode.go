package snapshot

import (
	"github.com/procon-cdc/procon/replication"
)

// Snapshot modes, as Debezium names them (snapshot.mode).
const (
	ModeInitial     = "initial"
	ModeNever       = "never"
	ModeNoData      = "no_data"
	ModeInitialOnly = "initial_only"
	ModeWhenNeeded  = "when_needed"
	ModeAlways      = "always"
)

// Decision is what the engine does about snapshots at start.
type Decision struct {
	// DropSlot drops the existing slot first: it never streamed (an initial snapshot was
	// about to start when the engine died) or its position is lost.
	DropSlot bool
	// Export creates the slot with an exported snapshot and runs the initial snapshot from it
	// before streaming.
	Export bool
	// Resume is an interrupted initial snapshot whose remaining ranges run in the stream.
	Resume *Snapshot
	// Full snapshots every captured table in the stream (always, on a slot that exists).
	Full bool
	// StopAfter stops the engine once the snapshot is done (initial_only).
	StopAfter bool
	// Reason says why, for the log.
	Reason string
}

// Decide applies snapshot.mode to the slot and to the last initial snapshot recorded for it
// (nil when none was).
func Decide(mode string, slot replication.SlotInfo, initial *Snapshot) Decision {
	d := Decision{StopAfter: mode == ModeInitialOnly}
	if mode == ModeNever || mode == ModeNoData {
		d.Reason = "snapshot.mode " + mode + ": streaming only"
		if slot.Exists && initial != nil && initial.Status == StatusRunning {
			d.Reason += "; an interrupted initial snapshot is left unfinished"
		}
		return d
	}
	switch {
	case !slot.Exists:
		d.Export = true
		d.Reason = "the slot does not exist: initial snapshot from the slot's exported snapshot"
		if initial != nil {
			d.Reason += " (the slot of the recorded snapshot is gone)"
		}
	case initial != nil && initial.Status == StatusPending:
		// The slot was created for a snapshot that never started: nothing was written from
		// it and nothing was streamed, so it is replaced by a new one.
		d.DropSlot, d.Export = true, true
		d.Reason = "the slot was created for an initial snapshot that never started: recreating it"
	case slot.Lost && (mode == ModeWhenNeeded || mode == ModeAlways):
		d.DropSlot, d.Export = true, true
		d.Reason = "the slot's position is no longer available (wal_status lost): new slot and initial snapshot"
	case mode == ModeAlways:
		d.Full = true
		d.Reason = "snapshot.mode always: snapshot of every table while streaming from the slot"
	case initial != nil && initial.Status == StatusRunning:
		d.Resume = initial
		d.Reason = "an initial snapshot was interrupted: its remaining ranges are read while streaming"
	default:
		d.Reason = "the slot exists and no snapshot is due: streaming from the slot"
	}
	return d
}
