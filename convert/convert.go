package convert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/procon-cdc/procon/config"
)

// Kind says what became of a property.
type Kind int

const (
	// Mapped: the property has a procon-cdc equivalent, written to the YAML.
	Mapped Kind = iota
	// Note: mapped or ignored, but something is left to do (set a variable, check a name).
	Note
	// Ignored: the property does not change the events procon-cdc writes.
	Ignored
	// Unsupported: the property changes the events and procon-cdc cannot do the same; the
	// converted configuration would not write what the connector writes.
	Unsupported
)

func (k Kind) String() string {
	switch k {
	case Mapped:
		return "mapped"
	case Note:
		return "note"
	case Ignored:
		return "ignored"
	}
	return "unsupported"
}

// Finding is what became of one property (or of the configuration as a whole, Key "").
type Finding struct {
	Key  string
	Kind Kind
	To   string // the procon-cdc key, when mapped
	Why  string
}

// TableLister lists the tables of the database as schema.table, for include lists that are
// patterns. pg.Tables-like implementations query the catalog.
type TableLister interface {
	ListTables(ctx context.Context) ([]string, error)
}

// Options change how Convert works.
type Options struct {
	// Tables, when set, resolves include and exclude lists against the database's tables.
	Tables TableLister
	// InlineSecrets writes literal passwords into the YAML instead of ${VAR} references.
	InlineSecrets bool
}

// Result is the converted configuration and what became of each property.
type Result struct {
	// YAML is procon-cdc's configuration. It is written even when some property could not
	// be mapped, as far as it goes.
	YAML []byte
	// Findings, in the input's order (whole-configuration findings first).
	Findings []Finding
	// Env names the ${VAR} references the YAML has, with what each must hold.
	Env map[string]string
}

// Unsupported returns the findings that make the converted configuration write other events
// than the connector.
func (r *Result) Unsupported() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Kind == Unsupported {
			out = append(out, f)
		}
	}
	return out
}

const postgresConnector = "io.debezium.connector.postgresql.PostgresConnector"

// Convert maps a connector configuration to procon-cdc's YAML. The error is for a
// configuration that is not a PostgreSQL connector's or a database that cannot be listed;
// everything else is a Finding.
func Convert(ctx context.Context, p *Properties, opts Options) (*Result, error) {
	p = serverProperties(p)
	c := &conv{p: p, opts: opts, done: map[string]bool{}, env: map[string]string{}, y: newMap()}
	class, ok := c.take("connector.class")
	switch {
	case !ok:
		c.whole(Note, "connector.class is not set; read as a PostgreSQL connector's")
	case class != postgresConnector && class != "PostgresConnector":
		return nil, fmt.Errorf("connector.class is %q: procon-cdc reads PostgreSQL (%s)", class, postgresConnector)
	default:
		c.add("connector.class", Ignored, "", "the PostgreSQL connector, which procon-cdc is")
	}
	if sink := p.Values["debezium.sink.type"]; sink != "" && sink != "kafka" {
		c.whole(Note, "Debezium Server's sink is %s; procon-cdc writes to Kafka", sink)
	}
	c.name()
	c.postgres()
	c.converters()
	c.kafka()
	c.snapshot()
	c.debeziumOptions()
	if err := c.relations(ctx); err != nil {
		return nil, err
	}
	c.rest()
	return c.result()
}

// conv is one conversion.
type conv struct {
	p        *Properties
	opts     Options
	done     map[string]bool // properties accounted for
	findings []Finding
	general  []Finding
	env      map[string]string
	y        *omap // the YAML document

	prefix     string
	unlisted   bool // relation_configs lacks tables only a database can list
	avro       bool
	jsonSchema bool
	outbox     *outboxSpec // the EventRouter transform, if any
}

func (c *conv) whole(k Kind, format string, args ...any) {
	c.general = append(c.general, Finding{Kind: k, Why: oneLine(fmt.Sprintf(format, args...))})
}

// add records what became of key. A second finding for one key replaces the first if it is
// at least as grave (an option found unsupported after it was mapped), and is dropped if not.
func (c *conv) add(key string, k Kind, to, format string, args ...any) {
	c.done[key] = true
	// Text from the input stays on the finding's line of the report.
	f := Finding{Key: key, Kind: k, To: to, Why: oneLine(fmt.Sprintf(format, args...))}
	for i := range c.findings {
		if c.findings[i].Key == key {
			if k >= c.findings[i].Kind {
				c.findings[i] = f
			}
			return
		}
	}
	c.findings = append(c.findings, f)
}

