package sink

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/retrylog"
)

// TailReadTimeout bounds LastHeaders. The read runs on the pipeline goroutine at the first
// record of each topic: past it, procon-cdc stops with an error instead of holding the stream.
const TailReadTimeout = time.Minute

// How far back LastHeaders reads a partition for its last record. The first window is small:
// the last offset is normally the last record. Each further window is tailGrowth times the
// previous one. A partition whose last tailMaxOffsets offsets (or tailMaxBytes bytes) hold no
// record a consumer would see has no tail: the resume check then skips nothing there, which
// costs at most records written twice (DESIGN.md, invariant 5), never a lost one.
const (
	tailFirstWindow = 16
	tailGrowth      = 16
	tailMaxOffsets  = 1 << 17
	tailMaxBytes    = 32 << 20
)

var errTailTimeout = fmt.Errorf("no answer within %s", TailReadTimeout)

// LastHeaders returns the headers of the last record of each partition of topic that a
// consumer reading committed records sees, read from Kafka; a partition without one is left
// out. The pipeline reads them to find where a previous run stopped.
//
// The last offsets of a partition need not be records a consumer sees: a transactional
// producer ends each transaction with a control record (its commit or abort marker), an
// aborted transaction's records are never delivered, and an open one's are not yet. So the
// partition is read backwards, window by window, each one read forwards with the markers kept,
// until its last committed or non-transactional record is found, the partition's start is
// reached, or tailMaxOffsets or tailMaxBytes are spent. The whole read takes at most
// TailReadTimeout.
func (w *Writer) LastHeaders(ctx context.Context, topic string) (map[int32][]Header, error) {
	last, err := w.LastRecords(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(map[int32][]Header, len(last))
	for p, r := range last {
		out[p] = r.Headers
	}
	return out, nil
}

// LastRecords returns the last record of each partition of topic that a consumer reading
// committed records sees, as LastHeaders finds it; Transactional reports whether it was
// written in a (committed) transaction.
func (w *Writer) LastRecords(ctx context.Context, topic string) (map[int32]*ConsumedRecord, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, TailReadTimeout, errTailTimeout)
	defer cancel()
	// A broker restarting or a leader election fails the read for a moment: it is read again,
	// from the start, until the deadline.
	backoff := 100 * time.Millisecond
	var failing retrylog.Outage
	for {
		out, err := w.lastRecords(ctx, topic)
		if err == nil {
			failing.Recovered(w.log, "read the last records of a topic after retries", "topic", topic)
		}
		if err == nil || !retriable(err) || ctx.Err() != nil {
			return out, err
		}
		failing.Failed(w.log, "cannot read the last records of a topic; retrying", err, "topic", topic)
		select {
		case <-ctx.Done():
			return nil, tailError(ctx, fmt.Errorf("read the last records of %s: %w (%w)", topic, err, context.Cause(ctx)))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (w *Writer) lastRecords(ctx context.Context, topic string) (map[int32]*ConsumedRecord, error) {
	starts, err := w.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, tailError(ctx, fmt.Errorf("list start offsets of %s: %w", topic, err))
	}
	ends, err := w.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, tailError(ctx, fmt.Errorf("list end offsets of %s: %w", topic, err))
	}
	var parts []*partitionTail
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); ok && o.Err == nil && s.Err == nil && o.Offset > s.Offset {
			parts = append(parts, newPartitionTail(o.Partition, s.Offset, o.Offset))
		}
	})
	sort.Slice(parts, func(i, j int) bool { return parts[i].partition < parts[j].partition })
	out := map[int32]*ConsumedRecord{}
	for {
		var open []*partitionTail
		for _, p := range parts {
			if !p.done {
				open = append(open, p)
			}
		}
		if len(open) == 0 {
			break
		}
		if err := w.readWindows(ctx, topic, open); err != nil {
			return nil, err
		}
		for _, p := range open {
			p.nextWindow()
		}
	}
	for _, p := range parts {
		switch {
		case p.found != nil:
			p.found.Topic = topic
			out[p.partition] = p.found
		case p.exhausted:
			w.log.Warn("no record a consumer would see among the last offsets of a partition (transaction markers, aborted or open transactions); "+
				"resuming without a tail there: records the last run wrote may be written again",
				"topic", topic, "partition", p.partition, "offsets_read", p.offsetsRead, "bytes_read", p.bytesRead)
		}
	}
	return out, nil
}

// tailError names the deadline when it is what ended the read.
func tailError(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errTailTimeout) {
		return fmt.Errorf("%w (%v): check that Kafka answers and that each partition has a leader; nothing was produced past this point, and a restart resumes from the slot", err, errTailTimeout)
	}
	return err
}

