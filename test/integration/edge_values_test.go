package integration

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// Values that any writer of a captured table can store, at the edges of PostgreSQL's ranges,
// reach Kafka and never stop the stream (found by envelope's FuzzConvert): an enum array
// holding a NULL, which Connect refuses (the encoder refused the event and the stream
// stopped); an interval with more hours than an int32 holds (its conversion failed and the
// stream stopped); a timestamp in the last years PostgreSQL allows, whose microseconds since
// the epoch do not fit an int64 (they wrapped around into the distant past).
func TestEdgeValuesReachKafka(t *testing.T) {
	s := newSetup(t, `public.edges: {}`, "")
	s.db.Exec(t, `CREATE TYPE mood AS ENUM ('ok', 'sad')`)
	s.db.Exec(t, `CREATE TABLE edges (id int PRIMARY KEY, moods mood[], span interval, ts timestamp, tstz timestamptz)`)
	s.runEngine(t)
	s.waitSlot(t)

	// Before 15 an interval's text holds at most 2^31-1 hours: a larger one can be stored
	// (by arithmetic) but not output, and the walsender stops on it (interval out of range)
	// for every client alike. There the edge is the largest that can be sent, which fits.
	hours, span1, span2 := "2562047788", "9223372036800000000", "-9223372036854775808"
	if s.env.ServerMajor(t) < 15 {
		hours, span1, span2 = "2147483647", "7730941129200000000", "-7730941129254775808"
	}
	s.db.Exec(t, `INSERT INTO edges VALUES (1, ARRAY['ok', NULL]::mood[], interval '`+hours+` hours',
		'294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00')`)
	s.db.Exec(t, `INSERT INTO edges VALUES (2, ARRAY['sad']::mood[], interval '-`+hours+` hours -54.775808 seconds',
		'2024-02-29 12:00:00', '4713-01-01 00:00:00+00 BC')`)
	evs := decode(t, s.env.ReadN(t, s.topic("edges"), 2, time.Minute))

	want := []map[string]any{
		// Debezium leaves an enum array that holds a null as null; MicroTimestamp has no
		// value past about 294247 AD; ZonedTimestamp has.
		{"id": json.Number("1"), "moods": nil, "span": json.Number(span1), "ts": nil,
			"tstz": "+294276-12-31T23:59:59.999999Z"},
		// MicroDuration saturates at Long.MIN_VALUE, as Debezium's (long) cast does.
		{"id": json.Number("2"), "moods": []any{"sad"}, "span": json.Number(span2),
			"ts": json.Number("1709208000000000"), "tstz": "-4712-01-01T00:00:00.000000Z"},
	}
	for i, w := range want {
		if got := evs[i].after(); !reflect.DeepEqual(got, w) {
			t.Errorf("event %d: after got %v, want %v", i, got, w)
		}
	}
}
