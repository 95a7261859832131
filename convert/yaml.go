package convert

import (
	"io"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// omap is an ordered YAML mapping: the output keeps the order of procon-cdc's reference.
// Values are string (text as procon-cdc reads it: literals have '$' doubled), int, bool,
// []string or *omap.
type omap struct {
	keys    []string
	vals    map[string]any
	comment string
}

func newMap() *omap { return &omap{vals: map[string]any{}} }

func (m *omap) set(key string, v any) {
	if _, ok := m.vals[key]; !ok {
		m.keys = append(m.keys, key)
	}
	m.vals[key] = v
}

func (m *omap) get(key string) (any, bool) {
	v, ok := m.vals[key]
	return v, ok
}

// order is the order of the top-level sections.
var order = []string{"name", "serialization", "json", "postgres", "kafka", "schema_registry", "snapshot", "debezium", "relation_configs"}

func (m *omap) node(top bool) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	keys := m.keys
	if top {
		keys = nil
		for _, k := range order {
			if _, ok := m.vals[k]; ok {
				keys = append(keys, k)
			}
		}
	}
	for _, k := range keys {
		kn := &yaml.Node{Kind: yaml.ScalarNode, Value: k}
		vn := valueNode(m.vals[k])
		if sub, ok := m.vals[k].(*omap); ok && sub.comment != "" {
			kn.HeadComment = sub.comment
		}
		n.Content = append(n.Content, kn, vn)
	}
	return n
}

func valueNode(v any) *yaml.Node {
	switch x := v.(type) {
	case *omap:
		n := x.node(false)
		if len(n.Content) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n
	case []string:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, s := range x {
			n.Content = append(n.Content, str(s))
		}
		return n
	case int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(x)}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
	case string:
		return str(x)
	}
	panic("convert: unexpected YAML value")
}

// str is a string scalar: the encoder quotes it when it would otherwise read as another type
// (true, 10, null) or not at all.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func (m *omap) write(w io.Writer) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{m.node(true)}}); err != nil {
		return err
	}
	return enc.Close()
}
