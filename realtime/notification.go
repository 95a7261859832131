package realtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/procon-cdc/procon/replication"
)

// Notification is one realtime message: "something changed" for a channel, optionally for one
// session of it.
type Notification struct {
	Channel   string
	SessionID *string // nil: every session of the channel
	// Metadata is a JSON object, rendered compactly with its keys sorted, so that the table, the
	// message and the relation paths give the same bytes for the same content.
	Metadata []byte
}

// size is what Config.MaxNotificationBytes bounds: the bytes of the channel, the session id
// and the metadata.
func (n *Notification) size() int {
	size := len(n.Channel) + len(n.Metadata)
	if n.SessionID != nil {
		size += len(*n.SessionID)
	}
	return size
}

// tooLargeError says that a notification is over Config.MaxNotificationBytes.
type tooLargeError struct {
	channel     string
	size, limit int
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("the notification of channel %q has %d bytes of channel, session_id and metadata, over realtime.max_notification_bytes (%d)",
		shortened(e.channel), e.size, e.limit)
}

// checkSize refuses a notification over limit. It is checked once on the text as written,
// before the metadata is parsed (so a huge metadata is never turned into a tree), and once on
// the compact notification that would be sent.
func checkSize(channel string, size, limit int) error {
	if size > limit {
		return &tooLargeError{channel: channel, size: size, limit: limit}
	}
	return nil
}

// shortened bounds a value written into a log line or an error: a channel can be as long as
// whoever wrote it wanted.
func shortened(s string) string {
	const most = 100
	if len(s) <= most {
		return s
	}
	cut := most
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// messageBody is the content of a procon-realtime logical message.
type messageBody struct {
	Channel   *string         `json:"channel"`
	SessionID *string         `json:"session_id"`
	Metadata  json.RawMessage `json:"metadata"`
}

// parseMessage reads the JSON content of a logical message:
//
//	{"channel": "room:42", "session_id": "abc", "metadata": {"kind": "chat"}}
//
// session_id and metadata may be absent or null. A notification over limit is a
// *tooLargeError.
func parseMessage(content []byte, limit int) (Notification, error) {
	var body messageBody
	dec := json.NewDecoder(bytes.NewReader(content))
	if err := dec.Decode(&body); err != nil {
		return Notification{}, fmt.Errorf("content is not a JSON object with channel, session_id and metadata: %v", err)
	}
	if body.Channel == nil || *body.Channel == "" {
		return Notification{}, errors.New(`content has no "channel"`)
	}
	n := Notification{Channel: *body.Channel, SessionID: body.SessionID, Metadata: bytes.TrimSpace(body.Metadata)}
	if err := checkSize(n.Channel, n.size(), limit); err != nil {
		return Notification{}, err
	}
	meta, err := metadataObject(n.Metadata)
	if err != nil {
		return Notification{}, err
	}
	n.Metadata = render(meta)
	return n, checkSize(n.Channel, n.size(), limit)
}

// metadataObject parses a JSON object; null or nothing is the empty object.
func metadataObject(text []byte) (map[string]any, error) {
	text = bytes.TrimSpace(text)
	if len(text) == 0 || string(text) == "null" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber() // keep numbers as written: no float rounding of ids
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("metadata is not JSON: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("metadata must be a JSON object, not %s", jsonKind(v))
	}
	return m, nil
}

// jsonKind names the kind of a decoded JSON value, for errors that must not repeat the value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	}
	return "an object"
}

