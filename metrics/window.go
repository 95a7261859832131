package metrics

import (
	"context"
	"sync"
	"time"
)

// window keeps samples of a running total over a span, for a rate over the last span
// without a goroutine: each reading adds a sample and drops those older than the span.
type window struct {
	span    time.Duration
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at    time.Time
	total int64
}

func newWindow(span time.Duration) *window { return &window{span: span} }

// sampleEvery records total() every interval until ctx ends, so a rate read after a quiet
// spell still covers the whole span.
func (w *window) sampleEvery(ctx context.Context, interval time.Duration, total func() int64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.rate(now, total())
		}
	}
}

// rate records total at now and returns the rate per second since the oldest sample within
// the span (0 with a single sample).
func (w *window) rate(now time.Time, total int64) float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples = append(w.samples, sample{now, total})
	// Keep one sample at or before the span's start, so the rate covers the whole span.
	i := 0
	for i+1 < len(w.samples) && now.Sub(w.samples[i+1].at) >= w.span {
		i++
	}
	w.samples = w.samples[i:]
	first := w.samples[0]
	el := now.Sub(first.at).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(total-first.total) / el
}
