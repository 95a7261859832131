// Package registry talks to a Confluent-compatible schema registry (Confluent Schema Registry,
// Apicurio's ccompat API, Karapace): it registers Avro schemas, fetches registered versions and
// schemas by id, waits out an unavailable registry with backoff, and decodes Confluent-framed
// Avro records back into JSON for people to read.
//
// A Client is safe for concurrent use. Its calls block while the registry is unreachable,
// retrying with backoff until their context ends; errors the registry returns on purpose
// (an incompatible schema, an unknown subject) are returned at once.
package registry
