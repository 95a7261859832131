package convert

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

const (
	byLogicalTableRouter = "io.debezium.transforms.ByLogicalTableRouter"
	regexRouter          = "org.apache.kafka.connect.transforms.RegexRouter"
	eventRouter          = "io.debezium.transforms.outbox.EventRouter"
	schemaNaming         = "io.debezium.schema.SchemaTopicNamingStrategy"
	schemaRegexNaming    = "io.debezium.schema.SchemaRegexTopicNamingStrategy"
)

// A topic routing step: Debezium's naming strategy or a transform. Each maps a topic the
// whole of which its regex matches (Java's Matcher.matches) to the replacement.
type route struct {
	from        string // the property the step comes from
	re          *regexp.Regexp
	replacement string
	// keepsNames: the step changes the topic but not the schema names (RegexRouter), which
	// procon-cdc then keeps with relation_configs.*.schema_name.
	keepsNames bool
}

// routing applies topic.naming.strategy and the transforms to the relations' topics.
func (c *conv) routing(rels []*relation) {
	var routes []route
	if r, ok := c.namingStrategy(); ok {
		routes = append(routes, r)
	}
	list, ok := c.take("transforms")
	if ok {
		c.add("transforms", Mapped, "", "each transform is reported on its own")
	}
	names := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		names[name] = true
		if r, ok := c.transform(name); ok {
			routes = append(routes, r)
		}
	}
	for _, k := range c.p.Keys {
		if name, ok := strings.CutPrefix(k, "transforms."); ok && !c.done[k] {
			name, _, _ = strings.Cut(name, ".")
			if !names[name] {
				c.add(k, Ignored, "", "transform %q is not in transforms", name)
			}
		}
	}
	if len(routes) == 0 {
		return
	}
	for _, r := range rels {
		topic := c.defaultTopic(r.key)
		names := topic // the prefix of the schema names: RegexRouter does not change it
		for _, rt := range routes {
			next, ok := rt.apply(topic)
			if !ok {
				continue
			}
			topic = next
			if !rt.keepsNames {
				names = next
			}
		}
		if topic != c.defaultTopic(r.key) {
			r.topic = topic
		}
		if names != topic {
			r.schemaName = names
		}
	}
	seen := map[string]string{}
	for _, r := range rels {
		t := c.topicOf(r)
		if other, dup := seen[t]; dup {
			c.whole(Unsupported, "%s and %s are routed to one topic, %s: procon-cdc gives each relation its own topic", other, r.key, t)
		}
		seen[t] = r.key
	}
	// Routing applies to every record the connector writes, not only to tables'.
	own := map[string]string{c.prefix + ".message": "logical decoding messages"}
	d := c.p.Values["topic.delimiter"]
	if d == "" {
		d = "."
	}
	if v := c.p.Values["heartbeat.interval.ms"]; v != "" && v != "0" {
		hp := c.p.Values["topic.heartbeat.prefix"]
		if hp == "" {
			hp = "__debezium-heartbeat"
		}
		own[hp+d+c.prefix] = "heartbeats"
	}
	if strings.EqualFold(c.p.Values["provide.transaction.metadata"], "true") {
		tt := c.p.Values["topic.transaction"]
		if tt == "" {
			tt = "transaction"
		}
		own[c.prefix+d+tt] = "transaction metadata"
	}
	for _, t := range sortedKeys(own) {
		for _, rt := range routes {
			if next, ok := rt.apply(t); ok && next != t && rt.from != "topic.naming.strategy" {
				c.whole(Unsupported, "%s routes %s (%s) to %s; procon-cdc keeps %s", rt.from, t, own[t], next, t)
			}
		}
	}
}

func (rt route) apply(topic string) (string, bool) {
	m := rt.re.FindStringSubmatchIndex(topic)
	if m == nil {
		return topic, false
	}
	out, err := javaReplacement(rt.re, topic, m, rt.replacement)
	if err != nil || out == "" {
		return topic, false // Debezium keeps the topic when the replacement is empty
	}
	return out, true
}

