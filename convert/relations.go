package convert

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/procon-cdc/procon/config"
)

// relation is one captured table and what the YAML says of it.
type relation struct {
	key   string // schema.table
	topic string // "" for the default
	// schemaName is the prefix of the schema names when it is not the topic ("").
	schemaName string
	pkey       []string
	parts      int // partitions, 0 for kafka.topic_defaults'
	// outbox holds the EventRouter options of an outbox table (YAML text by option name).
	outbox map[string]string
}

// pattern is one entry of a Debezium include or exclude list: a Java regular expression,
// matched case-insensitively against the whole name.
type pattern struct {
	text    string
	literal string // the name, when the entry names one table (or schema) literally
	re      *regexp.Regexp
}

var literalTable = regexp.MustCompile(`^[A-Za-z0-9_-]+(\\?\.)[A-Za-z0-9_-]+$`)
var literalSchema = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// patterns splits a list at commas, as Debezium's Strings.setOfRegex does.
func (c *conv) patterns(key string, lit *regexp.Regexp) ([]pattern, bool) {
	v, ok := c.take(key)
	if !ok {
		return nil, false
	}
	if strings.TrimSpace(v) == "" {
		c.add(key, Ignored, "", "empty, as if not set")
		return nil, false
	}
	var out []pattern
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p := pattern{text: s}
		if lit.MatchString(s) {
			p.literal = strings.Replace(s, `\.`, ".", 1)
		}
		re, err := regexp.Compile(`(?i)^(?:` + s + `)$`)
		if err != nil {
			c.add(key, Unsupported, "", "%q is not a regular expression Go's regexp takes (no lookaround or backreferences): %v", s, err)
			return nil, true
		}
		p.re = re
		out = append(out, p)
	}
	return out, true
}

func matchAny(ps []pattern, name string) bool {
	for _, p := range ps {
		if p.re.MatchString(name) {
			return true
		}
	}
	return false
}

// relations works out the captured tables, their keys and topics, and writes relation_configs.
func (c *conv) relations(ctx context.Context) error {
	for _, old := range []string{"table.whitelist", "table.blacklist", "schema.whitelist", "schema.blacklist"} {
		if _, ok := c.take(old); ok {
			c.add(old, Unsupported, "", "removed in Debezium 2.0: write table.include.list / table.exclude.list (schema.*) and convert again")
		}
	}
	tin, tinSet := c.patterns("table.include.list", literalTable)
	tex, texSet := c.patterns("table.exclude.list", literalTable)
	sin, sinSet := c.patterns("schema.include.list", literalSchema)
	sex, sexSet := c.patterns("schema.exclude.list", literalSchema)
	signal, _ := c.p.Get("signal.data.collection")

	var tables []string
	resolved := true
	if c.opts.Tables != nil {
		all, err := c.opts.Tables.ListTables(ctx)
		if err != nil {
			return fmt.Errorf("listing the database's tables: %w", err)
		}
		for _, t := range all {
			schema, _ := config.SplitRelation(t)
			if tinSet && !matchAny(tin, t) || texSet && matchAny(tex, t) ||
				sinSet && !matchAny(sin, schema) || sexSet && matchAny(sex, schema) ||
				strings.EqualFold(t, signal) {
				continue
			}
			tables = append(tables, t)
		}
		for _, k := range []string{"table.include.list", "table.exclude.list", "schema.include.list", "schema.exclude.list"} {
			if c.done[k] && !c.noted(k) {
				c.add(k, Mapped, "relation_configs", "matched against the database's tables")
			}
		}
		if len(tables) == 0 {
			c.whole(Unsupported, "no table of the database matches the include and exclude lists")
		}
	} else {
		var unresolved []string
		if !tinSet {
			unresolved = append(unresolved, "without table.include.list every table (of schema.include.list) is captured")
		}
		for _, p := range tin {
			if p.literal == "" {
				unresolved = append(unresolved, fmt.Sprintf("table.include.list pattern %q", p.text))
				continue
			}
			schema, _ := config.SplitRelation(p.literal)
			if sinSet && !matchAny(sin, schema) || sexSet && matchAny(sex, schema) || texSet && matchAny(tex, p.literal) {
				continue
			}
			tables = append(tables, p.literal)
		}
		if tinSet && texSet {
			for _, p := range tex {
				if p.literal == "" {
					unresolved = append(unresolved, fmt.Sprintf("table.exclude.list pattern %q", p.text))
				}
			}
		}
		if len(unresolved) > 0 {
			resolved = false
			for _, k := range []string{"table.include.list", "table.exclude.list", "schema.include.list", "schema.exclude.list"} {
				if c.done[k] && !c.noted(k) {
					c.add(k, Unsupported, "relation_configs", "patterns name tables only a database can list: give --dsn, or list the tables under relation_configs")
				}
			}
			c.whole(Unsupported, "tables not listed: %s; convert with --dsn to match them against the database", strings.Join(unresolved, "; "))
		} else {
			for _, k := range []string{"table.include.list", "table.exclude.list", "schema.include.list", "schema.exclude.list"} {
				if c.done[k] && !c.noted(k) {
					c.add(k, Mapped, "relation_configs", "")
				}
			}
			for _, t := range tables {
				if t != strings.ToLower(t) {
					c.whole(Note, "%s: Debezium matches names case-insensitively; relation_configs needs the catalog's spelling (unquoted names are lower case)", t)
				}
			}
		}
	}

	rels := make([]*relation, len(tables))
	for i, t := range tables {
		rels[i] = &relation{key: t}
	}
	c.messageKeyColumns(rels)
	c.routing(rels)
	c.topicGroups(rels)

	rc := newMap()
	for _, r := range rels {
		m := newMap()
		if r.topic != "" {
			m.set("topic", literal(r.topic))
		}
		if r.schemaName != "" {
			m.set("schema_name", literal(r.schemaName))
		}
		if len(r.pkey) > 0 {
			m.set("pkey", r.pkey)
		}
		if r.parts > 0 {
			m.set("partitions", r.parts)
		}
		if r.outbox != nil {
			o := newMap()
			for _, k := range sortedKeys(r.outbox) {
				v := r.outbox[k]
				switch strings.ToLower(strings.TrimSpace(v)) {
				case "true":
					o.set(k, true)
				case "false":
					o.set(k, false)
				default:
					o.set(k, v)
				}
			}
			m.set("outbox", o)
		}
		rc.set(r.key, m)
	}
	c.unlisted = !resolved
	if !resolved {
		rc.comment = "Debezium's include lists name tables by pattern: list them here (or convert with --dsn)."
	}
	c.y.set("relation_configs", rc)
	return nil
}

