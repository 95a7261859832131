package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/procon-cdc/procon/avro"
	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// RegistryClient returns a client of the configured schema registry, or nil when none is
// configured.
func RegistryClient(cfg *config.Config, log *slog.Logger) (*registry.Client, error) {
	r := cfg.SchemaRegistry
	if r.URL == "" {
		return nil, nil
	}
	rc := registry.Config{URL: r.URL, Username: r.Username, Password: r.Password, Logger: log}
	if r.TLS.Enabled {
		t, err := sink.TLSConfig(r.TLS.CAFile, r.TLS.CertFile, r.TLS.KeyFile, r.TLS.InsecureSkipVerify)
		if err != nil {
			return nil, &config.FieldError{Key: "schema_registry.tls", Problem: err.Error()}
		}
		rc.TLS = t
	}
	return registry.New(rc)
}

// usesAvro reports whether any topic is written as Avro.
func usesAvro(cfg *config.Config) bool {
	if cfg.Serialization == "avro" {
		return true
	}
	for _, rc := range cfg.Relations {
		if rc.Serialization == "avro" {
			return true
		}
	}
	return false
}

// registryStartTimeout bounds how long New waits for an unreachable registry.
const registryStartTimeout = 30 * time.Second

// newAvroEncoder builds the Avro encoder when some topic uses Avro, and fetches the pinned
// schema versions, so that a missing subject or version stops the engine before the database
// is touched.
func newAvroEncoder(ctx context.Context, cfg *config.Config, log *slog.Logger) (*avro.Encoder, error) {
	if !usesAvro(cfg) {
		return nil, nil
	}
	reg, err := RegistryClient(cfg, log)
	if err != nil {
		return nil, err
	}
	topics := map[string]avro.Subjects{}
	for _, rc := range cfg.Relations {
		if rc.Serialization != "avro" {
			continue
		}
		topics[rc.Topic] = avro.Subjects{
			Key: rc.AvroKeySchema, Value: rc.AvroValueSchema,
			KeyVersion: rc.AvroKeySchemaVersion, ValueVersion: rc.AvroValueSchemaVersion,
		}
	}
	enc := avro.NewEncoder(avro.Config{Registry: reg, Topics: topics, Logger: log})
	fctx, cancel := context.WithTimeout(ctx, registryStartTimeout)
	defer cancel()
	if err := enc.FetchPinned(fctx); err != nil {
		return nil, err
	}
	return enc, nil
}

// CheckRegistry reports, for procon-cdc check, whether the schema registry of an Avro
// configuration answers and has every pinned schema version; it is nil without Avro.
func CheckRegistry(ctx context.Context, cfg *config.Config) (checked bool, err error) {
	if !usesAvro(cfg) {
		return false, nil
	}
	reg, err := RegistryClient(cfg, nil)
	if err != nil {
		return true, err
	}
	if err := reg.Ping(ctx); err != nil {
		return true, err
	}
	_, err = newAvroEncoder(ctx, cfg, nil)
	return true, err
}

// checkAvro checks every Avro relation's current shape against its serialization: pinned
// versions must fit every column, derived schemas must be valid Avro. Nothing is registered.
func (e *Engine) checkAvro(ctx context.Context, enc *avro.Encoder) error {
	if enc == nil {
		return nil
	}
	avroRelation := func(rc *config.RelationConfig) bool {
		return rc.Serialization == "avro" && rc.Outbox == nil // an outbox table's own events are never written
	}
	return e.checkShapes(ctx, avroRelation, func(name string, rc *config.RelationConfig, rel *replication.Relation) error {
		key, value, err := e.builder.Schemas(rel)
		if err == nil {
			err = enc.Check(ctx, rc.Topic, key, value)
		}
		if err != nil {
			return fmt.Errorf("relation_configs.%s: %w", name, err)
		}
		return nil
	})
}
