package convert

import (
	"strconv"
	"strings"
)

// kafka maps where Kafka is (a worker's or producer's bootstrap.servers, when the file has
// them) and the producer and topic-creation settings procon-cdc has.
func (c *conv) kafka() {
	k := newMap()
	var brokers string
	for _, key := range []string{"producer.override.bootstrap.servers", "producer.bootstrap.servers", "bootstrap.servers"} {
		v, ok := c.text(key, "PROCON_KAFKA_BROKERS")
		if !ok {
			continue
		}
		if brokers == "" {
			brokers = v
			if !c.noted(key) {
				c.add(key, Mapped, "kafka.brokers", "")
			}
		} else {
			c.add(key, Ignored, "", "a more specific bootstrap.servers is set")
		}
	}
	if brokers == "" {
		brokers = "${PROCON_KAFKA_BROKERS}"
		c.env["PROCON_KAFKA_BROKERS"] = "Kafka's bootstrap servers (the Connect worker's bootstrap.servers: host:port, comma-separated)"
		c.whole(Note, "the connector's configuration does not say where Kafka is: kafka.brokers is ${PROCON_KAFKA_BROKERS}")
	}
	k.set("brokers", brokers)
	for _, prefix := range []string{"producer.override.", "producer."} {
		if v, ok := c.take(prefix + "compression.type"); ok {
			switch v {
			case "none", "gzip", "snappy", "lz4", "zstd":
				if _, set := k.get("compression"); !set {
					k.set("compression", v)
				}
				c.add(prefix+"compression.type", Mapped, "kafka.compression", "")
			default:
				c.add(prefix+"compression.type", Ignored, "", "%q: procon-cdc compresses with none, gzip, snappy, lz4 or zstd; batches are decompressed by consumers alike", v)
			}
		}
		if ms, ok := c.tuning(prefix+"linger.ms", "kafka.linger", true); ok {
			if _, set := k.get("linger"); !set {
				k.set("linger", ms)
			}
		}
	}
	c.topicCreation(k)
	c.y.set("kafka", k)
}

// topicCreation maps topic.creation.default.* to kafka.topic_defaults. Groups are accounted for
// in relations, which knows the topics.
func (c *conv) topicCreation(k *omap) {
	td := newMap()
	configs := newMap()
	for _, key := range c.p.Keys {
		opt, ok := strings.CutPrefix(key, "topic.creation.default.")
		if !ok {
			continue
		}
		v := c.p.Values[key]
		switch opt {
		case "partitions":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				td.set("partitions", n)
				c.add(key, Mapped, "kafka.topic_defaults.partitions", "")
			} else {
				c.add(key, Note, "", "%q: procon-cdc needs a number of partitions (the broker's default is not asked for); topics get kafka.topic_defaults.partitions (1)", v)
			}
		case "replication.factor":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				td.set("replication_factor", n)
				c.add(key, Mapped, "kafka.topic_defaults.replication_factor", "")
			} else {
				c.add(key, Note, "", "%q: procon-cdc needs a replication factor (the broker's default is not asked for); set kafka.topic_defaults.replication_factor", v)
			}
		default:
			configs.set(opt, literal(v))
			c.add(key, Mapped, "kafka.topic_defaults.configs."+opt, "")
		}
	}
	if len(configs.keys) > 0 {
		td.set("configs", configs)
	}
	if len(td.keys) > 0 {
		k.set("topic_defaults", td)
	}
	if v, ok := c.take("topic.creation.enable"); ok {
		c.add("topic.creation.enable", Ignored, "", "procon-cdc creates the topics it writes when they do not exist (%s)", v)
	}
}
