// Package envelope turns decoded changes into Debezium-compatible events and encodes them as
// Kafka Connect's JsonConverter does.
//
// Its three parts: the Kafka Connect model ([Schema], [Value], [Decimal]), in which every key
// and value is described; the mapping of PostgreSQL types and rows to that model, under
// Debezium's handling modes ([Options]), and of changes to events ([Builder], [Reader]); and
// [JSONEncoder], which writes events byte for byte as JsonConverter through Jackson would.
// Other serializations translate the same schemas and values: package avro implements
// [Encoder] for Confluent's Avro wire format.
//
// Concurrency: a [Builder] keeps per-stream state (relation versions, the last commit,
// transaction counters) and is used from one goroutine. A [Reader] only reads its Builder's
// configuration and is safe for concurrent use (snapshot workers reading one table share one).
// Events and values are never changed once built, so they may be encoded on other goroutines;
// a [JSONEncoder] is safe for concurrent use, and so must every [Encoder] be: the engine
// encodes on several goroutines with one encoder.
package envelope
