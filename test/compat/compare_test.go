package compat

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// What the diff does not hold against procon-cdc, in one place. Everything else of every
// record (key, value, the __debezium.oldkey/newkey headers, the partition) must be equal, field
// by field and in order, for the diff to pass.
//
// Normalization before comparing: each side has its own topic prefix (two pipelines write to
// one Kafka), so procon-cdc's prefix is replaced by Debezium's in its topic names, keys, values
// and headers. The prefix appears in topic names, schema names (<topic>.Key, .Value,
// .Envelope) and source.name.
var exemptions = []exemption{
	{kinds: "dm", path: "value.payload.ts_ms", reason: "envelope ts_ms: the connector's wall clock when it built the event"},
	{kinds: "d", path: "value.payload.ts_us", reason: "envelope ts_us: the connector's wall clock when it built the event"},
	{kinds: "d", path: "value.payload.ts_ns", reason: "envelope ts_ns: the connector's wall clock when it built the event"},
	{kinds: "dm", path: "value.payload.source.version", reason: "source.version: the connector's own version (3.6.1.Final / Procon's)"},
	{kinds: "h", path: "value.payload.ts_ms", reason: "heartbeat ts_ms: the connector's wall clock"},
	{kinds: "h", path: "count", reason: "heartbeats: how many depends on each connector's timing; the first of each side is compared"},
	{kinds: "dthm", path: "header.__debezium.context.*",
		reason: "Debezium 3.2+ extended headers (connectorLogicalName, taskId, connectorName, runId): Debezium's connector context, no meaning for Procon"},
	{kinds: "dthm", path: "header.procon.*", reason: "procon.tx / procon.seq: Procon's idempotency key, absent from Debezium"},
	{kinds: "tm", path: "message-collection-identity", reason: "data collection of a logical message in transaction metadata: Debezium names it by a Java object's identity " +
		"(LogicalDecodingMessageMonitor$LogicalDecodingMessageId@<identity hash>, random per event and so is its place in END's HashMap-ordered data_collections); " +
		"Procon writes the same name with a hash of its own: compared without the hash, in sorted order"},
	{kinds: "d", path: "sub-array-identity",
		reason: "sub-array of a multi-dimensional array (docs/compatibility.md): Debezium maps only the first dimension and writes a Java array's " +
			"toString (\"[Ljava.lang.String;@<identity hash>\") for each sub-array of a text array; Procon writes null, as Debezium does for the other element types"},
	{kinds: "dt", path: "partition", when: nullKey,
		reason: "partition of a record without key (truncate events): Kafka's producer picks one (sticky partitioner)"},
	// Documented difference: columns of types Debezium cannot map. Debezium leaves them out of
	// the event; procon-cdc sends their text form as a string (and warns at start). With
	// include.unknown.datatypes both send the text's bytes, so they are compared there.
	{kinds: "d", path: "value.schema.fields[*].fields[u_*]", tables: "unmapped", unlessIncludeUnknown: true,
		reason: "unmapped type (docs/compatibility.md): Debezium drops the column, Procon sends its text"},
	{kinds: "d", path: "value.payload.*.u_*", tables: "unmapped", unlessIncludeUnknown: true,
		reason: "unmapped type (docs/compatibility.md): Debezium drops the column, Procon sends its text"},
	// Arrays of these types, and of money, interval, xml, name, varbit, point and domains:
	// Debezium drops them even with include.unknown.datatypes (or, for domain and unknown
	// element types, sends arrays of bytes); procon-cdc sends their text.
	{kinds: "d", path: "value.schema.fields[*].fields[u_*]", tables: "unmapped_arrays",
		reason: "unmapped array type (docs/compatibility.md): Debezium drops the column, Procon sends its text"},
	{kinds: "d", path: "value.payload.*.u_*", tables: "unmapped_arrays",
		reason: "unmapped array type (docs/compatibility.md): Debezium drops the column, Procon sends its text"},
}

// exemption excuses one path of records of some kinds (d data, t transaction metadata, m
// logical message, h heartbeat) from the comparison. Paths are "partition", "key.schema...",
// "key.payload...", "value..." (struct schema fields as fields[<name>]), "header.<name>", or
// one of the pseudo-paths the comparator checks itself: "count" (how many records),
// "message-collection-identity" and "sub-array-identity".
type exemption struct {
	kinds  string
	path   string // segments separated by '.', "*" matches within a segment
	tables string // if set, only for data events of this table
	// unlessIncludeUnknown: not in pipelines with include.unknown.datatypes=true.
	unlessIncludeUnknown bool
	when                 func(dbz *node) bool
	reason               string
	re                   *regexp.Regexp
}

