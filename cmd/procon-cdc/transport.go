package main

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/registry"
)

// transportWarnings says which connections of cfg would carry data or credentials over a
// network unprotected: to a host that is not local, without TLS or with TLS that does not
// verify the server (anyone on the path could read the changes, or pose as the server), or
// with a password in clear. Loopback addresses and Unix sockets are exempt: nothing crosses
// a network. check prints these; run logs them at start.
func transportWarnings(cfg *config.Config) []string {
	var warns []string
	if hosts, err := pg.Protections(cfg.Postgres.DSN); err == nil { // a bad DSN is reported elsewhere
		for _, h := range hosts {
			if !isLocal(h.Host) && h.Protection < pg.Verified {
				warns = append(warns, fmt.Sprintf("postgres.dsn: %s is reached %s; use sslmode=verify-full with sslrootcert", h.Host, h.Protection))
			}
		}
	}

	k := cfg.Kafka
	if remote := remoteHosts(k.Brokers); len(remote) > 0 {
		switch {
		case !k.TLS.Enabled && k.SASL.Mechanism == "PLAIN":
			warns = append(warns, fmt.Sprintf("kafka: SASL PLAIN sends the password in clear to %s; set kafka.tls.enabled", strings.Join(remote, ", ")))
		case !k.TLS.Enabled:
			warns = append(warns, fmt.Sprintf("kafka: brokers %s are reached unencrypted; set kafka.tls.enabled", strings.Join(remote, ", ")))
		case k.TLS.InsecureSkipVerify:
			warns = append(warns, fmt.Sprintf("kafka.tls.insecure_skip_verify: the brokers %s are not verified; give kafka.tls.ca_file instead", strings.Join(remote, ", ")))
		}
	}

	r := cfg.SchemaRegistry
	if u, err := url.Parse(r.URL); err == nil && r.URL != "" && !isLocal(u.Hostname()) {
		credentials := r.Username != "" || r.Password != "" || u.User != nil
		switch {
		case u.Scheme == "http" && credentials:
			warns = append(warns, fmt.Sprintf("schema_registry.url: %s sends its basic-auth password in clear; use https", registry.RedactedURL(r.URL)))
		case u.Scheme == "http":
			warns = append(warns, fmt.Sprintf("schema_registry.url: %s is reached unencrypted; use https", registry.RedactedURL(r.URL)))
		case r.TLS.InsecureSkipVerify:
			warns = append(warns, "schema_registry.tls.insecure_skip_verify: the registry is not verified; give schema_registry.tls.ca_file instead")
		}
	}
	return warns
}

// remoteHosts returns the brokers (host:port) whose host is not local.
func remoteHosts(brokers []string) []string {
	var remote []string
	for _, b := range brokers {
		host, _, err := net.SplitHostPort(b)
		if err != nil {
			host = b
		}
		if !isLocal(host) {
			remote = append(remote, b)
		}
	}
	return remote
}

// isLocal reports whether host (a name, an address, or a Unix socket directory) is reached
// without crossing a network.
func isLocal(host string) bool {
	if strings.HasPrefix(host, "/") || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
