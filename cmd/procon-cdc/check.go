package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("check", args, stderr, nil)
	if err != nil {
		return err
	}
	specs := engine.RelationSpecs(cfg)
	findings := replication.Check(ctx, replication.Config{
		DSN: cfg.Postgres.DSN, Slot: cfg.Postgres.Slot, Publication: cfg.Postgres.Publication,
		PublicationMode: cfg.Postgres.PublicationAutocreate, Relations: specs,
	})
	if err := engine.CheckWrittenTables(ctx, cfg); err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, err := range errs {
			findings = append(findings, replication.Finding{Level: "error", Subject: "written tables", Message: err.Error()})
		}
	} else {
		findings = append(findings, replication.Finding{Level: "ok", Subject: "written tables",
			Message: "no trigger, rule or row security runs on what procon-cdc writes, and its own tables are its role's"})
	}
	if err := pingKafka(ctx, cfg); err != nil {
		findings = append(findings, replication.Finding{Level: "error", Subject: "kafka", Message: err.Error() + "; check kafka.brokers, kafka.tls and kafka.sasl"})
	} else {
		findings = append(findings, replication.Finding{Level: "ok", Subject: "kafka", Message: fmt.Sprintf("brokers %v answer", cfg.Kafka.Brokers)})
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if checked, err := engine.CheckRegistry(rctx, cfg); err != nil {
		findings = append(findings, replication.Finding{Level: "error", Subject: "schema registry", Message: err.Error() + "; check schema_registry and the pinned avro_*_schema_version keys"})
	} else if checked {
		findings = append(findings, replication.Finding{Level: "ok", Subject: "schema registry", Message: fmt.Sprintf("%s answers; pinned schema versions exist", registry.RedactedURL(cfg.SchemaRegistry.URL))})
	}
	cancel()
	for _, w := range transportWarnings(cfg) {
		findings = append(findings, replication.Finding{Level: "warn", Subject: "transport", Message: w})
	}
	errs := 0
	for _, f := range findings {
		fmt.Fprintf(stdout, "%-5s %-24s %s\n", f.Level, f.Subject, f.Message)
		if f.Level == "error" {
			errs++
		}
	}
	if errs > 0 {
		return &exitError{1, fmt.Errorf("check found %d error(s)", errs)}
	}
	return nil
}

// pingKafka connects as procon-cdc run does (brokers, TLS, SASL) and checks that a broker
// answers.
func pingKafka(ctx context.Context, cfg *config.Config) error {
	scfg, err := sink.ConfigFrom(&cfg.Kafka, nil)
	if err != nil {
		return err
	}
	scfg.ConnectTimeout = 10 * time.Second
	adm, err := sink.NewAdmin(ctx, scfg)
	if err != nil {
		return err
	}
	adm.Close()
	return nil
}
