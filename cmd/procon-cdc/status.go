package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/snapshot"
)

// statusReport is what procon-cdc status prints (as JSON with --json).
type statusReport struct {
	Slot      slotReport       `json:"slot"`
	Snapshots []snapshotReport `json:"snapshots"`
}

type slotReport struct {
	Name       string `json:"name"`
	Exists     bool   `json:"exists"`
	ActivePID  int32  `json:"active_pid,omitempty"`
	Confirmed  string `json:"confirmed_flush_lsn,omitempty"`
	LagBytes   *int64 `json:"lag_bytes,omitempty"`
	PositionOK bool   `json:"position_available"`
}

type snapshotReport struct {
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`
	Status  string    `json:"status"`
	Started time.Time `json:"started_at"`
	Updated time.Time `json:"updated_at"`
	// Error says why a refused or failed snapshot ended.
	Error  string        `json:"error,omitempty"`
	Tables []tableReport `json:"tables"`
}

type tableReport struct {
	Relation   string  `json:"relation"`
	Rows       int64   `json:"rows"`
	Total      int64   `json:"estimated_total"`
	Done       bool    `json:"done"`
	RowsPerSec float64 `json:"rows_per_s"`
	ETASeconds float64 `json:"eta_s"` // -1 when unknown
	Filter     string  `json:"filter,omitempty"`
	// Outcome is refused or failed for a table that ended without being read to its end,
	// and Error says why.
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

// cmdStatus prints the slot's position and the progress of the snapshots recorded for it.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	cfg, err := loadConfig("status", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	conn, err := pg.Connect(ctx, cfg.Postgres.DSN, "procon-cdc status")
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	rep, err := readStatus(ctx, conn, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(stdout, rep)
	return nil
}

func readStatus(ctx context.Context, conn *pgx.Conn, cfg *config.Config) (*statusReport, error) {
	slot, err := replication.ReadSlot(ctx, conn, cfg.Postgres.Slot)
	if err != nil {
		return nil, err
	}
	rep := &statusReport{Slot: slotReport{Name: cfg.Postgres.Slot, Exists: slot.Exists, ActivePID: slot.ActivePID,
		Confirmed: slot.Confirmed, PositionOK: slot.Exists && !slot.Lost}}
	if slot.Confirmed != "" {
		var lag int64
		if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), $1::pg_catalog.pg_lsn)::bigint`, slot.Confirmed).Scan(&lag); err == nil {
			rep.Slot.LagBytes = &lag
		}
	}
	snaps, err := snapshot.ReadSnapshots(ctx, conn, cfg.Postgres.Slot)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, s := range snaps {
		sr := snapshotReport{ID: s.ID, Kind: s.Kind, Status: s.Status, Started: s.Started, Updated: s.Updated, Error: s.Error}
		byRel := map[string]int{}
		for _, r := range s.Ranges {
			i, ok := byRel[r.Relation]
			if !ok {
				i = len(sr.Tables)
				byRel[r.Relation] = i
				sr.Tables = append(sr.Tables, tableReport{Relation: r.Relation, Done: true, Filter: r.Filter})
			}
			t := &sr.Tables[i]
			t.Rows += r.Rows
			t.Total += r.Total
			t.Done = t.Done && r.Done
			if r.Outcome != "" {
				t.Outcome, t.Error = r.Outcome, r.Error
			}
		}
		for i := range sr.Tables {
			t := &sr.Tables[i]
			t.ETASeconds = -1
			end := s.Updated
			if s.Status == snapshot.StatusRunning {
				end = now
			}
			if el := end.Sub(s.Started).Seconds(); el > 0 {
				t.RowsPerSec = float64(t.Rows) / el
			}
			switch {
			case t.Done:
				t.ETASeconds = 0
			case s.Status == snapshot.StatusRunning && t.RowsPerSec > 0 && t.Total > t.Rows:
				t.ETASeconds = float64(t.Total-t.Rows) / t.RowsPerSec
			}
		}
		rep.Snapshots = append(rep.Snapshots, sr)
	}
	return rep, nil
}

func printStatus(w io.Writer, rep *statusReport) {
	s := rep.Slot
	switch {
	case !s.Exists:
		fmt.Fprintf(w, "slot %s: does not exist (procon-cdc run creates it)\n", s.Name)
	default:
		state := "inactive"
		if s.ActivePID != 0 {
			state = fmt.Sprintf("active (server process %d)", s.ActivePID)
		}
		fmt.Fprintf(w, "slot %s: %s, confirmed_flush_lsn %s", s.Name, state, s.Confirmed)
		if s.LagBytes != nil {
			fmt.Fprintf(w, ", %s of WAL behind", bytesText(*s.LagBytes))
		}
		if !s.PositionOK {
			fmt.Fprint(w, ", POSITION LOST (wal_status lost)")
		}
		fmt.Fprintln(w)
	}
	if len(rep.Snapshots) == 0 {
		fmt.Fprintln(w, "snapshots: none recorded")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tKIND\tSTATUS\tTABLE\tROWS\tEST. TOTAL\tDONE\tROWS/S\tETA")
	for _, sn := range rep.Snapshots {
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
	for _, sn := range rep.Snapshots {
		if sn.Error != "" {
			fmt.Fprintf(w, "%s %s: %s\n", sn.ID, sn.Status, sn.Error)
		}
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
