package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// bound is the range of values a numeric key accepts. Every numeric key has one
// (bounds_test.go walks Config and fails for a numeric field missing here): a value past what
// the code can use would otherwise wrap in a conversion (int32, milliseconds into a
// time.Duration), size an allocation, or panic a ticker.
type bound struct {
	min, max int64
	// zero, when set, also accepts 0 and says what it means.
	zero string
	// defaulted: 0 is the key left out, replaced by its default before the check.
	defaulted bool
	// unit follows the range in the message: "milliseconds", "bytes", or "" for a count.
	unit string
	// duration marks a Duration key: min and max are nanoseconds, shown as durations.
	duration bool
	// why is added to the message: what the key is for.
	why string
}

const (
	maxPartitions = 10_000     // partitions of a topic procon-cdc creates (each is read at start)
	maxMillis     = 86_400_000 // one day, for the keys counted in milliseconds
)

// bounds lists every numeric key by its path; "*" stands for a relation_configs key.
var bounds = map[string]bound{
	"instance_num": {min: 0, max: 65535, why: "it numbers this engine in the procon.tx transaction id"},

	"metrics.ready_max_lag": {min: int64(time.Second), max: int64(24 * time.Hour), zero: "no bound", duration: true},

	"postgres.status_interval": {min: int64(100 * time.Millisecond), max: int64(time.Minute), duration: true},
	"postgres.receive_timeout": {min: int64(time.Second), max: int64(time.Hour), duration: true},

	"kafka.topic_defaults.partitions":         {min: 1, max: maxPartitions, defaulted: true},
	"kafka.topic_defaults.replication_factor": {min: 1, max: math.MaxInt16, defaulted: true},
	"kafka.max_buffered_records":              {min: 1, max: 1_000_000, defaulted: true},
	"kafka.max_buffered_bytes":                {min: MinMaxRecordBytes, max: 1 << 30, unit: "bytes", defaulted: true},
	"kafka.linger":                            {min: 0, max: int64(time.Minute), duration: true},
	// The producer's own limits: a batch of at least 512 bytes and at most what one request to
	// a broker may carry (100 MiB, Kafka's socket.request.max.bytes).
	// At least MinMaxRecordBytes, the room a dead-letter reference needs.
	"kafka.max_record_bytes": {min: MinMaxRecordBytes, max: 100 << 20, unit: "bytes", defaulted: true},

	"kafka.transactions.commit_interval": {min: int64(time.Millisecond), max: int64(time.Minute), duration: true, defaulted: true},
	"kafka.transactions.commit_records":  {min: 1, max: 10_000_000, defaulted: true},
	"kafka.transactions.max_records":     {min: 1, max: 100_000_000, defaulted: true},
	// Kafka's own range of transaction.timeout.ms: at least a second, at most the brokers'
	// transaction.max.timeout.ms (15 minutes by default).
	"kafka.transactions.timeout": {min: int64(time.Second), max: int64(time.Hour), duration: true, defaulted: true},

	"snapshot.parallelism":       {min: 1, max: 64, defaulted: true, why: "each is a PostgreSQL connection"},
	"snapshot.chunk_size":        {min: 1, max: 1_000_000, defaulted: true, why: "an incremental snapshot holds a chunk's rows in memory"},
	"snapshot.statement_timeout": {min: int64(100 * time.Millisecond), max: int64(24 * time.Hour), duration: true, defaulted: true},

	"debezium.money.fraction.digits": {min: 0, max: 20},
	"debezium.heartbeat.interval.ms": {min: 1, max: maxMillis, zero: "off", unit: "milliseconds"},

	"relation_configs.*.partitions":                {min: 1, max: maxPartitions, zero: "kafka.topic_defaults.partitions"},
	"relation_configs.*.avro_value_schema_version": {min: 1, max: math.MaxInt32, zero: "derive and register", why: "a registered version number"},
	"relation_configs.*.avro_key_schema_version":   {min: 1, max: math.MaxInt32, zero: "derive and register", why: "a registered version number"},
	"relation_configs.*.rt_threshold":              {min: 0, max: maxMillis, unit: "milliseconds"},

	"realtime.rt_threshold": {min: 0, max: maxMillis, unit: "milliseconds"},
	"realtime.max_pending":  {min: 1, max: 100_000, defaulted: true},
	"realtime.partitions":   {min: 1, max: maxPartitions, zero: "kafka.topic_defaults.partitions"},
	"realtime.max_notification_bytes": {min: 1, max: MaxRealtimeMaxNotificationBytes, unit: "bytes", defaulted: true,
		why: "a notification says that something changed; the consumer reads the data itself"},
	"realtime.max_queue_bytes": {min: 1, max: MaxRealtimeMaxQueueBytes, unit: "bytes", defaulted: true},
}

