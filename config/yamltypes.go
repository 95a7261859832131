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

// checkNumbers walks the document beside the Config type and refuses, with the key's path,
// numbers the YAML decoder would accept wrongly or report without a key: it silently truncates
// 1.5 into an integer field, and says only "line 7: cannot unmarshal !!str `abc` into int".
func checkNumbers(text string) error {
	var doc yaml.Node
	if yaml.Unmarshal([]byte(text), &doc) != nil || len(doc.Content) == 0 {
		return nil // the decoder reports the syntax error
	}
	var errs fieldErrors
	walkNumbers(doc.Content[0], reflect.TypeFor[Config](), "", &errs)
	return errors.Join(errs...)
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func walkNumbers(n *yaml.Node, t reflect.Type, path string, errs *fieldErrors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // parses and reports its own values
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if f, ok := fieldByTag(t, key); ok {
				walkNumbers(n.Content[i+1], f.Type, join(path, key), errs)
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkNumbers(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" || n.Tag == "!!int" {
			return
		}
		if _, err := strconv.ParseInt(n.Value, 10, 64); err != nil {
			errs.add(path, "%q is not an integer (line %d)", n.Value, n.Line)
		}
	}
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func join(path, key string) string {
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
func explainDecodeError(text string, err error) error {
	te, ok := err.(*yaml.TypeError)
	if !ok {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc yaml.Node
	if yaml.Unmarshal([]byte(text), &doc) != nil || len(doc.Content) == 0 {
		return err
	}
	var errs fieldErrors
	for _, msg := range te.Errors {
		key := "config"
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			if k := keyAtLine(doc.Content[0], line); k != "" {
				key = k
			}
		}
		errs = append(errs, &FieldError{Key: key, Problem: msg})
	}
	return errors.Join(errs...)
}