// unsupported reports whether key was found unsupported.
func (c *conv) unsupported(key string) bool {
	for _, f := range c.findings {
		if f.Key == key {
			return f.Kind == Unsupported
		}
	}
	return false
}

// take returns a property's value and marks it as accounted for by the caller.
func (c *conv) take(key string) (string, bool) {
	v, ok := c.p.Get(key)
	if ok {
		c.done[key] = true
	}
	return v, ok
}

// text is a property as YAML text for procon-cdc: a literal with '$' doubled (procon-cdc
// expands ${VAR}), or, for a Kafka Connect config provider reference (${file:path:key}), a
// reference to the variable envVar, which the finding tells how to set.
func (c *conv) text(key, envVar string) (string, bool) {
	v, ok := c.take(key)
	if !ok {
		return "", false
	}
	if isProviderRef(v) {
		c.env[envVar] = fmt.Sprintf("the value of %s, which Kafka Connect takes from the config provider reference %s", key, v)
		c.add(key, Note, "${"+envVar+"}", "a config provider reference: set %s to what %s gives", envVar, v)
		return "${" + envVar + "}", true
	}
	return literal(v), true
}

// secret is a password: always a ${VAR} reference unless Options.InlineSecrets.
func (c *conv) secret(key, envVar string) (string, bool) {
	v, ok := c.p.Get(key)
	if !ok {
		return "", false
	}
	if isProviderRef(v) || !c.opts.InlineSecrets {
		c.done[key] = true
		if !isProviderRef(v) {
			c.env[envVar] = "the value of " + key
			c.add(key, Note, "${"+envVar+"}", "a password: set %s to it in procon-cdc's environment (or convert with --inline-secrets)", envVar)
		} else {
			c.env[envVar] = fmt.Sprintf("the value of %s, which Kafka Connect takes from the config provider reference %s", key, v)
			c.add(key, Note, "${"+envVar+"}", "a config provider reference: set %s to what %s gives", envVar, v)
		}
		return "${" + envVar + "}", true
	}
	return c.text(key, envVar)
}

// isProviderRef reports whether v holds a Kafka Connect config provider reference,
// ${provider:[path:]key}.
func isProviderRef(v string) bool {
	i := strings.Index(v, "${")
	if i < 0 {
		return false
	}
	j := strings.IndexByte(v[i:], '}')
	return j > 0 && strings.Contains(v[i:i+j], ":")
}

// literal escapes text for procon-cdc's ${VAR} expansion.
func literal(s string) string { return strings.ReplaceAll(s, "$", "$$") }

// serverProperties takes a Debezium Server application.properties' connector keys
// (debezium.source.*) as a connector's; its sink's producer settings keep their names.
func serverProperties(p *Properties) *Properties {
	server := false
	for _, k := range p.Keys {
		if strings.HasPrefix(k, "debezium.source.") {
			server = true
			break
		}
	}
	if !server {
		return p
	}
	out := &Properties{}
	for _, k := range p.Keys {
		v := p.Values[k]
		switch {
		case strings.HasPrefix(k, "debezium.source.") && len(k) > len("debezium.source."):
			out.set(strings.TrimPrefix(k, "debezium.source."), v)
		case strings.HasPrefix(k, "debezium.sink.kafka.producer.") && len(k) > len("debezium.sink.kafka.producer."):
			out.set("producer."+strings.TrimPrefix(k, "debezium.sink.kafka.producer."), v)
		default:
			out.set(k, v)
		}
	}
	return out
}

func (c *conv) name() {
	if v, ok := c.text("topic.prefix", "PROCON_NAME"); ok {
		c.prefix = v
		c.add("topic.prefix", Mapped, "name", "")
		if old, ok := c.take("database.server.name"); ok {
			c.add("database.server.name", Ignored, "", "the name before Debezium 2.0 (%s); topic.prefix wins", old)
		}
	} else if v, ok := c.text("database.server.name", "PROCON_NAME"); ok {
		c.prefix = v
		c.add("database.server.name", Mapped, "name", "the name before Debezium 2.0")
	} else {
		c.whole(Unsupported, "topic.prefix is not set: the connector would not start; name is required")
	}
	c.y.set("name", c.prefix)
}

