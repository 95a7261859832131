package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Progress counts the rows of one snapshot per table, for the log, the terminal and
// procon-cdc status. Counters are safe for concurrent use.
type Progress struct {
	ID, Kind string

	mu     sync.Mutex
	tables []*tableProgress
	byName map[string]*tableProgress
	now    func() time.Time
}

type tableProgress struct {
	relation string
	rows     atomic.Int64 // rows read and handed to Kafka
	chunks   atomic.Int64 // chunks that had rows
	total    atomic.Int64 // estimate
	started  atomic.Int64 // unix nanos, 0 until the first row
	finished atomic.Int64 // unix nanos, 0 until done
}

// NewProgress returns the progress of snapshot id.
func NewProgress(id, kind string) *Progress {
	return &Progress{ID: id, Kind: kind, byName: map[string]*tableProgress{}, now: time.Now}
}

func (p *Progress) table(rel string) *tableProgress {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.byName[rel]
	if t == nil {
		t = &tableProgress{relation: rel}
		p.byName[rel] = t
		p.tables = append(p.tables, t)
	}
	return t
}

// SetTotal sets the estimated rows of a table, adding it to the progress.
func (p *Progress) SetTotal(rel string, total int64) { p.table(rel).total.Store(total) }

// Add counts a chunk of n rows of a table (and starts its clock; n = 0 only starts it).
func (p *Progress) Add(rel string, n int64) {
	t := p.table(rel)
	t.started.CompareAndSwap(0, p.now().UnixNano())
	t.rows.Add(n)
	if n > 0 {
		t.chunks.Add(1)
	}
}

// Resume sets the rows a table already had before a restart.
func (p *Progress) Resume(rel string, rows int64) { p.table(rel).rows.Store(rows) }

// Done marks a table finished.
func (p *Progress) Done(rel string) {
	t := p.table(rel)
	now := p.now().UnixNano()
	t.started.CompareAndSwap(0, now)
	t.finished.CompareAndSwap(0, now)
}

// TableStat is a table's progress at one moment.
type TableStat struct {
	Relation string
	Rows     int64
	Chunks   int64 // chunks read in this run (not those of a run before a restart)
	Total    int64 // estimate; 0 when unknown
	Rate     float64
	ETA      time.Duration // -1 when unknown
	Done     bool
}

// Stats returns every table's progress, in the order tables were added.
func (p *Progress) Stats() []TableStat {
	p.mu.Lock()
	tables := append([]*tableProgress(nil), p.tables...)
	p.mu.Unlock()
	now := p.now().UnixNano()
	out := make([]TableStat, len(tables))
	for i, t := range tables {
		s := TableStat{Relation: t.relation, Rows: t.rows.Load(), Chunks: t.chunks.Load(), Total: t.total.Load(), ETA: -1}
		start, end := t.started.Load(), t.finished.Load()
		s.Done = end != 0
		if end == 0 {
			end = now
		}
		if start != 0 && end > start {
			s.Rate = float64(s.Rows) / (float64(end-start) / 1e9)
		}
		s.ETA = eta(s.Rows, s.Total, s.Rate, s.Done)
		out[i] = s
	}
	return out
}

func eta(rows, total int64, rate float64, done bool) time.Duration {
	switch {
	case done:
		return 0
	case rate <= 0 || total <= 0:
		return -1
	case rows >= total:
		return 0 // the estimate was low; finishing soon
	}
	return time.Duration(float64(total-rows) / rate * float64(time.Second))
}

// Line is a one-line summary for a terminal.
func (p *Progress) Line() string {
	var rows, total int64
	var rate float64
	var parts []string
	done := true
	for _, s := range p.Stats() {
		rows += s.Rows
		total += max(s.Total, s.Rows)
		if !s.Done {
			done = false
			rate += s.Rate
			parts = append(parts, fmt.Sprintf("%s %s", s.Relation, percent(s.Rows, s.Total)))
		}
	}
	line := fmt.Sprintf("snapshot %s: %d/~%d rows", p.ID, rows, total)
	if !done {
		line += fmt.Sprintf(", %.0f rows/s", rate)
		if rate > 0 && total > rows {
			line += ", ETA " + FormatETA(time.Duration(float64(total-rows)/rate*float64(time.Second)))
		}
		if len(parts) > 0 {
			line += " [" + strings.Join(parts, ", ") + "]"
		}
	} else {
		line += ", done"
	}
	return line
}

func percent(rows, total int64) string {
	if total <= 0 {
		return fmt.Sprintf("%d rows", rows)
	}
	return fmt.Sprintf("%d%%", min(100, rows*100/total))
}

// FormatETA renders a remaining duration for people: 42s, 3m05s, 2h10m; "?" when unknown.
func FormatETA(d time.Duration) string {
	switch {
	case d < 0:
		return "?"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()+0.5))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// Log logs every table's progress every interval until ctx ends.
func (p *Progress) Log(ctx context.Context, log *slog.Logger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.LogNow(log)
		}
	}
}

// LogNow logs every unfinished table's progress.
func (p *Progress) LogNow(log *slog.Logger) {
	for _, s := range p.Stats() {
		if s.Done {
			continue
		}
		log.Info("snapshot progress", "snapshot", p.ID, "relation", s.Relation, "rows", s.Rows,
			"estimated_total", s.Total, "rows_per_s", int64(s.Rate), "eta", FormatETA(s.ETA))
	}
}
