package config

import (
	"time"
)

// Delivery modes (kafka.delivery).
const (
	AtLeastOnce = "at_least_once"
	ExactlyOnce = "exactly_once"
)

// Transactions configures exactly-once delivery (kafka.delivery: exactly_once): how records
// are grouped into Kafka transactions, and where the stream's position is kept.
type Transactions struct {
	// CommitInterval: a Kafka transaction is committed at the first source transaction's end
	// once it is this old, or (once 10 ms old) when procon-cdc has caught up with the WAL.
	CommitInterval Duration `yaml:"commit_interval"`
	// CommitRecords: a Kafka transaction is committed at the first source transaction's end
	// once it holds this many records.
	CommitRecords int `yaml:"commit_records"`
	// MaxRecords: a source transaction with more records than this is split over several
	// Kafka transactions (a read_committed consumer then sees it in parts).
	MaxRecords int `yaml:"max_records"`
	// Timeout is the Kafka transaction timeout (transaction.timeout.ms). A Kafka transaction
	// still open at half of it is committed even inside a source transaction, which is then
	// split.
	Timeout Duration `yaml:"timeout"`
	// ProgressTopic holds the position of the stream, written in each Kafka transaction
	// (default <name>.progress; compacted, one partition).
	ProgressTopic string `yaml:"progress_topic"`
}

// Defaults of kafka.transactions, chosen by measurement (docs/benchmarks.md, "Exactly-once").
const (
	DefaultCommitInterval = Duration(250 * time.Millisecond)
	DefaultCommitRecords  = 20_000
	DefaultTxMaxRecords   = 1_000_000
	DefaultTxTimeout      = Duration(60 * time.Second)
)

// ExactlyOnce reports whether records go to Kafka in transactions.
func (k *Kafka) ExactlyOnce() bool { return k.Delivery == ExactlyOnce }

// TransactionalID is the Kafka transactional.id of the pipeline: derived from its name and
// slot, so a second procon-cdc started on the same configuration fences the first.
func (c *Config) TransactionalID() string {
	return "procon-cdc/" + c.Name + "/" + c.Postgres.Slot
}

func (c *Config) applyDeliveryDefaults() {
	k := &c.Kafka
	if k.Delivery == "" {
		k.Delivery = AtLeastOnce
	}
	t := &k.Transactions
	if t.CommitInterval == 0 {
		t.CommitInterval = DefaultCommitInterval
	}
	if t.CommitRecords == 0 {
		t.CommitRecords = DefaultCommitRecords
	}
	if t.MaxRecords == 0 {
		t.MaxRecords = DefaultTxMaxRecords
	}
	if t.Timeout == 0 {
		t.Timeout = DefaultTxTimeout
	}
	if t.ProgressTopic == "" && c.Name != "" {
		t.ProgressTopic = SanitizeTopic(c.Name + ".progress")
	}
}

// validateDelivery checks kafka.delivery and kafka.transactions.
func (c *Config) validateDelivery(errs *fieldErrors) {
	k := &c.Kafka
	errs.oneOf("kafka.delivery", k.Delivery, AtLeastOnce, ExactlyOnce)
	if !k.ExactlyOnce() {
		return
	}
	t := &k.Transactions
	if t.CommitRecords > t.MaxRecords && bounds["kafka.transactions.max_records"].allows(int64(t.MaxRecords)) {
		errs.add("kafka.transactions.commit_records", "%d is more than kafka.transactions.max_records (%d): a Kafka transaction would be split before it could be committed by size; lower it", t.CommitRecords, t.MaxRecords)
	}
	if t.MaxRecords < c.Snapshot.ChunkSize && bounds["snapshot.chunk_size"].allows(int64(c.Snapshot.ChunkSize)) {
		// The rows of an in-stream snapshot chunk are emitted together with the chunk's
		// progress: a chunk split over two Kafka transactions would be read again whole.
		errs.add("kafka.transactions.max_records", "%d is less than snapshot.chunk_size (%d): a snapshot chunk must fit in one Kafka transaction", t.MaxRecords, c.Snapshot.ChunkSize)
	}
	if time.Duration(t.CommitInterval)*2 >= time.Duration(t.Timeout) && bounds["kafka.transactions.timeout"].allows(int64(t.Timeout)) {
		errs.add("kafka.transactions.commit_interval", "%s is not less than half of kafka.transactions.timeout (%s): transactions would be split by age before their interval ends", time.Duration(t.CommitInterval), time.Duration(t.Timeout))
	}
	if !topicName.MatchString(t.ProgressTopic) {
		errs.add("kafka.transactions.progress_topic", "%q is not a valid Kafka topic name", t.ProgressTopic)
	}
	for _, other := range c.ownTopics() {
		if other.topic == t.ProgressTopic {
			errs.add("kafka.transactions.progress_topic", "%q is also the topic of %s; the position needs a topic of its own", t.ProgressTopic, other.of)
		}
	}
}
