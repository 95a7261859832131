package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"
)

// Consume is the configuration of procon-cdc consume: which topics are applied to which
// tables of a target PostgreSQL database.
type Consume struct {
	// Name names the consumer: the default consumer group and the dead-letter topic's prefix.
	Name           string          `yaml:"name"`
	Postgres       ConsumePostgres `yaml:"postgres"`
	Kafka          ConsumeKafka    `yaml:"kafka"`
	SchemaRegistry SchemaRegistry  `yaml:"schema_registry"`
	Entities       []*Entity       `yaml:"entities"`
	Batch          ConsumeBatch    `yaml:"batch"`
	// OnError is what a record that can never apply does: stop (the default: the consumer
	// stops with an error naming it, and nothing past it is committed) or dlq (it goes to the
	// dead-letter topic with the reason, and the rest applies).
	OnError string `yaml:"on_error"`
	// DLQTopic is the dead-letter topic (default <name>.dlq).
	DLQTopic string `yaml:"dlq_topic"`
	// RealtimeTable is where entities' realtime notifications are inserted (default
	// public.procon_realtimes, the table procon-cdc publishes).
	RealtimeTable string          `yaml:"realtime_table"`
	Decoding      ConsumeDecoding `yaml:"decoding"`
	Log           Log             `yaml:"log"`
	Metrics       Metrics         `yaml:"metrics"`
}

// ConsumePostgres is the target database.
type ConsumePostgres struct {
	DSN string `yaml:"dsn"`
	// MaxConnections bounds the connections open at once: one per partition being applied.
	MaxConnections int `yaml:"max_connections"`
}

// ConsumeKafka says where the topics are and which consumer group shares them.
type ConsumeKafka struct {
	Brokers  StringList `yaml:"brokers"`
	ClientID string     `yaml:"client_id"`
	// Group is the consumer group (default: the name). Instances of one group share the
	// partitions; the offsets themselves live in the target database.
	Group string `yaml:"group"`
	// InstanceID makes the member static (group.instance.id): restarted with the same id, it
	// gets its partitions back at once instead of after a rebalance.
	InstanceID string `yaml:"instance_id"`
	// SessionTimeout is how long the group waits for a member that stopped answering before
	// giving its partitions to others (default 45s, Kafka's; the broker allows 6s and up).
	SessionTimeout Duration `yaml:"session_timeout"`
	TLS            TLS      `yaml:"tls"`
	SASL           SASL     `yaml:"sasl"`
}

// Connection is the part of a Kafka section that says how to reach the cluster, for
// sink.ConfigFrom.
func (k *ConsumeKafka) Connection() *Kafka {
	return &Kafka{Brokers: k.Brokers, ClientID: k.ClientID, TLS: k.TLS, SASL: k.SASL,
		MaxBufferedRecords: 1000, MaxBufferedBytes: 64 << 20, MaxRecordBytes: 1 << 20, Linger: 0}
}

// ConsumeBatch bounds the records of one partition applied in one database transaction.
type ConsumeBatch struct {
	MaxRecords int `yaml:"max_records"`
	// Linger is how long a batch smaller than MaxRecords waits for more records.
	Linger Duration `yaml:"linger"`
}

// ConsumeDecoding says how to read what the records do not say themselves.
type ConsumeDecoding struct {
	// UnavailableValuePlaceholder is the producer's unchanged-TOAST placeholder (Debezium's
	// unavailable.value.placeholder); such a value never overwrites a real one.
	UnavailableValuePlaceholder string `yaml:"unavailable_value_placeholder"`
	// TimePrecisionMode is the producer's time.precision.mode, needed only for JSON without
	// schemas, where a number alone does not say its unit.
	TimePrecisionMode string `yaml:"time_precision_mode"`
	// DecimalHandlingMode (precise, string, double) and BinaryHandlingMode (bytes, base64,
	// base64-url-safe, hex) are the producer's, also for JSON without schemas only: "1234" for
	// a numeric column may be a number or a base64 Decimal.
	DecimalHandlingMode string `yaml:"decimal_handling_mode"`
	BinaryHandlingMode  string `yaml:"binary_handling_mode"`
}

