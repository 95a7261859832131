// Package apply writes the effects of change events on one target table: what one entity of a
// consumer's configuration (a topic, its table, its master key and mapping) does to the
// application's database.
//
// An [Applier] turns a batch of events into few multi-row statements inside the caller's
// transaction. The batch is reduced per master key: only the last state of each key is
// written, with the column values of earlier upserts of the key merged under it, so that an
// unchanged-TOAST placeholder takes the value of an earlier event of the same key, and is
// otherwise left out of the statement for that row (the stored value stays). A truncate that
// deletes splits the batch; the parts are applied in order. Each part runs at most one delete
// (or soft delete) statement, for the keys a delete reached, then one upsert per set of
// columns present:
//
//	INSERT INTO "s"."t" AS t ("id", "name") SELECT CAST(u.c0 AS integer), CAST(u.c1 AS text)
//	FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS u (c0, c1)
//	ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name"
//
//	WITH d AS (DELETE FROM "s"."t" AS t USING ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]),
//	  pg_catalog.unnest($2::pg_catalog.int4[])) AS u (c0, c1) WHERE t."id" = CAST(u.c0 AS integer) RETURNING u.c1 AS w)
//	SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(d.w), 0)::pg_catalog.int8 FROM d
//
// Values travel as text arrays (parameters only, never in the SQL text), cast to each column's
// type without its modifier, so that the column's assignment applies the modifier: a too long
// varchar fails instead of being cut, as an INSERT of literals would.
//
// A key-changing update is a delete of the old key and an upsert of the new one. The counts in
// [Stats] are those of applying the events one at a time, in order, even though fewer rows are
// written.
//
// Errors: a record that can never apply (bad mapping, missing key field, a value its column's
// type cannot read, found in Go or by the server's cast) is reported as a [*RecordError] with
// its index in the batch, after everything Apply did in the transaction was rolled back to a
// savepoint: the caller sends the record to the dead-letter topic and applies the rest in the
// same transaction. Any other error (a constraint violation is a *pgconn.PgError) is returned
// wrapped, with Apply's effects rolled back as well.
//
// Concurrency: an Applier may be used by several goroutines at once, each with its own
// transaction (one per Kafka partition).
package apply
