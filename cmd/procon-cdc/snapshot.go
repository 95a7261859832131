package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/snapshot"
)

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// cmdSnapshot requests an incremental snapshot of tables by writing Debezium's
// execute-snapshot signal into the signal table; the running procon-cdc picks it up from the
// stream.
func cmdSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var tables listFlag
	var where string
	var stop bool
	cfg, err := loadConfig("snapshot", args, stderr, func(fs *flag.FlagSet) {
		fs.Var(&tables, "table", "captured table to snapshot, schema.table (repeat or comma-separate for several)")
		fs.StringVar(&where, "where", "", "snapshot only the rows matching this SQL condition (additional-conditions)")
		fs.BoolVar(&stop, "stop", false, "stop the incremental snapshots of these tables (all when no --table) instead")
	})
	if err != nil {
		return err
	}
	signal := snapshot.QualifyTable(cfg.Snapshot.SignalTable)
	if signal == "" {
		return &exitError{2, errors.New("snapshot: snapshot.signal_table is not set: set it (e.g. public.procon_signal) and restart procon-cdc run, which creates the table and adds it to the publication")}
	}
	if len(tables) == 0 && !stop {
		return &exitError{2, errors.New("snapshot: --table is required")}
	}
	req := snapshot.SnapshotRequest{Type: "incremental"}
	for _, t := range tables {
		name := snapshot.QualifyTable(t)
		if _, ok := cfg.Relations[name]; !ok {
			return &exitError{2, fmt.Errorf("snapshot: %s is not in relation_configs", name)}
		}
		pattern := regexp.QuoteMeta(name) // data-collections are regular expressions
		req.DataCollections = append(req.DataCollections, pattern)
		if where != "" {
			req.AdditionalConditions = append(req.AdditionalConditions, snapshot.Condition{DataCollection: pattern, Filter: where})
		}
	}
	conn, err := pg.Connect(ctx, cfg.Postgres.DSN, "procon-cdc snapshot")
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.to_regclass($1) IS NOT NULL`, pg.QuoteQualified(signal)).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("snapshot: signal table %s does not exist: start procon-cdc run with this configuration first (it creates the table and publishes it)", signal)
	}
	id := snapshot.NewSignalID()
	typ := snapshot.SignalExecuteSnapshot
	if stop {
		typ = snapshot.SignalStopSnapshot
	}
	if err := snapshot.WriteSignal(ctx, conn, signal, id, typ, req); err != nil {
		return err
	}
	if stop {
		fmt.Fprintf(stdout, "signal %s (%s) written to %s\n", id, typ, signal)
		return nil
	}
	fmt.Fprintf(stdout, "signal %s written to %s: incremental snapshot of %s", id, signal, strings.Join(tables, ", "))
	if where != "" {
		fmt.Fprintf(stdout, " where %s", where)
	}
	fmt.Fprintf(stdout, "\nprocon-cdc run picks it up from the stream; follow it with: procon-cdc status --config FILE (snapshot signal:%s)\n", id)
	return nil
}

// progressWriter is stderr when it is a terminal: log lines clear the snapshot progress line
// before they are written, and the line is drawn again every second.
type progressWriter struct {
	mu    sync.Mutex
	w     io.Writer
	shown bool
}

func newProgressWriter(w io.Writer) (*progressWriter, bool) {
	if !isTerminal(w) {
		return nil, false
	}
	return &progressWriter{w: w}, true
}

// isTerminal reports whether w is a terminal (a character device), where redrawing with
// escape sequences makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		io.WriteString(p.w, "\r\x1b[K")
		p.shown = false
	}
	return p.w.Write(b)
}

func (p *progressWriter) draw(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if line == "" && !p.shown {
		return
	}
	io.WriteString(p.w, "\r\x1b[K"+line)
	p.shown = line != ""
}

// showProgress draws the running snapshot's progress line until ctx ends.
func (p *progressWriter) showProgress(ctx context.Context, e *engine.Engine) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.draw("")
			return
		case <-t.C:
			line := ""
			if pr := e.SnapshotProgress(); pr != nil {
				line = pr.Line()
			}
			p.draw(line)
		}
	}
}
