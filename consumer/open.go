package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/consumer/apply"
	"github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/sink"
)

// Options are what Open takes besides the configuration.
type Options struct {
	Hooks  Hooks
	Logger *slog.Logger
	// Version is procon-cdc's version, for procon_build_info.
	Version string
}

// Open builds a Consumer from a consume configuration file's contents: the target database's
// pool, the Kafka connection, the schema registry (for Avro topics), the entities and, with
// metrics.listen, the metrics listener. Close releases what it opened.
func Open(ctx context.Context, cfg *config.Consume, opts Options) (*Opened, error) {
	log, hooks := opts.Logger, opts.Hooks
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kafka, err := sink.ConfigFrom(cfg.Kafka.Connection(), log)
	if err != nil {
		return nil, err
	}
	decOpts := event.Options{Placeholder: cfg.Decoding.UnavailableValuePlaceholder, TimePrecisionMode: cfg.Decoding.TimePrecisionMode,
		DecimalHandlingMode: cfg.Decoding.DecimalHandlingMode, BinaryHandlingMode: cfg.Decoding.BinaryHandlingMode}
	if cfg.SchemaRegistry.URL != "" {
		rc := registry.Config{URL: cfg.SchemaRegistry.URL, Username: cfg.SchemaRegistry.Username, Password: cfg.SchemaRegistry.Password, Logger: log}
		if t := cfg.SchemaRegistry.TLS; t.Enabled {
			if rc.TLS, err = sink.TLSConfig(t.CAFile, t.CertFile, t.KeyFile, t.InsecureSkipVerify); err != nil {
				return nil, &config.FieldError{Key: "schema_registry.tls", Problem: err.Error()}
			}
		}
		if decOpts.Registry, err = registry.New(rc); err != nil {
			return nil, err
		}
	}
	dec, err := event.NewDecoder(decOpts)
	if err != nil {
		return nil, err
	}
	pool, err := pg.NewPool(ctx, cfg.Postgres.DSN, "procon-cdc consume "+cfg.Name, int32(cfg.Postgres.MaxConnections))
	if err != nil {
		return nil, fmt.Errorf("consumer: connect to the target database: %w", err)
	}
	cc := Config{
		Group: cfg.Kafka.Group, InstanceID: cfg.Kafka.InstanceID, SessionTimeout: time.Duration(cfg.Kafka.SessionTimeout),
		BatchRecords: cfg.Batch.MaxRecords, Linger: time.Duration(cfg.Batch.Linger),
		DLQTopic: cfg.DLQTopic, RealtimeTable: cfg.RealtimeTable, Hooks: hooks,
	}
	var obs *observer
	if cfg.Metrics.Listen != "" {
		if obs, err = listenMetrics(cfg, opts.Version, log); err != nil {
			pool.Close()
			return nil, err
		}
		cc.Meter = meter{obs.metrics}
	}
	if cfg.OnError == "dlq" {
		cc.OnError = DeadLetter
	}
	for _, e := range cfg.Entities {
		cc.Entities = append(cc.Entities, entityFrom(e))
	}
	c, err := New(ctx, cc, pool, kafka, dec, log)
	if err != nil {
		obs.close()
		pool.Close()
		return nil, err
	}
	obs.built(c, cfg.Kafka.Group)
	return &Opened{Consumer: c, Pool: pool, obs: obs}, nil
}

// Opened is a Consumer and the pool Open made for it.
type Opened struct {
	*Consumer
	Pool *pgxpool.Pool
	obs  *observer // nil without metrics.listen
}

// MetricsAddr is the address the metrics listener is bound to ("" without one).
func (o *Opened) MetricsAddr() string {
	if o.obs == nil {
		return ""
	}
	return o.obs.server.Addr()
}

// Close closes the consumer, its pool and its metrics listener.
func (o *Opened) Close() {
	o.obs.close()
	o.Consumer.Close()
	o.Pool.Close()
}

func entityFrom(e *config.Entity) Entity {
	out := Entity{Entity: apply.Entity{
		Topic: e.Topic, Table: e.Table, SoftDelete: e.SoftDelete, OnTruncate: e.OnTruncate,
		CreateTable: e.CreateTable, AddColumns: e.AddColumns,
		Mapping: apply.Mapping{Fields: e.KeysMapping, OnCreate: e.KeysMappingOnCreate, OnUpdate: e.KeysMappingOnUpdate,
			Drop: e.DropKeys, DropOnCreate: e.DropKeysOnCreate, DropOnUpdate: e.DropKeysOnUpdate},
	}}
	for _, k := range e.MasterKey {
		out.MasterKey = append(out.MasterKey, apply.KeyColumn{Column: k.Column, Field: k.Field})
	}
	if rt := e.Realtime; rt != nil {
		out.Realtime = &Realtime{Channel: rt.Channel, SessionField: rt.SessionID, Metadata: rt.Metadata}
		for _, op := range rt.Operations {
			out.Realtime.Ops = append(out.Realtime.Ops, map[string]event.Op{"create": event.Create, "update": event.Update, "delete": event.Delete}[op])
		}
	}
	return out
}
