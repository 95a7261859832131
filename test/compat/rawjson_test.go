package compat

import (
	"fmt"
	"strings"
)

// node is a parsed JSON value that keeps what byte-level comparison needs: object members in
// their order, and every scalar as its exact source text (a string with its quotes and escapes,
// a number as written). Two documents whose trees compare equal this way differ at most in
// insignificant whitespace, and neither Kafka's JsonConverter nor procon-cdc writes any.
type node struct {
	kind  byte   // '{' object, '[' array, '"' string, '0' number, 'b' true/false, 'n' null
	raw   string // scalars: the source text
	keys  []string
	vals  []*node // object members, in order
	items []*node // array elements
}

func parseJSON(b []byte) (*node, error) {
	p := &jsonParser{src: b}
	p.ws()
	n, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.pos != len(p.src) {
		return nil, fmt.Errorf("trailing data at %d", p.pos)
	}
	return n, nil
}

type jsonParser struct {
	src []byte
	pos int
}

func (p *jsonParser) ws() {
	for p.pos < len(p.src) && strings.IndexByte(" \t\r\n", p.src[p.pos]) >= 0 {
		p.pos++
	}
}

func (p *jsonParser) errf(format string, args ...any) error {
	return fmt.Errorf("json at %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *jsonParser) value() (*node, error) {
	if p.pos >= len(p.src) {
		return nil, p.errf("unexpected end")
	}
	switch c := p.src[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.str()
		return &node{kind: '"', raw: s}, err
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(string(p.src[p.pos:min(len(p.src), p.pos+5)]), lit) {
				p.pos += len(lit)
				kind := byte('b')
				if lit == "null" {
					kind = 'n'
				}
				return &node{kind: kind, raw: lit}, nil
			}
		}
		return nil, p.errf("bad literal")
	case c == '-' || c >= '0' && c <= '9':
		start := p.pos
		for p.pos < len(p.src) && strings.IndexByte("+-0123456789.eE", p.src[p.pos]) >= 0 {
			p.pos++
		}
		return &node{kind: '0', raw: string(p.src[start:p.pos])}, nil
	}
	return nil, p.errf("unexpected %q", p.src[p.pos])
}

// str returns a string token's source text, quotes included.
func (p *jsonParser) str() (string, error) {
	start := p.pos
	p.pos++
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case '\\':
			p.pos += 2
			continue
		case '"':
			p.pos++
			return string(p.src[start:p.pos]), nil
		}
		p.pos++
	}
	return "", p.errf("unterminated string")
}

func (p *jsonParser) object() (*node, error) {
	n := &node{kind: '{'}
	p.pos++
	p.ws()
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		return n, nil
	}
	for {
		p.ws()
		if p.pos >= len(p.src) || p.src[p.pos] != '"' {
			return nil, p.errf("expected a member name")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.pos >= len(p.src) || p.src[p.pos] != ':' {
			return nil, p.errf("expected ':'")
		}
		p.pos++
		p.ws()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		// Member names are compared as their source text without the quotes.
		n.keys = append(n.keys, k[1:len(k)-1])
		n.vals = append(n.vals, v)
		p.ws()
		if p.pos >= len(p.src) {
			return nil, p.errf("unterminated object")
		}
		if p.src[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.src[p.pos] == '}' {
			p.pos++
			return n, nil
		}
		return nil, p.errf("expected ',' or '}'")
	}
}

func (p *jsonParser) array() (*node, error) {
	n := &node{kind: '[', items: []*node{}}
	p.pos++
	p.ws()
	if p.pos < len(p.src) && p.src[p.pos] == ']' {
		p.pos++
		return n, nil
	}
	for {
		p.ws()
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		n.items = append(n.items, v)
		p.ws()
		if p.pos >= len(p.src) {
			return nil, p.errf("unterminated array")
		}
		if p.src[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.src[p.pos] == ']' {
			p.pos++
			return n, nil
		}
		return nil, p.errf("expected ',' or ']'")
	}
}

// rawText is a node's source text, "" for an absent node.
func (n *node) rawText() string {
	if n == nil {
		return ""
	}
	return n.raw
}

// get returns the member of an object, or nil.
func (n *node) get(key string) *node {
	if n == nil || n.kind != '{' {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// text renders a node back to compact JSON (for messages).
func (n *node) text() string {
	if n == nil {
		return "<absent>"
	}
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func (n *node) write(b *strings.Builder) {
	switch n.kind {
	case '{':
		b.WriteByte('{')
		for i, k := range n.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"` + k + `":`)
			n.vals[i].write(b)
		}
		b.WriteByte('}')
	case '[':
		b.WriteByte('[')
		for i, it := range n.items {
			if i > 0 {
				b.WriteByte(',')
			}
			it.write(b)
		}
		b.WriteByte(']')
	default:
		b.WriteString(n.raw)
	}
}
