// Command procon-cdc streams the committed changes of PostgreSQL tables into Kafka as
// Debezium-compatible events.
//
//	procon-cdc run --config FILE      stream until SIGINT/SIGTERM
//	procon-cdc check --config FILE    check the database, the relations and Kafka; change nothing
//	procon-cdc tail --config FILE     print the events of the configured topics as JSON lines
//	procon-cdc drop --config FILE     drop the slot and the publication (--topics: and the topics)
//	procon-cdc snapshot --config FILE --table T [--where C]   request an incremental snapshot
//	procon-cdc status --config FILE   the slot's position, snapshot progress and the running process's view
//	procon-cdc consume --config FILE  apply topics to a PostgreSQL database until SIGINT/SIGTERM
//	procon-cdc convert --debezium FILE  the configuration equivalent to a Debezium connector's
//	procon-cdc init-sql               print the SQL of Procon's own tables
//	procon-cdc version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/consumer"
	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/retrylog"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/snapshot"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

const usage = `usage: procon-cdc <command> [flags]

commands:
  run --config FILE      stream committed changes to Kafka until SIGINT/SIGTERM
  check --config FILE    check PostgreSQL, the relations and Kafka; changes nothing
  tail --config FILE     print events of the configured topics as JSON lines
  drop --config FILE     drop the slot and publication (--topics: and the topics)
  snapshot --config FILE --table T [--where COND]
                         request an incremental snapshot of T while procon-cdc run streams
  status --config FILE   the slot's position, the progress of snapshots and, with metrics.listen,
                         what procon-cdc run reports (--json, --watch [--interval 2s])
  consume --config FILE  apply change events from Kafka to a PostgreSQL database, with the
                         offsets stored in the same transactions, until SIGINT/SIGTERM
  convert --debezium FILE [--dsn DSN] [-o FILE]
                         write the procon-cdc configuration equivalent to a Debezium
                         PostgreSQL connector's (.properties or Kafka Connect JSON); what is
                         not mapped is listed on stderr, exit 1 if it changes the records
  init-sql               print the SQL that creates Procon's tables
  version                print the version
`

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	engine.Version = version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "procon-cdc:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{2, errors.New("no command given")}
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, args, stderr)
	case "check":
		return cmdCheck(ctx, args, stdout, stderr)
	case "tail":
		return cmdTail(ctx, args, stdout, stderr)
	case "drop":
		return cmdDrop(ctx, args, stdout, stderr)
	case "snapshot":
		return cmdSnapshot(ctx, args, stdout, stderr)
	case "status":
		return cmdStatus(ctx, args, stdout, stderr)
	case "consume":
		return cmdConsume(ctx, args, stderr)
	case "convert":
		return cmdConvert(ctx, args, stdout, stderr)
	case "init-sql":
		_, err := io.WriteString(stdout, initSQL+"\n"+snapshot.InitSQL+"\n"+consumer.OffsetsSQL)
		return err
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "procon-cdc", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return &exitError{2, fmt.Errorf("unknown command %q", cmd)}
}

// loadConfig parses the --config flag of a subcommand and loads the file.
func loadConfig(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, &exitError{2, err}
	}
	if *path == "" {
		fs.Usage()
		return nil, &exitError{2, errors.New(name + ": --config FILE is required")}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return nil, &exitError{2, err}
	}
	return cfg, nil
}

func newLogger(cfg config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	var pprofAddr string
	cfg, err := loadConfig("run", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&pprofAddr, "pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	})
	if err != nil {
		return err
	}
	progress, onTerminal := newProgressWriter(stderr) // snapshot.go
	if onTerminal {
		stderr = progress
	}
	log := newLogger(cfg.Log, stderr)
	if pprofAddr != "" {
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(pprofAddr, nil)) }()
	}
	log.Info("starting procon-cdc", "version", version, "name", cfg.Name, "slot", cfg.Postgres.Slot,
		"publication", cfg.Postgres.Publication, "tables", len(cfg.Relations))
	for _, w := range transportWarnings(cfg) {
		log.Warn("unprotected connection", "problem", w)
	}
	// An engine that lost the slot's lock (its PostgreSQL session ended: a restart, a broken
	// connection) stopped producing, since another procon-cdc may have taken over; this one
	// then waits for the lock again with a new engine, as a standby if another has it.
	var (
		down retrylog.Outage
		// lost is set once an engine ended in a way a new one recovers from (lost lock, a
		// Kafka transaction ended badly): from then on a start that fails transiently is retried.
		lost bool
		// read is what the engines before read: a new one refuses a server whose WAL does not
		// continue it (a standby promoted without what the lost primary had sent).
		read *replication.Lineage
	)
	for backoff := 100 * time.Millisecond; ; {
		e, err := engine.NewAfter(ctx, cfg, log, read)
		if err == nil {
			if lost {
				down.Recovered(log, "started again", "slot", cfg.Postgres.Slot)
			}
			err = runEngine(ctx, e, progress, onTerminal)
		}
		switch {
		case err == nil, ctx.Err() != nil && errors.Is(err, context.Canceled):
			// A signal is a clean stop at any point, waiting as a standby or starting included.
			log.Info("stopped")
			return nil
		case errors.Is(err, replication.ErrLockLost):
			log.Warn("lost the slot's lock; waiting to take it again", "slot", cfg.Postgres.Slot, "err", err)
			if e != nil {
				lineage := e.Lineage()
				read = &lineage
			}
			lost, backoff = true, 100*time.Millisecond
			continue
		case errors.Is(err, sink.ErrRestart):
			// Nothing was confirmed past what Kafka committed; a new engine finds where that
			// ended (the last progress record), fencing whatever the old one left open.
			log.Warn("starting again: a Kafka transaction ended without a known outcome", "slot", cfg.Postgres.Slot, "err", err)
			if e != nil {
				lineage := e.Lineage()
				read = &lineage
			}
			lost = true
		case lost && (replication.Transient(err) || errors.Is(err, sink.ErrUnreachable)):
			// After a lost lock, PostgreSQL is typically restarting, or its standby is being
			// promoted; after a failed Kafka transaction Kafka may be restarting: wait for
			// them, which the first start does not do.
			down.Failed(log, "cannot start again; retrying", err, "slot", cfg.Postgres.Slot)
		default:
			return err
		}
		select {
		case <-ctx.Done():
			log.Info("stopped")
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// runEngine runs e until it stops, with the progress line on a terminal.
func runEngine(ctx context.Context, e *engine.Engine, progress *progressWriter, onTerminal bool) error {
	if onTerminal {
		pctx, stopProgress := context.WithCancel(ctx)
		defer stopProgress()
		go progress.showProgress(pctx, e)
	}
	return e.Run(ctx)
}