// messageKeyColumns maps message.key.columns (<table regex>:<col>,<col>;...) to pkey.
func (c *conv) messageKeyColumns(rels []*relation) {
	v, ok := c.take("message.key.columns")
	if !ok {
		return
	}
	bad := ""
	for _, entry := range strings.Split(v, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		i := strings.LastIndexByte(entry, ':')
		if i < 0 {
			bad = fmt.Sprintf("%q is not <table>:<columns>", entry)
			break
		}
		table, cols := strings.TrimSpace(entry[:i]), strings.Split(entry[i+1:], ",")
		re, err := regexp.Compile(`(?i)^(?:` + table + `)$`)
		if err != nil {
			bad = fmt.Sprintf("%q: %v", table, err)
			break
		}
		matched := false
		for _, r := range rels {
			if re.MatchString(r.key) || strings.EqualFold(strings.Replace(table, `\.`, ".", 1), r.key) {
				matched = true
				r.pkey = nil
				for _, col := range cols {
					if col = strings.TrimSpace(col); col != "" {
						r.pkey = append(r.pkey, literal(col))
					}
				}
			}
		}
		if !matched {
			c.whole(Note, "message.key.columns: %q matches no listed table", table)
		}
	}
	if bad != "" {
		c.add("message.key.columns", Unsupported, "", "%s", bad)
		return
	}
	c.add("message.key.columns", Mapped, "relation_configs.*.pkey", "")
}

// topicGroups accounts for topic.creation.<group>.* : a group's partitions become the
// partitions of the relations whose topic its include pattern matches.
func (c *conv) topicGroups(rels []*relation) {
	groups, ok := c.take("topic.creation.groups")
	if !ok {
		return
	}
	c.add("topic.creation.groups", Mapped, "", "")
	for _, g := range strings.Split(groups, ",") {
		g = strings.TrimSpace(g)
		prefix := "topic.creation." + g + "."
		include, _ := c.take(prefix + "include")
		exclude, _ := c.take(prefix + "exclude")
		inc, err1 := regexp.Compile(`^(?:` + strings.ReplaceAll(include, ",", "|") + `)$`)
		exc, err2 := regexp.Compile(`^(?:` + strings.ReplaceAll(exclude, ",", "|") + `)$`)
		for _, k := range c.p.Keys {
			opt, ok := strings.CutPrefix(k, prefix)
			if !ok || opt == "include" || opt == "exclude" {
				continue
			}
			c.done[k] = true
			if opt == "partitions" && err1 == nil && err2 == nil {
				n := 0
				fmt.Sscan(c.p.Values[k], &n)
				for _, r := range rels {
					t := c.topicOf(r)
					if inc.MatchString(t) && (exclude == "" || !exc.MatchString(t)) && n > 0 {
						r.parts = n
					}
				}
				c.add(k, Mapped, "relation_configs.*.partitions", "for the relations whose topic %s matches", prefix+"include")
				continue
			}
			c.add(k, Note, "", "procon-cdc sets topic configurations for all the topics it creates (kafka.topic_defaults.configs), not per group: set it on the topics with kafka-configs")
		}
		for _, k := range []string{prefix + "include", prefix + "exclude"} {
			if _, ok := c.p.Get(k); ok {
				c.add(k, Mapped, "", "")
			}
		}
	}
}

// topicOf is a relation's topic, as procon-cdc derives the default.
func (c *conv) topicOf(r *relation) string {
	if r.topic != "" {
		return r.topic
	}
	return c.defaultTopic(r.key)
}

func (c *conv) defaultTopic(key string) string {
	schema, table := config.SplitRelation(key)
	d, ok := c.p.Get("topic.delimiter")
	if !ok {
		d = "."
	}
	return config.SanitizeTopic(c.prefix + d + schema + d + table)
}
