package pg

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Several hosts in one DSN (host=a,b or postgres://u@a:5432,b:5432/db) are pgx's failover:
// it tries them in order, and with target_session_attrs=read-write (or primary) it takes the
// first that accepts writes. These functions let check look at each host on its own.

// Hosts lists the servers a DSN names, as "host:port", in the order pgx tries them, each
// once (sslmode=prefer makes pgx try each host twice: with TLS, then without).
func Hosts(dsn string) ([]string, error) {
	cfg, err := connConfig(dsn, "")
	if err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, fb := range fallbacks(&cfg.Config) {
		if a := hostAddr(fb); !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

// WritableOnly reports whether the DSN connects only to a server that accepts writes
// (target_session_attrs read-write or primary, in the DSN or PGTARGETSESSIONATTRS): with
// several hosts, that is what makes a connection find the primary among them.
func WritableOnly(dsn string) (bool, error) {
	cfg, err := connConfig(dsn, "")
	if err != nil {
		return false, err
	}
	if cfg.ValidateConnect == nil {
		return false, nil
	}
	// pgconn keeps the attribute only as the function that checks it.
	f := reflect.ValueOf(cfg.ValidateConnect).Pointer()
	return f == reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsReadWrite).Pointer() ||
		f == reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsPrimary).Pointer(), nil
}

// ConnectHost opens a connection as Connect does, but to host (one of Hosts' entries) alone,
// whatever the server's role: a standby is connected to although the DSN asks for a primary.
func ConnectHost(ctx context.Context, dsn, host, application string) (*pgx.Conn, error) {
	cfg, err := connConfig(dsn, application)
	if err != nil {
		return nil, err
	}
	var mine []*pgconn.FallbackConfig
	for _, fb := range fallbacks(&cfg.Config) {
		if hostAddr(fb) == host {
			mine = append(mine, fb)
		}
	}
	if len(mine) == 0 {
		return nil, fmt.Errorf("postgres.dsn does not name host %s", host)
	}
	cfg.Host, cfg.Port, cfg.TLSConfig = mine[0].Host, mine[0].Port, mine[0].TLSConfig
	cfg.Fallbacks = mine[1:]
	cfg.ValidateConnect = nil
	return pgx.ConnectConfig(ctx, cfg)
}

// fallbacks is every connection attempt a config makes, the first host's included.
func fallbacks(cfg *pgconn.Config) []*pgconn.FallbackConfig {
	return append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port, TLSConfig: cfg.TLSConfig}}, cfg.Fallbacks...)
}

func hostAddr(fb *pgconn.FallbackConfig) string {
	return net.JoinHostPort(fb.Host, strconv.Itoa(int(fb.Port)))
}
