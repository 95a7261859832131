package snapshot

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestCheckFilterText(t *testing.T) {
	for _, tc := range []struct {
		filter string
		refuse string // "" when accepted
	}{
		{"id > 1 AND note <> '-'", ""},
		{"id - -1 > 0", ""},
		{"true) OR (true", ""}, // parentheses are PostgreSQL's to judge (see createFilterView)
		{"id > 1; DROP TABLE t", `";"`},
		{"note = ';'", `";"`},
		{"false) UNION ALL SELECT 1, rolname||':'||rolpassword FROM pg_authid --", `"--"`},
		{"id > 1 /* x */", `"/*"`},
		{"id > 1\x00", "NUL"},
		{strings.Repeat("x", maxFilterLen+1), "bytes long"},
	} {
		err := checkFilterText("public.t", tc.filter)
		var fe *FilterError
		switch {
		case tc.refuse == "" && err != nil:
			t.Errorf("%.40q: refused: %v", tc.filter, err)
		case tc.refuse != "" && (!errors.As(err, &fe) || !strings.Contains(err.Error(), tc.refuse) || !strings.Contains(err.Error(), "public.t")):
			t.Errorf("%.40q: got %v, want a FilterError naming public.t and %s", tc.filter, err, tc.refuse)
		}
	}
}

// filterTree is the query tree PostgreSQL 15 stores for a filter view over public.items (OID
// 35525; the view is 39923) with operators, functions, IN, a row comparison and OR:
//
//	SELECT "id", "name" FROM public.items WHERE (id % 3 = 0 and name like 'a%' or id in (1, 2)
//	  or (id, name) > (1, 'x') and created_at > now() - interval '1 day' and upper(name) <> '')
func filterTree(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/filter_tree_pg15.txt")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestCheckQueryTree(t *testing.T) {
	tree := filterTree(t)
	refs, reason := checkQueryTree(tree, 35525, 39923)
	if reason != "" {
		t.Fatalf("refused: %s", reason)
	}
	slices.Sort(refs.funcs)
	slices.Sort(refs.ops)
	// now(), upper(), and the operators' own functions (opfuncid).
	for _, f := range []uint32{1299, 871} {
		if !slices.Contains(refs.funcs, f) {
			t.Errorf("functions %v lack %d", refs.funcs, f)
		}
	}
	for _, o := range []uint32{96, 521, 530, 531, 666, 1209, 1324, 1329} {
		if !slices.Contains(refs.ops, o) {
			t.Errorf("operators %v lack %d", refs.ops, o)
		}
	}

	if _, reason := checkQueryTree(tree, 1, 39923); !strings.Contains(reason, "reads relation 35525") {
		t.Errorf("another table: got %q", reason)
	}
	edit := func(old, new string) string {
		t.Helper()
		if !strings.Contains(tree, old) {
			t.Fatalf("the tree has no %q", old)
		}
		return strings.Replace(tree, old, new, 1)
	}
	for _, tc := range []struct{ name, tree, reason string }{
		{"sublink", edit(":args ({VAR", ":args ({SUBLINK :subLinkType 0} {VAR"), "a subquery"},
		{"limit", edit(":limitCount <>", ":limitCount {CONST :consttype 20}"), "LIMIT"},
		{"order by", edit(":sortClause <>", ":sortClause ({SORTGROUPCLAUSE :tleSortGroupRef 1})"), "ORDER BY"},
		{"set operation", edit(":setOperations <>", ":setOperations {SETOPERATIONSTMT :op 1}"), "UNION"},
		{"sublinks flag", edit(":hasSubLinks false", ":hasSubLinks true"), "a subquery"},
		{"not a select", edit(":commandType 1", ":commandType 3"), "not a SELECT"},
		{"unknown node", edit("{FUNCEXPR :funcid 871", "{NEWEXPR :funcid 871"), "(newexpr)"},
		{"set-returning", edit(":funcid 871 :funcresulttype 25 :funcretset false", ":funcid 871 :funcresulttype 25 :funcretset true"), "set-returning"},
		{"field twice", edit(":funcid 871", ":funcid 871 :funcid 2"), ":funcid twice"},
		{"unreadable oid", edit(":funcid 871", ":funcid x"), ":funcid"},
		{"function scan", edit(":rtekind 0 :relid 35525", ":rtekind 3 :relid 35525"), "other than the table"},
		{"two queries", "(" + tree[1:len(tree)-1] + " " + tree[1:len(tree)-1] + ")", "not one query"},
		{"truncated", tree[:len(tree)/2], "cannot be read"},
		{"nested too deep", strings.Repeat("(", maxTreeDepth+1), "too deep"},
	} {
		if _, reason := checkQueryTree(tc.tree, 35525, 39923); !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: got %q, want %q", tc.name, reason, tc.reason)
		}
	}
	// Names are escaped: a column named like a node or a field is a token, not a node.
	named := edit(":resname name", `:resname \{SUBLINK\ :funcid\ 1`)
	if _, reason := checkQueryTree(named, 35525, 39923); reason != "" {
		t.Errorf("an escaped name: refused: %s", reason)
	}
}

func TestParseNodeTree(t *testing.T) {
	v, err := parseNodeTree(`({A :x 1 :y \{b\ c\) :z (o 3 4) :w <> :v 4 [ 1 0 0 0 ]})`)
	if err != nil {
		t.Fatal(err)
	}
	n := v.([]any)[0].(*treeNode)
	if n.name != "A" || n.token(":x") != "1" || n.token(":y") != `\{b\ c\)` || n.token(":w") != "<>" || len(n.fields[":v"]) != 7 {
		t.Fatalf("got %+v", n)
	}
	if ops, ok := n.oidList(":z"); !ok || !slices.Equal(ops, []uint32{3, 4}) {
		t.Fatalf("oid list %v %v", ops, ok)
	}
	for _, bad := range []string{"", "({A :x 1)", "({A 1})", "(}", "({A :x 1}) extra"} {
		if _, err := parseNodeTree(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
