package config

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Environment variables are expanded in the parsed document, not in its text: a variable's
// value becomes part of one scalar's text, so whatever it holds (*, #, &, ": ", quotes, a
// newline) cannot change the document, and errors about it can name the reference instead of
// showing a value that may be a password.

// expansion is one scalar whose value came from ${VAR} references.
type expansion struct {
	path     string   // where the scalar is, e.g. postgres.dsn or kafka.brokers[1]
	line     int      // where the scalar starts
	written  string   // the scalar as the file writes it, e.g. postgres://u:${PGPASS}@h/db
	value    string   // the scalar after expansion
	inserted []string // the non-empty texts the references were replaced with
}

// what names the expanded value in an error message without showing it.
func (e *expansion) what() string {
	if strings.HasPrefix(e.written, "${") && strings.IndexByte(e.written, '}') == len(e.written)-1 {
		return "the value of " + e.written
	}
	return "the value of " + strconv.Quote(e.written)
}

// expansions are the expanded scalars of one document.
type expansions map[*yaml.Node]*expansion

// expandDocument replaces ${VAR}, ${VAR:-default} and $$ in the scalar values under root,
// using lookup. Keys are taken as written, and one containing ${ is an error rather than a
// silently different name. An anchored scalar is expanded once, where it is written; its
// aliases share it. Every bad reference is reported, each with its key and line.
func expandDocument(root *yaml.Node, lookup func(string) (string, bool)) (expansions, error) {
	x := expansions{}
	var errs fieldErrors
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := join(path, k.Value)
				if strings.Contains(k.Value, "${") {
					errs.add(p, "line %d: keys are not expanded; write the key itself", k.Line)
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				walk(item, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.ScalarNode:
			if err := x.expand(n, path, lookup); err != nil {
				errs.add(orConfig(path), "line %d: %v", n.Line, err)
			}
		}
	}
	walk(root, "")
	return x, errors.Join(errs...)
}

// expand expands the scalar n in place and records it when a reference was replaced.
func (x expansions) expand(n *yaml.Node, path string, lookup func(string) (string, bool)) error {
	if !strings.Contains(n.Value, "$") {
		return nil
	}
	val, inserted, refs, err := expandValue(n.Value, lookup)
	if err != nil {
		return err
	}
	if refs > 0 {
		x[n] = &expansion{path: path, line: n.Line, written: n.Value, value: val, inserted: inserted}
	}
	n.Value = val
	// The parser typed the unquoted scalar from its written text, ${...}, which is a string.
	// Typing it from its value instead is what makes instance_num: ${N} an integer; a key that
	// holds a string takes the scalar's text whatever its type, except null, so a non-empty
	// value is never null. Quoted, block and explicitly tagged scalars keep their type.
	const typed = yaml.TaggedStyle | yaml.DoubleQuotedStyle | yaml.SingleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	if n.Style&typed == 0 {
		n.Tag = ""
		n.Tag = n.ShortTag()
		if (n.Tag == "!!null" && val != "") || n.Tag == "!!merge" {
			n.Tag = "!!str"
		}
	}
	return nil
}

// expandValue replaces ${VAR} and ${VAR:-default} in s with values from lookup, and $$ with $;
// a $ followed by anything else is itself. ${VAR:-default} takes the default when VAR is unset
// or empty; ${VAR} with VAR unset is an error, so that a missing DSN is reported as such
// rather than as an empty string later. It returns the expanded text, the non-empty texts
// the references were replaced with, and how many references there were.
func expandValue(s string, lookup func(string) (string, bool)) (string, []string, int, error) {
	var b strings.Builder
	b.Grow(len(s))
	var inserted []string
	refs := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) || (s[i+1] != '$' && s[i+1] != '{') {
			b.WriteByte(c)
			continue
		}
		if s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", nil, 0, errors.New("unterminated ${ (write $$ for a literal $)")
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", nil, 0, fmt.Errorf("${%s} is not a valid variable reference: use ${NAME} or ${NAME:-default}", expr)
		}
		val, ok := lookup(name)
		switch {
		case ok && (val != "" || !hasDef):
		case hasDef:
			val = def
		default:
			return "", nil, 0, fmt.Errorf("environment variable %s is not set (set it, write ${%s:-default}, or $${%s} for the text ${%s} itself)", name, name, name, name)
		}
		b.WriteString(val)
		if val != "" {
			inserted = append(inserted, val)
		}
		refs++
		i += end
	}
	return b.String(), inserted, refs, nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}

