// Package replication reads a PostgreSQL logical replication slot with the pgoutput plugin and
// turns the WAL of the published relations into ordered changes. It also owns the rule that
// decides which LSN may be confirmed to the server.
package replication
