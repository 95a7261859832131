package sink

import (
	"testing"
)

const commit, abort = controlCommit, controlAbort

// logBuilder writes a partition's log as the tail search sees it.
type logBuilder struct {
	recs []tailRecord
	next int64
}

func (l *logBuilder) plain(id string) *logBuilder {
	l.recs = append(l.recs, tailRecord{offset: l.next, rec: &ConsumedRecord{Headers: []Header{{Key: "id", Value: []byte(id)}}}})
	l.next++
	return l
}

func (l *logBuilder) txData(pid int64, id string) *logBuilder {
	l.recs = append(l.recs, tailRecord{offset: l.next, transactional: true, producerID: pid, rec: &ConsumedRecord{Headers: []Header{{Key: "id", Value: []byte(id)}}}})
	l.next++
	return l
}

func (l *logBuilder) marker(pid int64, typ int16) *logBuilder {
	l.recs = append(l.recs, tailRecord{offset: l.next, control: true, transactional: true, producerID: pid, marker: typ})
	l.next++
	return l
}

func (l *logBuilder) gap(n int64) *logBuilder { l.next += n; return l }

// search runs the tail search over the log as LastHeaders does, each window read from a little
// before its start (a fetch returns whole batches). size is each record's size in bytes.
func search(l *logBuilder, size int64) (p *partitionTail, windows int) {
	p = newPartitionTail(0, 0, l.next)
	for !p.done {
		windows++
		for _, r := range l.recs {
			if r.offset >= p.from-3 && !p.complete() {
				p.take(r, size)
			}
		}
		if !p.complete() {
			panic("a window was not read to its end")
		}
		p.nextWindow()
	}
	return p, windows
}

func foundID(p *partitionTail) string {
	if p.found == nil {
		return ""
	}
	for _, h := range p.found.Headers {
		if h.Key == "id" {
			return string(h.Value)
		}
	}
	return "(no id)"
}

func TestTailSearch(t *testing.T) {
	manyAborts := &logBuilder{}
	manyAborts.plain("first")
	for range 500 {
		manyAborts.txData(7, "aborted").marker(7, abort)
	}
	cases := []struct {
		name string
		log  *logBuilder
		want string
	}{
		{"plain last", (&logBuilder{}).plain("a").plain("b"), "b"},
		{"commit marker last", (&logBuilder{}).plain("a").txData(1, "t").marker(1, commit), "t"},
		{"abort marker last", (&logBuilder{}).plain("a").txData(1, "t").txData(1, "t").marker(1, abort), "a"},
		{"open transaction last", (&logBuilder{}).plain("a").txData(1, "open"), "a"},
		{"committed, then aborted by the same producer", (&logBuilder{}).plain("a").txData(1, "c").marker(1, commit).txData(1, "x").marker(1, abort), "c"},
		{"aborted, then committed by the same producer", (&logBuilder{}).plain("a").txData(1, "x").marker(1, abort).txData(1, "c").marker(1, commit), "c"},
		// Two producers' transactions interleaved: each marker decides only its producer's records.
		{"interleaved, the later record aborted", (&logBuilder{}).plain("a").txData(1, "c").txData(2, "x").marker(2, abort).marker(1, commit), "c"},
		{"interleaved, the earlier record aborted", (&logBuilder{}).plain("a").txData(1, "x").txData(2, "c").marker(2, commit).marker(1, abort), "c"},
		{"a gap (compaction) before the last offsets", (&logBuilder{}).plain("a").gap(100).txData(1, "x").marker(1, abort), "a"},
		{"nothing visible", (&logBuilder{}).txData(1, "x").marker(1, abort).marker(1, commit), ""},
		{"many aborted transactions", manyAborts, "first"},
		{"an unknown control record", (&logBuilder{}).plain("a").marker(1, 5), "a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := search(tc.log, 10)
			if got := foundID(p); got != tc.want || p.exhausted {
				t.Fatalf("found %q (budget spent: %v), want %q", got, p.exhausted, tc.want)
			}
		})
	}
}

// The window grows: a thousand offsets of markers take a few reads, not hundreds.
func TestTailSearchWindowGrows(t *testing.T) {
	l := (&logBuilder{}).plain("first")
	for range 500 {
		l.txData(1, "x").marker(1, abort)
	}
	p, windows := search(l, 10)
	if foundID(p) != "first" || windows > 4 {
		t.Fatalf("found %q in %d windows, want first in at most 4", foundID(p), windows)
	}
}

// A partition whose last offsets hold nothing visible past the budget has no tail: the search
// stops instead of reading the whole partition.
func TestTailSearchBudget(t *testing.T) {
	t.Run("offsets", func(t *testing.T) {
		l := (&logBuilder{}).plain("first")
		for range tailMaxOffsets {
			l.txData(1, "x").marker(1, abort)
		}
		p, _ := search(l, 1)
		if !p.exhausted || p.found != nil || p.offsetsRead > tailMaxOffsets+1 {
			t.Fatalf("exhausted %v, found %q after %d offsets; want no tail after at most %d", p.exhausted, foundID(p), p.offsetsRead, tailMaxOffsets)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		l := (&logBuilder{}).plain("first")
		for range 100 {
			l.txData(1, "x").marker(1, abort)
		}
		p, _ := search(l, tailMaxBytes/50)
		if !p.exhausted || p.found != nil || p.bytesRead > tailMaxBytes+tailMaxBytes/50 {
			t.Fatalf("exhausted %v, found %q after %d bytes; want no tail after about %d", p.exhausted, foundID(p), p.bytesRead, tailMaxBytes)
		}
	})
}
