package replication

import (
	"encoding/binary"
	"fmt"
)

// Row messages are decoded here rather than with pglogrepl: its TupleData copies every column
// into a fresh slice, while these Datums point into the message buffer, which the reader
// goroutine already copied once and nothing reuses.

// rowMessage is a decoded Insert, Update or Delete.
type rowMessage struct {
	relID   uint32
	oldKind byte // 'K', 'O' or 0
	old     []Datum
	new     []Datum
}

// parseRow decodes pgoutput v1 Insert ('I'), Update ('U') and Delete ('D') messages.
func parseRow(msg []byte) (rowMessage, error) {
	var m rowMessage
	kind := msg[0]
	if len(msg) < 6 {
		return m, fmt.Errorf("%q message of %d bytes", kind, len(msg))
	}
	m.relID = binary.BigEndian.Uint32(msg[1:5])
	src := msg[5:]
	var err error
	switch kind {
	case 'I':
		if src[0] != 'N' {
			return m, fmt.Errorf("insert: tuple marker %q, want 'N'", src[0])
		}
		m.new, _, err = parseTuple(src[1:])
	case 'U':
		if src[0] == 'K' || src[0] == 'O' {
			m.oldKind = src[0]
			if m.old, src, err = parseTuple(src[1:]); err != nil {
				return m, fmt.Errorf("update old tuple: %w", err)
			}
		}
		if len(src) == 0 || src[0] != 'N' {
			return m, fmt.Errorf("update: missing new tuple")
		}
		m.new, _, err = parseTuple(src[1:])
	case 'D':
		if src[0] != 'K' && src[0] != 'O' {
			return m, fmt.Errorf("delete: tuple marker %q, want 'K' or 'O'", src[0])
		}
		m.oldKind = src[0]
		m.old, _, err = parseTuple(src[1:])
	default:
		return m, fmt.Errorf("not a row message: %q", kind)
	}
	return m, err
}

func parseTuple(src []byte) ([]Datum, []byte, error) {
	if len(src) < 2 {
		return nil, nil, fmt.Errorf("tuple header truncated")
	}
	n := int(binary.BigEndian.Uint16(src))
	src = src[2:]
	out := make([]Datum, n)
	for i := range out {
		if len(src) < 1 {
			return nil, nil, fmt.Errorf("column %d truncated", i)
		}
		k := src[0]
		src = src[1:]
		out[i].Kind = k
		switch k {
		case DatumNull, DatumUnchanged:
		case DatumText, DatumBinary:
			if len(src) < 4 {
				return nil, nil, fmt.Errorf("column %d length truncated", i)
			}
			l := int(binary.BigEndian.Uint32(src))
			if len(src) < 4+l {
				return nil, nil, fmt.Errorf("column %d: %d bytes announced, %d left", i, l, len(src)-4)
			}
			out[i].Data = src[4 : 4+l : 4+l]
			src = src[4+l:]
		default:
			return nil, nil, fmt.Errorf("column %d: unknown kind %q", i, k)
		}
	}
	return out, src, nil
}
