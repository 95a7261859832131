package metrics

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LSN is a WAL position; JSON writes it as PostgreSQL does ("16/B374D848").
type LSN uint64

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// MarshalText writes l as PostgreSQL does.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads PostgreSQL's form.
func (l *LSN) UnmarshalText(b []byte) error {
	hi, lo, ok := strings.Cut(string(b), "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	o, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%q is not a WAL position like 16/B374D848", b)
	}
	*l = LSN(h<<32 | o)
	return nil
}

// State is the running engine's view at one moment: what the gauges and /status show. The
// engine assembles it at each scrape (StateFunc); fields it cannot know yet are zero.
type State struct {
	// Phase is starting, standby (waiting for the slot's lock, held by another procon-cdc),
	// snapshotting (the initial snapshot, before streaming), streaming, reconnecting (the
	// replication connection is lost) or stopping.
	Phase string `json:"phase"`
	Slot  string `json:"slot"`
	// ConfirmedLSN is the position the slot may be confirmed at: everything before it is in
	// Kafka (the acknowledgement rule). ServerLSN is the server's WAL end as last seen, from
	// the stream or from the slot's poll, whichever is further.
	ConfirmedLSN LSN `json:"confirmed_lsn"`
	ServerLSN    LSN `json:"server_lsn"`
	// OldestUnacknowledged is the commit time of the oldest transaction not all in Kafka;
	// zero when there is none.
	OldestUnacknowledged time.Time `json:"oldest_unacknowledged_commit,omitzero"`
	// Kafka's producer buffer: records handed to the client and not yet acknowledged, and
	// the limits at which producing blocks (backpressure).
	BufferedRecords    int64 `json:"buffered_records"`
	BufferedBytes      int64 `json:"buffered_bytes"`
	MaxBufferedRecords int64 `json:"max_buffered_records"`
	MaxBufferedBytes   int64 `json:"max_buffered_bytes"`
	// SlotPoll is the slot as the server last described it; nil before the first poll.
	SlotPoll *SlotState `json:"slot_poll,omitempty"`
	// Snapshot is the running (or last) snapshot's progress; nil when none ran.
	Snapshot *SnapshotState `json:"snapshot,omitempty"`
	// Realtime is the realtime stage's queue and counters; nil without realtime.
	Realtime *RealtimeState `json:"realtime,omitempty"`
	// DeadLetters counts records too large for their topic, by kind (row, message,
	// realtime) and outcome (dead_letter, skipped).
	DeadLetters []DeadLetterCount `json:"dead_letters,omitempty"`
}

// SlotState is a poll of pg_replication_slots for the slot.
type SlotState struct {
	At     time.Time `json:"at"`
	Exists bool      `json:"exists"`
	Active bool      `json:"active"`
	// ServerLSN is pg_current_wal_lsn(); RetainedBytes the WAL the slot keeps
	// (ServerLSN - restart_lsn).
	ServerLSN     LSN   `json:"server_lsn"`
	RetainedBytes int64 `json:"retained_bytes"`
	// SafeWALSize is how much more WAL may be written before the slot is in danger of
	// losing its position (max_slot_wal_keep_size); nil when unlimited.
	SafeWALSize *int64 `json:"safe_wal_size,omitempty"`
	WALStatus   string `json:"wal_status,omitempty"`
	// Err is why the last poll failed, when it did.
	Err string `json:"error,omitempty"`
}

// SnapshotState is a snapshot's progress.
type SnapshotState struct {
	ID      string          `json:"id"`
	Kind    string          `json:"kind"`
	Running bool            `json:"running"`
	Tables  []SnapshotTable `json:"tables"`
}

// SnapshotTable is one table's progress in a snapshot.
type SnapshotTable struct {
	Relation      string  `json:"relation"`
	Rows          int64   `json:"rows"`
	Total         int64   `json:"estimated_total"` // 0 when unknown
	Chunks        int64   `json:"chunks"`
	RowsPerSecond float64 `json:"rows_per_s"`
	ETASeconds    float64 `json:"eta_s"` // -1 when unknown
	Done          bool    `json:"done"`
}

// RealtimeState is the realtime stage's queue and what became of its notifications.
type RealtimeState struct {
	Waiting    int   `json:"waiting"`
	QueueBytes int   `json:"queue_bytes"`
	Sent       int64 `json:"sent"`
	Coalesced  int64 `json:"coalesced"`
	Delayed    int64 `json:"delayed"`
	TooLarge   int64 `json:"too_large"`
}

// DeadLetterCount is how many records of a kind had an outcome.
type DeadLetterCount struct {
	Kind    string `json:"kind"`
	Outcome string `json:"outcome"`
	Records int64  `json:"records"`
}

// Phases of State.
const (
	PhaseStarting     = "starting"
	PhaseSnapshotting = "snapshotting"
	PhaseStreaming    = "streaming"
	PhaseReconnecting = "reconnecting"
	PhaseStopping     = "stopping"
	// PhaseStandby is a procon-cdc waiting for the slot's lock, which another one holds.
	PhaseStandby = "standby"
)

// LagBytes is the WAL the server has written past the confirmed position.
func (s *State) LagBytes() int64 {
	end := s.ServerLSN
	if s.SlotPoll != nil && s.SlotPoll.ServerLSN > end {
		end = s.SlotPoll.ServerLSN
	}
	if end <= s.ConfirmedLSN {
		return 0
	}
	return int64(end - s.ConfirmedLSN)
}

// LagSeconds is how long ago the oldest transaction not all in Kafka committed; 0 when every
// transaction received is.
func (s *State) LagSeconds(now time.Time) float64 {
	if s.OldestUnacknowledged.IsZero() {
		return 0
	}
	return max(0, now.Sub(s.OldestUnacknowledged).Seconds())
}
