package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/twmb/franz-go/pkg/kgo"
)

func cmdTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var topic string
	var fromBeginning bool
	cfg, err := loadConfig("tail", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&topic, "topic", "", "topic to read (default: every configured relation's topic)")
		fs.BoolVar(&fromBeginning, "from-beginning", false, "read from the start of the topics instead of new records only")
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
	start := kgo.NewOffset().AtEnd()
	if fromBeginning {
		start = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Kafka.Brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(start))
	if err != nil {
		return err
	}
	defer cl.Close()
	dec := newRecordDecoder(cfg)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.Canceled) {
				return nil
			}
			fmt.Fprintf(stderr, "procon-cdc tail: %s[%d]: %v\n", fe.Topic, fe.Partition, fe.Err)
		}
		var werr error
		fs.EachRecord(func(r *kgo.Record) {
			if werr == nil {
				werr = enc.Encode(dec.decode(ctx, r))
			}
		})
		if werr != nil {
			return werr
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
