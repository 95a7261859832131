package convert

import (
	"regexp"
	"strings"

	"github.com/procon-cdc/procon/config"
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
	defer c.outboxRelations(rels)
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
	b, err := config.ExpandReplacement(nil, rt.replacement, rt.re, topic, m)
	out := string(b)
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
	if typ == eventRouter {
		c.eventRouter(prefix)
		c.transformRest(prefix)
		return route{}, false
	}
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
	if err := config.CheckReplacement(replacement, re); err != nil {
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

// outboxOptions are the options of Debezium 3.6's EventRouter, which
// relation_configs.<table>.outbox takes under the same names.
var outboxOptions = map[string]bool{
	"table.field.event.id": true, "table.field.event.key": true, "table.field.event.type": true,
	"table.field.event.payload": true, "table.field.event.timestamp": true, "table.field.event.schema.version": true,
	"table.fields.additional.placement": true, "table.field.additional.missing": true, "route.by.field": true,
	"route.topic.regex": true, "route.topic.replacement": true, "route.tombstone.on.empty.payload": true,
	"table.op.invalid.behavior": true, "table.expand.json.payload": true, "table.json.payload.null.behavior": true,
	"field.name.adjustment.mode": true,
}

// outboxSpec is an EventRouter transform: its options, and the topics its predicate matches
// (nil: every record's, as a transform without a predicate applies to all).
type outboxSpec struct {
	opts  map[string]string // YAML text
	match *regexp.Regexp
}

// eventRouter maps the outbox event router to relation_configs.<table>.outbox of the tables
// whose topics it applies to (outboxRelations): its options keep their names, and a
// TopicNameMatches predicate picks the tables.
func (c *conv) eventRouter(prefix string) {
	o := &outboxSpec{opts: map[string]string{}}
	if pred, ok := c.take(prefix + "predicate"); ok {
		pp := "predicates." + strings.TrimSpace(pred) + "."
		ptype, _ := c.take(pp + "type")
		pattern, _ := c.take(pp + "pattern")
		negate, _ := c.take(prefix + "negate")
		re, err := regexp.Compile(`^(?:` + pattern + `)$`)
		switch {
		case ptype != "org.apache.kafka.connect.transforms.predicates.TopicNameMatches":
			c.add(prefix+"predicate", Unsupported, "", "predicate %q is a %s; procon-cdc applies the outbox router to the tables whose topics a TopicNameMatches predicate matches", pred, ptype)
			return
		case strings.EqualFold(strings.TrimSpace(negate), "true"):
			c.add(prefix+"negate", Unsupported, "", "a negated predicate: list the outbox tables with a TopicNameMatches pattern instead")
			return
		case err != nil:
			c.add(pp+"pattern", Unsupported, "", "%q is not a regular expression Go's regexp takes: %v", pattern, err)
			return
		}
		o.match = re
		for _, k := range []string{prefix + "predicate", pp + "type", pp + "pattern", prefix + "negate"} {
			if _, set := c.p.Get(k); set {
				c.add(k, Mapped, "relation_configs.<the tables whose topics it matches>.outbox", "")
			}
		}
	}
	for _, k := range c.p.Keys {
		opt, ok := strings.CutPrefix(k, prefix)
		if !ok || c.done[k] {
			continue
		}
		switch {
		case outboxOptions[opt]:
			v, _ := c.text(k, "")
			o.opts[opt] = v
			c.add(k, Mapped, "relation_configs.*.outbox."+opt, "")
		case strings.HasPrefix(opt, "tracing."):
			c.take(k)
			c.add(k, Ignored, "", "OpenTelemetry tracing of the transform")
		default:
			c.take(k)
			c.add(k, Unsupported, "", "not an option of Debezium 3.6's EventRouter")
		}
	}
	// Kafka Connect writes headers with the worker's header.converter (SimpleHeaderConverter
	// by default): the outbox router's headers follow it.
	if hc, ok := c.take("header.converter"); ok {
		o.opts["header.converter"] = literal(strings.TrimSpace(hc))
		c.add("header.converter", Mapped, "relation_configs.*.outbox.header.converter", "")
	}
	c.add(prefix+"type", Mapped, "relation_configs.*.outbox", "")
	c.outbox = o
}

// outboxRelations gives the outbox options to the relations whose topics the EventRouter
// applies to.
func (c *conv) outboxRelations(rels []*relation) {
	o := c.outbox
	if o == nil {
		return
	}
	matched := 0
	for _, r := range rels {
		if o.match == nil || o.match.MatchString(c.topicOf(r)) {
			r.outbox = o.opts
			matched++
		}
	}
	if matched == 0 && len(rels) > 0 {
		c.whole(Unsupported, "the outbox event router's predicate matches the topic of no table in relation_configs")
	}
}
