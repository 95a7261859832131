package engine

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/procon-cdc/procon/avro"
	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/eventrouter"
	"github.com/procon-cdc/procon/pipeline"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/sink"
)

// topicSpec gives the settings of a topic the engine creates: the relation's partitions if it
// sets them, else kafka.topic_defaults; max.message.bytes is kafka.max_record_bytes unless
// kafka.topic_defaults.configs sets it (to no less, as validated), so that the topic takes
// every record the producer may write: the producer's count of a batch includes 4 bytes the
// broker does not count, and never exceeds kafka.max_record_bytes.
func (e *Engine) topicSpec(topic string) sink.TopicSpec {
	d := e.cfg.Kafka.TopicDefaults
	spec := sink.TopicSpec{Partitions: d.Partitions, ReplicationFactor: d.ReplicationFactor, Configs: map[string]*string{}}
	for k, v := range d.Configs {
		spec.Configs[k] = &v
	}
	if spec.Configs[sink.MaxMessageBytes] == nil {
		v := strconv.Itoa(e.cfg.Kafka.MaxRecordBytes)
		spec.Configs[sink.MaxMessageBytes] = &v
	}
	for _, rc := range e.cfg.Relations {
		if rc.Topic == topic && rc.Partitions > 0 {
			spec.Partitions = rc.Partitions
		}
	}
	if rt := e.cfg.Realtime; topic == rt.Topic && rt.Partitions > 0 {
		spec.Partitions = rt.Partitions
	}
	if k := e.cfg.Kafka; k.ExactlyOnce() && topic == k.Transactions.ProgressTopic {
		// One record per pipeline matters, the last: one partition, compacted.
		compact := "compact"
		spec.Partitions, spec.Configs["cleanup.policy"] = 1, &compact
	}
	return spec
}

// Topic names the engine derives from the configuration.
// Topics lists every topic the configuration makes procon-cdc write to: the relations', the
// logical messages', and those of transaction metadata, heartbeats, realtime notifications
// and dead-letter records when they are on, and the progress topic of exactly-once delivery.
func Topics(cfg *config.Config) []string {
	var topics []string
	for _, name := range cfg.SortedRelations() {
		if cfg.Relations[name].Outbox == nil { // an outbox table's events go to the topics its rows name
			topics = append(topics, cfg.Relations[name].Topic)
		}
	}
	topics = append(topics, cfg.MessageTopic())
	if cfg.Debezium.ProvideTransactionMetadata {
		topics = append(topics, cfg.TransactionTopic())
	}
	if cfg.Debezium.HeartbeatIntervalMS > 0 {
		topics = append(topics, cfg.HeartbeatTopic())
	}
	if cfg.RealtimeUsed() {
		topics = append(topics, cfg.Realtime.Topic)
	}
	if cfg.Errors.UsesDLQ() {
		topics = append(topics, cfg.Errors.DLQTopic)
	}
	if cfg.Kafka.ExactlyOnce() {
		topics = append(topics, cfg.Kafka.Transactions.ProgressTopic)
	}
	return topics
}

// encoders picks the serialization of each topic: a relation's own, else the top-level one.
// It implements pipeline.Encoders.
type encoders struct {
	byTopic    map[string]pipeline.Encoder
	byRelation map[string]pipeline.Encoder // outbox relations: their events' topics are the rows'
	def        pipeline.Encoder
	json       *envelope.JSONEncoder
	avro       *avro.Encoder // nil without Avro
}

func newEncoders(cfg *config.Config, avroEnc *avro.Encoder) encoders {
	js := &envelope.JSONEncoder{Schemas: cfg.JSON.Schemas}
	enc := encoders{byTopic: map[string]pipeline.Encoder{}, byRelation: map[string]pipeline.Encoder{}, def: js, json: js, avro: avroEnc}
	if cfg.Serialization == "avro" && avroEnc != nil {
		enc.def = avroEnc // heartbeat, transaction and message topics
	}
	for key, rc := range cfg.Relations {
		var relEnc pipeline.Encoder = js
		if rc.Serialization == "avro" && avroEnc != nil {
			relEnc = avroEnc
		}
		if rc.Outbox != nil {
			enc.byRelation[key] = relEnc
			continue
		}
		enc.byTopic[rc.Topic] = relEnc
	}
	return enc
}

// ForEvent returns the encoder of ev: an outbox event's relation's, else its topic's.
func (e encoders) ForEvent(ev *envelope.Event) pipeline.Encoder {
	if ev.Kind == envelope.KindOutbox {
		if enc, ok := e.byRelation[ev.Relation]; ok {
			return enc
		}
	}
	return e.ForTopic(ev.Topic)
}

// newRouter returns the router of the outbox relations, or nil when there are none.
func newRouter(cfg *config.Config, log *slog.Logger) (*eventrouter.Router, error) {
	tables := map[string]*config.Outbox{}
	for key, rc := range cfg.Relations {
		if rc.Outbox != nil {
			tables[key] = rc.Outbox
		}
	}
	if len(tables) == 0 {
		return nil, nil
	}
	return eventrouter.New(eventrouter.Config{Tables: tables, JSONSchemas: cfg.JSON.Schemas, Logger: log})
}

// ForTopic returns the encoder of topic.
func (e encoders) ForTopic(topic string) pipeline.Encoder {
	if enc, ok := e.byTopic[topic]; ok {
		return enc
	}
	return e.def
}

// Forget drops what the encoders keep of schemas no event will use again.
func (e encoders) Forget(schemas []*envelope.Schema) {
	e.json.Forget(schemas)
	if e.avro != nil {
		e.avro.Forget(schemas)
	}
}

// checkOutbox finds the outbox columns in each outbox table's current shape, so that a column
// the options name and the table lacks (or one of a type they cannot use) is an error at start,
// not at the first event.
func (e *Engine) checkOutbox(ctx context.Context) error {
	if e.router == nil {
		return nil
	}
	outbox := func(rc *config.RelationConfig) bool { return rc.Outbox != nil }
	return e.checkShapes(ctx, outbox, func(name string, _ *config.RelationConfig, rel *replication.Relation) error {
		_, value, err := e.builder.Schemas(rel)
		if err != nil {
			return err
		}
		return e.router.Check(name, value)
	})
}
