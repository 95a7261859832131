package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/procon-cdc/procon/sink"
)

func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var topic string
	var fromBeginning, uncommitted bool
	cfg, err := loadConfig("tail", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&topic, "topic", "", "topic to read (default: every configured relation's topic)")
		fs.BoolVar(&fromBeginning, "from-beginning", false, "read from the start of the topics instead of new records only")
		fs.BoolVar(&uncommitted, "read-uncommitted", false, "also show records of Kafka transactions not committed (yet) or aborted (kafka.delivery: exactly_once writes in transactions)")
	})
	if err != nil {
		return err
	}
	topics := []string{topic}
	if topic == "" {
		topics = topics[:0]
		for _, name := range cfg.SortedRelations() {
			topics = append(topics, cfg.Relations[name].Topic)
		}
	}
	scfg, err := sink.ConfigFrom(&cfg.Kafka, nil)
	if err != nil {
		return err
	}
	r, err := sink.NewReader(scfg, topics, fromBeginning, !uncommitted)
	if err != nil {
		return err
	}
	defer r.Close()
	dec := newRecordDecoder(cfg)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for {
		recs, errs, err := r.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		for _, err := range errs {
			fmt.Fprintf(stderr, "procon-cdc tail: %v\n", err)
		}
		for i := range recs {
			if err := enc.Encode(dec.decode(ctx, &recs[i])); err != nil {
				return err
			}
		}
	}
}

// tailLine is one printed record.
type tailLine struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       json.RawMessage   `json:"key"`
	Value     json.RawMessage   `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
	Error     string            `json:"error,omitempty"`
}