// namingStrategy reads topic.naming.strategy: the default, or the regex strategy, which names
// the schemas after the new topic as procon-cdc does.
func (c *conv) namingStrategy() (route, bool) {
	s, ok := c.take("topic.naming.strategy")
	switch {
	case !ok || s == schemaNaming:
		if ok {
			c.add("topic.naming.strategy", Ignored, "", "the default")
		}
		return route{}, false
	case s != schemaRegexNaming:
		c.add("topic.naming.strategy", Unsupported, "", "%s: procon-cdc names topics <name>.<schema>.<table>, or per relation (topic), as %s with topic.regex does", s, schemaRegexNaming)
		return route{}, false
	}
	return c.router("topic.naming.strategy", "topic.", "topic.key.enforce.uniqueness", false)
}

// transform reads one transform of the transforms list.
func (c *conv) transform(name string) (route, bool) {
	prefix := "transforms." + name + "."
	typ, _ := c.take(prefix + "type")
	if p, ok := c.take(prefix + "predicate"); ok {
		c.add(prefix+"predicate", Unsupported, "", "predicate %q: procon-cdc cannot apply a transform to some records only", p)
		c.transformRest(prefix)
		return route{}, false
	}
	switch typ {
	case byLogicalTableRouter:
		rt, ok := c.router(prefix+"type", prefix+"topic.", prefix+"key.enforce.uniqueness", false)
		if a, set := c.take(prefix + "schema.name.adjustment.mode"); set {
			mode := c.p.Values["schema.name.adjustment.mode"]
			if mode == "" {
				mode = "none"
			}
			if a != mode {
				c.add(prefix+"schema.name.adjustment.mode", Unsupported, "", "%q: the routed schema names are adjusted unlike the connector's (%s); set debezium.schema.name.adjustment.mode if every table is routed", a, mode)
			} else {
				c.add(prefix+"schema.name.adjustment.mode", Mapped, "debezium.schema.name.adjustment.mode", "")
			}
		}
		c.transformRest(prefix)
		return rt, ok
	case regexRouter:
		rt, ok := c.router(prefix+"type", prefix, "", true)
		c.transformRest(prefix)
		return rt, ok
	case eventRouter:
		c.add(prefix+"type", Unsupported, "", "the outbox event router: procon-cdc does not turn outbox rows into events yet (it would write the outbox table's row changes); convert will map its options to relation_configs.<outbox table>.outbox once it does")
	case "":
		at := "transforms"
		if _, set := c.p.Get(prefix + "type"); set {
			at = prefix + "type"
		}
		c.add(at, Unsupported, "", "transform %q has no %stype", name, prefix)
	default:
		c.add(prefix+"type", Unsupported, "", "%s: procon-cdc applies no single message transforms besides topic routing (%s with key.enforce.uniqueness=false, %s)", typ, byLogicalTableRouter, regexRouter)
	}
	c.transformRest(prefix)
	return route{}, false
}

