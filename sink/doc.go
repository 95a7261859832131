// Package sink is Procon's only Kafka client: it produces encoded records and reports each
// acknowledgement back to the record's owner (Record.Ack), so that the slot's LSN moves only
// past what Kafka holds; it reads the last record of partitions (where a previous run
// stopped), and serves the commands that read or administer topics (tail, check, drop). Every
// client is built from one Config (ConfigFrom maps the configuration), so TLS and SASL apply
// everywhere, and no franz-go type leaves the package.
//
// Writer, Admin and their methods are safe for concurrent use; a Reader belongs to one
// goroutine. Acknowledgements run on the Kafka client's promise goroutine and must not block.
package sink
