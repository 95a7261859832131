package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/procon-cdc/procon/pg"
)

// A snapshot filter (additional-conditions) comes from whoever can write the signal table (or
// the progress table, where a running snapshot's filter is kept), and is run by procon-cdc's
// role, which may read far more. So a filter is never pasted into the SQL of a read. In the
// read's own transaction, it becomes the temporary view filterView:
//
//	CREATE TEMPORARY VIEW procon_snapshot_filter AS SELECT <columns> FROM <table> WHERE (<filter>)
//
// which PostgreSQL parses and analyses without running anything. The view's query tree
// (pg_rewrite.ev_action) is then checked: one plain SELECT of the table alone (no other
// relation, subquery, CTE, set operation, aggregate, window, ORDER BY or LIMIT, whatever the
// filter's parentheses did), whose expressions are built from the table's columns, constants
// and built-in (pg_catalog) operators and functions that are immutable or stable, return one
// value, and read nothing else. Only then are the chunks read, from the view: the filter is
// exactly the expression that was checked, and a ")" in it cannot reach the chunk's key
// bounds. The transaction is rolled back, so the view never outlives it and never holds a
// dependency on the table.
//
// Dependencies recorded in pg_depend would not do: PostgreSQL records none on pinned objects,
// so pg_authid or pg_sleep would go unseen.

// filterView is the temporary view a filtered range is read through.
const filterView = "pg_temp.procon_snapshot_filter"

// maxFilterLen bounds a filter's text (the signal table's data column holds 2048 characters).
const maxFilterLen = 4096

// FilterError is a snapshot filter procon-cdc refuses to run; nothing of it ran.
type FilterError struct {
	Relation string
	Filter   string
	Reason   string
}

func (e *FilterError) Error() string {
	return fmt.Sprintf("the filter of %s is refused: %s", e.Relation, e.Reason)
}

// checkFilterText refuses what must never reach the server, before anything does: statement
// separators and comments (anywhere, string constants included), NUL, and very long text.
func checkFilterText(relation, filter string) error {
	refuse := func(reason string) error { return &FilterError{Relation: relation, Filter: filter, Reason: reason} }
	switch {
	case len(filter) > maxFilterLen:
		return refuse(fmt.Sprintf("it is %d bytes long, more than %d", len(filter), maxFilterLen))
	case strings.Contains(filter, ";"):
		return refuse(`it contains ";" (a filter is one expression; inside a string constant, write it as chr(59))`)
	case strings.Contains(filter, "--"):
		return refuse(`it contains "--", which starts a comment (write "- -" or "+" for arithmetic)`)
	case strings.Contains(filter, "/*"):
		return refuse(`it contains "/*", which starts a comment`)
	case strings.ContainsRune(filter, 0):
		return refuse("it contains a NUL character")
	}
	return nil
}

// createFilterView creates filterView in tx (which the caller rolls back) and checks it; a
// filter that fails to parse or does not qualify is a *FilterError. Nothing of the filter runs.
// Errors that may go away (a lost connection, a lock wait cut by statement_timeout) are
// returned as they are.
func createFilterView(ctx context.Context, tx pgx.Tx, t *Table, filter string) error {
	if err := checkFilterText(t.Name, filter); err != nil {
		return err
	}
	refuse := func(reason string) error { return &FilterError{Relation: t.Name, Filter: filter, Reason: reason} }
	// The extended protocol parses exactly one statement, whatever the text holds.
	sql := "CREATE TEMPORARY VIEW " + filterView + " AS SELECT " + t.cols + " FROM " + t.from + " WHERE (" + filter + ")"
	if _, err := tx.Conn().PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && !pg.Transient(err) {
			return refuse(pgErr.Message)
		}
		return err
	}
	var table, view uint32
	var tree string
	if err := tx.QueryRow(ctx, `SELECT $1::regclass::oid, c.oid, r.ev_action::text
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid
		WHERE c.oid = $2::regclass`, t.from, filterView).Scan(&table, &view, &tree); err != nil {
		return fmt.Errorf("read the query tree of %s's filter: %w", t.Name, err)
	}
	refs, reason := checkQueryTree(tree, table, view)
	if reason != "" {
		return refuse(reason)
	}
	if reason, err := checkRoutines(ctx, tx, refs); err != nil {
		return fmt.Errorf("look up the functions of %s's filter: %w", t.Name, err)
	} else if reason != "" {
		return refuse(reason)
	}
	return nil
}

