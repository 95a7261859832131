package integration

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestTLSEverywhere runs procon-cdc as a production setup would: PostgreSQL with
// sslmode=verify-full against the services' CA, Kafka over TLS with SASL/SCRAM-SHA-512, and the
// schema registry over HTTPS. Events arrive, every connection procon-cdc opens to PostgreSQL
// (the walsender's included) is encrypted, and with no CA to verify against every one of the
// three is refused rather than used unverified.
func TestTLSEverywhere(t *testing.T) {
	s := newSetup(t, `public.secured: {}`, "")
	env := s.env
	if len(env.TLSBrokers) == 0 || env.RegistryTLSURL == "" || env.TLSCA == "" {
		msg := "PROCON_KAFKA_TLS_BROKERS, PROCON_SCHEMA_REGISTRY_TLS_URL and PROCON_TLS_CA are not set: restart the services with this tree's scripts/services"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dsn, err := url.Parse(s.db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	q := dsn.Query()
	q.Set("sslmode", "verify-full")
	q.Set("sslrootcert", env.TLSCA)
	dsn.RawQuery = q.Encode()

	// secure writes the configuration with ca as every CA file ("" leaves the system's roots,
	// which do not know the services' CA).
	original := s.config
	secure := func(ca string) string {
		c := strings.Replace(original, "dsn: "+s.db.DSN, "dsn: '"+dsn.String()+"'", 1)
		if ca == "" {
			c = strings.Replace(c, "&sslrootcert="+url.QueryEscape(env.TLSCA), "", 1)
		}
		c = strings.Replace(c, "brokers: "+strings.Join(env.Brokers, ","), "brokers: "+strings.Join(env.TLSBrokers, ",")+
			"\n  tls: {enabled: true, ca_file: '"+ca+"'}"+
			"\n  sasl: {mechanism: SCRAM-SHA-512, username: "+env.SASLUser+", password: "+env.SASLPassword+"}", 1)
		return c + "serialization: avro\ndebezium:\n  schema.name.adjustment.mode: avro\nschema_registry:\n  url: " + env.RegistryTLSURL +
			"\n  tls: {enabled: true, ca_file: '" + ca + "'}\n"
	}
	s.db.Exec(t, `CREATE TABLE secured (id int PRIMARY KEY, note text)`)

	s.config = secure(env.TLSCA)
	out, err := exec.Command(testenv.ProconBinary(t), "check", "--config", writeConfig(t, s.config)).CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{"ok    kafka", "ok    schema registry"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "warn  transport") {
		t.Errorf("check warns about a protected local setup:\n%s", out)
	}

	run := s.startEngine(t)
	s.db.Exec(t, `INSERT INTO secured SELECT g, 'n' || g FROM generate_series(1, 3) g`)
	testenv.WaitFor(t, time.Minute, "3 records through TLS", func() (bool, error) {
		return s.countIfExists(t, s.topic("secured")) == 3, nil
	})
	var plain, encrypted int
	err = s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl)
		FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
		WHERE a.application_name LIKE 'procon-cdc%' AND a.datname = current_database()`).Scan(&plain, &encrypted)
	if err != nil {
		t.Fatal(err)
	}
	if plain != 0 || encrypted < 2 { // at least the walsender and the catalog connection
		t.Errorf("procon-cdc's connections: %d unencrypted, %d encrypted", plain, encrypted)
	}
	run.stop(t)

	// Without the CA, nothing is used unverified: check names each of the three.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err = exec.CommandContext(ctx, testenv.ProconBinary(t), "check", "--config", writeConfig(t, secure(""))).CombinedOutput()
	t.Logf("check without the CA:\n%s", out)
	if err == nil {
		t.Fatalf("check passed without the CA:\n%s", out)
	}
	for _, want := range []string{"error postgres", "error kafka", "error schema registry", "certificate signed by unknown authority"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check without the CA: output lacks %q:\n%s", want, out)
		}
	}
}