// Entity is what the events of one topic do to one table (the original Procon's vocabulary).
type Entity struct {
	Topic string `yaml:"topic"`
	// Table is the target table, schema-qualified or in public.
	Table string `yaml:"table"`
	// MasterKey matches events to rows: local columns and the event fields they hold.
	MasterKey MasterKey `yaml:"master_key"`
	// KeysMapping maps event fields (dotted paths reach into structs and JSON) to local columns;
	// a field not mapped goes to the column of its name. The _on_create and _on_update maps are
	// merged over it for those operations.
	KeysMapping         map[string]string `yaml:"keys_mapping"`
	KeysMappingOnCreate map[string]string `yaml:"keys_mapping_on_create"`
	KeysMappingOnUpdate map[string]string `yaml:"keys_mapping_on_update"`
	// DropKeys are event fields never written; the _on_ variants only for that operation.
	DropKeys         StringList `yaml:"drop_keys"`
	DropKeysOnCreate StringList `yaml:"drop_keys_on_create"`
	DropKeysOnUpdate StringList `yaml:"drop_keys_on_update"`
	// SoftDelete, when set, is the column a delete sets (true, or now() for a time column)
	// instead of deleting the row.
	SoftDelete string `yaml:"soft_delete"`
	// OnTruncate is ignore (the default; logged) or delete (every row of the table).
	OnTruncate string `yaml:"on_truncate"`
	// CreateTable creates a missing table from the first event's schema; AddColumns adds a
	// column when events gain a field.
	CreateTable bool `yaml:"create_table"`
	AddColumns  bool `yaml:"add_columns"`
	// Realtime inserts a notification row for each applied event, in the same transaction.
	Realtime *EntityRealtime `yaml:"realtime"`
}

// EntityRealtime builds a realtime notification from each applied event of an entity.
type EntityRealtime struct {
	Channel string `yaml:"channel"`
	// SessionID is the event field holding the notification's session id (optional).
	SessionID string `yaml:"session_id"`
	// Metadata maps metadata keys to event fields (dotted paths allowed).
	Metadata map[string]string `yaml:"metadata"`
	// Operations limits the notifications to create, update, delete (default all).
	Operations StringList `yaml:"operations"`
}

// KeyPair is one master key column and the event field that holds its value.
type KeyPair struct{ Column, Field string }

// MasterKey is written as a column name (the field of the same name), a list of names, or a
// list of [column, field] pairs.
type MasterKey []KeyPair

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *MasterKey) UnmarshalYAML(n *yaml.Node) error {
	var out MasterKey
	switch n.Kind {
	case yaml.ScalarNode:
		out = append(out, KeyPair{n.Value, n.Value})
	case yaml.SequenceNode:
		for _, item := range n.Content {
			switch {
			case item.Kind == yaml.ScalarNode:
				out = append(out, KeyPair{item.Value, item.Value})
			case item.Kind == yaml.SequenceNode && len(item.Content) == 2 &&
				item.Content[0].Kind == yaml.ScalarNode && item.Content[1].Kind == yaml.ScalarNode:
				out = append(out, KeyPair{item.Content[0].Value, item.Content[1].Value})
			default:
				return fmt.Errorf("line %d: a master key item is a column name or a [local_column, event_field] pair", item.Line)
			}
		}
	default:
		return fmt.Errorf("line %d: master_key is a column name or a list of [local_column, event_field] pairs", n.Line)
	}
	*m = out
	return nil
}

// Consume defaults.
const (
	DefaultConsumeBatch       = 5000
	DefaultConsumeLinger      = Duration(5 * time.Millisecond)
	DefaultConsumeConnections = 8
)

// LoadConsume reads, expands and validates a consumer configuration file.
func LoadConsume(path string) (*Consume, error) {
	return loadFile(path, ParseConsume)
}

// ParseConsume is Parse for a consumer configuration: ${VAR} expansion in values, unknown keys
// refused, every problem named by its key, no value from the environment shown.
func ParseConsume(r io.Reader, lookup func(string) (string, bool)) (*Consume, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	cfg := &Consume{Batch: ConsumeBatch{Linger: DefaultConsumeLinger}}
	_, x, err := decodeDocument(r, lookup, cfg)
	if err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, x.redact(err)
	}
	return cfg, nil
}

