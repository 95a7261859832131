package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"net/http"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/consumer"
)

// cmdConsume applies the configured topics to the target database until SIGINT/SIGTERM.
func cmdConsume(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "consumer configuration file (YAML)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060)")
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if *path == "" {
		fs.Usage()
		return &exitError{2, errors.New("consume: --config FILE is required")}
	}
	cfg, err := config.LoadConsume(*path)
	if err != nil {
		return &exitError{2, err}
	}
	log := newLogger(cfg.Log, stderr)
	if *pprofAddr != "" {
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	log.Info("starting procon-cdc consume", "version", version, "name", cfg.Name, "group", cfg.Kafka.Group, "entities", len(cfg.Entities))
	c, err := consumer.Open(ctx, cfg, consumer.Options{Logger: log, Version: version})
	if err != nil {
		var fe *config.FieldError
		if errors.As(err, &fe) {
			return &exitError{2, err}
		}
		return err
	}
	defer c.Close()
	if err := c.Run(ctx); err != nil {
		return err
	}
	n := c.Counters()
	log.Info("stopped", "batches", n.Batches.Load(), "upserted", n.Upserted.Load(), "deleted", n.Deleted.Load(),
		"repeats", n.Repeats.Load(), "dead_lettered", n.DeadLettered.Load())
	return nil
}
