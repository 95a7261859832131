package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxInputBytes bounds a connector configuration: real ones are a few kilobytes.
const MaxInputBytes = 1 << 20

// Properties is a connector configuration: its keys and values as strings, in file order.
type Properties struct {
	Keys   []string
	Values map[string]string
}

// Get returns the value of key and whether it is set.
func (p *Properties) Get(key string) (string, bool) {
	v, ok := p.Values[key]
	return v, ok
}

func (p *Properties) set(key, value string) {
	if p.Values == nil {
		p.Values = map[string]string{}
	}
	if _, dup := p.Values[key]; !dup {
		p.Keys = append(p.Keys, key)
	}
	p.Values[key] = value // the last one wins, as in java.util.Properties and JSON objects
}

// Load reads a connector configuration: the JSON Kafka Connect's REST API takes
// ({"name": ..., "config": {...}}, or the bare config map), or a Java .properties file (a
// connector's, or a Debezium Server application.properties, whose debezium.source. prefix
// is dropped).
func Load(data []byte) (*Properties, error) {
	if len(data) > MaxInputBytes {
		return nil, fmt.Errorf("the file is %d bytes; a connector configuration is at most %d", len(data), MaxInputBytes)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return loadJSON(trimmed)
	}
	return loadProperties(data)
}

// loadJSON reads a Connect REST body. Values may be JSON numbers or booleans (Connect takes
// "tasks.max": 1); they become their text.
func loadJSON(data []byte) (*Properties, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("JSON: expected an object")
	}
	p, nested, err := readObject(dec)
	if err != nil {
		return nil, fmt.Errorf("JSON: %w", err)
	}
	if nested != nil {
		// {"name": ..., "config": {...}}: the connector's name is Connect's, not a property.
		for _, k := range p.Keys {
			if k != "name" {
				return nil, fmt.Errorf("JSON: %q beside \"config\": expected {\"name\": ..., \"config\": {...}} or the config map itself", k)
			}
		}
		return nested, nil
	}
	return p, nil
}

// readObject reads the members of an object whose '{' was read; a member "config" holding an
// object is returned apart.
func readObject(dec *json.Decoder) (*Properties, *Properties, error) {
	p := &Properties{}
	var nested *Properties
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := tok.(string)
		if key == "" {
			return nil, nil, errors.New("a property without a name")
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, nil, err
		}
		switch v := tok.(type) {
		case json.Delim:
			if v != '{' || key != "config" || nested != nil {
				return nil, nil, fmt.Errorf("%q: a connector property is a string, number or boolean", key)
			}
			inner, deeper, err := readObject(dec)
			if err != nil {
				return nil, nil, fmt.Errorf("config: %w", err)
			}
			if deeper != nil {
				return nil, nil, errors.New(`config: "config" inside "config"`)
			}
			nested = inner
		case string:
			p.set(key, v)
		case json.Number:
			p.set(key, v.String())
		case bool:
			p.set(key, strconv.FormatBool(v))
		case nil:
			// Connect treats null as unset.
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, err
	}
	return p, nested, nil
}

// loadProperties reads the format of java.util.Properties.load: # and ! comments, key and
// value separated by the first unescaped '=', ':' or blank, a line ending in an odd number of
// backslashes continued on the next (its leading blanks dropped), and the escapes \t \n \r \f
// \uXXXX (any other escaped character stands for itself).
func loadProperties(data []byte) (*Properties, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("the file is not UTF-8 text")
	}
	p := &Properties{}
	lines := strings.Split(strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimLeft(lines[i], " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		start := i + 1
		for continued(line) && i+1 < len(lines) {
			i++
			line = line[:len(line)-1] + strings.TrimLeft(lines[i], " \t\f")
		}
		if continued(line) {
			line = line[:len(line)-1]
		}
		key, value, err := splitProperty(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", start, err)
		}
		if key == "" {
			return nil, fmt.Errorf("line %d: a property without a name", start)
		}
		p.set(key, value)
	}
	return p, nil
}

// continued reports whether a line ends in an odd number of backslashes.
func continued(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

func splitProperty(line string) (string, string, error) {
	end := len(line)
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == '\\' {
			i++
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			end = i
			break
		}
	}
	key, err := unescape(line[:end])
	if err != nil {
		return "", "", err
	}
	rest := strings.TrimLeft(line[end:], " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = strings.TrimLeft(rest[1:], " \t\f")
	}
	value, err := unescape(rest)
	return key, value, err
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf(`malformed \uXXXX escape in %q`, clip(s))
			}
			n, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", fmt.Errorf(`malformed \uXXXX escape in %q`, clip(s))
			}
			b.WriteRune(rune(n))
			i += 4
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

// clip shortens text quoted in an error.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