// routineRefs are the functions and operators a query tree calls.
type routineRefs struct {
	funcs, ops []uint32
}

// refusedFunc reports built-in functions that are stable, yet read what the filter's author
// may not: any table (the *_to_xml family runs its own query), a setting (some hold secrets),
// other sessions' queries and other tables' statistics (pg_stat_get_*).
func refusedFunc(name string) bool {
	switch name {
	case "current_setting",
		"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
		"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
		"cursor_to_xml", "cursor_to_xmlschema",
		"schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema",
		"database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema":
		return true
	}
	return strings.HasPrefix(name, "pg_stat_get_")
}

// checkRoutines returns why a function or operator the filter calls is refused, or "". Every
// one must be built in (in pg_catalog: only a superuser puts anything there), a plain
// function (not an aggregate or window function), immutable or stable (a volatile one may
// sleep, lock, write or read files), returning one value, not SECURITY DEFINER, and not one of
// refusedFunc.
func checkRoutines(ctx context.Context, tx pgx.Tx, refs routineRefs) (string, error) {
	funcs := append([]uint32(nil), refs.funcs...)
	if len(refs.ops) > 0 {
		rows, err := tx.Query(ctx, `SELECT o.oid, pg_catalog.format('%I.%s(%s, %s)', n.nspname, o.oprname,
				pg_catalog.format_type(o.oprleft, NULL), pg_catalog.format_type(o.oprright, NULL)), n.nspname, o.oprcode::oid
			FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
			WHERE o.oid = ANY($1::oid[])`, refs.ops)
		if err != nil {
			return "", err
		}
		seen := map[uint32]bool{}
		var reason string
		for rows.Next() {
			var oid, code uint32
			var name, schema string
			if err := rows.Scan(&oid, &name, &schema, &code); err != nil {
				rows.Close()
				return "", err
			}
			seen[oid] = true
			if schema != "pg_catalog" && reason == "" {
				reason = fmt.Sprintf("it uses the operator %s, which is not built in", name)
			}
			funcs = append(funcs, code)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return "", err
		}
		if reason != "" {
			return reason, nil
		}
		for _, oid := range refs.ops {
			if !seen[oid] {
				return fmt.Sprintf("it uses operator %d, which does not exist", oid), nil
			}
		}
	}
	if len(funcs) == 0 {
		return "", nil
	}
	rows, err := tx.Query(ctx, `SELECT p.oid, pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
			p.proname, n.nspname, p.prokind, p.provolatile, p.proretset, p.prosecdef
		FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		WHERE p.oid = ANY($1::oid[])`, funcs)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	seen := map[uint32]bool{}
	var reason string
	for rows.Next() {
		var oid uint32
		var sig, name, schema, kind, volatility string
		var retset, definer bool
		if err := rows.Scan(&oid, &sig, &name, &schema, &kind, &volatility, &retset, &definer); err != nil {
			return "", err
		}
		seen[oid] = true
		if reason != "" {
			continue
		}
		switch {
		case schema != "pg_catalog":
			reason = fmt.Sprintf("it calls %s, which is not a built-in function", sig)
		case kind != "f":
			reason = fmt.Sprintf("it calls %s, which is not a plain function", sig)
		case volatility == "v":
			reason = fmt.Sprintf("it calls %s, which is volatile (it may wait, write or read outside the table); only immutable and stable functions are accepted", sig)
		case retset:
			reason = fmt.Sprintf("it calls %s, which returns a set", sig)
		case definer:
			reason = fmt.Sprintf("it calls %s, which is SECURITY DEFINER", sig)
		case refusedFunc(name):
			reason = fmt.Sprintf("it calls %s, which reads outside the table", sig)
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	if reason != "" {
		return reason, nil
	}
	for _, oid := range funcs {
		if !seen[oid] {
			return fmt.Sprintf("it calls function %d, which does not exist", oid), nil
		}
	}
	return "", nil
}

// refusedNodes names, for the refusal, nodes of a query tree a filter may not have.
var refusedNodes = map[string]string{
	"SUBLINK":             "a subquery",
	"SUBPLAN":             "a subquery",
	"ALTERNATIVESUBPLAN":  "a subquery",
	"AGGREF":              "an aggregate function",
	"GROUPINGFUNC":        "GROUPING",
	"WINDOWFUNC":          "a window function",
	"WINDOWCLAUSE":        "a WINDOW clause",
	"SETOPERATIONSTMT":    "UNION, INTERSECT or EXCEPT",
	"COMMONTABLEEXPR":     "a WITH query",
	"SORTGROUPCLAUSE":     "ORDER BY, GROUP BY or DISTINCT",
	"GROUPINGSET":         "GROUP BY",
	"ROWMARKCLAUSE":       "FOR UPDATE or FOR SHARE",
	"JOINEXPR":            "a join",
	"PARAM":               "a parameter",
	"COERCETODOMAIN":      "a cast to a domain (its CHECK constraints could call any function)",
	"COERCETODOMAINVALUE": "a domain's VALUE",
	"NEXTVALUEEXPR":       "a sequence",
	"CURRENTOFEXPR":       "CURRENT OF",
	"XMLEXPR":             "an XML expression",
	"SETTODEFAULT":        "DEFAULT",
}

// acceptedNodes are the nodes a filter's query tree may have besides the checked ones: the
// plain SELECT around it, and expressions that call nothing but what their operators and
// functions (checked by checkRoutines) and the types' own I/O and comparison functions do.
var acceptedNodes = map[string]bool{
	"QUERY": true, "RANGETBLENTRY": true, "RTEPERMISSIONINFO": true, "ALIAS": true, "FROMEXPR": true,
	"RANGETBLREF": true, "TARGETENTRY": true,
	"VAR": true, "CONST": true, "FUNCEXPR": true, "NAMEDARGEXPR": true, "OPEXPR": true, "DISTINCTEXPR": true,
	"NULLIFEXPR": true, "SCALARARRAYOPEXPR": true, "BOOLEXPR": true, "FIELDSELECT": true, "RELABELTYPE": true,
	"COERCEVIAIO": true, "ARRAYCOERCEEXPR": true, "CONVERTROWTYPEEXPR": true, "COLLATEEXPR": true,
	"CASEEXPR": true, "CASEWHEN": true, "CASETESTEXPR": true, "ARRAYEXPR": true, "ROWEXPR": true,
	"ROWCOMPAREEXPR": true, "COALESCEEXPR": true, "MINMAXEXPR": true, "SQLVALUEFUNCTION": true,
	"NULLTEST": true, "BOOLEANTEST": true, "SUBSCRIPTINGREF": true,
	"JSONISPREDICATE": true, "JSONVALUEEXPR": true, "JSONFORMAT": true, "JSONRETURNING": true,
	"JSONCONSTRUCTOREXPR": true, "JSONEXPR": true, "JSONBEHAVIOR": true,
}

// queryClauses are the fields of the view's Query that must be empty: what a ")" in the
// filter could add after the WHERE.
var queryClauses = map[string]string{
	":cteList":        "a WITH query",
	":groupClause":    "GROUP BY",
	":groupingSets":   "GROUP BY",
	":havingQual":     "HAVING",
	":windowClause":   "a WINDOW clause",
	":distinctClause": "DISTINCT",
	":sortClause":     "ORDER BY",
	":limitOffset":    "OFFSET",
	":limitCount":     "LIMIT or FETCH",
	":rowMarks":       "FOR UPDATE or FOR SHARE",
	":setOperations":  "UNION, INTERSECT or EXCEPT",
	":utilityStmt":    "a utility statement",
}

// queryFlags are the Query's flags that must be false.
var queryFlags = map[string]string{
	":hasAggs":         "an aggregate function",
	":hasWindowFuncs":  "a window function",
	":hasTargetSRFs":   "a set-returning function",
	":hasSubLinks":     "a subquery",
	":hasDistinctOn":   "DISTINCT ON",
	":hasRecursive":    "WITH RECURSIVE",
	":hasModifyingCTE": "a data-modifying WITH",
	":hasForUpdate":    "FOR UPDATE or FOR SHARE",
}

// checkQueryTree checks the view's query tree (pg_node_tree text) and returns the functions
// and operators it calls, or why it is refused. table and view are the OIDs of the snapshotted
// table and of the view (whose rule lists itself as OLD and NEW before PostgreSQL 16). What it
// cannot read is refused.
func checkQueryTree(text string, table, view uint32) (routineRefs, string) {
	var refs routineRefs
	root, err := parseNodeTree(text)
	if err != nil {
		return refs, "its query tree cannot be read: " + err.Error()
	}
	list, ok := root.([]any)
	if !ok || len(list) != 1 {
		return refs, "it is not one query"
	}
	q, ok := list[0].(*treeNode)
	if !ok || q.name != "QUERY" {
		return refs, "it is not one query"
	}
	if v := q.token(":commandType"); v != "1" {
		return refs, "it is not a SELECT"
	}
	for field, what := range queryClauses {
		if vals, present := q.fields[field]; present && !(len(vals) == 1 && vals[0] == "<>") {
			return refs, "it adds " + what
		}
	}
	for field, what := range queryFlags {
		if v, present := q.fields[field]; present && !(len(v) == 1 && v[0] == "false") {
			return refs, "it has " + what
		}
	}
	queries := 0
	var reason string
	oid := func(n *treeNode, field string) (uint32, bool) {
		v, err := strconv.ParseUint(n.token(field), 10, 32)
		if err != nil {
			reason = fmt.Sprintf("its query tree has no readable %s in %s", field, n.name)
			return 0, false
		}
		return uint32(v), true
	}
	addFunc := func(n *treeNode, field string) {
		if id, ok := oid(n, field); ok && id != 0 {
			refs.funcs = append(refs.funcs, id)
		}
	}
	addOp := func(n *treeNode, field string) {
		if id, ok := oid(n, field); ok {
			refs.ops = append(refs.ops, id)
		}
	}
	var walk func(v any)
	walk = func(v any) {
		if reason != "" {
			return
		}
		switch v := v.(type) {
		case []any:
			for _, x := range v {
				walk(x)
			}
		case *treeNode:
			if what, refused := refusedNodes[v.name]; refused {
				reason = "it has " + what
				return
			}
			if !acceptedNodes[v.name] {
				reason = fmt.Sprintf("it has an expression procon-cdc does not accept in a filter (%s)", strings.ToLower(v.name))
				return
			}
			if v.dup != "" {
				reason = fmt.Sprintf("its query tree is ambiguous (%s twice in %s)", v.dup, v.name)
				return
			}
			switch v.name {
			case "QUERY":
				if queries++; queries > 1 {
					reason = "it has a subquery"
					return
				}
			case "RANGETBLENTRY", "RTEPERMISSIONINFO":
				if v.name == "RANGETBLENTRY" && v.token(":rtekind") != "0" {
					reason = "it reads something other than the table (a subquery, a function or VALUES)"
					return
				}
				if id, ok := oid(v, ":relid"); ok && id != table && id != view {
					reason = fmt.Sprintf("it reads relation %d, not the table", id)
					return
				}
			case "FUNCEXPR":
				if v.token(":funcretset") != "false" {
					reason = "it calls a set-returning function"
					return
				}
				addFunc(v, ":funcid")
			case "OPEXPR", "DISTINCTEXPR", "NULLIFEXPR":
				addOp(v, ":opno")
				addFunc(v, ":opfuncid")
			case "SCALARARRAYOPEXPR":
				addOp(v, ":opno")
				addFunc(v, ":opfuncid")
				for _, f := range []string{":hashfuncid", ":negfuncid"} {
					if _, present := v.fields[f]; present {
						addFunc(v, f)
					}
				}
			case "ROWCOMPAREEXPR":
				ops, ok := v.oidList(":opnos")
				if !ok {
					reason = "its query tree has no readable :opnos in ROWCOMPAREEXPR"
					return
				}
				refs.ops = append(refs.ops, ops...)
			}
			for _, vals := range v.fields {
				for _, x := range vals {
					walk(x)
				}
			}
		}
	}
	walk(list)
	if reason == "" && queries != 1 {
		reason = "it is not one query"
	}
	return refs, reason
}

// treeNode is one node of a pg_node_tree: {NAME :field value ...}. A field's value is the
// tokens, nodes and lists up to the next field.
type treeNode struct {
	name   string
	fields map[string][]any
	dup    string // a field seen twice
}

// token returns a field's value when it is a single token, else "".
func (n *treeNode) token(field string) string {
	v := n.fields[field]
	if len(v) != 1 {
		return ""
	}
	s, _ := v[0].(string)
	return s
}

// oidList reads a field holding an OID list, "(o 1 2)".
func (n *treeNode) oidList(field string) ([]uint32, bool) {
	v := n.fields[field]
	if len(v) != 1 {
		return nil, false
	}
	l, ok := v[0].([]any)
	if !ok || len(l) == 0 || l[0] != "o" {
		return nil, false
	}
	out := make([]uint32, 0, len(l)-1)
	for _, x := range l[1:] {
		s, _ := x.(string)
		id, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, false
		}
		out = append(out, uint32(id))
	}
	return out, true
}

// parseNodeTree reads the text of a pg_node_tree as PostgreSQL's own reader tokenizes it
// (read.c, pg_strtok): tokens are separated by whitespace, "(", ")", "{" and "}" are tokens
// of their own, and a backslash makes the next character part of a token. Strings in the tree
// (names) escape those characters, so every bare "{" starts a node.
func parseNodeTree(text string) (any, error) {
	toks := tokenizeNodeTree(text)
	p := &treeParser{toks: toks}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	if p.pos != len(toks) {
		return nil, fmt.Errorf("unexpected %q after the tree", toks[p.pos])
	}
	return v, nil
}

func tokenizeNodeTree(s string) []string {
	var toks []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			toks = append(toks, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\n', '\t', '\r':
			flush()
		case '(', ')', '{', '}':
			flush()
			toks = append(toks, string(c))
		case '\\':
			cur.WriteByte(c)
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return toks
}

type treeParser struct {
	toks  []string
	pos   int
	depth int
}

// maxTreeDepth bounds the nesting the parser follows (PostgreSQL bounds its own by the stack).
const maxTreeDepth = 10_000

// value reads one token, node or list.
func (p *treeParser) value() (any, error) {
	if p.pos >= len(p.toks) {
		return nil, errors.New("the tree ends early")
	}
	tok := p.toks[p.pos]
	p.pos++
	switch tok {
	case "{":
		return p.node()
	case "(":
		return p.list()
	case ")", "}":
		return nil, fmt.Errorf("unexpected %q", tok)
	}
	return tok, nil
}

func (p *treeParser) enter() error {
	if p.depth++; p.depth > maxTreeDepth {
		return errors.New("the tree is nested too deep")
	}
	return nil
}

func (p *treeParser) list() ([]any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	out := []any{}
	for {
		if p.pos >= len(p.toks) {
			return nil, errors.New("a list does not end")
		}
		if p.toks[p.pos] == ")" {
			p.pos++
			return out, nil
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
}

func (p *treeParser) node() (*treeNode, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if p.pos >= len(p.toks) {
		return nil, errors.New("a node has no name")
	}
	n := &treeNode{name: p.toks[p.pos], fields: map[string][]any{}}
	p.pos++
	var field string
	for {
		if p.pos >= len(p.toks) {
			return nil, fmt.Errorf("node %s does not end", n.name)
		}
		tok := p.toks[p.pos]
		switch {
		case tok == "}":
			p.pos++
			return n, nil
		case strings.HasPrefix(tok, ":"):
			p.pos++
			field = tok
			if _, seen := n.fields[field]; seen && n.dup == "" {
				n.dup = field
			}
			n.fields[field] = []any{}
		default:
			if field == "" {
				return nil, fmt.Errorf("node %s has a value before its first field", n.name)
			}
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			n.fields[field] = append(n.fields[field], v)
		}
	}
}
