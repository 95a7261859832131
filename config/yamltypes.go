package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkTreeOf walks the document beside its type t (Config, Consume), before it is decoded, for
// what the decoder would accept wrongly or report without a key: a key t does not have (a decoder
// given a node, not text, cannot be told to refuse them), and numbers, since it silently
// truncates 1.5 into an integer field, and says only "line 7: cannot unmarshal !!str `abc` into
// int". Aliases and merge keys are followed, so that a key is refused wherever it is written.
func checkTreeOf(root *yaml.Node, x expansions, t reflect.Type) error {
	w := treeWalk{x: x, seen: map[walked]bool{}}
	w.walk(root, t, "", "")
	return errors.Join(w.errs...)
}

type treeWalk struct {
	x    expansions
	errs fieldErrors
	seen map[walked]bool
}

// walked is a mapping already checked as a type: aliases may reach it again, or from itself.
type walked struct {
	n *yaml.Node
	t reflect.Type
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// path is the key's path and pattern the same with "*" for each relation_configs key, as
// bounds lists them.
func (w *treeWalk) walk(n *yaml.Node, t reflect.Type, path, pattern string) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		w.duration(n, path, pattern)
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // parses and reports its own values
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		if n.Kind != yaml.MappingNode || w.seen[walked{n, t}] {
			return
		}
		w.seen[walked{n, t}] = true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				continue // the decoder reports a key that is not a string
			}
			if k.Value == "<<" && k.ShortTag() == "!!merge" {
				w.merge(v, t, path, pattern)
				continue
			}
			p := join(path, k.Value)
			if t.Kind() == reflect.Map {
				w.walk(v, t.Elem(), p, join(pattern, "*"))
			} else if f, ok := fieldByTag(t, k.Value); ok {
				w.walk(v, f.Type, p, join(pattern, k.Value))
			} else {
				w.errs.add(p, "line %d: field %s not found in type %s", k.Line, k.Value, t)
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), pattern+"[*]")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
			return
		}
		if !fitsInt(n, t.Bits()) {
			// The decoder would refuse it without saying what fits, or, for a fraction, cut it.
			if !isInteger(n) {
				w.errs.add(path, "%s is not an integer (line %d)", w.x.describe(n), n.Line)
				return
			}
			w.errs.add(path, "%s (line %d)", w.outOfRange(pattern, w.x.describe(n)), n.Line)
		}
	}
}

// fitsInt reports whether a scalar is an integer that fits in a signed integer of bits.
func fitsInt(n *yaml.Node, bits int) bool {
	var v int64
	if n.ShortTag() == "!!int" {
		if n.Decode(&v) != nil {
			return false
		}
	} else {
		var err error
		if v, err = strconv.ParseInt(n.Value, 10, 64); err != nil {
			return false
		}
	}
	return v >= -1<<(bits-1) && v <= 1<<(bits-1)-1
}

// isInteger reports whether a scalar is written as an integer, whatever its size.
func isInteger(n *yaml.Node) bool {
	if n.ShortTag() == "!!int" {
		return true
	}
	_, err := strconv.ParseInt(n.Value, 10, 64)
	return err == nil || errors.Is(err, strconv.ErrRange)
}

// duration checks a Duration written as an integer of milliseconds: one too large for a
// time.Duration would wrap when multiplied into one. Other text is left to Duration's own
// parsing, which refuses what does not fit.
func (w *treeWalk) duration(n *yaml.Node, path, pattern string) {
	// An integer too large for int64 is typed as a float.
	if n.Kind != yaml.ScalarNode || !(n.ShortTag() == "!!int" || n.ShortTag() == "!!float" && isInteger(n)) {
		return
	}
	var ms int64
	if n.Decode(&ms) == nil && ms >= minDurationMS && ms <= maxDurationMS {
		return
	}
	w.errs.add(path, "%s (line %d)", w.outOfRange(pattern, w.x.describe(n)+" milliseconds"), n.Line)
}

// outOfRange is the problem of a number too large for its key's field.
func (w *treeWalk) outOfRange(pattern, got string) string {
	if b, ok := bounds[pattern]; ok {
		return b.problem(got)
	}
	return got + " is out of range"
}

// merge checks the mappings a merge key (<<: *defaults, or a list of them) adds to one of type t.
func (w *treeWalk) merge(v *yaml.Node, t reflect.Type, path, pattern string) {
	if v.Kind == yaml.SequenceNode {
		for _, item := range v.Content {
			w.walk(item, t, path, pattern)
		}
		return
	}
	w.walk(v, t, path, pattern)
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key && name != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// join appends a key to a key path; an empty key is shown as "" rather than as nothing.
func join(path, key string) string {
	if key == "" {
		key = `""`
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

// keyAtLine names the key of the document root whose value starts on a line, so that a
// decoder message such as "line 7: field surprise not found in type config.Kafka" can say
// which key it is about.
func keyAtLine(root *yaml.Node, line int) string {
	var find func(n *yaml.Node, path string) string
	find = func(n *yaml.Node, path string) string {
		if n.Kind != yaml.MappingNode {
			return ""
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if k.Line == line || (v.Kind == yaml.ScalarNode && v.Line == line) {
				return p
			}
			if found := find(v, p); found != "" {
				return found
			}
		}
		return ""
	}
	return find(root, "")
}

// explainDecodeError prefixes each of the decoder's "line N: ..." messages with the key there.
func explainDecodeError(root *yaml.Node, err error) error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	if te, ok := err.(*yaml.TypeError); ok {
		msgs = te.Errors
	}
	var errs fieldErrors
	for _, msg := range msgs {
		key := "config"
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if k := keyAtLine(root, line); k != "" {
				key = k
			}
		}
		errs = append(errs, &FieldError{Key: key, Problem: msg})
	}
	return errors.Join(errs...)
}
