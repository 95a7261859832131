package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is procon-cdc's whole configuration, as read from one YAML file.
type Config struct {
	// Name is the logical server name: the default topic prefix and source.name.
	Name string `yaml:"name"`
	// Serialization is the default of relation_configs.*.serialization: json or avro.
	Serialization string `yaml:"serialization"`
	// InstanceNum distinguishes engines in the per-transaction id (procon.tx header).
	// PROCON_INSTANCE overrides it; 0 to 65535, default 1234.
	InstanceNum *int `yaml:"instance_num"`
	// FillUnchangedToast takes an unchanged TOASTed value from the old row image when
	// REPLICA IDENTITY FULL sends one, as Debezium does (default true); false writes
	// debezium.unavailable.value.placeholder instead.
	FillUnchangedToast *bool `yaml:"fill_unchanged_toast"`

	Postgres       Postgres                   `yaml:"postgres"`
	Kafka          Kafka                      `yaml:"kafka"`
	SchemaRegistry SchemaRegistry             `yaml:"schema_registry"`
	JSON           JSON                       `yaml:"json"`
	Snapshot       Snapshot                   `yaml:"snapshot"`
	Debezium       Debezium                   `yaml:"debezium"`
	Relations      map[string]*RelationConfig `yaml:"relation_configs"`
	Realtime       Realtime                   `yaml:"realtime"`
	Errors         Errors                     `yaml:"errors"`
	Log            Log                        `yaml:"log"`
	Metrics        Metrics                    `yaml:"metrics"`

	// RelationOrder lists the keys of Relations in the order the file gives them.
	RelationOrder []string `yaml:"-"`
}

// Postgres says where the WAL comes from.
type Postgres struct {
	DSN                   string `yaml:"dsn"`
	Slot                  string `yaml:"slot"`
	Publication           string `yaml:"publication"`
	PublicationAutocreate string `yaml:"publication_autocreate"` // filtered | all_tables | disabled
	// StatusInterval is how often a standby status update is sent, whatever else is happening.
	StatusInterval Duration `yaml:"status_interval"`
	// ReceiveTimeout ends a replication connection on which the server has sent nothing, not
	// even the keepalives procon-cdc asks for, for this long (a dead peer or a partition that
	// leaves the connection half-open), and connects again.
	ReceiveTimeout Duration `yaml:"receive_timeout"`
	// Failover creates the slot as a failover slot (PostgreSQL 17+) so that standbys with
	// sync_replication_slots keep a copy of it, and a promoted standby can be read on from
	// where procon-cdc was. A server older than 17 refuses to start with it.
	Failover bool `yaml:"failover"`
}

// Kafka says where events go.
type Kafka struct {
	Brokers       StringList    `yaml:"brokers"`
	ClientID      string        `yaml:"client_id"`
	TopicDefaults TopicSettings `yaml:"topic_defaults"`
	// MaxBufferedRecords bounds the records produced but not yet acknowledged; the WAL reader
	// waits (backpressure) when it is reached.
	MaxBufferedRecords int `yaml:"max_buffered_records"`
	// MaxBufferedBytes bounds the same in bytes.
	MaxBufferedBytes int `yaml:"max_buffered_bytes"`
	// Linger lets the producer wait this long to fill batches (DefaultLinger; 0 sends at once).
	Linger      Duration `yaml:"linger"`
	Compression string   `yaml:"compression"` // none | gzip | snappy | lz4 | zstd
	// MaxRecordBytes is the largest record batch the producer writes, and the max.message.bytes
	// of the topics procon-cdc creates; larger records follow errors.record_too_large.
	MaxRecordBytes int  `yaml:"max_record_bytes"`
	TLS            TLS  `yaml:"tls"`
	SASL           SASL `yaml:"sasl"`
	// Delivery is at_least_once (the default) or exactly_once: records produced in Kafka
	// transactions with the stream's position (Transactions).
	Delivery     string       `yaml:"delivery"`
	Transactions Transactions `yaml:"transactions"`
}

// DefaultLinger is short against the commit-to-Kafka latency and long enough, at thousands of
// small transactions a second, to put many records into one produce request rather than one
// each: that halves procon-cdc's CPU per event and cuts the broker's by three quarters at
// 5,000 transactions/s (bench steady). Kafka's own producer defaults to 5 ms.
const DefaultLinger = Duration(2 * time.Millisecond)

// TopicSettings are applied when procon-cdc creates a topic.
type TopicSettings struct {
	Partitions        int32             `yaml:"partitions"`
	ReplicationFactor int16             `yaml:"replication_factor"`
	Configs           map[string]string `yaml:"configs"`
}

