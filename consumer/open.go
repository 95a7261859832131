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

// Open builds a Consumer from a consume configuration file's contents: the target database's
// pool, the Kafka connection, the schema registry (for Avro topics) and the entities. Close
// releases what it opened.
func Open(ctx context.Context, cfg *config.Consume, hooks Hooks, log *slog.Logger) (*Opened, error) {
	kafka, err := sink.ConfigFrom(cfg.Kafka.Connection(), log)
	if err != nil {
		return nil, err
	}
	opts := event.Options{Placeholder: cfg.Decoding.UnavailableValuePlaceholder, TimePrecisionMode: cfg.Decoding.TimePrecisionMode,
		DecimalHandlingMode: cfg.Decoding.DecimalHandlingMode, BinaryHandlingMode: cfg.Decoding.BinaryHandlingMode}
	if cfg.SchemaRegistry.URL != "" {
		rc := registry.Config{URL: cfg.SchemaRegistry.URL, Username: cfg.SchemaRegistry.Username, Password: cfg.SchemaRegistry.Password, Logger: log}
		if t := cfg.SchemaRegistry.TLS; t.Enabled {
			if rc.TLS, err = sink.TLSConfig(t.CAFile, t.CertFile, t.KeyFile, t.InsecureSkipVerify); err != nil {
				return nil, &config.FieldError{Key: "schema_registry.tls", Problem: err.Error()}
			}
		}
		if opts.Registry, err = registry.New(rc); err != nil {
			return nil, err
		}
	}
	dec, err := event.NewDecoder(opts)
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
	if cfg.OnError == "dlq" {
		cc.OnError = DeadLetter
	}
	for _, e := range cfg.Entities {
		cc.Entities = append(cc.Entities, entityFrom(e))
	}
	c, err := New(ctx, cc, pool, kafka, dec, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Opened{Consumer: c, Pool: pool}, nil
}

// Opened is a Consumer and the pool Open made for it.
type Opened struct {
	*Consumer
	Pool *pgxpool.Pool
}

// Close closes the consumer and its pool.
func (o *Opened) Close() {
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
