package compat

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/engine"
)

// pipeline is one configuration run twice over the same database: once by Debezium, once by
// procon-cdc, each with its own slot, publication and topic prefix.
type pipeline struct {
	name       string
	schemas    bool              // JsonConverter schemas.enable / json.schemas
	partitions int               // partitions of every topic either side creates
	tables     []string          // captured tables (public schema)
	debezium   map[string]string // Debezium options, given to both under the same names
	// proconDebezium overrides debezium for procon-cdc (to tell the two apart in the database).
	proconDebezium map[string]string
	// procon is extra top-level YAML for procon-cdc only (Procon's own keys).
	procon string
	// relation is extra YAML per table for procon-cdc (pkey / keyless where Debezium infers
	// the key on its own).
	relation map[string]string
	// outbox holds Debezium EventRouter options (transforms.outbox.*), given to procon-cdc as
	// relation_configs.<table>.outbox of each outbox table; PREFIX stands for the side's
	// topic prefix. jsonHeaders writes headers with JsonConverter (header.converter) instead
	// of Kafka Connect's default SimpleHeaderConverter.
	outbox       map[string]string
	outboxTables []string
	jsonHeaders  bool

	dbzPrefix, pcPrefix string
	dbzSlot, pcSlot     string

	engineLog string
	runner    *debezium
}

// proconConfig is the procon-cdc YAML of the pipeline.
func (p *pipeline) proconConfig(dsn string, brokers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\n", p.pcPrefix)
	fmt.Fprintf(&b, "postgres:\n  dsn: %q\n  slot: %s\n  publication: %s\n  status_interval: 500ms\n", dsn, p.pcSlot, p.pcSlot)
	fmt.Fprintf(&b, "kafka:\n  brokers: %s\n  topic_defaults: {partitions: %d}\n", strings.Join(brokers, ","), p.partitions)
	fmt.Fprintf(&b, "json:\n  schemas: %v\n", p.schemas)
	b.WriteString("snapshot:\n  mode: no_data\n")
	if p.procon != "" {
		b.WriteString(strings.TrimRight(p.procon, "\n") + "\n")
	}
	opts := map[string]string{}
	for k, v := range p.debezium {
		opts[k] = v
	}
	for k, v := range p.proconDebezium {
		opts[k] = v
	}
	if len(opts) > 0 {
		b.WriteString("debezium:\n")
		keys := make([]string, 0, len(opts))
		for k := range opts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := opts[k]
			if _, err := strconv.Atoi(v); err != nil && v != "true" && v != "false" {
				v = strconv.Quote(v)
			}
			fmt.Fprintf(&b, "  %s: %s\n", k, v)
		}
	}
	b.WriteString("relation_configs:\n")
	for _, tb := range p.tables {
		rel := p.relation[tb]
		if slices.Contains(p.outboxTables, tb) {
			rel = "outbox: " + p.proconOutbox()
		}
		fmt.Fprintf(&b, "  public.%s: {%s}\n", tb, rel)
	}
	return b.String()
}

// proconOutbox is the outbox option map of procon-cdc's outbox tables, as flow YAML.
func (p *pipeline) proconOutbox() string {
	opts := map[string]string{}
	for k, v := range p.outbox {
		// procon-cdc's configuration expands ${VAR}: $$ writes a $ (Debezium's ${routedByValue}).
		opts[k] = strings.ReplaceAll(strings.ReplaceAll(v, "$", "$$"), "PREFIX", p.pcPrefix)
	}
	if p.jsonHeaders {
		opts["header.converter"] = "json"
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := opts[k]
		if v != "true" && v != "false" {
			v = strconv.Quote(v)
		}
		parts[i] = fmt.Sprintf("%s: %s", k, v)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// startProcon runs procon-cdc's engine in-process until the test ends.
func startProcon(t *testing.T, dsn string, p *pipeline, brokers []string) {
	t.Helper()
	text := p.proconConfig(dsn, brokers)
	cfg, err := config.Parse(strings.NewReader(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("procon config of %s: %v\n%s", p.name, err, text)
	}
	p.engineLog = filepath.Join(t.TempDir(), "procon.log")
	f, err := os.Create(p.engineLog)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	e, err := engine.New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("procon engine of %s: %v", p.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("procon engine of %s: %v\n%s", p.name, err, tail(p.engineLog, 30))
		}
		f.Close()
	})
}
