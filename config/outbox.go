package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Outbox turns a relation into an outbox table (relation_configs.<table>.outbox): its inserts
// become outbox events with the semantics and option names of Debezium's outbox event router
// (io.debezium.transforms.outbox.EventRouter), each key the router's own. `outbox: {}` takes
// every default.
type Outbox struct {
	FieldEventID        string `yaml:"table.field.event.id"`        // default id: the id header
	FieldEventKey       string `yaml:"table.field.event.key"`       // default aggregateid: the record key
	FieldEventType      string `yaml:"table.field.event.type"`      // default type; Debezium 3.6 declares it and places it only through the additional fields
	FieldEventPayload   string `yaml:"table.field.event.payload"`   // default payload: the record value
	FieldEventTimestamp string `yaml:"table.field.event.timestamp"` // the record timestamp (default: when the event was built)
	FieldSchemaVersion  string `yaml:"table.field.event.schema.version"`
	// AdditionalPlacement lists column:placement[:alias], placement one of header, envelope,
	// partition.
	AdditionalPlacement StringList `yaml:"table.fields.additional.placement"`
	AdditionalMissing   string     `yaml:"table.field.additional.missing"` // error (default) | ignore
	RouteByField        string     `yaml:"route.by.field"`                 // default aggregatetype
	RouteTopicRegex     string     `yaml:"route.topic.regex"`              // default (?<routedByValue>.*)
	RouteTopicReplace   string     `yaml:"route.topic.replacement"`        // default outbox.event.${routedByValue}
	TombstoneOnEmpty    bool       `yaml:"route.tombstone.on.empty.payload"`
	// OpInvalidBehavior is what an update of the outbox table does (and, in procon-cdc, a row
	// that cannot be routed): warn and error skip it with a log line of that level, fatal stops.
	OpInvalidBehavior   string `yaml:"table.op.invalid.behavior"`
	ExpandJSONPayload   bool   `yaml:"table.expand.json.payload"`
	JSONPayloadNull     string `yaml:"table.json.payload.null.behavior"` // ignore (default) | optional_bytes
	FieldNameAdjustment string `yaml:"field.name.adjustment.mode"`       // none (default) | avro: names of expanded JSON fields
	HeaderConverter     string `yaml:"header.converter"`                 // simple (default) | json: how header values are written

	placements []Placement // parsed AdditionalPlacement
	// ignoredKeys are keys of the relation that do not apply to an outbox table's events.
	ignoredKeys []string
}

// Placement is one entry of table.fields.additional.placement.
type Placement struct {
	Column string
	Where  string // header, envelope or partition
	Alias  string // the header's or envelope field's name; the column's by default
}

// Placements returns the parsed table.fields.additional.placement (valid after Validate).
func (o *Outbox) Placements() []Placement { return o.placements }

// Outbox defaults, Debezium's.
const (
	DefaultOutboxRouteRegex   = "(?<routedByValue>.*)"
	DefaultOutboxRouteReplace = "outbox.event.${routedByValue}"
)

// applyDefaults sets Debezium's defaults, and notes which of the relation's own keys were
// set that an outbox table's events ignore (they go to routed topics, with schemas of their
// own); it runs before the relation's own defaults fill those keys.
func (o *Outbox) applyDefaults(rc *RelationConfig) {
	o.ignoredKeys = nil
	for key, set := range map[string]bool{"topic": rc.Topic != "", "schema_name": rc.SchemaName != "", "partitions": rc.Partitions != 0,
		"avro_key_schema": rc.AvroKeySchema != "", "avro_value_schema": rc.AvroValueSchema != "",
		"avro_key_schema_version": rc.AvroKeySchemaVersion != 0, "avro_value_schema_version": rc.AvroValueSchemaVersion != 0} {
		if set {
			o.ignoredKeys = append(o.ignoredKeys, key)
		}
	}
	slices.Sort(o.ignoredKeys)
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.FieldEventID, "id")
	def(&o.FieldEventKey, "aggregateid")
	def(&o.FieldEventType, "type")
	def(&o.FieldEventPayload, "payload")
	def(&o.RouteByField, "aggregatetype")
	def(&o.RouteTopicRegex, DefaultOutboxRouteRegex)
	def(&o.RouteTopicReplace, DefaultOutboxRouteReplace)
	def(&o.AdditionalMissing, "error")
	def(&o.OpInvalidBehavior, "warn")
	def(&o.JSONPayloadNull, "ignore")
	def(&o.FieldNameAdjustment, "none")
	def(&o.HeaderConverter, "simple")
	switch o.HeaderConverter { // Kafka Connect's class names, as a worker configuration has them
	case "org.apache.kafka.connect.storage.SimpleHeaderConverter":
		o.HeaderConverter = "simple"
	case "org.apache.kafka.connect.json.JsonConverter":
		o.HeaderConverter = "json"
	}
}

// RouteRegexp compiles route.topic.regex as Kafka's RegexRouter applies it: to the whole
// routed value (Java's Matcher.matches).
func (o *Outbox) RouteRegexp() (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + o.RouteTopicRegex + `)$`)
}

