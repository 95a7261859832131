package realtime

import "github.com/procon-cdc/procon/envelope"

// The realtime record, described by Connect schemas so that it is written by the topic's
// envelope.Encoder, JSON or Avro, like the events of any relation:
//
//	key   {"channel": "room:42"}
//	value {"channel": "room:42", "session_id": "abc" | null, "metadata": "{\"kind\":\"chat\"}",
//	       "commit_ts_ms": 1700000000123, "tx_id": "01HF7YAT3V..."}
//
// metadata is the JSON text of an object (io.debezium.data.Json, as Debezium writes a jsonb
// column); commit_ts_ms is the commit time of the source transaction; tx_id is its procon.tx
// id, the same as the procon.tx header.
var (
	keySchema = &envelope.Schema{Type: envelope.Struct, Name: "io.procon.realtime.Key", Fields: []envelope.Field{
		{Name: "channel", Schema: &envelope.Schema{Type: envelope.String}},
	}}
	valueSchema = &envelope.Schema{Type: envelope.Struct, Name: "io.procon.realtime.Value", Fields: []envelope.Field{
		{Name: "channel", Schema: &envelope.Schema{Type: envelope.String}},
		{Name: "session_id", Schema: &envelope.Schema{Type: envelope.String, Optional: true}},
		{Name: "metadata", Schema: &envelope.Schema{Type: envelope.String, Name: "io.debezium.data.Json", Version: 1}},
		{Name: "commit_ts_ms", Schema: &envelope.Schema{Type: envelope.Int64}},
		{Name: "tx_id", Schema: &envelope.Schema{Type: envelope.String}},
	}}
)

// event builds the record of a waiting notification for topic.
func (it *item) event(topic string) *envelope.Event {
	key := envelope.NewValue(keySchema)
	key.Fields[0] = it.n.Channel
	v := envelope.NewValue(valueSchema)
	v.Fields[0] = it.n.Channel
	if it.n.SessionID != nil {
		v.Fields[1] = *it.n.SessionID
	}
	v.Fields[2] = string(it.n.Metadata)
	v.Fields[3] = it.commit.UnixMilli()
	v.Fields[4] = string(it.txHdr)
	return &envelope.Event{Topic: topic, KeySchema: keySchema, Key: key, ValueSchema: valueSchema, Value: v}
}
