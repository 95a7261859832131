package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/pg"
)

// Notification is a realtime notification: a row of the realtime table, which procon-cdc,
// capturing this database, publishes once the transaction that inserted it commits.
type Notification struct {
	Channel   string
	SessionID string // "" for none
	Metadata  map[string]any
}

// Notify inserts notifications in tx (for hooks): they are published only if tx commits.
func (c *Consumer) Notify(ctx context.Context, tx pgx.Tx, ns ...Notification) error {
	if len(ns) == 0 {
		return nil
	}
	channels := make([]string, len(ns))
	sessions := make([]*string, len(ns))
	metadata := make([]string, len(ns))
	for i, n := range ns {
		channels[i] = n.Channel
		if n.SessionID != "" {
			s := n.SessionID
			sessions[i] = &s
		}
		md := n.Metadata
		if md == nil {
			md = map[string]any{}
		}
		b, err := json.Marshal(md)
		if err != nil {
			return fmt.Errorf("realtime notification on %s: metadata: %w", n.Channel, err)
		}
		metadata[i] = string(b)
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+pg.QuoteQualified(c.cfg.RealtimeTable)+` (channel, session_id, metadata)
		SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.jsonb[]))`, channels, sessions, metadata)
	if err != nil {
		return fmt.Errorf("insert realtime notifications into %s: %w", c.cfg.RealtimeTable, err)
	}
	return nil
}

// notify inserts the notifications an entity's Realtime configuration derives from events.
func (c *Consumer) notify(ctx context.Context, tx pgx.Tx, e *Entity, events []*event.Event) error {
	rt := e.Realtime
	if rt == nil {
		return nil
	}
	var ns []Notification
	for _, ev := range events {
		if ev.Tombstone || (len(rt.Ops) > 0 && !slices.Contains(rt.Ops, ev.Op)) {
			continue
		}
		switch ev.Op {
		case event.Create, event.Update, event.Delete:
		default:
			continue
		}
		row := ev.After
		if ev.Op == event.Delete {
			row = ev.Before
		}
		n := Notification{Channel: rt.Channel, Metadata: map[string]any{}}
		if rt.SessionField != "" {
			if v, ok := fieldValue(row, rt.SessionField); ok {
				if s, null, err := v.Text("text"); err == nil && !null {
					n.SessionID = s
				}
			}
		}
		for key, field := range rt.Metadata {
			v, ok := fieldValue(row, field)
			if !ok {
				continue
			}
			s, null, err := v.Text("text")
			switch {
			case err != nil:
				return fmt.Errorf("realtime metadata %s from field %s: %w", key, field, err)
			case null:
				n.Metadata[key] = nil
			default:
				n.Metadata[key] = s
			}
		}
		ns = append(ns, n)
	}
	return c.Notify(ctx, tx, ns...)
}

// fieldValue looks a dotted field path up in a row.
func fieldValue(row *event.Row, path string) (event.Value, bool) {
	names := splitPath(path)
	v, ok := row.Get(names[0])
	if !ok || len(names) == 1 {
		return v, ok
	}
	return v.Path(names[1:]...)
}

func splitPath(p string) []string { return strings.Split(p, ".") }
