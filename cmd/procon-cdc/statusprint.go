package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/procon-cdc/procon/metrics"
	"github.com/procon-cdc/procon/snapshot"
)

// Widths of procon-cdc status's text: the labels, the progress bars, and the table names
// beside them (longer names are cut), so that a bar line fits about 100 columns.
const (
	labelWidth    = 13
	barWidth      = 20
	barNameLength = 30
)

// printStatus writes out for a person: the process's view (when it answered) and
// PostgreSQL's, one labelled line per subject, the running snapshots as bars, then the
// snapshots recorded in the progress table. now is the reading's time, for "ago".
func printStatus(w io.Writer, out *statusOutput, now time.Time) {
	p := out.Process
	switch {
	case p != nil:
		field(w, "process", "%s (%s)", processText(p), out.ProcessURL)
	case out.ProcessURL != "":
		fmt.Fprintf(w, "procon-cdc run is not answering on %s: %s; showing what PostgreSQL says\n", out.ProcessURL, out.ProcessError)
	case out.ProcessError != "":
		fmt.Fprintf(w, "procon-cdc run cannot be asked: %s; showing what PostgreSQL says\n", out.ProcessError)
	default:
		fmt.Fprintln(w, "metrics.listen is not set: running procon-cdc run with metrics.listen shows more here (phase, lag in seconds, throughput, in flight, live snapshot progress, last error); showing what PostgreSQL says")
	}
	rep := out.Postgres
	if rep == nil {
		field(w, "postgres", "%s", out.PostgresError)
	} else {
		field(w, "slot", "%s", slotText(rep.Slot, p))
	}
	if s := positionText(rep, p); s != "" {
		field(w, "position", "%s", s)
	}
	if s := lagText(rep, p); s != "" {
		field(w, "lag", "%s", s)
	}
	if p != nil {
		field(w, "throughput", "%s events/s over the last minute, %s events produced since the start",
			numberText(p.EventsPerSecond), numberText(float64(p.EventsProduced)))
		field(w, "in flight", "%s", inFlightText(&p.State))
	}
	printSnapshotBars(w, rep, p)
	if p != nil {
		if r := p.Realtime; r != nil && (r.Waiting > 0 || r.Sent > 0 || r.Coalesced > 0 || r.Delayed > 0 || r.TooLarge > 0) {
			field(w, "realtime", "%d waiting (%s), %d sent, %d coalesced, %d delayed, %d too large",
				r.Waiting, bytesText(int64(r.QueueBytes)), r.Sent, r.Coalesced, r.Delayed, r.TooLarge)
		}
		if s := deadLettersText(p.DeadLetters); s != "" {
			field(w, "dead letters", "%s", s)
		}
		if e := p.LastError; e != nil {
			field(w, "last error", "%s ago: %s", durationText(now.Sub(e.At)), e.Message)
		}
	}
	if rep != nil {
		printSnapshotHistory(w, rep.Snapshots)
	}
}

func field(w io.Writer, label, format string, args ...any) {
	fmt.Fprintf(w, "%-*s%s\n", labelWidth, label, fmt.Sprintf(format, args...))
}

// processText is the phase and readiness, with the reason when not ready. The first failed
// check is the reason /readyz gives; Kafka's reachability is added when another hid it.
func processText(p *metrics.Status) string {
	s := p.Phase
	switch {
	case p.Ready:
		s += ", ready"
	case p.NotReady == "not streaming: "+p.Phase:
		s += ", not ready until streaming"
	case p.NotReady != "":
		s += ", not ready: " + p.NotReady
	default:
		s += ", not ready"
	}
	if !p.KafkaReachable && !strings.Contains(p.NotReady, "Kafka") {
		s += "; Kafka is not reachable"
	}
	return s
}

// slotText is the slot as the server sees it (pg_replication_slots), with the WAL it keeps
// when the process polled that.
func slotText(s slotReport, p *metrics.Status) string {
	if !s.Exists {
		return s.Name + ": does not exist (procon-cdc run creates it)"
	}
	text := s.Name + ": inactive"
	if s.ActivePID != 0 {
		text = fmt.Sprintf("%s: active (server process %d)", s.Name, s.ActivePID)
	}
	if p != nil && p.SlotPoll != nil && p.SlotPoll.Exists && p.SlotPoll.Err == "" {
		text += ", keeps " + bytesText(p.SlotPoll.RetainedBytes) + " of WAL"
		if safe := p.SlotPoll.SafeWALSize; safe != nil {
			text += ", " + bytesText(*safe) + " more before max_slot_wal_keep_size"
		}
	}
	if !s.PositionOK {
		text += ", POSITION LOST (wal_status lost)"
	}
	if h := s.LockHolder; h != nil {
		text += fmt.Sprintf("; lock held by %s (server process %d", h.Application, h.PID)
		if h.Address != "" {
			text += ", " + h.Address
		}
		text += ")"
	}
	switch s.Standbys {
	case 0:
	case 1:
		text += ", 1 standby waiting"
	default:
		text += fmt.Sprintf(", %d standbys waiting", s.Standbys)
	}
	return text
}

