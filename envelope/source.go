package envelope

// The schemas Debezium's Postgres connector shares across all relations.

const snapshotAllowed = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"

// sourceSchema is io.debezium.connector.postgresql.Source, version 1, fields in Debezium's order.
var sourceSchema = func() *Schema {
	snapshot := named(String, "io.debezium.data.Enum", 1, Param{"allowed", snapshotAllowed})
	snapshot.Optional, snapshot.HasDefault, snapshot.Default = true, true, "false"
	return structSchema("io.debezium.connector.postgresql.Source", 1, false,
		field("version", prim(String, false)),
		field("connector", prim(String, false)),
		field("name", prim(String, false)),
		field("ts_ms", prim(Int64, false)),
		field("snapshot", snapshot),
		field("db", prim(String, false)),
		field("sequence", prim(String, true)),
		field("ts_us", prim(Int64, true)),
		field("ts_ns", prim(Int64, true)),
		field("schema", prim(String, false)),
		field("table", prim(String, false)),
		field("txId", prim(Int64, true)),
		field("lsn", prim(Int64, true)),
		field("xmin", prim(Int64, true)),
		field("origin", prim(String, true)),
		field("origin_lsn", prim(Int64, true)),
	)
}()

// Indexes of sourceSchema's fields, for filling values without lookups.
const (
	srcVersion = iota
	srcConnector
	srcName
	srcTsMs
	srcSnapshot
	srcDB
	srcSequence
	srcTsUs
	srcTsNs
	srcSchema
	srcTable
	srcTxID
	srcLSN
	srcXmin
	srcOrigin
	srcOriginLSN
)

// transactionBlockSchema is event.block, the per-event transaction metadata.
var transactionBlockSchema = structSchema("event.block", 1, true,
	field("id", prim(String, false)),
	field("total_order", prim(Int64, false)),
	field("data_collection_order", prim(Int64, false)),
)

// envelopeSchema is <topic>.Envelope, version 2, for a row schema.
func envelopeSchema(name string, row *Schema) *Schema {
	return structSchema(name, 2, false,
		field("before", row),
		field("after", row),
		field("source", sourceSchema),
		field("transaction", transactionBlockSchema),
		field("op", prim(String, false)),
		field("ts_ms", prim(Int64, true)),
		field("ts_us", prim(Int64, true)),
		field("ts_ns", prim(Int64, true)),
	)
}

// Indexes of an envelope's fields.
const (
	envBefore = iota
	envAfter
	envSource
	envTransaction
	envOp
	envTsMs
	envTsUs
	envTsNs
)

// Transaction metadata topic schemas.
var (
	txKeySchema = structSchema("io.debezium.connector.common.TransactionMetadataKey", 1, false,
		field("id", prim(String, false)))
	eventCollectionSchema = structSchema("event.collection", 1, true,
		field("data_collection", prim(String, false)),
		field("event_count", prim(Int64, false)))
	txValueSchema = structSchema("io.debezium.connector.common.TransactionMetadataValue", 1, false,
		field("status", prim(String, false)),
		field("id", prim(String, false)),
		field("event_count", prim(Int64, true)),
		field("data_collections", &Schema{Type: Array, Optional: true, Items: eventCollectionSchema}),
		field("ts_ms", prim(Int64, false)))
)

// Logical decoding message schemas.
var (
	messageKeySchema = structSchema("io.debezium.connector.postgresql.MessageKey", 1, false,
		field("prefix", prim(String, true)))
	messageBodySchema = func(content *Schema) *Schema {
		return structSchema("io.debezium.connector.postgresql.Message", 1, false,
			field("prefix", prim(String, true)),
			field("content", content))
	}
	messageValueSchema = func(body *Schema) *Schema {
		return structSchema("io.debezium.connector.postgresql.MessageValue", 1, false,
			field("op", prim(String, false)),
			field("ts_ms", prim(Int64, true)),
			field("source", sourceSchema),
			field("transaction", transactionBlockSchema),
			field("message", body))
	}
)

// Heartbeat schemas.
var (
	heartbeatKeySchema = structSchema("io.debezium.connector.common.ServerNameKey", 1, false,
		field("serverName", prim(String, false)))
	heartbeatValueSchema = structSchema("io.debezium.connector.common.Heartbeat", 1, false,
		field("ts_ms", prim(Int64, false)))
)
