// Package envelope turns decoded changes into Debezium-compatible events and encodes their keys
// and values (JSON, or Avro through a schema registry).
package envelope