func (c *Consume) applyDefaults() {
	if c.Kafka.Group == "" {
		c.Kafka.Group = c.Name
	}
	if c.Kafka.ClientID == "" {
		c.Kafka.ClientID = "procon-consume"
	}
	if c.Kafka.SessionTimeout == 0 {
		c.Kafka.SessionTimeout = Duration(45 * time.Second)
	}
	if c.Batch.MaxRecords == 0 {
		c.Batch.MaxRecords = DefaultConsumeBatch
	}
	if c.Postgres.MaxConnections == 0 {
		c.Postgres.MaxConnections = DefaultConsumeConnections
	}
	if c.OnError == "" {
		c.OnError = "stop"
	}
	if c.DLQTopic == "" && c.Name != "" {
		c.DLQTopic = SanitizeTopic(c.Name + ".dlq")
	}
	if c.RealtimeTable == "" {
		c.RealtimeTable = "public.procon_realtimes"
	}
	if c.Decoding.UnavailableValuePlaceholder == "" {
		c.Decoding.UnavailableValuePlaceholder = "__debezium_unavailable_value"
	}
	if c.Decoding.TimePrecisionMode == "" {
		c.Decoding.TimePrecisionMode = "adaptive"
	}
	if c.Decoding.DecimalHandlingMode == "" {
		c.Decoding.DecimalHandlingMode = "precise"
	}
	if c.Decoding.BinaryHandlingMode == "" {
		c.Decoding.BinaryHandlingMode = "bytes"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	for _, e := range c.Entities {
		if e != nil && e.OnTruncate == "" {
			e.OnTruncate = "ignore"
		}
	}
}

// Validate checks a consumer configuration; the error lists every problem, each naming its
// key.
func (c *Consume) Validate() error {
	var errs fieldErrors
	if c.Name == "" {
		errs.add("name", "is required: it names the consumer group and the dead-letter topic")
	}
	if c.Postgres.DSN == "" {
		errs.add("postgres.dsn", "is required: the target database")
	}
	if c.Postgres.MaxConnections < 1 || c.Postgres.MaxConnections > 1000 {
		errs.add("postgres.max_connections", "%d is out of range: 1 to 1000", c.Postgres.MaxConnections)
	}
	if len(c.Kafka.Brokers) == 0 {
		errs.add("kafka.brokers", "is required")
	}
	if st := time.Duration(c.Kafka.SessionTimeout); st < time.Second || st > time.Hour {
		errs.add("kafka.session_timeout", "%s is out of range: 1s to 1h", st)
	}
	if c.Kafka.SASL.Mechanism != "" {
		errs.oneOf("kafka.sasl.mechanism", c.Kafka.SASL.Mechanism, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
	}
	if c.Batch.MaxRecords < 1 || c.Batch.MaxRecords > 1_000_000 {
		errs.add("batch.max_records", "%d is out of range: 1 to 1000000", c.Batch.MaxRecords)
	}
	if c.Batch.Linger < 0 || time.Duration(c.Batch.Linger) > time.Minute {
		errs.add("batch.linger", "%s is out of range: 0 to 1m", time.Duration(c.Batch.Linger))
	}
	errs.oneOf("on_error", c.OnError, "stop", "dlq")
	c.Metrics.validate(&errs)
	if d := time.Duration(c.Metrics.ReadyMaxLag); d != 0 && (d < time.Second || d > 24*time.Hour) {
		errs.add("metrics.ready_max_lag", "%s is out of range: 1s to 24h, or 0 for no bound", d)
	}
	errs.oneOf("decoding.time_precision_mode", c.Decoding.TimePrecisionMode,
		"adaptive", "adaptive_time_microseconds", "connect", "isostring", "microseconds", "nanoseconds")
	errs.oneOf("decoding.decimal_handling_mode", c.Decoding.DecimalHandlingMode, "precise", "string", "double")
	errs.oneOf("decoding.binary_handling_mode", c.Decoding.BinaryHandlingMode, "bytes", "base64", "base64-url-safe", "hex")
	if c.SchemaRegistry.URL != "" {
		c.SchemaRegistry.validate(&errs)
	}
	if len(c.Entities) == 0 {
		errs.add("entities", "is required: at least one {topic, table, master_key}")
	}
	topics := map[string]int{}
	for i, e := range c.Entities {
		key := fmt.Sprintf("entities[%d]", i)
		if e == nil {
			errs.add(key, "is empty")
			continue
		}
		if e.Topic == "" {
			errs.add(key+".topic", "is required")
		} else if j, dup := topics[e.Topic]; dup {
			errs.add(key+".topic", "%q is already the topic of entities[%d]: one entity per topic", e.Topic, j)
		} else {
			topics[e.Topic] = i
		}
		if e.Topic == c.DLQTopic {
			errs.add(key+".topic", "%q is the dead-letter topic", e.Topic)
		}
		if e.Table == "" {
			errs.add(key+".table", "is required: the target table")
		}
		if len(e.MasterKey) == 0 {
			errs.add(key+".master_key", "is required: the local column(s) that identify a row, e.g. id or [[tenant, tenant_id], [id, id]]")
		}
		seen := map[string]bool{}
		for _, p := range e.MasterKey {
			if p.Column == "" || p.Field == "" {
				errs.add(key+".master_key", "an item has an empty column or field")
			}
			if seen[p.Column] {
				errs.add(key+".master_key", "column %q is named twice", p.Column)
			}
			seen[p.Column] = true
		}
		for field, col := range e.KeysMapping {
			if field == "" || col == "" {
				errs.add(key+".keys_mapping", "an entry has an empty field or column")
			}
		}
		errs.oneOf(key+".on_truncate", e.OnTruncate, "ignore", "delete")
		if rt := e.Realtime; rt != nil {
			if rt.Channel == "" {
				errs.add(key+".realtime.channel", "is required")
			}
			for _, op := range rt.Operations {
				errs.oneOf(key+".realtime.operations", op, "create", "update", "delete")
			}
		}
	}
	return errors.Join(errs...)
}
