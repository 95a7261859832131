package main

import (
	"strings"
	"testing"

	"github.com/procon-cdc/procon/config"
)

func TestTransportWarnings(t *testing.T) {
	cases := []struct {
		name string
		edit func(c *config.Config)
		want []string // one substring per expected warning, in order
	}{
		{"all local", func(c *config.Config) {}, nil},
		{"unix socket", func(c *config.Config) { c.Postgres.DSN = "host=/var/run/postgresql dbname=x" }, nil},
		{"remote postgres, default sslmode", func(c *config.Config) { c.Postgres.DSN = "postgres://u:secret@db.example:5432/x" },
			[]string{"postgres.dsn: db.example is reached unencrypted (sslmode disable, allow or prefer)"}},
		{"remote postgres, require", func(c *config.Config) { c.Postgres.DSN = "host=db.example password=secret sslmode=require" },
			[]string{"db.example is reached encrypted but the server is not verified"}},
		{"remote postgres, verify-full", func(c *config.Config) { c.Postgres.DSN = "host=db.example sslmode=verify-full" }, nil},
		{"one of two hosts remote", func(c *config.Config) { c.Postgres.DSN = "postgres://127.0.0.1:1,db2.example:5432/x?sslmode=disable" },
			[]string{"db2.example is reached unencrypted"}},
		{"remote kafka in clear", func(c *config.Config) { c.Kafka.Brokers = []string{"127.0.0.1:9092", "k1.example:9092"} },
			[]string{"kafka: brokers k1.example:9092 are reached unencrypted"}},
		{"SASL PLAIN in clear", func(c *config.Config) {
			c.Kafka.Brokers = []string{"k1.example:9092"}
			c.Kafka.SASL = config.SASL{Mechanism: "PLAIN", Username: "u", Password: "secret"}
		}, []string{"kafka: SASL PLAIN sends the password in clear to k1.example:9092"}},
		{"kafka TLS unverified", func(c *config.Config) {
			c.Kafka.Brokers = []string{"k1.example:9093"}
			c.Kafka.TLS = config.TLS{Enabled: true, InsecureSkipVerify: true}
		}, []string{"kafka.tls.insecure_skip_verify"}},
		{"kafka TLS", func(c *config.Config) {
			c.Kafka.Brokers = []string{"k1.example:9093"}
			c.Kafka.TLS = config.TLS{Enabled: true}
		}, nil},
		{"registry basic auth in clear", func(c *config.Config) { c.SchemaRegistry.URL = "http://u:secret@registry.example:8081" },
			[]string{"schema_registry.url: http://u:xxxxx@registry.example:8081 sends its basic-auth password in clear"}},
		{"registry in clear", func(c *config.Config) { c.SchemaRegistry.URL = "http://registry.example:8081" },
			[]string{"schema_registry.url: http://registry.example:8081 is reached unencrypted"}},
		{"registry https unverified", func(c *config.Config) {
			c.SchemaRegistry.URL = "https://registry.example"
			c.SchemaRegistry.TLS.InsecureSkipVerify = true
		}, []string{"schema_registry.tls.insecure_skip_verify"}},
		{"registry local http", func(c *config.Config) { c.SchemaRegistry.URL = "http://u:p@localhost:8081" }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &config.Config{
				Postgres: config.Postgres{DSN: "postgres://u:p@127.0.0.1:5432/x?sslmode=disable"},
				Kafka:    config.Kafka{Brokers: []string{"127.0.0.1:9092", "[::1]:9092", "localhost:9092"}},
			}
			tc.edit(c)
			got := transportWarnings(c)
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %q does not contain %q", got[i], w)
				}
			}
			for _, g := range got {
				if strings.Contains(g, "secret") {
					t.Errorf("warning shows a password: %s", g)
				}
			}
		})
	}
}
