package convert

import (
	"strconv"
	"strings"
)

// ignored are the connector properties that do not change the records procon-cdc would
// write, with why.
var ignored = map[string]string{
	"name":                                "the connector's name in Kafka Connect",
	"tasks.max":                           "Debezium's PostgreSQL connector runs one task; procon-cdc is one process per slot",
	"slot.drop.on.stop":                   "procon-cdc drop drops the slot when the pipeline is retired",
	"slot.max.retries":                    "procon-cdc retries a slot in use until it is free",
	"slot.retry.delay.ms":                 "procon-cdc retries a slot in use until it is free",
	"slot.stream.params":                  "parameters for other decoding plugins; pgoutput's are procon-cdc's own",
	"max.batch.size":                      "internal batching",
	"max.queue.size":                      "internal queueing; kafka.max_buffered_records bounds procon-cdc's",
	"max.queue.size.in.bytes":             "internal queueing; kafka.max_buffered_bytes bounds procon-cdc's",
	"poll.interval.ms":                    "internal polling",
	"query.fetch.size":                    "reads in chunks of snapshot.chunk_size",
	"snapshot.fetch.size":                 "reads in chunks of snapshot.chunk_size",
	"snapshot.lock.timeout.ms":            "procon-cdc's initial snapshot takes no table locks",
	"snapshot.locking.mode":               "procon-cdc's initial snapshot takes no table locks",
	"snapshot.isolation.mode":             "procon-cdc's snapshot reads one exported snapshot (repeatable read)",
	"snapshot.delay.ms":                   "procon-cdc starts the snapshot at once",
	"streaming.delay.ms":                  "procon-cdc streams at once",
	"snapshot.tables.order.by.row.count":  "the initial snapshot reads tables in parallel (snapshot.parallelism)",
	"retriable.restart.connector.wait.ms": "procon-cdc retries connections with backoff",
	"event.processing.failure.handling.mode": "procon-cdc stops at an event it cannot process and confirms nothing past it (Debezium's fail); " +
		"warn and skip would lose the event",
	"table.ignore.builtin":                       "procon-cdc captures the listed tables only",
	"topic.cache.size":                           "internal cache",
	"database.tcpKeepAlive":                      "procon-cdc's sessions ask for TCP keepalives",
	"database.initial.statements":                "procon-cdc pins its sessions' settings (search_path, output formats); statements here would not change its events",
	"database.query.timeout.ms":                  "procon-cdc bounds in-stream snapshot statements with snapshot.statement_timeout",
	"connect.timeout.ms":                         "connection timeout",
	"connect.keep.alive":                         "connection keepalive",
	"connect.keep.alive.interval.ms":             "connection keepalive",
	"connect.backoff.initial.delay.ms":           "procon-cdc retries with its own backoff",
	"connect.backoff.max.delay.ms":               "procon-cdc retries with its own backoff",
	"connect.max.attempts":                       "procon-cdc retries with its own backoff",
	"flush.lsn.source":                           "procon-cdc confirms the slot's position itself, once Kafka has every event before it",
	"lsn.flush.timeout.ms":                       "procon-cdc confirms the slot's position itself",
	"lsn.flush.timeout.action":                   "procon-cdc confirms the slot's position itself",
	"schema.refresh.mode":                        "procon-cdc takes a relation's new shape from pgoutput's Relation message",
	"incremental.snapshot.watermarking.strategy": "procon-cdc's watermarks are logical decoding messages",
	"incremental.snapshot.allow.schema.changes":  "procon-cdc reads a chunk with the relation version it streams",
	"database.sslfactory":                        "pgx reads the certificates of postgres.dsn",
	"signal.poll.interval.ms":                    "signal channel polling",
	"custom.metric.tags":                         "procon-cdc's metrics: metrics.listen",
	"errors.max.retries":                         "procon-cdc retries transient errors without limit",
	"errors.retry.delay.initial.ms":              "procon-cdc retries with its own backoff",
	"errors.retry.delay.max.ms":                  "procon-cdc retries with its own backoff",
	"notification.enabled.channels":              "procon-cdc's snapshot progress is in procon-cdc status and its metrics",
}