// positionText is what is in Kafka (the process's confirmed position), what the slot has
// been told (confirmed_flush_lsn, up to postgres.status_interval behind), and the server's
// WAL end.
func positionText(rep *statusReport, p *metrics.Status) string {
	var parts []string
	if p != nil {
		parts = append(parts, "in Kafka up to "+p.ConfirmedLSN.String())
	}
	if rep != nil && rep.Slot.Confirmed != "" {
		parts = append(parts, "slot confirmed_flush_lsn "+rep.Slot.Confirmed)
	}
	switch {
	case p != nil:
		parts = append(parts, "server WAL "+serverLSN(p).String())
	case rep != nil && rep.Slot.ServerLSN != "":
		parts = append(parts, "server WAL "+rep.Slot.ServerLSN)
	}
	return strings.Join(parts, ", ")
}

// serverLSN is the furthest WAL end the process has seen, as its lag counts it.
func serverLSN(p *metrics.Status) metrics.LSN {
	end := p.ServerLSN
	if p.SlotPoll != nil && p.SlotPoll.ServerLSN > end {
		end = p.SlotPoll.ServerLSN
	}
	return end
}

func lagText(rep *statusReport, p *metrics.Status) string {
	switch {
	case p != nil && p.LagSeconds > 0:
		return fmt.Sprintf("%s of WAL, %s since the oldest commit not yet in Kafka", bytesText(p.LagBytes),
			durationText(time.Duration(p.LagSeconds*float64(time.Second))))
	case p != nil:
		return bytesText(p.LagBytes) + " of WAL; every transaction received is in Kafka"
	case rep != nil && rep.Slot.LagBytes != nil:
		return bytesText(*rep.Slot.LagBytes) + " of WAL past the slot's confirmed_flush_lsn"
	}
	return ""
}

// inFlightText is Kafka's producer buffer against its limits; at a limit, reading the WAL
// waits for Kafka (backpressure).
func inFlightText(st *metrics.State) string {
	s := fmt.Sprintf("%d/%d records, ", st.BufferedRecords, st.MaxBufferedRecords)
	if st.MaxBufferedBytes > 0 {
		s += bytesText(st.BufferedBytes) + "/" + bytesText(st.MaxBufferedBytes)
	} else {
		s += bytesText(st.BufferedBytes) + " (no byte limit)"
	}
	if (st.MaxBufferedRecords > 0 && st.BufferedRecords >= st.MaxBufferedRecords) ||
		(st.MaxBufferedBytes > 0 && st.BufferedBytes >= st.MaxBufferedBytes) {
		s += "; paused by backpressure (Kafka's producer buffer is full)"
	}
	return s
}

func deadLettersText(counts []metrics.DeadLetterCount) string {
	var parts []string
	for _, c := range counts {
		if c.Records == 0 {
			continue
		}
		what := c.Outcome
		if c.Outcome == "dead_letter" {
			what = "to the dead-letter topic"
		}
		parts = append(parts, fmt.Sprintf("%s: %d %s", c.Kind, c.Records, what))
	}
	return strings.Join(parts, "; ")
}

// barRow is one table of a running snapshot.
type barRow struct {
	name        string
	rows, total int64
	rate, eta   float64 // eta < 0: unknown
	done        bool
	outcome     string // refused or failed
}

// printSnapshotBars draws the running snapshots: the process's (the freshest, counted as
// Kafka acknowledges), and those PostgreSQL records running that the process does not show
// (as recorded, so a little behind).
func printSnapshotBars(w io.Writer, rep *statusReport, p *metrics.Status) {
	shown := ""
	if p != nil && p.Snapshot != nil && p.Snapshot.Running {
		s := p.Snapshot
		shown = s.ID
		rows := make([]barRow, len(s.Tables))
		for i, t := range s.Tables {
			rows[i] = barRow{name: t.Relation, rows: t.Rows, total: t.Total, rate: t.RowsPerSecond, eta: t.ETASeconds, done: t.Done}
		}
		field(w, "snapshot", "%s (%s), running", s.ID, s.Kind)
		printBars(w, rows)
	}
	if rep == nil {
		return
	}
	for _, s := range rep.Snapshots {
		if s.Status != snapshot.StatusRunning || s.ID == shown {
			continue
		}
		rows := make([]barRow, len(s.Tables))
		for i, t := range s.Tables {
			name := t.Relation
			if t.Filter != "" {
				name += " WHERE " + t.Filter
			}
			rows[i] = barRow{name: name, rows: t.Rows, total: t.Total, rate: t.RowsPerSec, eta: t.ETASeconds, done: t.Done, outcome: t.Outcome}
		}
		field(w, "snapshot", "%s (%s), running (as recorded in the progress table)", s.ID, s.Kind)
		printBars(w, rows)
	}
}

