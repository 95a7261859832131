package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/engine"
	"github.com/procon-cdc/procon/registry"
	"github.com/procon-cdc/procon/sink"
)

// recordDecoder renders a record's key and value as JSON, whatever their serialization: JSON is
// kept as it is, Confluent-framed Avro is decoded with its schema, fetched from the configured
// registry by id.
type recordDecoder struct {
	avro   *registry.Decoder // nil without a registry
	regErr error             // why there is no registry client
}

func newRecordDecoder(cfg *config.Config) *recordDecoder {
	d := &recordDecoder{}
	cl, err := engine.RegistryClient(cfg, nil)
	switch {
	case err != nil:
		d.regErr = err
	case cl != nil:
		d.avro = registry.NewDecoder(cl)
	}
	return d
}

func (d *recordDecoder) decode(ctx context.Context, r *sink.ConsumedRecord) tailLine {
	line := tailLine{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	var errs []string
	render := func(b []byte) json.RawMessage {
		out, err := d.render(ctx, b)
		if err != nil {
			errs = append(errs, err.Error())
		}
		return out
	}
	line.Key = render(r.Key)
	line.Value = render(r.Value)
	if len(r.Headers) > 0 {
		line.Headers = map[string]string{}
		for _, h := range r.Headers {
			v := string(h.Value)
			if registry.IsFramed(h.Value) {
				v = string(render(h.Value))
			}
			line.Headers[h.Key] = v
		}
	}
	if len(errs) > 0 {
		line.Error = fmt.Sprint(errs)
	}
	return line
}

// render returns b as JSON: Avro decoded, JSON as it is, anything else quoted.
func (d *recordDecoder) render(ctx context.Context, b []byte) (json.RawMessage, error) {
	if !registry.IsFramed(b) {
		return rawOrString(b), nil
	}
	if d.avro == nil {
		err := d.regErr
		if err == nil {
			err = fmt.Errorf("set schema_registry.url to decode Avro records")
		}
		return rawOrString(b), fmt.Errorf("cannot decode Avro: %w", err)
	}
	out, id, err := d.avro.Decode(ctx, b)
	if err != nil {
		return rawOrString(b), fmt.Errorf("decode Avro with schema id %d: %w", id, err)
	}
	return out, nil
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
