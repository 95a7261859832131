package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem with one configuration key.
type FieldError struct {
	Key     string // dotted path, e.g. relation_configs.public.orders.pkey
	Problem string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Problem }

type fieldErrors []error

func (e *fieldErrors) add(key, format string, args ...any) {
	*e = append(*e, &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (e *fieldErrors) oneOf(key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	e.add(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
}

var (
	slotName   = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	topicName  = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	serverName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)
)

const defaultInstanceNum = 1234

func (c *Config) applyDefaults(lookup func(string) (string, bool)) error {
	if c.Serialization == "" {
		c.Serialization = "json"
	}
	p := &c.Postgres
	if p.PublicationAutocreate == "" {
		p.PublicationAutocreate = "filtered"
	}
	if p.Slot == "" && c.Name != "" {
		p.Slot = defaultSlot(c.Name)
	}
	if p.Publication == "" && c.Name != "" {
		p.Publication = p.Slot
	}
	if p.ReceiveTimeout == 0 {
		p.ReceiveTimeout = Duration(time.Minute)
	}
	if p.StatusInterval == 0 {
		p.StatusInterval = Duration(time.Second)
	}
	k := &c.Kafka
	if k.ClientID == "" {
		k.ClientID = "procon-cdc"
	}
	if k.TopicDefaults.Partitions == 0 {
		k.TopicDefaults.Partitions = 1
	}
	if k.TopicDefaults.ReplicationFactor == 0 {
		k.TopicDefaults.ReplicationFactor = 1
	}
	if k.MaxBufferedRecords == 0 {
		k.MaxBufferedRecords = 10_000
	}
	if k.MaxBufferedBytes == 0 {
		k.MaxBufferedBytes = 16 << 20
	}
	if k.Compression == "" {
		k.Compression = "none"
	}
	if k.MaxRecordBytes == 0 {
		k.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.Snapshot.Mode == "" {
		c.Snapshot.Mode = "initial"
	}
	if c.Snapshot.Parallelism == 0 {
		c.Snapshot.Parallelism = 4
	}
	if c.Snapshot.ChunkSize == 0 {
		c.Snapshot.ChunkSize = 10_000
	}
	if c.Snapshot.StatementTimeout == 0 {
		c.Snapshot.StatementTimeout = Duration(5 * time.Minute)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.Debezium.applyDefaults()
	if c.FillUnchangedToast == nil {
		fill := true
		c.FillUnchangedToast = &fill
	}
	c.Realtime.applyDefaults()
	c.applyErrorDefaults()
	c.applyDeliveryDefaults()

	if v, ok := lookup("PROCON_INSTANCE"); ok && v != "" {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > 65535 {
			return &FieldError{Key: "PROCON_INSTANCE", Problem: fmt.Sprintf(
				"%q is not an integer from 0 to 65535; this environment variable overrides instance_num, the engine's number in the procon.tx transaction id", v)}
		}
		c.InstanceNum = &n
	}
	if c.InstanceNum == nil {
		n := defaultInstanceNum
		c.InstanceNum = &n
	}

	for key, rc := range c.Relations {
		if rc == nil {
			rc = &RelationConfig{}
			c.Relations[key] = rc
		}
		rc.Schema, rc.Table = SplitRelation(key)
		if rc.Serialization == "" {
			rc.Serialization = c.Serialization
		}
		if rc.Outbox != nil {
			rc.Outbox.applyDefaults(rc) // before the relation's own keys get theirs
		}
		if rc.Topic == "" {
			d := c.Debezium.TopicDelimiter
			rc.Topic = SanitizeTopic(c.Name + d + rc.Schema + d + rc.Table)
		}
		if rc.AvroKeySchema == "" {
			rc.AvroKeySchema = rc.Topic + "-key"
		}
		if rc.AvroValueSchema == "" {
			rc.AvroValueSchema = rc.Topic + "-value"
		}
	}
	return nil
}

var nonSlotChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// defaultSlot is the slot name derived from the name when postgres.slot is not set.
func defaultSlot(name string) string {
	return "procon_" + strings.ToLower(nonSlotChars.ReplaceAllString(name, "_"))
}

// SanitizeTopic replaces characters Kafka does not allow in topic names with '_', as
// Debezium's topic naming strategy does.
func SanitizeTopic(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '.' || c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			b[i] = '_'
		}
	}
	if len(b) > 249 {
		b = b[:249]
	}
	return string(b)
}

// MessageTopic is the topic of logical-message events: <name>.message.
func (c *Config) MessageTopic() string { return SanitizeTopic(c.Name + ".message") }

// TransactionTopic is the topic of transaction metadata (provide.transaction.metadata).
func (c *Config) TransactionTopic() string {
	return SanitizeTopic(c.Name + c.Debezium.TopicDelimiter + c.Debezium.TopicTransaction)
}

// HeartbeatTopic is the topic of heartbeats (heartbeat.interval.ms).
func (c *Config) HeartbeatTopic() string {
	d := &c.Debezium
	return SanitizeTopic(d.TopicHeartbeatPrefix + d.TopicDelimiter + c.Name)
}

// SplitRelation splits "schema.table" (schema defaults to public). Quoted identifiers are not
// needed: relation_configs keys are the catalog names as they are.
func SplitRelation(key string) (schema, table string) {
	if s, t, ok := strings.Cut(key, "."); ok {
		return s, t
	}
	return "public", key
}

// Validate checks the whole configuration and reports every problem at once.
func (c *Config) Validate() error {
	var errs fieldErrors
	switch {
	case c.Name == "":
		errs.add("name", "is required: the logical server name, used as topic prefix and source.name")
	case !serverName.MatchString(c.Name):
		errs.add("name", "%q may only contain letters, digits, '.', '_' and '-'", c.Name)
	}
	errs.oneOf("serialization", c.Serialization, "json", "avro")

	p := c.Postgres
	if p.DSN == "" {
		errs.add("postgres.dsn", "is required, e.g. postgres://user:password@host:5432/db")
	}
	switch {
	case slotName.MatchString(p.Slot):
	case c.Name != "" && p.Slot == defaultSlot(c.Name):
		// The derived name is not shown: name may come from the environment, and the
		// redaction of errors cannot recognize it in lower case.
		errs.add("postgres.slot", "is not set, and the default (procon_ and name in lower case) is longer than 63 characters: set postgres.slot to 1 to 63 characters of a-z, 0-9 and _")
	default:
		errs.add("postgres.slot", "%q is not a valid slot name: 1 to 63 characters of a-z, 0-9 and _", p.Slot)
	}
	if p.Publication == "" {
		errs.add("postgres.publication", "is required")
	}
	errs.oneOf("postgres.publication_autocreate", p.PublicationAutocreate, "filtered", "all_tables", "disabled")

	k := c.Kafka
	c.checkBounds(&errs)
	if k.MaxBufferedBytes < k.MaxRecordBytes && bounds["kafka.max_record_bytes"].allows(int64(k.MaxRecordBytes)) {
		// The producer refuses a record larger than its whole buffer as too large.
		errs.add("kafka.max_buffered_bytes", "%d is less than kafka.max_record_bytes (%d), so a record between the two could never be produced: set it to at least kafka.max_record_bytes", k.MaxBufferedBytes, k.MaxRecordBytes)
	}
	if len(k.Brokers) == 0 {
		errs.add("kafka.brokers", "is required: host:port, comma-separated or a list")
	}
	for _, b := range k.Brokers {
		if _, port, ok := strings.Cut(b, ":"); !ok || port == "" {
			errs.add("kafka.brokers", "%q must be host:port", b)
		}
	}
	errs.oneOf("kafka.compression", k.Compression, "none", "gzip", "snappy", "lz4", "zstd")
	c.validateDelivery(&errs)
	if k.SASL.Mechanism != "" {
		errs.oneOf("kafka.sasl.mechanism", k.SASL.Mechanism, "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
	}
	errs.oneOf("snapshot.mode", c.Snapshot.Mode, "initial", "never", "no_data", "initial_only", "when_needed", "always")
	errs.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	errs.oneOf("log.format", c.Log.Format, "text", "json")
	c.Metrics.validate(&errs)
	c.Debezium.validate(&errs)

	if len(c.Relations) == 0 {
		errs.add("relation_configs", "is empty: list at least one relation, e.g. public.accounts: {}")
	}
	keys := make([]string, 0, len(c.Relations))
	for key := range c.Relations {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	topics := map[string]string{}
	needRegistry := false
	for _, key := range keys {
		rc := c.Relations[key]
		at := "relation_configs." + key
		if strings.Count(key, ".") > 1 || rc.Schema == "" || rc.Table == "" {
			errs.add(at, "must be schema.table")
		}
		if !topicName.MatchString(rc.Topic) {
			errs.add(at+".topic", "%q is not a valid Kafka topic name", rc.Topic)
		}
		if other, dup := topics[rc.Topic]; dup {
			errs.add(at+".topic", "%q is also the topic of %s; each relation needs its own topic", rc.Topic, other)
		}
		topics[rc.Topic] = key
		if rc.Keyless && len(rc.PKey) > 0 {
			errs.add(at+".keyless", "cannot be combined with pkey")
		}
		errs.oneOf(at+".serialization", rc.Serialization, "json", "avro")
		if rc.Serialization == "avro" {
			needRegistry = true
		}
		rc.Realtime.validate(at+".realtime", &errs)
		if rc.Outbox != nil {
			rc.Outbox.validate(at+".outbox", rc, &errs)
		}
	}
	if c.Serialization == "avro" {
		needRegistry = true // heartbeat, transaction and message topics follow the top level
	}
	if needRegistry && c.SchemaRegistry.URL == "" {
		errs.add("schema_registry.url", "is required because a relation uses serialization: avro")
	}
	c.SchemaRegistry.validate(&errs)
	c.validateRealtime(&errs)
	c.validateRecordSize(&errs)
	return errors.Join(errs...)
}

func (r *SchemaRegistry) validate(errs *fieldErrors) {
	if r.URL == "" {
		return
	}
	u, err := url.Parse(r.URL)
	switch {
	case err != nil || u.Host == "":
		errs.add("schema_registry.url", "must be an http:// or https:// URL")
	case u.Scheme == "http" && r.TLS.Enabled:
		// The settings say TLS but the URL would send everything, basic-auth passwords
		// included, in clear: refuse rather than guess which was meant.
		errs.add("schema_registry.tls.enabled", "is true but schema_registry.url is http://; use an https:// URL")
	case u.Scheme != "http" && u.Scheme != "https":
		errs.add("schema_registry.url", "must be an http:// or https:// URL")
	}
}

// SortedRelations returns the relation keys in file order (or sorted, for configs built in code).
func (c *Config) SortedRelations() []string {
	if len(c.RelationOrder) == len(c.Relations) {
		return c.RelationOrder
	}
	keys := make([]string, 0, len(c.Relations))
	for k := range c.Relations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