func printBars(w io.Writer, rows []barRow) {
	width := 0
	for _, r := range rows {
		width = max(width, len([]rune(cut(r.name, barNameLength))))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-*s  %s\n", width, cut(r.name, barNameLength), barText(r))
	}
}

// barText is a table's progress: `[##########----------]  52%  1.2M/2.3M rows  14k rows/s  ETA 1m20s`.
// With no estimate of the total the percentage is `?`; the estimate is the planner's, so
// rows past it show a full bar.
func barText(r barRow) string {
	frac := -1.0
	switch {
	case r.done:
		frac = 1
	case r.total > 0:
		frac = min(1, float64(r.rows)/float64(r.total))
	}
	pct := "   ?"
	if frac >= 0 {
		pct = fmt.Sprintf("%3d%%", int(frac*100))
	}
	count := numberText(float64(r.rows)) + " rows"
	if r.total > 0 {
		count = numberText(float64(r.rows)) + "/" + numberText(float64(r.total)) + " rows"
	}
	var tail string
	switch {
	case r.outcome != "":
		tail = r.outcome
	case r.done:
		tail = "done"
	default:
		eta := "?"
		if r.eta >= 0 {
			eta = snapshot.FormatETA(time.Duration(r.eta * float64(time.Second)))
		}
		tail = numberText(r.rate) + " rows/s  ETA " + eta
	}
	return "[" + bar(frac, barWidth) + "] " + pct + "  " + count + "  " + tail
}

// bar is frac of width as '#', the rest '-'; all '-' when frac is unknown (< 0).
func bar(frac float64, width int) string {
	n := 0
	if frac > 0 {
		n = min(width, int(frac*float64(width)))
	}
	return strings.Repeat("#", n) + strings.Repeat("-", width-n)
}

// cut shortens s to n runes, marking the cut with "...".
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}

// printSnapshotHistory is the table of the snapshots recorded in the progress table, with
// the reasons of those that ended refused or failed.
func printSnapshotHistory(w io.Writer, snaps []snapshotReport) {
	if len(snaps) == 0 {
		field(w, "snapshots", "none recorded")
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tKIND\tSTATUS\tTABLE\tROWS\tEST. TOTAL\tDONE\tROWS/S\tETA")
	for _, sn := range snaps {
		for i, t := range sn.Tables {
			id, kind, status := sn.ID, sn.Kind, sn.Status
			if i > 0 {
				id, kind, status = "", "", ""
			}
			pct := "-"
			if t.Total > 0 {
				pct = fmt.Sprintf("%d%%", min(100, t.Rows*100/t.Total))
			}
			if t.Done {
				pct = "100%"
			}
			if t.Outcome != "" {
				pct = t.Outcome
			}
			eta := snapshot.FormatETA(time.Duration(t.ETASeconds * float64(time.Second)))
			if t.Done || sn.Status != snapshot.StatusRunning {
				eta = "-"
			}
			table := t.Relation
			if t.Filter != "" {
				table += " WHERE " + t.Filter
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%.0f\t%s\n", id, kind, status, table, t.Rows, t.Total, pct, t.RowsPerSec, eta)
		}
		if len(sn.Tables) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t\t\n", sn.ID, sn.Kind, sn.Status)
		}
	}
	tw.Flush()
	for _, sn := range snaps {
		if sn.Error != "" {
			fmt.Fprintf(w, "%s %s: %s\n", sn.ID, sn.Status, sn.Error)
		}
	}
}

// bytesText is n bytes in binary units: "512 B", "1.2 MiB".
func bytesText(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1f TiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// numberText is v with a decimal suffix and about two significant digits: "950", "1.2k",
// "14k", "2.3M"; below 10, a fraction keeps one decimal ("0.5").
func numberText(v float64) string {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "?"
	}
	if v < 999.5 {
		if v < 9.95 && v != math.Trunc(v) {
			return fmt.Sprintf("%.1f", v)
		}
		return fmt.Sprintf("%.0f", v)
	}
	units := []string{"k", "M", "G", "T", "P"}
	u := 0
	v /= 1000
	for v >= 999.5 && u < len(units)-1 {
		v /= 1000
		u++
	}
	if v < 9.95 {
		return fmt.Sprintf("%.1f%s", v, units[u])
	}
	return fmt.Sprintf("%.0f%s", v, units[u])
}

// durationText is d for a person: "0.4s", "42s", "3m05s", "2h10m", "3d04h".
func durationText(d time.Duration) string {
	d = max(0, d)
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}
