package config

import (
	"regexp"
	"strings"
	"testing"
)

// TestExpandReplacement holds route.topic.replacement to Java's Matcher.replaceFirst, which
// Kafka's RegexRouter (and so Debezium's EventRouter) applies: $n takes the longest group
// number that exists, ${name} a named group, \ escapes.
func TestExpandReplacement(t *testing.T) {
	re := regexp.MustCompile(`^(?:(?<kind>[A-Z])(?<rest>.*))$`)
	for _, c := range []struct{ repl, src, want, err string }{
		{repl: "outbox.event.${kind}.$2", src: "Order", want: "outbox.event.O.rder"},
		{repl: "x.$12", src: "Order", want: "x.O2"}, // no group 12: $1 then "2"
		{repl: `a\$b\\c$0`, src: "Order", want: `a$b\cOrder`},
		{repl: "${nope}", src: "Order", err: `no group named "nope"`},
		{repl: "$3", src: "Order", err: "no group 3"},
		{repl: "tail$", src: "Order", err: "$ at the end"},
		{repl: `tail\`, src: "Order", err: "escaped is missing"},
		{repl: "${kind", src: "Order", err: "closing }"},
	} {
		got, err := ExpandReplacement(nil, c.repl, re, c.src, re.FindStringSubmatchIndex(c.src))
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one saying %q", c.repl, err, c.err)
		case c.err == "" && (err != nil || string(got) != c.want):
			t.Errorf("%q on %q = %q, %v; want %q", c.repl, c.src, got, err, c.want)
		}
	}
}

// TestOutboxConfig: `outbox: {}` takes Debezium's defaults, and each bad option is named.
func TestOutboxConfig(t *testing.T) {
	base := "name: x\npostgres: {dsn: \"postgres://a@b/c\"}\nkafka: {brokers: \"a:1\"}\nrelation_configs:\n  public.outbox:\n    outbox: "
	cfg, err := Parse(strings.NewReader(base+"{}"), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Relations["public.outbox"].Outbox
	if o.FieldEventID != "id" || o.FieldEventKey != "aggregateid" || o.FieldEventPayload != "payload" || o.RouteByField != "aggregatetype" ||
		o.RouteTopicReplace != "outbox.event.${routedByValue}" || o.OpInvalidBehavior != "warn" || o.HeaderConverter != "simple" || o.ExpandJSONPayload {
		t.Errorf("defaults: %+v", o)
	}
	for _, c := range []struct{ opts, want string }{
		{`{route.topic.regex: "(?=x)"}`, "outbox.route.topic.regex"},
		{`{route.topic.replacement: "$$9"}`, "outbox.route.topic.replacement"},
		{`{table.fields.additional.placement: "type:body"}`, `placement "body" is not one of header, envelope, partition`},
		{`{table.fields.additional.placement: "a:partition,b:partition"}`, "places 2 columns at partition"},
		{`{table.op.invalid.behavior: ignore}`, "outbox.table.op.invalid.behavior"},
		{`{header.converter: avro}`, "outbox.header.converter"},
		{`{table.field.event.idd: x}`, "field table.field.event.idd not found"},
	} {
		_, err := Parse(strings.NewReader(base+c.opts), func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("outbox %s: error %v, want one saying %q", c.opts, err, c.want)
		}
	}
}
