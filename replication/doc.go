// Package replication reads a PostgreSQL logical replication slot with the pgoutput plugin and
// turns the WAL of the published relations into ordered changes. It also owns the rule that
// decides which LSN may be confirmed to the server (Tracker).
//
// Open checks the server, the relations and their keys, prepares the publication and creates
// or reuses the slot; Stream.Run decodes the slot's messages into Changes (Begin, row changes,
// truncates, messages, Commit, in commit order) on a channel, reconnecting after transient
// errors; Stream.Close sends the final confirmed position. Check reports the same findings for
// procon-cdc check without changing anything.
//
// Concurrency: Stream.Run owns two goroutines: the reader, the only one that receives from
// the replication connection, and the stream loop (Run's caller), the only one that writes to
// it and that decodes. Stop and Tracker may be used from any goroutine; the Tracker is fed by
// the stream (Begin, ServerWALEnd), the pipeline (Add, Seal) and Kafka's promises (Ack, through
// *Tx). A Change and its Relation are immutable once emitted.
package replication