// allows reports whether v is in the range.
// InRange reports whether v is in the range of the numeric key (a dotted path, "*" for a
// relation_configs key; durations in nanoseconds). A key without a range is never in one.
func InRange(key string, v int64) bool {
	b, ok := bounds[key]
	return ok && b.allows(v)
}

func (b bound) allows(v int64) bool {
	return (v >= b.min && v <= b.max) || (v == 0 && b.zero != "")
}

// problem says what the key accepts and what it got, shown as got.
func (b bound) problem(got string) string {
	var s string
	switch {
	case b.duration:
		s = fmt.Sprintf("must be a duration from %s to %s", time.Duration(b.min), time.Duration(b.max))
	case b.zero != "":
		s = fmt.Sprintf("must be 0 (%s) or an integer from %d to %d", b.zero, b.min, b.max)
	default:
		s = fmt.Sprintf("must be an integer from %d to %d", b.min, b.max)
	}
	if b.unit != "" {
		s += " " + b.unit
	}
	s += ", got " + got
	if b.why != "" {
		s += "; " + b.why
	}
	return s
}

var durationType = reflect.TypeFor[Duration]()

// numeric reports whether a field of type t holds a number (a Duration is one).
func numeric(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// checkBounds reports every numeric value of c outside its key's bound. It walks c itself, so
// that a key added to Config is checked as soon as it has a bound.
func (c *Config) checkBounds(errs *fieldErrors) {
	walkNumbers(reflect.ValueOf(c).Elem(), "", "", func(path, pattern string, v reflect.Value) {
		b, ok := bounds[pattern]
		if !ok {
			return // bounds_test.go makes sure this does not happen
		}
		var n int64
		var got string
		switch {
		case v.Type() == durationType:
			n = v.Int()
			got = time.Duration(n).String()
		case v.CanInt():
			n = v.Int()
			got = strconv.FormatInt(n, 10)
		case v.CanUint():
			u := v.Uint()
			n, got = int64(min(u, math.MaxInt64)), strconv.FormatUint(u, 10)
		default:
			f := v.Float()
			n, got = int64(max(min(f, math.MaxInt64), math.MinInt64)), strconv.FormatFloat(f, 'g', -1, 64)
			if f != math.Trunc(f) {
				errs.add(path, "%s", b.problem(got))
				return
			}
		}
		if !b.allows(n) {
			errs.add(path, "%s", b.problem(got))
		}
	})
}

// walkNumbers calls fn with each number set in v (a nil pointer is not set), with its key's
// path and its pattern (relation_configs keys as "*").
func walkNumbers(v reflect.Value, path, pattern string, fn func(path, pattern string, v reflect.Value)) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	t := v.Type()
	switch {
	case numeric(t):
		fn(path, pattern, v)
	case t.Kind() == reflect.Struct:
		for i := range t.NumField() {
			name := yamlName(t.Field(i))
			if name == "" {
				continue
			}
			walkNumbers(v.Field(i), join(path, name), join(pattern, name), fn)
		}
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		iter := v.MapRange()
		for iter.Next() {
			walkNumbers(iter.Value(), join(path, iter.Key().String()), join(pattern, "*"), fn)
		}
	}
}

// yamlName is the key of a struct field in the file, or "" for a field the file cannot set.
func yamlName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	return name
}
