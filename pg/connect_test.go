package pg

import (
	"context"
	"maps"
	"strings"
	"testing"
)

// TestPinnedSettings checks the startup parameters of both kinds of connection: the output
// settings, search_path and row_security win over any spelling of them in the DSN
// (PostgreSQL matches names case-insensitively and pgconn sends its map in random order), and
// the DSN's own application_name is kept. A DSN's options are kept as they are: the server
// applies them before the startup parameters, so the pinned ones still win (the integration
// test TestPGConnectPinsSearchPath shows it on a real server).
func TestPinnedSettings(t *testing.T) {
	want := OutputSettings()
	want["search_path"] = "pg_catalog, pg_temp"
	want["row_security"] = "off"
	for _, tc := range []struct {
		dsn, application string
	}{
		{"postgres://u:pw@db:5432/app?timezone=Asia/Tokyo&datestyle=SQL&LC_MONETARY=de_DE&bytea_output=escape", "procon-cdc"},
		{"host=db user=u dbname=app TimeZone=Asia/Tokyo IntervalStyle=iso_8601 extra_float_digits=0", "procon-cdc snapshot"},
		{"postgres://u@db/app?application_name=orders-cdc", "procon-cdc"},
		{"host=db application_name=orders-cdc", ""},
		{"postgres://u@db/app?default_query_exec_mode=simple_protocol&statement_cache_capacity=0", "procon-cdc"}, // pgx's keys, not settings
		{"postgres://u@db/app?search_path=public&Row_Security=on", "procon-cdc"},
		{"host=db SEARCH_PATH='$user,public' row_security=on", "procon-cdc"},
	} {
		wantApp := tc.application
		if strings.Contains(tc.dsn, "application_name=") {
			wantApp = "orders-cdc"
		}
		cfg, err := connConfig(tc.dsn, tc.application)
		if err != nil {
			t.Fatalf("connConfig(%q): %v", tc.dsn, err)
		}
		rcfg, err := replicationConfig(tc.dsn, tc.application)
		if err != nil {
			t.Fatalf("replicationConfig(%q): %v", tc.dsn, err)
		}
		for kind, params := range map[string]map[string]string{"conn": cfg.RuntimeParams, "replication": rcfg.RuntimeParams} {
			got := maps.Clone(params)
			if app := got["application_name"]; app != wantApp {
				t.Errorf("%s %q: application_name %q, want %q", kind, tc.dsn, app, wantApp)
			}
			delete(got, "application_name")
			if kind == "replication" {
				if got["replication"] != "database" {
					t.Errorf("replication %q: replication=%q, want database", tc.dsn, got["replication"])
				}
				delete(got, "replication")
			}
			if !maps.Equal(got, want) {
				t.Errorf("%s %q: startup parameters %v, want %v", kind, tc.dsn, got, want)
			}
		}
	}
}

// TestDSNErrorsHideTheDSN: a DSN that does not parse is reported under its key, with pgx's
// reason when that reason quotes nothing, and never with the DSN's text. The first cases are
// ones pgx's own best-effort redaction shows verbatim.
func TestDSNErrorsHideTheDSN(t *testing.T) {
	const secret = "s3cret-Pw"
	for _, tc := range []struct{ dsn, reason string }{
		{"user=u password = " + secret + " port=99999999999", "invalid port"},
		{"host=db passwrd " + secret, "failed to parse as keyword/value"},
		{"host=db connect_timeout=5password=" + secret, "invalid connect_timeout"},
		{"host=db password=" + secret + " target_session_attrs=" + secret, "not a valid connection string"},
		{"postgres://u:" + secret + "@db:port/app", "invalid port"},
		{"postgres://u:s3cret Pw@db/app", "failed to parse as URL"},
		{"postgres://u:" + secret + "@db/app?sslmode=bogus", "failed to configure TLS"},
	} {
		_, err := Connect(context.Background(), tc.dsn, "procon-cdc")
		_, rerr := ConnectReplication(context.Background(), tc.dsn, "procon-cdc")
		for _, err := range []error{err, rerr} {
			if err == nil {
				t.Fatalf("%q parsed", tc.dsn)
			}
			msg := err.Error()
			if strings.Contains(msg, "s3cret") || strings.Contains(msg, "Pw") {
				t.Errorf("the error shows the password: %s", msg)
			}
			if !strings.HasPrefix(msg, "postgres.dsn: "+tc.reason) {
				t.Errorf("error %q, want it to start with %q", msg, "postgres.dsn: "+tc.reason)
			}
		}
	}
}

// TestConnectErrorsHideThePassword: a connection that fails (nothing listens) names the user
// and database, not the password.
func TestConnectErrorsHideThePassword(t *testing.T) {
	dsn := "postgres://procon:s3cret-Pw@127.0.0.1:1/app?sslmode=disable"
	_, err := Connect(context.Background(), dsn, "procon-cdc")
	_, rerr := ConnectReplication(context.Background(), dsn, "procon-cdc")
	for _, err := range []error{err, rerr} {
		if err == nil {
			t.Fatal("connected to port 1")
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
		if !Transient(err) {
			t.Errorf("a refused connection is not transient: %v", err)
		}
	}
}
