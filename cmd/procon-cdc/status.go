package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/metrics"
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
	Name      string `json:"name"`
	Exists    bool   `json:"exists"`
	ActivePID int32  `json:"active_pid,omitempty"`
	Confirmed string `json:"confirmed_flush_lsn,omitempty"`
	// ServerLSN is the server's WAL end (its replay position on a standby); LagBytes is how
	// far it is past Confirmed.
	ServerLSN  string `json:"server_lsn,omitempty"`
	LagBytes   *int64 `json:"lag_bytes,omitempty"`
	PositionOK bool   `json:"position_available"`
	// LockHolder is the session holding the slot's lock (the active procon-cdc run), nil when
	// none does; Standbys counts the sessions waiting for it.
	LockHolder *lockHolder `json:"lock_holder,omitempty"`
	Standbys   int         `json:"standbys_waiting"`
}

type lockHolder struct {
	PID         int32  `json:"pid"`
	Application string `json:"application_name,omitempty"`
	Address     string `json:"client_address,omitempty"`
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

// statusOutput is one reading of procon-cdc status: what PostgreSQL says about the slot and
// the recorded snapshots, and what the running procon-cdc run says on metrics.listen.
type statusOutput struct {
	At time.Time `json:"at"`
	// Postgres is nil when PostgreSQL could not be read; PostgresError says why.
	Postgres      *statusReport `json:"postgres"`
	PostgresError string        `json:"postgres_error,omitempty"`
	// Process is nil without metrics.listen (ProcessURL is empty then) or when the process
	// did not answer (ProcessError says why).
	Process      *metrics.Status `json:"process"`
	ProcessURL   string          `json:"process_url,omitempty"`
	ProcessError string          `json:"process_error,omitempty"`
}

// Bounds of one reading: the process answers from memory, so a slow answer means it is stuck
// or unreachable; PostgreSQL runs three small queries.
const (
	processTimeout  = 2 * time.Second
	postgresTimeout = 15 * time.Second
)

// cmdStatus prints the slot's position, the progress of the snapshots recorded for it, and
// the running process's view when metrics.listen is set; --watch prints it again every
// --interval until ctx ends (Ctrl-C).
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON, watch bool
	var interval time.Duration
	cfg, err := loadConfig("status", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print JSON (with --watch: one object per line)")
		fs.BoolVar(&watch, "watch", false, "print the status again every --interval until Ctrl-C")
		fs.DurationVar(&interval, "interval", 2*time.Second, "how often --watch reads the status again")
	})
	if err != nil {
		return err
	}
	if interval < 100*time.Millisecond {
		return &exitError{2, fmt.Errorf("status: --interval %s is too short: give 100ms or more", interval)}
	}
	r := newStatusReader(cfg)
	defer r.close()
	if !watch {
		out := r.read(ctx)
		if err := writeStatus(stdout, out, asJSON, true); err != nil {
			return err
		}
		if out.Postgres == nil {
			return fmt.Errorf("status: %s", out.PostgresError)
		}
		return nil
	}
	onTerminal := isTerminal(stdout)
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		out := r.read(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var buf bytes.Buffer
		if !asJSON {
			switch {
			case onTerminal:
				buf.WriteString("\x1b[H\x1b[2J") // cursor home, clear the screen
			case !first:
				buf.WriteString("\n")
			}
			fmt.Fprintf(&buf, "procon-cdc status at %s, every %s (Ctrl-C stops)\n", out.At.Format("2006-01-02 15:04:05"), interval)
		}
		if err := writeStatus(&buf, out, asJSON, false); err != nil {
			return err
		}
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("status: write the report: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// writeStatus prints out as text, or as JSON (indented, or one line for --watch).
func writeStatus(w io.Writer, out *statusOutput, asJSON, indent bool) error {
	if !asJSON {
		printStatus(w, out, time.Now())
		return nil
	}
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("status: write JSON: %w", err)
	}
	return nil
}

// statusReader reads the status, keeping its PostgreSQL connection between readings of
// --watch (and connecting again after an error: the connection may be the problem).
type statusReader struct {
	cfg    *config.Config
	conn   *pgx.Conn
	client *http.Client
	url    string // empty without metrics.listen
	urlErr error  // why url cannot be reached at all
}

func newStatusReader(cfg *config.Config) *statusReader {
	r := &statusReader{cfg: cfg}
	if cfg.Metrics.Listen != "" {
		r.url, r.urlErr = processURL(cfg.Metrics.Listen)
		// No proxy: metrics.listen is an address of this host or its network.
		r.client = &http.Client{Timeout: processTimeout, Transport: &http.Transport{Proxy: nil, MaxIdleConns: 1}}
	}
	return r
}

func (r *statusReader) close() {
	if r.conn != nil {
		r.conn.Close(context.Background())
	}
	if r.client != nil {
		r.client.CloseIdleConnections()
	}
}

// read takes one reading: the process first, so that a position PostgreSQL reports is never
// older than the process's one beside it.
func (r *statusReader) read(ctx context.Context) *statusOutput {
	out := &statusOutput{At: time.Now(), ProcessURL: r.url}
	switch {
	case r.urlErr != nil:
		out.ProcessError = r.urlErr.Error()
	case r.url == "":
	default:
		st, err := fetchProcessStatus(ctx, r.client, r.url, r.cfg.Postgres.Slot)
		if err != nil {
			out.ProcessError = err.Error()
		}
		out.Process = st
	}
	rep, err := r.readPostgres(ctx)
	if err != nil {
		out.PostgresError = err.Error()
	}
	out.Postgres = rep
	return out
}

func (r *statusReader) readPostgres(ctx context.Context) (*statusReport, error) {
	ctx, cancel := context.WithTimeout(ctx, postgresTimeout)
	defer cancel()
	if r.conn == nil {
		conn, err := pg.Connect(ctx, r.cfg.Postgres.DSN, "procon-cdc status")
		if err != nil {
			return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
		}
		r.conn = conn
	}
	rep, err := readStatus(ctx, r.conn, r.cfg)
	if err != nil {
		r.conn.Close(context.Background())
		r.conn = nil
		return nil, fmt.Errorf("read PostgreSQL: %w", err)
	}
	return rep, nil
}

// processURL is the URL of /status for metrics.listen: an empty or unspecified host
// (":9187", "0.0.0.0:9187", "[::]:9187") is served on this host's loopback too.
func processURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("metrics.listen %q is not host:port: %w", listen, err)
	}
	if port == "0" {
		return "", fmt.Errorf("metrics.listen %q has port 0: procon-cdc run listens on a port chosen at its start, which status cannot know; set a fixed port", listen)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port) + "/status", nil
}

