// Package avro writes envelope events in Confluent's Avro wire format, as Kafka Connect's
// AvroConverter (with Confluent's AvroData) writes Debezium's records: a zero byte, the 4-byte
// schema id, then the Avro binary body.
//
// The Connect schemas built by package envelope are the single description of a relation;
// this package translates them: [SchemaOf] derives the Avro schema AvroData would, the
// [Encoder] registers it under the topic's subjects (or uses a pinned registered version,
// fields matched by name) through a [Registry], and compiles it, once per schema, into a
// writer that turns *envelope.Value trees into bytes without calling the registry again.
// Names the Avro specification refuses are reported with the Debezium option that fixes them;
// the renaming itself (schema.name.adjustment.mode, field.name.adjustment.mode) happens in
// envelope, because it changes the Connect schemas, and so the JSON records, too.
//
// Concurrency: an [Encoder] is safe for concurrent use; the engine encodes on several
// goroutines with one Encoder. It only reads the events and values it is given, which must not
// change while they are encoded. A call may block on the registry the first time a schema is
// seen, until its context ends; afterwards encoding takes no lock longer than a map lookup.
//
// The package is named for the format it writes; inside it, github.com/hamba/avro/v2 (the
// schema parser used for derived and pinned schemas) is imported as hamba.
package avro