// describe is how an error message shows the value of n: quoted, or, when it came from the
// environment, by the reference that gave it.
func (x expansions) describe(n *yaml.Node) string {
	if e, ok := x[n]; ok {
		return e.what()
	}
	return strconv.Quote(n.Value)
}

var (
	// quotedText is a value shown with %q.
	quotedText = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// decoderValue is the yaml decoder's "cannot unmarshal !!str `value` into T", where the
	// value is cut to 7 characters and "..." when longer than 10.
	decoderValue = regexp.MustCompile("(?s)^(.*cannot unmarshal \\S+) `(.*)` (into .*)$")
	lineNumber   = regexp.MustCompile(`line (\d+)`)
)

// redact rewrites the *FieldErrors in err (one, or joined) that show a value which came from
// the environment, naming the reference instead. Errors made after decoding, by the decoder
// or by Validate, show values with %q or in backquotes, knowing nothing of where they came
// from: a quoted text is replaced when it is an expanded value, and, in an error about the
// expanded key or line, when it contains a text a reference was replaced with (Validate
// shows a list's elements and defaults built from a value).
func (x expansions) redact(err error) error {
	if err == nil || len(x) == 0 {
		return err
	}
	joined, isJoined := err.(interface{ Unwrap() []error })
	if !isJoined {
		return x.redactOne(err)
	}
	errs := joined.Unwrap()
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = x.redactOne(e)
	}
	return errors.Join(out...)
}

func (x expansions) redactOne(err error) error {
	fe, ok := err.(*FieldError)
	if !ok {
		return err
	}
	var all, related []*expansion
	for _, e := range x {
		all = append(all, e)
		if relatedKeys(e.path, fe.Key) || mentionsLine(fe.Problem, e.line) {
			related = append(related, e)
		}
	}
	// Map order is random; the same error must read the same every time.
	byPlace := func(s []*expansion) {
		sort.Slice(s, func(i, j int) bool {
			if s[i].line != s[j].line {
				return s[i].line < s[j].line
			}
			return s[i].path < s[j].path
		})
	}
	byPlace(all)
	byPlace(related)
	find := func(s string, cut bool) *expansion {
		for _, e := range all {
			if s == e.value && s != "" {
				return e
			}
		}
		for _, e := range related {
			if cut && strings.HasSuffix(s, "...") && strings.HasPrefix(e.value, strings.TrimSuffix(s, "...")) {
				return e
			}
			for _, v := range e.inserted {
				if strings.Contains(s, v) {
					return e
				}
			}
		}
		return nil
	}
	p := fe.Problem
	if m := decoderValue.FindStringSubmatch(p); m != nil {
		if e := find(m[2], true); e != nil {
			p = m[1] + " " + e.what() + " " + m[3]
		}
	}
	p = quotedText.ReplaceAllStringFunc(p, func(q string) string {
		s, err := strconv.Unquote(q)
		if err != nil {
			return q
		}
		for _, e := range all {
			if q == strconv.Quote(e.written) {
				return q // a what() already put in, or the file's own text
			}
		}
		if e := find(s, false); e != nil {
			return e.what()
		}
		return q
	})
	return &FieldError{Key: fe.Key, Problem: p}
}

// relatedKeys reports whether one key path is the other or holds it.
func relatedKeys(a, b string) bool {
	under := func(a, b string) bool {
		return len(a) > len(b) && strings.HasPrefix(a, b) && (a[len(b)] == '.' || a[len(b)] == '[')
	}
	return a == b || under(a, b) || under(b, a)
}

func mentionsLine(msg string, line int) bool {
	for _, m := range lineNumber.FindAllStringSubmatch(msg, -1) {
		if m[1] == strconv.Itoa(line) {
			return true
		}
	}
	return false
}

func orConfig(path string) string {
	if path == "" {
		return "config"
	}
	return path
}
