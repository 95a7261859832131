package registry

import (
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/hamba/avro/v2"
)

// Java's Avro (every release from 1.8 to 1.12, the one Confluent's AvroData, Confluent Schema
// Registry and Apicurio all use) checks only the last part of a named type's full name:
// Schema.Name validates "Envelope" in "orders-v1.Envelope" and keeps "orders-v1" as the
// namespace unchecked. So Debezium's records under a topic such as orders-v1, or a
// topic.prefix such as my-app, are registered and read with namespaces that the Avro
// specification (and hamba, which follows it) refuses. Parse reads such schemas as Java does.

// Parse parses an Avro schema as Java's Avro does: a named type's own name must be an Avro
// name, its namespace need not be. A namespace part that is not an Avro name is escaped
// (_x and its bytes in hex) in the parsed schema only, consistently in definitions and
// references, so FullName shows the escaped form; the text registered or fetched is left
// as it is.
func Parse(text string) (avro.Schema, error) {
	doc, err := decodeSchemaJSON(text)
	if err != nil {
		return nil, err
	}
	var r nameRewriter
	doc = r.typ(doc)
	if !r.changed {
		return avro.ParseWithCache(text, "", &avro.SchemaCache{})
	}
	return parseDoc(doc)
}

// decodeSchemaJSON reads schema text into a tree, numbers kept as written (a long default
// must not pass through a float64).
func decodeSchemaJSON(text string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	return doc, nil
}

func parseDoc(doc any) (avro.Schema, error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return avro.ParseWithCache(string(raw), "", &avro.SchemaCache{})
}

// nameRewriter escapes the namespace parts hamba refuses, wherever a schema names a type.
type nameRewriter struct{ changed bool }

// typ rewrites a schema in a type position: a name, a union, or a type object.
func (r *nameRewriter) typ(v any) any {
	switch x := v.(type) {
	case string:
		return r.fullName(x)
	case []any:
		for i, b := range x {
			x[i] = r.typ(b)
		}
	case map[string]any:
		switch x["type"] {
		case "record", "error":
			r.named(x)
			if fields, ok := x["fields"].([]any); ok {
				for _, f := range fields {
					if fm, ok := f.(map[string]any); ok {
						fm["type"] = r.typ(fm["type"])
					}
				}
			}
		case "enum", "fixed":
			r.named(x)
		case "array":
			x["items"] = r.typ(x["items"])
		case "map":
			x["values"] = r.typ(x["values"])
		default:
			if t, ok := x["type"].(map[string]any); ok {
				x["type"] = r.typ(t)
			} else if t, ok := x["type"].([]any); ok {
				x["type"] = r.typ(t)
			}
		}
	}
	return v
}

// named rewrites a definition's name, namespace and aliases.
func (r *nameRewriter) named(x map[string]any) {
	if n, ok := x["name"].(string); ok {
		x["name"] = r.fullName(n)
	}
	if ns, ok := x["namespace"].(string); ok {
		x["namespace"] = r.space(ns)
	}
	if aliases, ok := x["aliases"].([]any); ok {
		for i, a := range aliases {
			if s, ok := a.(string); ok {
				aliases[i] = r.fullName(s)
			}
		}
	}
}

// fullName rewrites the namespace of a dotted name; the last part is left to hamba's check.
func (r *nameRewriter) fullName(s string) string {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return s
	}
	return r.space(s[:i]) + s[i:]
}

// space escapes each part of a namespace that is not an Avro name.
func (r *nameRewriter) space(ns string) string {
	if ns == "" {
		return ns
	}
	parts := strings.Split(ns, ".")
	changed := false
	for i, p := range parts {
		if !isAvroName(p) {
			parts[i] = "_x" + hex.EncodeToString([]byte(p))
			changed = true
		}
	}
	if !changed {
		return ns
	}
	r.changed = true
	return strings.Join(parts, ".")
}

// isAvroName reports whether s is [A-Za-z_][A-Za-z0-9_]*, the specification's name.
func isAvroName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}
