package envelope

import (
	"fmt"
	"math/big"
)

func bigInt(n int64) *big.Int { return big.NewInt(n) }

// parseArray parses PostgreSQL's array text output ({1,2,NULL,"a b"}, nested for several
// dimensions) converting each element with conv. A multi-dimensional array becomes nested
// []any values.
func parseArray(b []byte, delim byte, conv converter) (any, error) {
	p := arrayParser{src: b, delim: delim, conv: conv}
	// Arrays with non-default lower bounds start with "[1:2]=".
	if len(b) > 0 && b[0] == '[' {
		for p.pos < len(b) && b[p.pos] != '=' {
			p.pos++
		}
		p.pos++
	}
	v, err := p.array()
	if err != nil {
		return nil, fmt.Errorf("array %.40q: %w", b, err)
	}
	return v, nil
}

type arrayParser struct {
	src   []byte
	pos   int
	delim byte
	conv  converter
}

func (p *arrayParser) array() ([]any, error) {
	if p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return nil, fmt.Errorf("expected '{' at %d", p.pos)
	}
	p.pos++
	out := []any{}
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		return out, nil
	}
	for {
		if p.pos >= len(p.src) {
			return nil, fmt.Errorf("unterminated array")
		}
		var elem any
		var err error
		switch p.src[p.pos] {
		case '{':
			elem, err = p.array()
		case '"':
			elem, err = p.quoted()
		default:
			elem, err = p.bare()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, elem)
		if p.pos >= len(p.src) {
			return nil, fmt.Errorf("unterminated array")
		}
		switch p.src[p.pos] {
		case p.delim:
			p.pos++
		case '}':
			p.pos++
			return out, nil
		default:
			return nil, fmt.Errorf("unexpected %q at %d", p.src[p.pos], p.pos)
		}
	}
}

func (p *arrayParser) quoted() (any, error) {
	p.pos++
	var buf []byte
	for p.pos < len(p.src) && p.src[p.pos] != '"' {
		if p.src[p.pos] == '\\' {
			p.pos++
		}
		if p.pos < len(p.src) {
			buf = append(buf, p.src[p.pos])
			p.pos++
		}
	}
	if p.pos >= len(p.src) {
		return nil, fmt.Errorf("unterminated quoted element")
	}
	p.pos++
	return p.conv(buf)
}

func (p *arrayParser) bare() (any, error) {
	start := p.pos
	for p.pos < len(p.src) && p.src[p.pos] != p.delim && p.src[p.pos] != '}' {
		p.pos++
	}
	tok := p.src[start:p.pos]
	if string(tok) == "NULL" {
		return nil, nil
	}
	return p.conv(tok)
}
