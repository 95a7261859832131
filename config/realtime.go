package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Realtime defaults.
const (
	DefaultRealtimeTopic      = "procon-realtime"
	DefaultRealtimeTable      = "public.procon_realtimes"
	DefaultRealtimePrefix     = "procon-realtime"
	DefaultRTThresholdMS      = 1000
	DefaultRealtimeMaxPending = 100
	// A notification says that something changed; PostgreSQL's NOTIFY takes payloads under
	// 8000 bytes for the same job.
	DefaultRealtimeMaxNotificationBytes = 8000
	MaxRealtimeMaxNotificationBytes     = 1 << 20
	DefaultRealtimeMaxQueueBytes        = 16 << 20
	MaxRealtimeMaxQueueBytes            = 1 << 30
)

// RealtimeOperations are the values relation_configs.*.realtime.operations accepts.
var RealtimeOperations = []string{"insert", "update", "delete"}

// On reports whether the procon_realtimes table and the procon-realtime logical messages are
// turned into realtime notifications (realtime.enabled).
func (r *Realtime) On() bool { return r.Enabled != nil && *r.Enabled }

// MessagesOn reports whether realtime.message_prefix messages are turned into notifications:
// realtime.enabled, unless realtime.messages is false.
func (r *Realtime) MessagesOn() bool { return r.On() && (r.Messages == nil || *r.Messages) }

// RealtimeUsed reports whether any realtime notification can be produced: the table and
// message paths are on, or some relation builds notifications from its changes.
func (c *Config) RealtimeUsed() bool {
	if c.Realtime.On() {
		return true
	}
	for _, rc := range c.Relations {
		if rc != nil && rc.Realtime != nil {
			return true
		}
	}
	return false
}

// CleanupOn reports whether published procon_realtimes rows are deleted (realtime.cleanup,
// default true).
func (r *Realtime) CleanupOn() bool { return r.Cleanup == nil || *r.Cleanup }

func (r *Realtime) applyDefaults() {
	if r.Topic == "" {
		r.Topic = DefaultRealtimeTopic
	}
	if r.Table == "" {
		r.Table = DefaultRealtimeTable
	} else if !strings.Contains(r.Table, ".") {
		r.Table = "public." + r.Table
	}
	if r.Prefix == "" {
		r.Prefix = DefaultRealtimePrefix
	}
	if r.RTThreshold == nil {
		n := DefaultRTThresholdMS
		r.RTThreshold = &n
	}
	if r.MaxPending == 0 {
		r.MaxPending = DefaultRealtimeMaxPending
	}
	if r.MaxNotificationBytes == 0 {
		r.MaxNotificationBytes = DefaultRealtimeMaxNotificationBytes
	}
	if r.MaxQueueBytes == 0 {
		r.MaxQueueBytes = DefaultRealtimeMaxQueueBytes
	}
}

// validateRealtime checks what Realtime.validate does not: names, the message switch, the byte
// bounds, and that the realtime topic is not a relation's topic.
func (c *Config) validateRealtime(errs *fieldErrors) {
	r := &c.Realtime
	if !topicName.MatchString(r.Topic) {
		errs.add("realtime.topic", "%q is not a valid Kafka topic name", r.Topic)
	}
	if s, t := SplitRelation(r.Table); strings.Count(r.Table, ".") != 1 || s == "" || t == "" {
		errs.add("realtime.table", "%q must be schema.table, e.g. public.procon_realtimes", r.Table)
	}
	if r.Messages != nil && *r.Messages && !r.On() {
		errs.add("realtime.messages", "is true but realtime.enabled is not: the message path is part of realtime.enabled; set realtime.enabled: true, or remove realtime.messages")
	}
	if n, q := r.MaxNotificationBytes, r.MaxQueueBytes; q < n {
		errs.add("realtime.max_queue_bytes", "%d is less than realtime.max_notification_bytes (%d): the queue must hold at least one notification", q, n)
	}
	if !c.RealtimeUsed() {
		return
	}
	for key, rc := range c.Relations {
		if rc != nil && rc.Topic == r.Topic {
			errs.add("realtime.topic", "%q is also the topic of %s; realtime notifications need a topic of their own", r.Topic, key)
		}
	}
}

func (rr *RelationRealtime) validate(at string, errs *fieldErrors) {
	if rr == nil {
		return
	}
	if rr.Channel == "" {
		errs.add(at+".channel", "is required: a column name, or <jsonb column>.<key> such as metadata.room")
	}
	for _, op := range rr.Operations {
		errs.oneOf(at+".operations", op, RealtimeOperations...)
	}
}

// checkInstanceNum reads instance_num from the document before it is decoded into an int, so
// that a string or a fraction is refused with the key's name instead of being truncated or
// reported as a bare YAML type error.
func checkInstanceNum(root *yaml.Node, x expansions) error {
	n := valueOf(root, "instance_num")
	if n == nil || (n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!null" || n.Value == "")) {
		return nil
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		return nil // Validate checks the range
	}
	return &FieldError{Key: "instance_num", Problem: fmt.Sprintf(
		"%s is not an integer from 0 to 65535 (line %d); it numbers this engine in the procon.tx transaction id",
		x.describe(n), n.Line)}
}