// render writes a JSON object compactly with sorted keys and no HTML escaping.
func render(m map[string]any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return []byte("{}") // cannot happen: m comes from the JSON decoder
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// tableColumns locates the columns of a procon_realtimes row.
type tableColumns struct {
	channel, session, metadata int
}

func tableColumnsOf(rel *replication.Relation) (tableColumns, error) {
	tc := tableColumns{rel.ColumnIndex("channel"), rel.ColumnIndex("session_id"), rel.ColumnIndex("metadata")}
	if tc.channel < 0 {
		return tc, fmt.Errorf("realtime table %s has no channel column", rel.QualifiedName())
	}
	return tc, nil
}

// fromRow reads the notification of an inserted procon_realtimes row. A notification over
// limit is a *tooLargeError.
func fromRow(tc tableColumns, row []replication.Datum, limit int) (Notification, error) {
	channel, ok := datumText(row, tc.channel)
	if !ok || channel == "" {
		return Notification{}, errors.New("row has no channel")
	}
	n := Notification{Channel: channel}
	if s, ok := datumText(row, tc.session); ok {
		n.SessionID = &s
	}
	if tc.metadata >= 0 && tc.metadata < len(row) && row[tc.metadata].Kind == replication.DatumText {
		n.Metadata = row[tc.metadata].Data
	}
	if err := checkSize(n.Channel, n.size(), limit); err != nil {
		return Notification{}, err
	}
	meta, err := metadataObject(n.Metadata)
	if err != nil {
		return Notification{}, err
	}
	n.Metadata = render(meta)
	return n, checkSize(n.Channel, n.size(), limit)
}

// datumText returns column i of row as text; false when the column is absent or NULL.
func datumText(row []replication.Datum, i int) (string, bool) {
	if i < 0 || i >= len(row) || row[i].Kind != replication.DatumText {
		return "", false
	}
	return string(row[i].Data), true
}

// Rule builds a notification from each change of one relation
// (relation_configs.<rel>.realtime).
type Rule struct {
	// Channel and SessionID name where the values come from: a column, or
	// "<jsonb column>.<key>" for a key of a JSON column (e.g. metadata.session_token).
	Channel, SessionID string
	// Metadata names a JSON object column whose keys are merged into the notification's
	// metadata ({"relation": ..., "op": ...}); the row's keys win. Empty: the column named
	// metadata, if the relation has one.
	Metadata string
	// Ops are the operations that notify: OpInsert, OpUpdate, OpDelete.
	Ops map[replication.Op]bool
	// Threshold is the spacing of this relation's notifications in a channel.
	Threshold time.Duration
}

// opNames are the words of the operations config and of the op metadata key.
var opNames = map[replication.Op]string{replication.OpInsert: "insert", replication.OpUpdate: "update", replication.OpDelete: "delete"}

// derive builds the notification of one change. An update reads the new row, falling back to
// the old one (REPLICA IDENTITY FULL) for unchanged TOASTed values; a delete reads the old row,
// which holds every column only with REPLICA IDENTITY FULL. A notification over limit is a
// *tooLargeError; only the notification as it would be sent is measured, since the columns
// it is read from belong to a captured change that becomes events anyway.
func (r *Rule) derive(c *replication.Change, limit int) (Notification, error) {
	rows := [][]replication.Datum{c.New}
	if c.Op == replication.OpDelete {
		rows = [][]replication.Datum{c.Old}
	} else if c.OldKind == 'O' {
		rows = append(rows, c.Old)
	}
	channel, ok, err := lookup(c.Rel, rows, r.Channel)
	if err != nil {
		return Notification{}, err
	}
	if !ok || channel == "" {
		return Notification{}, fmt.Errorf("the row has no value for channel (%s)", r.Channel)
	}
	n := Notification{Channel: channel}
	if r.SessionID != "" {
		s, ok, err := lookup(c.Rel, rows, r.SessionID)
		if err != nil {
			return Notification{}, err
		}
		if ok {
			n.SessionID = &s
		}
	}
	meta := map[string]any{"relation": c.Rel.QualifiedName(), "op": opNames[c.Op]}
	metaCol := r.Metadata
	if metaCol == "" && c.Rel.ColumnIndex("metadata") >= 0 {
		metaCol = "metadata"
	}
	if metaCol != "" {
		text, ok, err := columnText(c.Rel, rows, metaCol)
		if err != nil {
			return Notification{}, err
		}
		if ok {
			row, err := metadataObject([]byte(text))
			if err != nil {
				return Notification{}, fmt.Errorf("column %s: %v", metaCol, err)
			}
			maps.Copy(meta, row)
		}
	}
	n.Metadata = render(meta)
	return n, checkSize(n.Channel, n.size(), limit)
}

// lookup reads a column, or a key of a JSON column ("col.key"), as text. A JSON string gives
// its value, any other JSON value its JSON text; null or absent gives false.
func lookup(rel *replication.Relation, rows [][]replication.Datum, source string) (string, bool, error) {
	if rel.ColumnIndex(source) >= 0 {
		return columnText(rel, rows, source)
	}
	col, key, ok := strings.Cut(source, ".")
	if !ok {
		return "", false, fmt.Errorf("column %q does not exist in %s", source, rel.QualifiedName())
	}
	text, ok, err := columnText(rel, rows, col)
	if err != nil || !ok {
		return "", false, err
	}
	obj, err := metadataObject([]byte(text))
	if err != nil {
		return "", false, fmt.Errorf("column %s: %v", col, err)
	}
	switch v := obj[key].(type) {
	case nil:
		return "", false, nil
	case string:
		return v, true, nil
	case json.Number:
		return v.String(), true, nil
	default:
		b, _ := json.Marshal(v)
		return string(b), true, nil
	}
}

// columnText reads a column from the first row that has its value.
func columnText(rel *replication.Relation, rows [][]replication.Datum, name string) (string, bool, error) {
	i := rel.ColumnIndex(name)
	if i < 0 {
		return "", false, fmt.Errorf("column %q does not exist in %s", name, rel.QualifiedName())
	}
	for _, row := range rows {
		if i < len(row) && row[i].Kind == replication.DatumText {
			return string(row[i].Data), true, nil
		}
		if i < len(row) && row[i].Kind == replication.DatumNull {
			return "", false, nil
		}
	}
	return "", false, nil
}
