package pg

import (
	"crypto/tls"
)

// Protection is how well a connection to one host is protected, weakest first.
type Protection int

const (
	// Plain: no TLS, or TLS that may silently be skipped (sslmode allow, prefer).
	Plain Protection = iota
	// Unverified: encrypted, but the server's certificate is not checked (sslmode require
	// without sslrootcert): a man in the middle is not noticed.
	Unverified
	// CAVerified: the certificate is checked against the CA but not against the host name
	// (sslmode verify-ca).
	CAVerified
	// Verified: the certificate and the host name are checked (sslmode verify-full).
	Verified
)

func (p Protection) String() string {
	switch p {
	case Plain:
		return "unencrypted (sslmode disable, allow or prefer)"
	case Unverified:
		return "encrypted but the server is not verified (sslmode require)"
	case CAVerified:
		return "encrypted, the certificate verified but not the host name (sslmode verify-ca)"
	default:
		return "encrypted and verified (sslmode verify-full)"
	}
}

// HostProtection is how a DSN reaches one of its hosts.
type HostProtection struct {
	Host       string // a name, an address, or a Unix socket's directory
	Protection Protection
}

// Protections says, for each host a DSN names, the weakest protection its connections can
// have (with sslmode prefer, a server without TLS is used unencrypted, so it counts as Plain).
// Environment variables (PGSSLMODE, ...) count as they do for Connect.
func Protections(dsn string) ([]HostProtection, error) {
	cfg, err := connConfig(dsn, "")
	if err != nil {
		return nil, err
	}
	var out []HostProtection
	index := map[string]int{}
	add := func(host string, t *tls.Config) {
		p := protection(t)
		if i, ok := index[host]; ok {
			out[i].Protection = min(out[i].Protection, p)
			return
		}
		index[host] = len(out)
		out = append(out, HostProtection{Host: host, Protection: p})
	}
	add(cfg.Host, cfg.TLSConfig)
	for _, f := range cfg.Fallbacks {
		add(f.Host, f.TLSConfig)
	}
	return out, nil
}

// protection classifies a TLS configuration as pgx builds it from sslmode.
func protection(t *tls.Config) Protection {
	switch {
	case t == nil:
		return Plain
	case !t.InsecureSkipVerify:
		return Verified
	case t.VerifyPeerCertificate != nil:
		return CAVerified
	default:
		return Unverified
	}
}
