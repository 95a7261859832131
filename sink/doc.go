// Package sink produces encoded records to Kafka and reports each acknowledgement back, so that
// the slot's LSN moves only past what Kafka holds.
package sink
