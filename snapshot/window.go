package snapshot

import (
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/procon-cdc/procon/replication"
)

// WatermarkPrefix is the prefix of the logical decoding messages that carry the watermarks of
// in-stream snapshots. The pipeline never turns them into events.
const WatermarkPrefix = "procon-snapshot"

// maxTrackedTxs bounds the transactions remembered for the visibility check; past it the
// check fails safe (chunks are read again) until older transactions have ended.
const maxTrackedTxs = 1 << 20

// window is one chunk's watermark window. The worker fills rows between the watermarks; the
// pipeline records the keys changed between them and, at the high watermark, emits the rows
// whose key did not change. Fields are guarded by the Controller's mutex.
type window struct {
	id  string
	t   *Table
	job *job

	// pipeline side
	opened     bool
	openCommit pglogrepl.LSN // commit LSN of the low watermark's transaction
	closed     bool
	changed    map[string]struct{}
	unknownKey bool // a change of the table whose key could not be read
	truncated  bool

	// worker side
	ready  bool
	rows   []BufferedRow
	update RangeUpdate // the range's progress once the rows are emitted
	xip    []uint32    // transactions in progress for the chunk's read
	xmin   uint32

	done chan windowResult // buffered: the pipeline never waits for the worker
}

type windowResult struct {
	commit  pglogrepl.LSN // commit LSN of the high watermark's transaction
	emitted int
	invalid string // why the chunk must be read again
}

// BufferedRow is a chunk row waiting in its window.
type BufferedRow struct {
	Datums []replication.Datum
	Marker string
	key    string
}

// Emission is what the pipeline emits at a high watermark: rows of one table, in key order.
type Emission struct {
	Table *Table
	Rows  []BufferedRow
}

func watermarkText(kind, id string) string { return kind + " " + id }

func parseWatermark(content []byte) (kind, id string, ok bool) {
	kind, id, ok = strings.Cut(string(content), " ")
	return kind, id, ok && (kind == "open" || kind == "close")
}

// evict records the keys a streamed change touched. idx are the table's key columns in the
// change's relation (nil when the relation lacks one).
func (w *window) evict(c *replication.Change, idx []int, buf []byte) []byte {
	if idx == nil {
		w.unknownKey = true
		return buf
	}
	var tuples [][]replication.Datum
	switch c.Op {
	case replication.OpInsert:
		tuples = append(tuples, c.New)
	case replication.OpUpdate:
		tuples = append(tuples, c.New)
		if c.Old != nil {
			tuples = append(tuples, c.Old)
		}
	case replication.OpDelete:
		tuples = append(tuples, c.Old)
	}
	found := false
	for _, tup := range tuples {
		var ok bool
		if buf, ok = keyID(buf, tup, idx); ok {
			w.changed[string(buf)] = struct{}{}
			found = true
		}
	}
	if !found {
		// A delete without its key (or an update whose key is unchanged TOAST): the chunk
		// cannot tell which row it removed, so it is read again.
		w.unknownKey = true
	}
	return buf
}

// close decides the chunk at the high watermark. txs maps the transactions that changed the
// snapshotted tables to their commit LSN; overflow says some were forgotten.
func (w *window) close(commit pglogrepl.LSN, txs map[uint32]pglogrepl.LSN, overflow bool) ([]BufferedRow, windowResult) {
	res := windowResult{commit: commit}
	switch {
	case !w.opened:
		res.invalid = "the low watermark was not seen"
	case !w.ready:
		res.invalid = "the chunk was not read"
	case w.unknownKey:
		res.invalid = "a change in the window had no readable key"
	}
	if res.invalid == "" && !w.truncated {
		// A transaction that committed before the low watermark is streamed before it, so
		// its changes never evict; the read must therefore see it. PostgreSQL makes a
		// commit visible a moment after writing it to the WAL (or much later while it
		// waits for a synchronous standby), so check the read's in-progress list against
		// what the stream saw commit.
		for _, x := range w.xip {
			if lsn, ok := txs[x]; ok && lsn < w.openCommit {
				res.invalid = "transaction " + strconv.FormatUint(uint64(x), 10) + " committed before the low watermark but was not visible to the read"
				break
			}
			if _, ok := txs[x]; !ok && overflow {
				res.invalid = "too many transactions to check the read's visibility"
				break
			}
		}
	}
	if res.invalid != "" || w.truncated {
		return nil, res
	}
	out := w.rows[:0]
	for _, r := range w.rows {
		if _, changed := w.changed[r.key]; !changed {
			out = append(out, r)
		}
	}
	res.emitted = len(out)
	return out, res
}

// xidBefore compares 32-bit transaction ids modulo 2^32, as PostgreSQL does.
func xidBefore(a, b uint32) bool { return int32(a-b) < 0 }

// parseSnapshot reads pg_current_snapshot()'s text, xmin:xmax:xip,..., into 32-bit xids.
func parseSnapshot(s string) (xmin uint32, xip []uint32, ok bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, nil, false
	}
	v, err := strconv.ParseUint(parts[0], 10, 64)
	if err != nil {
		return 0, nil, false
	}
	xmin = uint32(v)
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return 0, nil, false
			}
			xip = append(xip, uint32(v))
		}
	}
	return xmin, xip, true
}