func nullKey(dbzValue *node) bool { return dbzValue == nil }

func init() {
	for i := range exemptions {
		e := &exemptions[i]
		var b strings.Builder
		b.WriteString("^")
		for _, r := range e.path {
			switch r {
			case '*':
				b.WriteString(`[^.]*`)
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		b.WriteString("$")
		e.re = regexp.MustCompile(b.String())
	}
}

// record is one Kafka record of either side.
type record struct {
	topic     string // with the prefix normalized to Debezium's
	partition int32
	offset    int64
	key       []byte
	value     []byte
	headers   []kgo.RecordHeader
}

// comparator accumulates the comparison of a pipeline's records.
type comparator struct {
	events, fields       int
	keysIdentical, keys  int
	valuesIdentical      int
	exempted             map[string]int // reason -> fields exempted
	mismatches           []mismatch
	cur                  *recordCtx
	curValueMismatchSeen bool
	includeUnknown       bool // the pipeline sets include.unknown.datatypes
}

type mismatch struct {
	pipeline, topic string
	partition       int32
	index           int
	path            string
	dbz, pc         string
}

func (m mismatch) group() string {
	return m.pipeline + " " + topicSuffix(m.topic) + " " + indexRE.ReplaceAllString(m.path, "[#]")
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// recordCtx is what exemptions look at.
type recordCtx struct {
	pipeline string
	kind     byte
	table    string
	dbzValue *node // parsed Debezium value, nil for a tombstone
	dbzKey   *node
	topic    string
	part     int32
	index    int
}

func newComparator() *comparator { return &comparator{exempted: map[string]int{}} }

func (c *comparator) exempt(path string) bool {
	for _, e := range exemptions {
		if !strings.ContainsRune(e.kinds, rune(c.cur.kind)) || !e.re.MatchString(path) {
			continue
		}
		if e.tables != "" && e.tables != c.cur.table {
			continue
		}
		if e.unlessIncludeUnknown && c.includeUnknown {
			continue
		}
		if e.when != nil {
			arg := c.cur.dbzValue
			if e.path == "partition" {
				arg = c.cur.dbzKey
			}
			if !e.when(arg) {
				continue
			}
		}
		c.exempted[e.reason]++
		return true
	}
	return false
}

func (c *comparator) mismatch(path, dbz, pc string) {
	c.curValueMismatchSeen = true
	c.mismatches = append(c.mismatches, mismatch{pipeline: c.cur.pipeline, topic: c.cur.topic, partition: c.cur.part,
		index: c.cur.index, path: path, dbz: clip(dbz), pc: clip(pc)})
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// compareRecords compares the records of one topic partition, pairwise in order.
func (c *comparator) compareRecords(pl string, kind byte, table string, dbz, pc []record) {
	n := max(len(dbz), len(pc))
	if kind == 'h' {
		n = min(1, len(dbz), len(pc))
		c.cur = &recordCtx{pipeline: pl, kind: kind}
		if len(dbz) != len(pc) {
			c.exempt("count")
		}
	}
	for i := 0; i < n; i++ {
		var topic string
		var part int32
		if i < len(dbz) {
			topic, part = dbz[i].topic, dbz[i].partition
		} else {
			topic, part = pc[i].topic, pc[i].partition
		}
		c.cur = &recordCtx{pipeline: pl, kind: kind, table: table, topic: topic, part: part, index: i}
		switch {
		case i >= len(pc):
			c.mismatch("record", summarize(dbz[i]), "<missing>")
			continue
		case i >= len(dbz):
			c.mismatch("record", "<missing>", summarize(pc[i]))
			continue
		}
		c.compareRecord(dbz[i], pc[i])
	}
}

func summarize(r record) string {
	return fmt.Sprintf("key=%s value=%s", r.key, clip(string(r.value)))
}

func (c *comparator) compareRecord(d, p record) {
	c.events++
	c.curValueMismatchSeen = false
	var dk, dv *node
	var err error
	if d.key != nil {
		if dk, err = parseJSON(d.key); err != nil {
			c.mismatch("key", "unparsable: "+err.Error(), string(p.key))
			return
		}
	}
	if d.value != nil {
		if dv, err = parseJSON(d.value); err != nil {
			c.mismatch("value", "unparsable: "+err.Error(), string(p.value))
			return
		}
	}
	c.cur.dbzKey, c.cur.dbzValue = dk, dv
	if c.cur.kind == 't' && dv != nil {
		if pv, err := parseJSON(p.value); err == nil {
			d.value, p.value = c.messageCollections(dv), c.messageCollections(pv)
			c.cur.dbzValue = dv
		}
	}

	// Partition: the default partitioner hashes the key bytes.
	c.fields++
	if d.partition != p.partition && !c.exempt("partition") {
		c.mismatch("partition", fmt.Sprint(d.partition), fmt.Sprint(p.partition))
	}

	// Key.
	switch {
	case d.key == nil && p.key == nil:
		c.fields++
	case d.key == nil || p.key == nil:
		c.mismatch("key", string(d.key), string(p.key))
	default:
		c.keys++
		if bytes.Equal(d.key, p.key) {
			c.keysIdentical++
		}
		pk, err := parseJSON(p.key)
		if err != nil {
			c.mismatch("key", string(d.key), "unparsable: "+err.Error())
		} else {
			c.compareForm("key", dk, pk)
		}
	}

	// Value.
	switch {
	case d.value == nil && p.value == nil:
		c.fields++
	case d.value == nil || p.value == nil:
		c.mismatch("value", clip(string(d.value)), clip(string(p.value)))
	default:
		pv, err := parseJSON(p.value)
		if err != nil {
			c.mismatch("value", "", "unparsable: "+err.Error())
		} else {
			c.compareForm("value", dv, pv)
		}
	}
	if !c.curValueMismatchSeen {
		c.valuesIdentical++
	}

	c.compareHeaders(d.headers, p.headers)
}

// compareForm compares a key or value in either JsonConverter form, calling the parts
// "<what>.schema" and "<what>.payload" (the bare form is all payload).
func (c *comparator) compareForm(what string, d, p *node) {
	if d.kind == '{' && len(d.keys) == 2 && d.keys[0] == "schema" && d.keys[1] == "payload" {
		c.compareNode(what, d, p)
		return
	}
	c.compareNode(what+".payload", d, p)
}

func (c *comparator) compareHeaders(d, p []kgo.RecordHeader) {
	pick := func(hs []kgo.RecordHeader) (names []string, vals map[string][]byte) {
		vals = map[string][]byte{}
		for _, h := range hs {
			if c.exempt("header." + h.Key) {
				continue
			}
			names = append(names, h.Key)
			vals[h.Key] = h.Value
		}
		return names, vals
	}
	dn, dvals := pick(d)
	pn, pvals := pick(p)
	c.fields++
	if strings.Join(dn, ",") != strings.Join(pn, ",") {
		c.mismatch("headers", strings.Join(dn, ","), strings.Join(pn, ","))
		return
	}
	for _, name := range dn {
		dh, err1 := parseJSON(dvals[name])
		ph, err2 := parseJSON(pvals[name])
		if err1 != nil || err2 != nil {
			c.fields++
			if !bytes.Equal(dvals[name], pvals[name]) {
				c.mismatch("header."+name, string(dvals[name]), string(pvals[name]))
			}
			continue
		}
		c.compareForm("header."+name, dh, ph)
	}
}

// compareNode compares two JSON trees: object members in order, arrays element by element
// (arrays of struct-field schemas by field name), scalars by their exact text.
func (c *comparator) compareNode(path string, d, p *node) {
	if c.exempt(path) {
		return
	}
	if d.kind != p.kind {
		c.fields++
		if !c.valueExempt(d, p) {
			c.mismatch(path, d.text(), p.text())
		}
		return
	}
	switch d.kind {
	case '{':
		dn, pn := strings.Join(d.keys, ","), strings.Join(p.keys, ",")
		if dn != pn {
			// The same members in another order, or members missing on one side.
			var extra []string
			for _, k := range p.keys {
				if d.get(k) == nil && !c.exempt(path+"."+k) {
					extra = append(extra, k)
				}
			}
			var missing []string
			for _, k := range d.keys {
				if p.get(k) == nil && !c.exempt(path+"."+k) {
					missing = append(missing, k)
				}
			}
			if len(extra) > 0 || len(missing) > 0 || !sameOrder(d.keys, p.keys) {
				c.fields++
				c.mismatch(path+"{}", "members "+dn, "members "+pn)
			}
		}
		for i, k := range d.keys {
			if pv := p.get(k); pv != nil {
				c.compareNode(path+"."+k, d.vals[i], pv)
			}
		}
	case '[':
		if fieldList(d) && fieldList(p) {
			c.compareFieldList(path, d, p)
			return
		}
		if len(d.items) != len(p.items) {
			c.fields++
			c.mismatch(path+"[len]", fmt.Sprint(len(d.items), " ", clip(d.text())), fmt.Sprint(len(p.items), " ", clip(p.text())))
		}
		for i := 0; i < min(len(d.items), len(p.items)); i++ {
			c.compareNode(fmt.Sprintf("%s[%d]", path, i), d.items[i], p.items[i])
		}
	default:
		c.fields++
		if d.raw != p.raw && !c.valueExempt(d, p) {
			c.mismatch(path, d.raw, p.raw)
		}
	}
}

var javaArrayIdentity = regexp.MustCompile(`^"\[L[A-Za-z0-9_.$]+;@[0-9a-f]+"$`)

// valueExempt excuses differences that show in the values themselves, wherever they are.
func (c *comparator) valueExempt(d, p *node) bool {
	return javaArrayIdentity.MatchString(d.raw) && p.raw == "null" && c.exempt("sub-array-identity")
}

// fieldList reports whether an array is a struct schema's "fields".
func fieldList(n *node) bool {
	if len(n.items) == 0 {
		return false
	}
	for _, it := range n.items {
		if it.get("field") == nil {
			return false
		}
	}
	return true
}

func (c *comparator) compareFieldList(path string, d, p *node) {
	name := func(n *node) string { return strings.Trim(n.get("field").raw, `"`) }
	var dn, pn []string
	for _, it := range d.items {
		dn = append(dn, name(it))
	}
	for _, it := range p.items {
		if nm := name(it); indexOf(dn, nm) >= 0 || !c.exempt(fmt.Sprintf("%s[%s]", path, nm)) {
			pn = append(pn, nm)
		}
	}
	var dk []string
	for _, nm := range dn {
		if indexOf(pn, nm) >= 0 || !c.exempt(fmt.Sprintf("%s[%s]", path, nm)) {
			dk = append(dk, nm)
		}
	}
	c.fields++
	if strings.Join(dk, ",") != strings.Join(pn, ",") {
		c.mismatch(path+"[fields]", strings.Join(dn, ","), strings.Join(pn, ","))
	}
	for _, it := range d.items {
		nm := name(it)
		for _, pit := range p.items {
			if name(pit) == nm {
				c.compareNode(fmt.Sprintf("%s[%s]", path, nm), it, pit)
			}
		}
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func sameOrder(a, b []string) bool {
	// The members both have must come in the same order.
	var ca, cb []string
	for _, x := range a {
		if indexOf(b, x) >= 0 {
			ca = append(ca, x)
		}
	}
	for _, x := range b {
		if indexOf(a, x) >= 0 {
			cb = append(cb, x)
		}
	}
	return strings.Join(ca, ",") == strings.Join(cb, ",")
}

// report renders mismatches grouped by pipeline, topic and path, with the first example of
// each group.
func (c *comparator) report(limit int) string {
	groups := map[string][]mismatch{}
	var order []string
	for _, m := range c.mismatches {
		g := m.group()
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], m)
	}
	var b strings.Builder
	for i, g := range order {
		if i == limit {
			fmt.Fprintf(&b, "... and %d more groups\n", len(order)-limit)
			break
		}
		ms := groups[g]
		m := ms[0]
		fmt.Fprintf(&b, "%s (%d): %s p%d #%d\n    debezium: %s\n    procon:   %s\n", g, len(ms), m.topic, m.partition, m.index, m.dbz, m.pc)
	}
	return b.String()
}

func (c *comparator) exemptionSummary() string {
	var reasons []string
	for r := range c.exempted {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	var b strings.Builder
	for _, r := range reasons {
		fmt.Fprintf(&b, "  %6d  %s\n", c.exempted[r], r)
	}
	return b.String()
}

// topicSuffix drops the prefix: "dbz1.public.t" -> "public.t".
func topicSuffix(topic string) string {
	if strings.HasPrefix(topic, "__debezium-heartbeat") {
		return "__debezium-heartbeat"
	}
	if i := strings.IndexByte(topic, '.'); i >= 0 {
		return topic[i+1:]
	}
	return topic
}

var messageCollectionID = regexp.MustCompile(`LogicalDecodingMessageId@[0-9a-f]+`)

// messageCollections canonicalizes the data_collections of a transaction END that counts
// logical messages (see the exemption): the identity hashes go, the entries are sorted. It
// returns the record value re-rendered from the tree.
func (c *comparator) messageCollections(v *node) []byte {
	payload := v
	if p := v.get("payload"); p != nil {
		payload = p
	}
	cols := payload.get("data_collections")
	if cols == nil || cols.kind != '[' {
		return []byte(v.text())
	}
	found := false
	for _, it := range cols.items {
		if n := it.get("data_collection"); n != nil && messageCollectionID.MatchString(n.raw) {
			n.raw = messageCollectionID.ReplaceAllString(n.raw, "LogicalDecodingMessageId@<identity>")
			found = true
		}
	}
	if found {
		c.exempt("message-collection-identity")
		sort.SliceStable(cols.items, func(i, j int) bool { return cols.items[i].text() < cols.items[j].text() })
	}
	return []byte(v.text())
}