// fetchProcessStatus reads procon-cdc run's /status at url. A process that streams another
// slot is an error: its numbers are not this configuration's.
func fetchProcessStatus(ctx context.Context, client *http.Client, url, slot string) (*metrics.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if ue := (*neturl.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // the URL is already in the message that shows this error
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("it answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	var st metrics.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("its answer is not the status of procon-cdc run: %w", err)
	}
	if st.Slot != "" && st.Slot != slot {
		return nil, fmt.Errorf("the process there streams slot %s, not this configuration's %s", st.Slot, slot)
	}
	return &st, nil
}

func readStatus(ctx context.Context, conn *pgx.Conn, cfg *config.Config) (*statusReport, error) {
	slot, err := replication.ReadSlot(ctx, conn, cfg.Postgres.Slot)
	if err != nil {
		return nil, err
	}
	rep := &statusReport{Slot: slotReport{Name: cfg.Postgres.Slot, Exists: slot.Exists, ActivePID: slot.ActivePID,
		Confirmed: slot.Confirmed, PositionOK: slot.Exists && !slot.Lost}}
	holder, waiting, err := replication.LockSessions(ctx, conn, cfg.Postgres.Slot)
	if err != nil {
		return nil, err
	}
	rep.Slot.Standbys = waiting
	if holder != nil {
		rep.Slot.LockHolder = &lockHolder{PID: holder.PID, Application: holder.Application, Address: holder.Address}
	}
	var confirmed *string
	if slot.Confirmed != "" {
		confirmed = &slot.Confirmed
	}
	var server *string
	err = conn.QueryRow(ctx, `SELECT w::text, pg_catalog.pg_wal_lsn_diff(w, $1::pg_catalog.pg_lsn)::bigint
		FROM (SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn() END) AS s(w)`,
		confirmed).Scan(&server, &rep.Slot.LagBytes)
	if err != nil {
		return nil, fmt.Errorf("read the server's WAL position: %w", err)
	}
	if server != nil {
		rep.Slot.ServerLSN = *server
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
