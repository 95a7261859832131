// Package pg is how Procon talks to PostgreSQL outside the replication protocol itself. It
// opens connections whose values render as pgoutput renders them ([Connect],
// [ConnectReplication], [OutputSettings]), so that a value read by a snapshot or written back
// by the realtime cleanup is the same text the stream decoded, and that search only the catalog
// ([SearchPath]), so that nothing another role creates stands in for it; it tells errors that
// may go away by trying again from those that cannot ([Transient]), so that every retry loop
// agrees on what a lost connection is; it quotes Procon's "schema.table" names
// ([QuoteQualified]) the way the configuration splits them, and operators with their schema
// ([Operator]); and it refuses tables on which Procon's writes would run another role's code
// ([CheckWrites], [CheckOwnSchema], [CheckOwnTable]).
//
// Operators and types resolve through search_path too: with only pg_catalog searched, an
// unqualified operator is the catalog's. SQL that compares values of a type whose operators
// live elsewhere (an extension's citext) names their schema with [Operator].
//
// Concurrency: the package holds no state, and its functions are safe for concurrent use.
// The connections it returns are pgx's, which are not: each must be used by one goroutine at a
// time.
package pg
