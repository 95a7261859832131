// Package realtime turns committed procon_realtimes rows and logical messages into throttled
// per-channel notifications.
//
// A notification says "something changed" to the browsers listening on a channel (and
// optionally to one session of it). It comes from three places, all read from the WAL, so it
// goes out if and only if its transaction commits:
//
//   - a row inserted into the realtime table (procon_realtimes: channel, session_id, metadata);
//   - a transactional logical message, pg_logical_emit_message(true, 'procon-realtime', json);
//   - a change of a relation with a Rule (relation_configs.<rel>.realtime).
//
// In the data path, the pipeline goroutine calls Service.Suppress for every change (the
// realtime table's own rows and the cleanup never become events), Service.Derive while it
// builds the change's events (the notification takes the next procon.seq position), and
// Service.Submit once those events are produced: Submit counts the notification in its
// transaction (Tracker.Add) before the transaction is sealed, and queues it in a throttle. Service.Run produces what the
// throttle lets go: per channel, notifications are at least the threshold apart (spacing counted
// from when the previous one was handed to Kafka), in order; with coalescing only the newest
// waiting notification of a channel and session is kept. A notification is acknowledged to
// the tracker when Kafka acknowledges it (the notification is its record's sink.Acker), or
// when coalescing drops it; for a realtime table row, only once the row is deleted. So the slot's confirmed LSN
// never passes a notification that is still waiting, and a crash loses none: the slot gives
// the transaction again, and its notifications are sent again (consumers deduplicate on the
// procon.tx and procon.seq headers).
//
// Whoever can write the realtime table or emit a logical message chooses a notification's
// size and channel, so both are bounded. A notification whose channel, session id and metadata
// are over Config.MaxNotificationBytes (as written, before the metadata is parsed, and as it
// would be sent) is dropped where it is derived, with a warning and a count (Stats.TooLarge):
// it takes no position, never holds its transaction, and a realtime table row is still
// deleted. The queue is bounded: Config.MaxPending notifications per channel, Config.MaxTotal
// in all, and Config.MaxQueueBytes, which counts the waiting notifications and every channel
// the throttle remembers for its spacing. Past a bound, Submit blocks (backpressure): reading
// the WAL waits until a notification goes out, which takes at most the largest threshold, since
// the oldest idle channels are forgotten when their room is needed. Nothing waiting is dropped.
//
// The cleanup deletes published realtime table rows in batches, each one transaction that
// first emits a logical message with CleanupPrefix; Suppress sees that message before the
// transaction's deletes and drops them.
//
// Realtime records are written out of stream order (the throttle delays some), so the engine's
// resume-by-position does not apply to them.
//
// Concurrency: Suppress, Derive and Submit belong to the pipeline goroutine; Run (the
// producer, and the cleanup) is one goroutine of its own; acknowledgements arrive on Kafka's
// promise goroutine and never block; Close runs after Run has returned. The throttle is shared
// under the Service's mutex.
package realtime
