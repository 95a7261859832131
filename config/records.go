package config

import (
	"strconv"
)

// Errors says what procon-cdc does with records Kafka cannot take.
type Errors struct {
	RecordTooLarge RecordTooLarge `yaml:"record_too_large"`
	// DLQTopic receives the reference records of the dlq policy (default <name>.dlq).
	DLQTopic string `yaml:"dlq_topic"`
}

// RecordTooLarge is the policy, per kind of record, for a record larger than its topic takes
// (kafka.max_record_bytes, or the topic's max.message.bytes when smaller): fail, skip or dlq.
type RecordTooLarge struct {
	// Rows: change events of captured tables (and snapshot rows, transaction metadata).
	Rows string `yaml:"rows"`
	// Messages: logical decoding messages (the <name>.message topic).
	Messages string `yaml:"messages"`
	// Realtime: realtime notifications.
	Realtime string `yaml:"realtime"`
}

// Record-size defaults. Rows fail: only a role the table's owner lets write a captured table
// can make a row that large, and a row is business data, so stopping with the slot held is
// the safe side. Messages and notifications never fail: pg_logical_emit_message is
// executable by every role unless revoked, and no role may be able to stop the stream.
const (
	DefaultRowsTooLarge     = "fail"
	DefaultMessagesTooLarge = "dlq"
	DefaultRealtimeTooLarge = "skip"
	DefaultMaxRecordBytes   = 1 << 20
	// MinMaxRecordBytes leaves room for a dead-letter reference record, a few KiB at most.
	MinMaxRecordBytes = 8192
)

var policies = []string{"fail", "skip", "dlq"}

// UsesDLQ reports whether some kind of record goes to the dead-letter topic.
func (e *Errors) UsesDLQ() bool {
	r := e.RecordTooLarge
	return r.Rows == "dlq" || r.Messages == "dlq" || r.Realtime == "dlq"
}

func (c *Config) applyErrorDefaults() {
	r := &c.Errors.RecordTooLarge
	if r.Rows == "" {
		r.Rows = DefaultRowsTooLarge
	}
	if r.Messages == "" {
		r.Messages = DefaultMessagesTooLarge
	}
	if r.Realtime == "" {
		r.Realtime = DefaultRealtimeTooLarge
	}
	if c.Errors.DLQTopic == "" && c.Name != "" {
		c.Errors.DLQTopic = SanitizeTopic(c.Name + ".dlq")
	}
}

// ownTopic is a topic procon-cdc writes, and what it writes there.
type ownTopic struct{ topic, of string }

// ownTopics are the topics this configuration writes (the progress topic aside).
func (c *Config) ownTopics() []ownTopic {
	var out []ownTopic
	for _, key := range c.SortedRelations() {
		if rc := c.Relations[key]; rc != nil {
			out = append(out, ownTopic{rc.Topic, key})
		}
	}
	out = append(out, ownTopic{c.MessageTopic(), "logical messages"})
	if c.RealtimeUsed() {
		out = append(out, ownTopic{c.Realtime.Topic, "realtime notifications"})
	}
	if c.Debezium.ProvideTransactionMetadata {
		out = append(out, ownTopic{c.TransactionTopic(), "transaction metadata"})
	}
	if c.Debezium.HeartbeatIntervalMS > 0 {
		out = append(out, ownTopic{c.HeartbeatTopic(), "heartbeats"})
	}
	if c.Errors.UsesDLQ() {
		out = append(out, ownTopic{c.Errors.DLQTopic, "dead-letter references"})
	}
	return out
}

// validateRecordSize checks errors.* and the kafka keys that bound a record.
func (c *Config) validateRecordSize(errs *fieldErrors) {
	e := &c.Errors
	errs.oneOf("errors.record_too_large.rows", e.RecordTooLarge.Rows, policies...)
	errs.oneOf("errors.record_too_large.messages", e.RecordTooLarge.Messages, policies...)
	errs.oneOf("errors.record_too_large.realtime", e.RecordTooLarge.Realtime, policies...)
	if e.UsesDLQ() {
		if !topicName.MatchString(e.DLQTopic) {
			errs.add("errors.dlq_topic", "%q is not a valid Kafka topic name", e.DLQTopic)
		}
		for _, other := range c.ownTopics() {
			if other.of != "dead-letter references" && other.topic == e.DLQTopic {
				errs.add("errors.dlq_topic", "%q is also the topic of %s; dead-letter records need a topic of their own", e.DLQTopic, other.of)
			}
		}
	}

	k := &c.Kafka
	if v, ok := k.TopicDefaults.Configs["max.message.bytes"]; ok {
		if n, err := strconv.Atoi(v); err != nil {
			errs.add("kafka.topic_defaults.configs.max.message.bytes", "%q is not a number of bytes", v)
		} else if n < k.MaxRecordBytes {
			errs.add("kafka.topic_defaults.configs.max.message.bytes", "%d is below kafka.max_record_bytes (%d); leave it out (procon-cdc sets it to kafka.max_record_bytes) or lower kafka.max_record_bytes",
				n, k.MaxRecordBytes)
		}
	}
}
