// Package pg is how Procon talks to PostgreSQL outside the replication protocol itself. It
// opens connections whose values render as pgoutput renders them ([Connect],
// [ConnectReplication], [OutputSettings]), so that a value read by a snapshot or written back
// by the realtime cleanup is the same text the stream decoded; it tells errors that may go
// away by trying again from those that cannot ([Transient]), so that every retry loop agrees
// on what a lost connection is; and it quotes Procon's "schema.table" names
// ([QuoteQualified]) the way the configuration splits them.
//
// Concurrency: the package holds no state, and its functions are safe for concurrent use.
// The connections it returns are pgx's, which are not: each must be used by one goroutine at a
// time.
package pg