// postgres builds postgres.dsn (key=value form) and the slot's settings.
func (c *conv) postgres() {
	pg := newMap()
	var dsn []string
	for _, part := range []struct{ key, param, env string }{
		{"database.hostname", "host", "PROCON_PG_HOST"},
		{"database.port", "port", "PROCON_PG_PORT"},
		{"database.user", "user", "PROCON_PG_USER"},
		{"database.password", "password", "PROCON_PG_PASSWORD"},
		{"database.dbname", "dbname", "PROCON_PG_DBNAME"},
		{"database.sslmode", "sslmode", "PROCON_PG_SSLMODE"},
		{"database.sslrootcert", "sslrootcert", "PROCON_PG_SSLROOTCERT"},
		{"database.sslcert", "sslcert", "PROCON_PG_SSLCERT"},
		{"database.sslkey", "sslkey", "PROCON_PG_SSLKEY"},
		{"database.sslpassword", "sslpassword", "PROCON_PG_SSLPASSWORD"},
	} {
		var v string
		var ok bool
		if strings.HasSuffix(part.param, "password") {
			v, ok = c.secret(part.key, part.env)
		} else {
			v, ok = c.text(part.key, part.env)
		}
		if !ok {
			continue
		}
		if !c.noted(part.key) {
			c.add(part.key, Mapped, "postgres.dsn", "")
		}
		dsn = append(dsn, part.param+"="+dsnValue(v))
	}
	if len(dsn) == 0 {
		c.whole(Note, "no database.* connection properties: postgres.dsn is ${PROCON_PG_DSN}")
		c.env["PROCON_PG_DSN"] = "the DSN of the database"
		dsn = append(dsn, "${PROCON_PG_DSN}")
	}
	pg.set("dsn", strings.Join(dsn, " "))

	if v, ok := c.text("slot.name", "PROCON_SLOT"); ok {
		pg.set("slot", v)
		c.add("slot.name", Note, "postgres.slot", "procon-cdc reads this slot on from where it is: stop the connector first, and see README \"Moving from Debezium\"")
	} else {
		c.whole(Note, "slot.name is not set: Debezium's slot is \"debezium\"; procon-cdc creates its own, procon_<name>")
	}
	if v, ok := c.text("publication.name", "PROCON_PUBLICATION"); ok {
		pg.set("publication", v)
		c.add("publication.name", Mapped, "postgres.publication", "")
	}
	if v, ok := c.take("publication.autocreate.mode"); ok {
		switch v {
		case "all_tables", "filtered", "disabled":
			pg.set("publication_autocreate", v)
			c.add("publication.autocreate.mode", Mapped, "postgres.publication_autocreate", "")
		default:
			c.add("publication.autocreate.mode", Unsupported, "", "%q: procon-cdc knows all_tables, filtered and disabled", v)
		}
	}
	if v, ok := c.take("slot.failover"); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			if b {
				pg.set("failover", true)
			}
			c.add("slot.failover", Mapped, "postgres.failover", "")
		} else {
			c.add("slot.failover", Unsupported, "", "%q is not a boolean", v)
		}
	}
	if ms, ok := c.tuning("status.update.interval.ms", "postgres.status_interval", true); ok {
		pg.set("status_interval", ms)
	}
	if v, ok := c.take("plugin.name"); ok {
		if v == "pgoutput" {
			c.add("plugin.name", Ignored, "", "procon-cdc always reads pgoutput")
		} else {
			c.add("plugin.name", Unsupported, "", "%q: procon-cdc reads pgoutput only", v)
		}
	}
	c.y.set("postgres", pg)
}

// tuning maps a number that paces or sizes work without changing the records: a value outside
// procon-cdc's range for it (config.InRange) is left to procon-cdc's default, not an error.
// ms says the number is milliseconds (the key a duration).
func (c *conv) tuning(key, to string, ms bool) (int, bool) {
	v, ok := c.take(key)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	check := int64(n)
	if ms {
		check *= int64(time.Millisecond)
	}
	if err != nil || !config.InRange(to, check) {
		c.add(key, Ignored, "", "%q is outside what %s takes; procon-cdc's default applies (it does not change the records)", v, to)
		return 0, false
	}
	c.add(key, Mapped, to, "")
	return n, true
}

// noted reports whether key already has a finding (a Note about a reference).
func (c *conv) noted(key string) bool {
	for _, f := range c.findings {
		if f.Key == key {
			return true
		}
	}
	return false
}