func (o *Outbox) validate(at string, rc *RelationConfig, errs *fieldErrors) {
	errs.oneOf(at+".table.field.additional.missing", o.AdditionalMissing, "error", "ignore")
	errs.oneOf(at+".table.op.invalid.behavior", o.OpInvalidBehavior, "warn", "error", "fatal")
	errs.oneOf(at+".table.json.payload.null.behavior", o.JSONPayloadNull, "ignore", "optional_bytes")
	errs.oneOf(at+".field.name.adjustment.mode", o.FieldNameAdjustment, "none", "avro")
	errs.oneOf(at+".header.converter", o.HeaderConverter, "simple", "json")
	re, err := o.RouteRegexp()
	if err != nil {
		errs.add(at+".route.topic.regex", "%q is not a regular expression this engine takes (Go's RE2: no look-around or back-references): %v", o.RouteTopicRegex, err)
	} else if err := CheckReplacement(o.RouteTopicReplace, re); err != nil {
		errs.add(at+".route.topic.replacement", "%q: %v", o.RouteTopicReplace, err)
	}
	o.placements = nil
	partitions := 0
	for _, entry := range o.AdditionalPlacement {
		parts := strings.Split(entry, ":")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || (len(parts) == 3 && parts[2] == "") {
			errs.add(at+".table.fields.additional.placement", "%q is not column:placement or column:placement:alias", entry)
			continue
		}
		p := Placement{Column: parts[0], Where: strings.ToLower(parts[1]), Alias: parts[0]}
		if len(parts) == 3 {
			p.Alias = parts[2]
		}
		switch p.Where {
		case "header", "envelope":
		case "partition":
			partitions++
		default:
			errs.add(at+".table.fields.additional.placement", "%q: placement %q is not one of header, envelope, partition", entry, parts[1])
			continue
		}
		if p.Where == "envelope" && p.Alias == "payload" {
			errs.add(at+".table.fields.additional.placement", "%q: the envelope already has a payload field; give the column another alias", entry)
		}
		o.placements = append(o.placements, p)
	}
	if partitions > 1 {
		errs.add(at+".table.fields.additional.placement", "places %d columns at partition; a record has one partition", partitions)
	}
	// The relation's own topic and schemas are not used: its events go to the routed topics.
	if rc.Realtime != nil {
		errs.add(at+".realtime", "cannot be combined with outbox: the outbox table's inserts become outbox events")
	}
	rel := strings.TrimSuffix(at, ".outbox")
	for _, k := range o.ignoredKeys {
		errs.add(rel+"."+k, "does not apply to an outbox table: its events go to the topics route.topic.replacement names (created with kafka.topic_defaults), each with its own subjects and schemas derived from the outbox columns")
	}
}

// CheckReplacement checks a Java replacement string ($n, ${name}, \x escapes) against re.
func CheckReplacement(repl string, re *regexp.Regexp) error {
	_, err := ExpandReplacement(nil, repl, re, "", nil)
	return err
}

// ExpandReplacement appends to dst the replacement repl as Java's Matcher.replaceFirst reads
// it, for a match of re on src with submatch indices m: `$n` (the longest group number that
// exists, at least one digit), `${name}`, and `\` escaping the next character. With m nil it
// only checks repl.
func ExpandReplacement(dst []byte, repl string, re *regexp.Regexp, src string, m []int) ([]byte, error) {
	group := func(i int) {
		if m != nil && m[2*i] >= 0 {
			dst = append(dst, src[m[2*i]:m[2*i+1]]...)
		}
	}
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		switch c {
		case '\\':
			i++
			if i == len(repl) {
				return nil, fmt.Errorf("character to be escaped is missing at the end")
			}
			dst = append(dst, repl[i])
		case '$':
			i++
			if i == len(repl) {
				return nil, fmt.Errorf("illegal group reference: $ at the end")
			}
			if repl[i] == '{' {
				end := strings.IndexByte(repl[i:], '}')
				if end < 0 {
					return nil, fmt.Errorf("named capturing group is missing its closing }")
				}
				name := repl[i+1 : i+end]
				idx := re.SubexpIndex(name)
				if idx < 0 {
					return nil, fmt.Errorf("no group named %q in route.topic.regex", name)
				}
				group(idx)
				i += end
				continue
			}
			if repl[i] < '0' || repl[i] > '9' {
				return nil, fmt.Errorf("illegal group reference at %q", repl[i-1:])
			}
			n := int(repl[i] - '0')
			if n > re.NumSubexp() {
				return nil, fmt.Errorf("no group %d in route.topic.regex", n)
			}
			// Java takes further digits while the number stays a group that exists.
			for i+1 < len(repl) && repl[i+1] >= '0' && repl[i+1] <= '9' {
				next := n*10 + int(repl[i+1]-'0')
				if next > re.NumSubexp() {
					break
				}
				n = next
				i++
			}
			group(n)
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}