// TLS configures a client's TLS; Enabled with no files uses the system roots.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures Kafka authentication.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// SchemaRegistry is a Confluent-compatible registry, needed for Avro.
type SchemaRegistry struct {
	URL      string `yaml:"url"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	TLS      TLS    `yaml:"tls"`
}

// JSON configures the JSON serialization (Kafka Connect's JsonConverter forms).
type JSON struct {
	// Schemas wraps keys and values in {"schema", "payload"} (schemas.enable=true).
	Schemas bool `yaml:"schemas"`
}

// RelationConfig is the per-relation configuration under relation_configs.
type RelationConfig struct {
	Topic string `yaml:"topic"`
	// SchemaName is the prefix of the relation's schema names (<schema_name>.Key, .Value,
	// .Envelope); default the topic, as Debezium names them. Kafka Connect's RegexRouter
	// moves a topic but keeps the names of <name>.<schema>.<table>.
	SchemaName    string     `yaml:"schema_name"`
	PKey          StringList `yaml:"pkey"`
	Keyless       bool       `yaml:"keyless"`
	Serialization string     `yaml:"serialization"`
	Partitions    int32      `yaml:"partitions"`

	AvroValueSchema        string `yaml:"avro_value_schema"`
	AvroKeySchema          string `yaml:"avro_key_schema"`
	AvroValueSchemaVersion int    `yaml:"avro_value_schema_version"`
	AvroKeySchemaVersion   int    `yaml:"avro_key_schema_version"`

	Realtime    *RelationRealtime `yaml:"realtime"`
	RTThreshold *int              `yaml:"rt_threshold"`

	// Outbox makes the relation an outbox table: its inserts become outbox events, routed by
	// a column, instead of change events on Topic.
	Outbox *Outbox `yaml:"outbox"`

	// Schema and Table are filled from the relation_configs key.
	Schema string `yaml:"-"`
	Table  string `yaml:"-"`
}

// Realtime configures realtime notifications.
type Realtime struct {
	Enabled     *bool  `yaml:"enabled"`
	Topic       string `yaml:"topic"`
	Table       string `yaml:"table"`          // default public.procon_realtimes
	Prefix      string `yaml:"message_prefix"` // logical message prefix, default procon-realtime
	RTThreshold *int   `yaml:"rt_threshold"`   // milliseconds, default 1000
	RTCoalesce  bool   `yaml:"rt_coalesce"`
	Cleanup     *bool  `yaml:"cleanup"`
	MaxPending  int    `yaml:"max_pending"`
	Partitions  int32  `yaml:"partitions"`
	// Messages turns the message path on (default) or off while the table path stays on.
	Messages             *bool `yaml:"messages"`
	MaxNotificationBytes int   `yaml:"max_notification_bytes"` // default 8000
	MaxQueueBytes        int   `yaml:"max_queue_bytes"`        // default 16 MiB
}

// RelationRealtime builds a notification from each change of a relation.
type RelationRealtime struct {
	Channel    string     `yaml:"channel"`    // column name or metadata.<key>
	SessionID  string     `yaml:"session_id"` // column name or metadata.<key>
	Metadata   string     `yaml:"metadata"`   // jsonb column merged into the notification's metadata
	Operations StringList `yaml:"operations"` // insert, update, delete (default all)
}

// Snapshot configures initial and incremental snapshots.
type Snapshot struct {
	// Mode is initial (default), never / no_data, initial_only, when_needed or always.
	Mode string `yaml:"mode"`
	// Parallelism is the number of connections reading the snapshot at once.
	Parallelism int `yaml:"parallelism"`
	// ChunkSize is the number of rows read per keyset chunk.
	ChunkSize int `yaml:"chunk_size"`
	// SignalTable receives execute-snapshot signals (Debezium's signal.data.collection).
	SignalTable string `yaml:"signal_table"`
	// StatementTimeout bounds each statement of an in-stream snapshot (a chunk's read, a
	// filter's check, a row estimate).
	StatementTimeout Duration `yaml:"statement_timeout"`
}

// Metrics configures the listener of Prometheus metrics, health probes and status.
type Metrics struct {
	// Listen is host:port to serve /metrics, /healthz, /readyz and /status on (":9187" for
	// every interface); empty serves nothing and counts nothing.
	Listen string `yaml:"listen"`
	// ReadyMaxLag makes /readyz fail while the replication lag (procon-cdc run) or the
	// oldest unapplied record (consume) is older than it; 0 puts no bound.
	ReadyMaxLag Duration `yaml:"ready_max_lag"`
}

// validate checks that listen is a host:port a listener can bind.
func (m *Metrics) validate(errs *fieldErrors) {
	if m.Listen == "" {
		return
	}
	_, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		errs.add("metrics.listen", "%q is not host:port (e.g. :9187 or 127.0.0.1:9187): %v", m.Listen, err)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs.add("metrics.listen", "%q: the port must be a number from 0 to 65535", m.Listen)
	}
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Load reads, expands and validates a configuration file.
func Load(path string) (*Config, error) {
	return loadFile(path, Parse)
}

// loadFile parses the file at path with parse, naming the file in its errors.
func loadFile[T any](path string, parse func(io.Reader, func(string) (string, bool)) (*T, error)) (*T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := parse(f, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads a configuration from r, expanding ${VAR} in its values with lookup (os.LookupEnv
// when nil), applies defaults and validates it. The error lists every problem found, each
// naming its key, and never shows a value that came from the environment.
func Parse(r io.Reader, lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	// Defaults where an explicit zero means something else are set before decoding.
	cfg := &Config{Kafka: Kafka{Linger: DefaultLinger}}
	root, x, err := decodeDocument(r, lookup, cfg, checkInstanceNum)
	if err != nil {
		return nil, err
	}
	cfg.RelationOrder = relationOrder(root)
	if err := cfg.applyDefaults(lookup); err != nil {
		return nil, x.redact(err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, x.redact(err)
	}
	return cfg, nil
}

// decodeDocument reads a YAML document into out, a pointer to a struct: the one parse (everything
// reads or decodes this tree), ${VAR} expansion in values, the checks given, the check of the tree
// beside out's type (unknown keys, numbers), and the decoding, its errors named by key and
// redacted.
func decodeDocument(r io.Reader, lookup func(string) (string, bool), out any, checks ...func(*yaml.Node, expansions) error) (*yaml.Node, expansions, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, nil, syntaxError(raw, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil, errors.New("the file is empty")
	}
	root := doc.Content[0]
	x, err := expandDocument(root, lookup)
	if err != nil {
		return nil, nil, err
	}
	for _, check := range checks {
		if err := check(root, x); err != nil {
			return nil, nil, err
		}
	}
	if err := checkTreeOf(root, x, reflect.TypeOf(out).Elem()); err != nil {
		return nil, nil, err
	}
	if err := root.Decode(out); err != nil {
		return nil, nil, x.redact(explainDecodeError(root, err))
	}
	return root, x, nil
}

// syntaxError explains a YAML syntax error. An unquoted ${VAR} in a flow collection is one,
// since { and } end a scalar there; it was not when variables were expanded in the text.
func syntaxError(raw []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if bytes.Contains(raw, []byte("${")) && strings.Contains(msg, "did not find expected ',' or") {
		msg += `; inside {...} or [...] a ${VAR} must be quoted: "${VAR}"`
	}
	return errors.New(msg)
}

// valueOf returns the value of key in the mapping n, following an alias, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v := n.Content[i+1]
			if v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			return v
		}
	}
	return nil
}

// relationOrder recovers the order of relation_configs keys, which a Go map loses.
func relationOrder(root *yaml.Node) []string {
	rel := valueOf(root, "relation_configs")
	if rel == nil || rel.Kind != yaml.MappingNode {
		return nil
	}
	var keys []string
	for i := 0; i < len(rel.Content); i += 2 {
		keys = append(keys, rel.Content[i].Value)
	}
	return keys
}

// Duration accepts Go durations ("5s", "250ms") and plain integers of milliseconds.
type Duration time.Duration

// The integers of milliseconds a time.Duration can hold.
const (
	maxDurationMS = math.MaxInt64 / int64(time.Millisecond)
	minDurationMS = -maxDurationMS
)

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var ms int64
	if n.Decode(&ms) == nil {
		if ms < minDurationMS || ms > maxDurationMS {
			return fmt.Errorf("line %d: %d milliseconds is too long for a duration", n.Line, ms)
		}
		*d = Duration(time.Duration(ms) * time.Millisecond)
		return nil
	}
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (write e.g. 5s or 250ms)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// StringList accepts a list, a single string, or a comma-separated string.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		*l = trimAll(items)
	case yaml.ScalarNode:
		*l = trimAll(strings.Split(n.Value, ","))
	default:
		return fmt.Errorf("line %d: expected a string or a list of strings", n.Line)
	}
	return nil
}

func trimAll(items []string) []string {
	out := items[:0]
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