// ignoredPrefixes are families of properties that do not change the records.
var ignoredPrefixes = map[string]string{
	"errors.":                  "Kafka Connect's error handling; procon-cdc stops on an error and confirms nothing past it",
	"schema.history.internal.": "the PostgreSQL connector keeps no schema history",
	"database.history.":        "the PostgreSQL connector keeps no schema history",
	"producer.":                "producer tuning of the Connect worker",
	"consumer.":                "consumer settings of the Connect worker",
	"offset.":                  "Debezium's offsets; procon-cdc's position is the slot's (and, exactly once, its progress topic)",
	"notification.":            "Debezium's notifications; procon-cdc's snapshot progress is in procon-cdc status and its metrics",
	"signal.kafka.":            "the Kafka signal channel; procon-cdc reads the signal table",
	"signal.file":              "the file signal channel; procon-cdc reads the signal table",
	"openlineage.":             "OpenLineage events",
	"header.converter":         "headers procon-cdc writes (__debezium.oldkey/newkey) are in the key's format, as the compatibility test compares them",
	"config.providers":         "Kafka Connect's config providers; their references became ${VAR}",
	"config.action.reload":     "a Kafka Connect setting",
	"predicates":               "predicates of transforms",
	"debezium.sink.":           "Debezium Server's sink settings",
	"quarkus.":                 "Debezium Server's runtime",
}

// unsupportedKeys change the records, and procon-cdc has no equivalent.
var unsupportedKeys = map[string]string{
	"column.include.list":                 "procon-cdc writes every column of a relation",
	"column.exclude.list":                 "procon-cdc writes every column of a relation",
	"column.propagate.source.type":        "procon-cdc adds no __debezium.source.column.* parameters",
	"datatype.propagate.source.type":      "procon-cdc adds no __debezium.source.column.* parameters",
	"converters":                          "custom converters change column values",
	"snapshot.select.statement.overrides": "procon-cdc reads whole tables (a filter only in an incremental snapshot's signal)",
	"snapshot.include.collection.list":    "procon-cdc's initial snapshot reads every relation",
	"publish.via.partition.root":          "procon-cdc's publications do not publish via the partition root",
	"replica.identity.autoset.values":     "procon-cdc does not change replica identities; set them with ALTER TABLE",
	"read.only":                           "procon-cdc's incremental snapshots write watermarks to the WAL",
	"post.processors":                     "post processors change the records",
	"transaction.metadata.factory":        "procon-cdc writes Debezium's default transaction metadata",
	"snapshot.mode.custom.name":           "custom snapshot modes",
	"snapshot.query.mode":                 "custom snapshot queries",
	"snapshot.query.mode.custom.name":     "custom snapshot queries",
}

// rest accounts for every property not mapped yet.
func (c *conv) rest() {
	for _, k := range c.p.Keys {
		if c.done[k] {
			continue
		}
		v := c.p.Values[k]
		switch {
		case k == "include.schema.comments" || k == "skip.messages.without.change":
			if b, _ := strconv.ParseBool(v); b {
				c.add(k, Unsupported, "", "true changes the records; procon-cdc does what false does")
			} else {
				c.add(k, Ignored, "", "false is the default")
			}
		case k == "xmin.fetch.interval.ms":
			if v == "0" {
				c.add(k, Ignored, "", "0 is the default")
			} else {
				c.add(k, Unsupported, "", "procon-cdc leaves source.xmin null, as Debezium does with 0")
			}
		case strings.HasPrefix(k, "column.mask.") || strings.HasPrefix(k, "column.truncate.") || strings.HasPrefix(k, "column."):
			c.add(k, Unsupported, "", "procon-cdc does not mask, hash or truncate columns")
		case strings.HasPrefix(k, "snapshot.select.statement.overrides."):
			c.add(k, Unsupported, "", "%s", unsupportedKeys["snapshot.select.statement.overrides"])
		case unsupportedKeys[k] != "":
			c.add(k, Unsupported, "", "%s", unsupportedKeys[k])
		case ignored[k] != "":
			c.add(k, Ignored, "", "%s", ignored[k])
		default:
			if why, ok := ignoredPrefix(k); ok {
				c.add(k, Ignored, "", "%s", why)
				continue
			}
			c.add(k, Unsupported, "", "not a PostgreSQL connector property procon-cdc knows; it may change the records")
		}
	}
}

func ignoredPrefix(k string) (string, bool) {
	for p, why := range ignoredPrefixes {
		if why != "" && strings.HasPrefix(k, p) {
			return why, true
		}
	}
	return "", false
}
