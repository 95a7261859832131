package replication

import (
	"strings"
	"testing"
)

// TestConninfoHasDBName: slot synchronization needs dbname in the standby's primary_conninfo,
// which check reads in libpq's key=value form (quoted or not) or as a URL.
func TestConninfoHasDBName(t *testing.T) {
	for conninfo, want := range map[string]bool{
		"host=p port=5432 user=repl dbname=postgres application_name=s1": true,
		"host=p dbname = 'my db' user=repl":                              true,
		"dbname=shop":                                                    true,
		"host=p port=5432 user=repl application_name=s1":                 false,
		"host=p user=repl olddbname=x":                                   false,
		"postgres://repl@p:5432/shop":                                    true,
		"postgresql://repl@p:5432?dbname=shop":                           true,
		"postgres://repl@p:5432":                                         false,
		"":                                                               false,
	} {
		if got := conninfoHasDBName(conninfo); got != want {
			t.Errorf("conninfoHasDBName(%q) = %v, want %v", conninfo, got, want)
		}
	}
}

// TestFailoverVersion: postgres.failover on a server without failover slots is refused with
// the key and the version.
func TestFailoverVersion(t *testing.T) {
	if err := checkFailoverVersion(true, 16); err == nil || !contains(err.Error(), "postgres.failover", "PostgreSQL 16", "17") {
		t.Errorf("failover on 16: %v", err)
	}
	for _, ok := range []struct {
		failover bool
		version  int
	}{{true, 17}, {true, 18}, {false, 13}} {
		if err := checkFailoverVersion(ok.failover, ok.version); err != nil {
			t.Errorf("failover %v on %d: %v", ok.failover, ok.version, err)
		}
	}
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestBranchPoint reads where a timeline ended from a history file as TIMELINE_HISTORY sends
// it (a promotion of a standby of a standby: two lines).
func TestBranchPoint(t *testing.T) {
	history := []byte("1\t0/3000198\tno recovery target specified\n\n2\t0/5000A10\tno recovery target specified\n")
	for tli, want := range map[int32]string{1: "0/3000198", 2: "0/5000A10"} {
		lsn, ok := branchPoint(history, tli)
		if !ok || lsn.String() != want {
			t.Errorf("timeline %d: %s, %v; want %s", tli, lsn, ok, want)
		}
	}
	if _, ok := branchPoint(history, 3); ok {
		t.Error("timeline 3 is not in the history")
	}
}