// router reads a routing step's regex and replacement (prefix+"regex", prefix+"replacement")
// and its key uniqueness option: true adds the source topic to every key, which procon-cdc
// does not do.
func (c *conv) router(from, prefix, uniqueness string, keepsNames bool) (route, bool) {
	regex, _ := c.p.Get(prefix + "regex")
	replacement, _ := c.p.Get(prefix + "replacement")
	parts := []string{prefix + "regex", prefix + "replacement"}
	if uniqueness != "" {
		parts = append(parts, uniqueness)
	}
	fail := func(format string, args ...any) (route, bool) {
		c.add(from, Unsupported, "", format, args...)
		for _, k := range parts {
			if _, ok := c.p.Get(k); ok {
				c.add(k, Ignored, "", "part of a routing that is not mapped (%s)", from)
			}
		}
		return route{}, false
	}
	re, err := regexp.Compile(`^(?:` + regex + `)$`)
	if err != nil {
		return fail("%sregex %q is not a regular expression Go's regexp takes: %v", prefix, regex, err)
	}
	if _, err := javaReplacement(re, "", make([]int, 2*(re.NumSubexp()+1)), replacement); err != nil {
		return fail("%sreplacement %q: %v", prefix, replacement, err)
	}
	if uniqueness != "" {
		if u, set := c.p.Get(uniqueness); !set || !strings.EqualFold(strings.TrimSpace(u), "false") {
			return fail("%s is true (the default): every key gets a __dbz__physicalTableIdentifier field (the source topic), which procon-cdc does not add; with %s=false the topics map to relation_configs.*.topic", uniqueness, uniqueness)
		}
	}
	to := "relation_configs.*.topic"
	if keepsNames {
		to += ", .schema_name"
	}
	c.add(from, Mapped, to, "")
	for _, k := range parts {
		if _, ok := c.p.Get(k); ok {
			c.add(k, Mapped, to, "")
		}
	}
	return route{from: from, re: re, replacement: replacement, keepsNames: keepsNames}, true
}

// transformRest accounts for the other properties of a transform.
func (c *conv) transformRest(prefix string) {
	var verdict *Finding
	for i := range c.findings {
		if strings.HasPrefix(c.findings[i].Key, prefix) || c.findings[i].Key == "transforms" {
			if c.findings[i].Kind == Unsupported {
				verdict = &c.findings[i]
			}
		}
	}
	for _, k := range c.p.Keys {
		if !strings.HasPrefix(k, prefix) || c.done[k] {
			continue
		}
		if verdict != nil {
			c.add(k, Ignored, "", "part of a transform that is not mapped (%s)", verdict.Key)
			continue
		}
		opt := strings.TrimPrefix(k, prefix)
		switch opt {
		case "logical.table.cache.size", "key.field.name", "key.field.regex", "key.field.replacement", "negate":
			c.add(k, Ignored, "", "does not change the records here")
		default:
			c.add(k, Unsupported, "", "a transform option procon-cdc does not have")
		}
	}
}

// javaReplacement expands a java.util.regex replacement ($n, ${name}, \c) for the match m of
// re in src. Go's Expand differs: it reads "$1x" as the group named 1x.
func javaReplacement(re *regexp.Regexp, src string, m []int, repl string) (string, error) {
	var b strings.Builder
	group := func(n int) {
		if 2*n+1 < len(m) && m[2*n] >= 0 {
			b.WriteString(src[m[2*n]:m[2*n+1]])
		}
	}
	for i := 0; i < len(repl); i++ {
		switch ch := repl[i]; ch {
		case '\\':
			i++
			if i == len(repl) {
				return "", fmt.Errorf("character to be escaped is missing")
			}
			b.WriteByte(repl[i])
		case '$':
			i++
			if i == len(repl) {
				return "", fmt.Errorf("illegal group reference: group index is missing")
			}
			if repl[i] == '{' {
				end := strings.IndexByte(repl[i:], '}')
				if end < 0 {
					return "", fmt.Errorf("named capturing group is missing trailing '}'")
				}
				name := repl[i+1 : i+end]
				n := re.SubexpIndex(name)
				if n < 0 {
					return "", fmt.Errorf("no group with name {%s}", name)
				}
				group(n)
				i += end
				continue
			}
			if repl[i] < '0' || repl[i] > '9' {
				return "", fmt.Errorf("illegal group reference")
			}
			n := int(repl[i] - '0')
			if n > re.NumSubexp() {
				return "", fmt.Errorf("no group %d", n)
			}
			// Java takes more digits while they still name a group.
			for i+1 < len(repl) && repl[i+1] >= '0' && repl[i+1] <= '9' {
				next, _ := strconv.Atoi(strconv.Itoa(n) + string(repl[i+1]))
				if next > re.NumSubexp() {
					break
				}
				n = next
				i++
			}
			group(n)
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), nil
}
