// Package convert turns a Debezium PostgreSQL connector's configuration (a Kafka Connect
// .properties file or REST JSON) into procon-cdc's YAML configuration, and says, key by key,
// what became of each property: mapped to a procon-cdc key, ignored because it does not change
// the events, or unsupported because procon-cdc cannot produce what it asks for.
//
// [Load] reads the input, [Convert] maps it. Include lists are regular expressions in
// Debezium; literal names become relation_configs entries directly, real patterns are matched
// against the database's tables when a [TableLister] is given and reported otherwise. Values
// Kafka Connect takes from a config provider (${file:...}) and passwords become ${VAR}
// references of procon-cdc's own expansion, so no secret is printed. The YAML is checked with
// config.Parse before it is returned.
//
// Concurrency: Convert keeps no state between calls; calls may run concurrently.
package convert
