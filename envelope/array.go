package envelope

import (
	"fmt"
	"math/big"
)

func bigInt(n int64) *big.Int { return big.NewInt(n) }

// maxArrayDims is PostgreSQL's MAXDIM: no array it writes is nested deeper. Deeper text is
// refused rather than parsed, as each level is a recursive call: without a bound, a value of
// a few megabytes of '{' would overflow the goroutine stack, which kills the process.
const maxArrayDims = 6

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
		// An element's error quotes the element; the array's text is not quoted too.
		return nil, fmt.Errorf("array: %w", err)
	}
	return v, nil
}

type arrayParser struct {
	src   []byte
	pos   int
	delim byte
	conv  converter
	depth int
}

func (p *arrayParser) array() ([]any, error) {
	if p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return nil, fmt.Errorf("expected '{' at byte %d", p.pos)
	}
	if p.depth++; p.depth > maxArrayDims {
		return nil, fmt.Errorf("more than %d dimensions", maxArrayDims)
	}
	defer func() { p.depth-- }()
	p.pos++
	out := []any{}
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		return out, nil
	}
	for {
		if p.pos >= len(p.src) {
			return nil, fmt.Errorf("unterminated array at byte %d", p.pos)
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
			return nil, fmt.Errorf("unterminated array at byte %d", p.pos)
		}
		switch p.src[p.pos] {
		case p.delim:
			p.pos++
		case '}':
			p.pos++
			return out, nil
		default:
			return nil, fmt.Errorf("unexpected %q at byte %d", p.src[p.pos], p.pos)
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
		return nil, fmt.Errorf("unterminated quoted element at byte %d", p.pos)
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
