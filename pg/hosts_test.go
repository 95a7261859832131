package pg

import (
	"slices"
	"testing"
)

// TestHosts pins how check reads a DSN's hosts and whether it finds the primary among them:
// both DSN forms, a host's default port, sslmode=prefer's second attempt per host listed once,
// and target_session_attrs in either spelling of a writable server.
func TestHosts(t *testing.T) {
	for _, tc := range []struct {
		dsn      string
		hosts    []string
		writable bool
	}{
		{"postgres://u@a:5432,b:5433/db?sslmode=disable&target_session_attrs=read-write", []string{"a:5432", "b:5433"}, true},
		{"host=a,b port=5432,5433 dbname=db sslmode=prefer target_session_attrs=primary", []string{"a:5432", "b:5433"}, true},
		{"postgres://u@a,b/db?sslmode=disable", []string{"a:5432", "b:5432"}, false},
		{"postgres://u@a/db?sslmode=disable&target_session_attrs=standby", []string{"a:5432"}, false},
		{"host=a dbname=db sslmode=disable target_session_attrs=any", []string{"a:5432"}, false},
	} {
		hosts, err := Hosts(tc.dsn)
		if err != nil {
			t.Fatalf("Hosts(%q): %v", tc.dsn, err)
		}
		if !slices.Equal(hosts, tc.hosts) {
			t.Errorf("Hosts(%q) = %v, want %v", tc.dsn, hosts, tc.hosts)
		}
		writable, err := WritableOnly(tc.dsn)
		if err != nil || writable != tc.writable {
			t.Errorf("WritableOnly(%q) = %v, %v; want %v", tc.dsn, writable, err, tc.writable)
		}
	}
}
