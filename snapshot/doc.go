// Package snapshot reads the rows that already exist in the captured tables, consistently with
// the stream that follows, and keeps its progress durable.
//
// Three kinds of snapshot exist:
//
//   - The initial snapshot (Initial) runs before streaming starts, from the snapshot that
//     creating the slot exported: several connections import it (REPEATABLE READ, SET
//     TRANSACTION SNAPSHOT) and read the tables in parallel, keyset-chunked by primary key.
//     Every row it emits is at the slot's consistent point, and the stream starts exactly
//     there, so there is neither a gap nor a duplicate at the seam.
//   - In-stream snapshots (Controller) run while the stream runs, with the DBLog watermark
//     algorithm: for each chunk, a low watermark is written to the WAL, the chunk is read, a
//     high watermark is written; when the stream reaches the high watermark, chunk rows whose
//     key changed between the watermarks are dropped (the streamed change is newer) and the
//     rest are emitted there, in stream order. Incremental snapshots requested by a signal,
//     the rest of an initial snapshot interrupted by a crash, and snapshot.mode always on an
//     existing slot are in-stream snapshots.
//   - Watermarks are transactional logical decoding messages (prefix procon-snapshot), so they
//     need no table and never reach Kafka.
//
// Progress (per key range: the last key whose row Kafka has acknowledged) is kept in the
// source database, in the table procon.procon_snapshot_progress (InitSQL; StateSchema says why
// a schema of its own), so that it survives a crash of the engine, lives and dies with the data
// it describes, and can be read by procon-cdc status.
//
// Concurrency: Initial.Run owns its worker goroutines and returns when they have all exited.
// Controller.Run is the in-stream worker goroutine; Controller.Observe is called by the
// pipeline goroutine for every change, in stream order, and runs no SQL: it hands signal rows
// to Controller.RunSignals, a goroutine of its own, through a bounded queue. They meet under
// the Controller's mutex.
package snapshot
