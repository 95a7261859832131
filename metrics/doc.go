// Package metrics serves procon-cdc's observability from one HTTP listener (metrics.listen):
// Prometheus metrics at /metrics, the liveness and readiness probes at /healthz and /readyz,
// and the running process's view as JSON at /status (read by procon-cdc status).
//
// The hot paths only count: Producer implements the small interfaces of the pipeline
// (pipeline.Meter), the Kafka client (sink.Observer) and the replication stream
// (replication.Observer), and Consumer that of the consuming side (consumer.Meter). Gauges
// are read at each scrape from a State the engine assembles (StateFunc), so nothing is
// sampled on the data path. Labels are bounded: a relation label only names a configured
// relation, a topic label only a topic the configuration makes, a kind label one of a fixed
// set.
//
// Concurrency: every method is safe for concurrent use unless its comment says otherwise.
package metrics