// dsnValue quotes a key=value DSN value when it needs it. A ${VAR} reference is left as it
// is: its value is inserted as text when procon-cdc reads the file.
func dsnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t\n") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func (c *conv) snapshot() {
	s := newMap()
	if v, ok := c.take("snapshot.mode"); ok {
		switch v {
		case "initial", "never", "no_data", "initial_only", "when_needed", "always":
			s.set("mode", v)
			c.add("snapshot.mode", Mapped, "snapshot.mode", "")
		default:
			c.add("snapshot.mode", Unsupported, "", "%q: procon-cdc knows initial, no_data (never), initial_only, when_needed and always", v)
		}
	}
	if n, ok := c.tuning("snapshot.max.threads", "snapshot.parallelism", false); ok {
		s.set("parallelism", n)
	}
	if n, ok := c.tuning("incremental.snapshot.chunk.size", "snapshot.chunk_size", false); ok {
		s.set("chunk_size", n)
	}
	if v, ok := c.text("signal.data.collection", "PROCON_SIGNAL_TABLE"); ok {
		if strings.Contains(v, ",") {
			c.add("signal.data.collection", Unsupported, "", "several signal tables: procon-cdc reads one")
		} else {
			s.set("signal_table", v)
			c.add("signal.data.collection", Mapped, "snapshot.signal_table", "")
		}
	}
	if v, ok := c.take("signal.enabled.channels"); ok {
		if strings.TrimSpace(v) == "source" {
			c.add("signal.enabled.channels", Ignored, "", "the signal table is the channel procon-cdc reads")
		} else {
			c.add("signal.enabled.channels", Note, "", "%q: procon-cdc reads signals from the signal table only; `procon-cdc snapshot` requests a snapshot from the command line", v)
		}
	}
	if len(s.keys) > 0 {
		c.y.set("snapshot", s)
	}
}

// debeziumOptions copies the properties procon-cdc takes under Debezium's names
// (config.Debezium's keys) into the debezium: section.
func (c *conv) debeziumOptions() {
	d := newMap()
	if v, ok := c.take("heartbeat.topics.prefix"); ok {
		if _, both := c.p.Get("topic.heartbeat.prefix"); !both {
			d.set("topic.heartbeat.prefix", literal(v))
			c.add("heartbeat.topics.prefix", Mapped, "debezium.topic.heartbeat.prefix", "the name before Debezium 2.0")
		} else {
			c.add("heartbeat.topics.prefix", Ignored, "", "topic.heartbeat.prefix is set too and wins")
		}
	}
	t := reflect.TypeFor[config.Debezium]()
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		v, ok := c.take(key)
		if !ok {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		var val any = literal(v)
		switch ft.Kind() {
		case reflect.Bool:
			if b, err := strconv.ParseBool(strings.TrimSpace(v)); err == nil {
				val = b
			}
		case reflect.Int:
			if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				val = n
			}
		}
		d.set(key, val)
		c.add(key, Mapped, "debezium."+key, "")
	}
	if len(d.keys) > 0 {
		c.y.set("debezium", d)
	}
}

// result renders and checks the YAML.
func (c *conv) result() (*Result, error) {
	var buf bytes.Buffer
	buf.WriteString("# procon-cdc configuration converted from a Debezium connector's by procon-cdc convert.\n")
	for _, v := range sortedKeys(c.env) {
		fmt.Fprintf(&buf, "# Set %s to %s.\n", v, oneLine(c.env[v]))
	}
	if err := c.y.write(&buf); err != nil {
		return nil, err
	}
	r := &Result{YAML: buf.Bytes(), Env: c.env}
	// The YAML must be what procon-cdc accepts: each problem config.Parse finds is one more
	// thing the conversion could not do.
	lookup := func(name string) (string, bool) {
		if _, ok := c.env[name]; !ok {
			return "", false
		}
		switch name {
		case "PROCON_KAFKA_BROKERS":
			return "localhost:9092", true
		case "PROCON_REGISTRY_URL":
			return "http://localhost:8081", true
		case "PROCON_NAME":
			return "procon", true
		case "PROCON_SLOT":
			return "procon", true
		}
		return "x", true
	}
	if _, err := config.Parse(bytes.NewReader(r.YAML), lookup); err != nil {
		for _, e := range leafErrors(err) {
			var fe *config.FieldError
			if c.unlisted && errors.As(e, &fe) && fe.Key == "relation_configs" {
				continue // said already
			}
			c.whole(Unsupported, "the converted configuration is refused: %v", e)
		}
	}
	r.Findings = append(c.general, c.findings...)
	return r, nil
}

// oneLine keeps text from the input inside one YAML comment line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 {
			return ' '
		}
		return r
	}, s)
}

func leafErrors(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	}
	return []error{err}
}
