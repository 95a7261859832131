package main

import (
	"context"
	"errors"
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
		PublicationMode: cfg.Postgres.PublicationAutocreate, Relations: specs, Failover: cfg.Postgres.Failover,
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
	findings = append(findings, checkServerVersion(ctx, cfg)...)
	findings = append(findings, checkKafka(ctx, cfg)...)
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

// checkKafka connects as procon-cdc run does (brokers, TLS, SASL), checks that a broker
// answers, and warns about existing topics whose max.message.bytes is below
// kafka.max_record_bytes: records between the two are too large for them.
// checkServerVersion names the settings the server's version cannot serve (logical decoding
// messages before 14). A server it cannot reach is replication.Check's finding already.
func checkServerVersion(ctx context.Context, cfg *config.Config) []replication.Finding {
	major, err := engine.CheckServerVersion(ctx, cfg)
	if err == nil {
		return []replication.Finding{{Level: "ok", Subject: "server version", Message: fmt.Sprintf("PostgreSQL %d serves every setting of this configuration", major)}}
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out []replication.Finding
	for _, err := range errs {
		var fe *config.FieldError
		if errors.As(err, &fe) {
			out = append(out, replication.Finding{Level: "error", Subject: "server version", Message: err.Error()})
		}
	}
	return out
}

func checkKafka(ctx context.Context, cfg *config.Config) []replication.Finding {
	scfg, err := sink.ConfigFrom(&cfg.Kafka, nil)
	if err == nil {
		scfg.ConnectTimeout = 10 * time.Second
		var adm *sink.Admin
		if adm, err = sink.NewAdmin(ctx, scfg); err == nil {
			defer adm.Close()
			out := []replication.Finding{{Level: "ok", Subject: "kafka", Message: fmt.Sprintf("brokers %v answer", cfg.Kafka.Brokers)}}
			if k := cfg.Kafka; k.ExactlyOnce() {
				// Not tried here: initialising the transactional id would fence a running procon-cdc.
				out = append(out, replication.Finding{Level: "ok", Subject: "kafka delivery", Message: fmt.Sprintf(
					"exactly_once: transactional.id %q (the principal needs WRITE and DESCRIBE on it), progress topic %s (WRITE, READ, DESCRIBE); consumers should read with isolation.level=read_committed",
					cfg.TransactionalID(), k.Transactions.ProgressTopic)})
			}
			return append(out, checkTopicLimits(ctx, cfg, adm)...)
		}
	}
	return []replication.Finding{{Level: "error", Subject: "kafka", Message: err.Error() + "; check kafka.brokers, kafka.tls and kafka.sasl"}}
}

func checkTopicLimits(ctx context.Context, cfg *config.Config, adm *sink.Admin) []replication.Finding {
	topics := engine.Topics(cfg)
	limits, err := adm.MaxMessageBytes(ctx, topics...)
	if err != nil {
		return []replication.Finding{{Level: "warn", Subject: "kafka topics", Message: err.Error() +
			"; procon-cdc reads each topic's max.message.bytes at its first use (DESCRIBE_CONFIGS on the topics)"}}
	}
	var out []replication.Finding
	for _, topic := range topics {
		n, ok := limits[topic]
		if !ok || n >= cfg.Kafka.MaxRecordBytes {
			continue
		}
		out = append(out, replication.Finding{Level: "warn", Subject: "topic " + topic, Message: fmt.Sprintf(
			"max.message.bytes is %d, below kafka.max_record_bytes (%d): records larger than it follow errors.record_too_large; "+
				"raise it with kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config max.message.bytes=%d",
			n, cfg.Kafka.MaxRecordBytes, topic, cfg.Kafka.MaxRecordBytes)})
	}
	return out
}
