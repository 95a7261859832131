package testenv

import (
	"net/url"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/test/faultnet"
)

// Faults are the fault proxies between a procon-cdc and each service it reaches: PostgreSQL,
// Kafka (through its fault listener: every broker connection, the bootstrap's and those the
// client opens to the addresses Kafka advertises) and the registry. A configuration reaches the
// services through them with Faults.DSN, Faults.Brokers and Faults.RegistryURL.
type Faults struct {
	Postgres, Kafka, Registry *faultnet.Proxy

	env *Env
}

// FaultProxies starts the proxies, closed when the test ends. Kafka's listens on the fault
// listener's advertised port, which one test at a time may hold: tests that use it do not run
// in parallel.
func (e *Env) FaultProxies(t testing.TB) *Faults {
	t.Helper()
	if len(e.FaultBrokers) == 0 || e.FaultUpstream == "" {
		msg := "PROCON_KAFKA_FAULT_BROKERS is not set: restart Kafka with this tree's scripts/services (stop kafka, up) and eval its env"
		if required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	f := &Faults{env: e}
	pgURL, err := url.Parse(e.PGDSN)
	if err != nil {
		t.Fatalf("testenv: PROCON_PG_DSN: %v", err)
	}
	regURL, err := url.Parse(e.RegistryURL)
	if err != nil {
		t.Fatalf("testenv: PROCON_SCHEMA_REGISTRY_URL: %v", err)
	}
	f.Postgres = startProxy(t, "127.0.0.1:0", pgURL.Host)
	f.Kafka = startProxy(t, e.FaultBrokers[0], e.FaultUpstream)
	f.Registry = startProxy(t, "127.0.0.1:0", regURL.Host)
	return f
}

func startProxy(t testing.TB, listen, upstream string) *faultnet.Proxy {
	t.Helper()
	p, err := faultnet.Listen(listen, upstream)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// All is every proxy, to put one fault on every link.
func (f *Faults) All() []*faultnet.Proxy { return []*faultnet.Proxy{f.Postgres, f.Kafka, f.Registry} }

// DSN is dsn (a test database's) reaching PostgreSQL through the proxy.
func (f *Faults) DSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.Host = f.Postgres.Addr()
	return u.String()
}

// Brokers is the Kafka bootstrap address through the proxy.
func (f *Faults) Brokers() string { return strings.Join(f.env.FaultBrokers, ",") }

// RegistryURL is the registry's URL through the proxy.
func (f *Faults) RegistryURL() string {
	u, _ := url.Parse(f.env.RegistryURL)
	u.Host = f.Registry.Addr()
	return u.String()
}