// partitionTail is the search for one partition's last visible record.
type partitionTail struct {
	partition int32
	start     int64 // the partition's first offset
	from, to  int64 // the window being read: [from, to)
	window    int64
	readTo    int64 // records below this offset, in the window, have been read
	records   []tailRecord
	done      bool
	// exhausted: the budget (tailMaxOffsets, tailMaxBytes) ran out before a visible record
	// was found.
	exhausted   bool
	found       *ConsumedRecord // the last visible record
	fates       map[int64]int16
	bytesRead   int64
	offsetsRead int64
}

// tailRecord is what the search keeps of a record read.
type tailRecord struct {
	offset        int64
	control       bool
	marker        int16 // of a control record: controlAbort, controlCommit, or another type
	transactional bool
	producerID    int64
	rec           *ConsumedRecord
}

// The types of control record a transactional producer's transactions end with.
const (
	controlAbort  = 0
	controlCommit = 1
)

func newPartitionTail(partition int32, start, end int64) *partitionTail {
	p := &partitionTail{partition: partition, start: start, to: end, window: tailFirstWindow, fates: map[int64]int16{}}
	p.from = max(start, end-p.window)
	p.readTo = p.from
	return p
}

// complete reports whether the window has been read to its end, or the budget is spent.
func (p *partitionTail) complete() bool { return p.readTo >= p.to || p.exhausted }

// add takes a record read in the window.
func (p *partitionTail) add(r *kgo.Record) {
	tr := tailRecord{offset: r.Offset, control: r.Attrs.IsControl(), transactional: r.Attrs.IsTransactional(), producerID: r.ProducerID}
	if tr.control {
		tr.marker = -1
		if len(r.Key) >= 4 {
			tr.marker = int16(binary.BigEndian.Uint16(r.Key[2:4])) // version, then type
		}
	} else {
		tr.rec = &ConsumedRecord{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Headers: headersOf(r), Transactional: tr.transactional}
	}
	p.take(tr, int64(len(r.Key)+len(r.Value)))
}

// take keeps what the search needs of a record of size bytes.
func (p *partitionTail) take(r tailRecord, size int64) {
	if r.offset < p.readTo {
		return // a record of the batch before the window's start, or read already
	}
	p.readTo = r.offset + 1
	if r.offset >= p.to {
		return // read in an earlier (later) window
	}
	p.offsetsRead++
	p.bytesRead += size
	if p.offsetsRead > tailMaxOffsets || p.bytesRead > tailMaxBytes {
		p.exhausted = true
		return
	}
	p.records = append(p.records, r)
}

// nextWindow looks, newest first, for a visible record among those of the window just read,
// and moves the window back when there is none.
func (p *partitionTail) nextWindow() {
	if p.exhausted {
		p.done = true // what is left of the window is unknown: no tail
		return
	}
	slices.SortFunc(p.records, func(a, b tailRecord) int { return cmp.Compare(b.offset, a.offset) })
	for _, r := range p.records {
		switch {
		case r.control:
			// Earlier records of this producer, up to its previous marker, belong to the
			// transaction this marker ended.
			p.fates[r.producerID] = r.marker
		case !r.transactional || p.fates[r.producerID] == controlCommit:
			p.found, p.done = r.rec, true
			return
		}
		// An aborted transaction's record, or an open one's (no marker after it yet, which
		// reads as controlAbort, the zero value).
	}
	p.records = p.records[:0]
	switch {
	case p.from <= p.start:
		p.done = true // the whole partition holds no visible record
	default:
		p.to = p.from
		p.window *= tailGrowth
		p.from = max(p.start, p.to-p.window)
		p.readTo = p.from
	}
}

// readWindows reads the current window of each partition, markers included, with one client.
func (w *Writer) readWindows(ctx context.Context, topic string, parts []*partitionTail) error {
	offsets := map[int32]kgo.Offset{}
	byPartition := map[int32]*partitionTail{}
	for _, p := range parts {
		offsets[p.partition] = kgo.NewOffset().At(p.from)
		byPartition[p.partition] = p
	}
	cl, err := w.cfg.newClient(ctx, false,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		// Markers are what tells committed transactions from aborted ones here; reading
		// uncommitted records shows every offset up to the high watermark, so the last one is
		// always seen and the read knows when it is done.
		kgo.KeepControlRecords(),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	left := len(parts)
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			var slow []int32
			for _, p := range parts {
				if !p.complete() {
					slow = append(slow, p.partition)
				}
			}
			return tailError(ctx, fmt.Errorf("read the last records of %s, partitions %v: %w", topic, slow, context.Cause(ctx)))
		}
		for _, fe := range fs.Errors() {
			return fmt.Errorf("read the last records of %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			p := byPartition[fp.Partition]
			if p == nil || p.complete() {
				return
			}
			for _, r := range fp.Records {
				p.add(r)
			}
			if p.complete() {
				left--
				cl.PauseFetchPartitions(map[string][]int32{topic: {p.partition}})
			}
		})
	}
	return nil
}
