package main

import (
	"context"
	"encoding/json"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/procon-cdc/procon/config"
)

// recordDecoder renders a record's key and value as JSON, whatever their serialization.
type recordDecoder struct{}

func newRecordDecoder(*config.Config) *recordDecoder { return &recordDecoder{} }

func (d *recordDecoder) decode(_ context.Context, r *kgo.Record) tailLine {
	line := tailLine{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: rawOrString(r.Key), Value: rawOrString(r.Value)}
	if len(r.Headers) > 0 {
		line.Headers = map[string]string{}
		for _, h := range r.Headers {
			line.Headers[h.Key] = string(h.Value)
		}
	}
	return line
}

// rawOrString keeps JSON as it is and quotes anything else.
func rawOrString(b []byte) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b))
	return q
}
