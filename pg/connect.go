package pg

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OutputSettings are the session settings that shape the text of values. pgoutput writes
// values with the walsender's output functions under the replication connection's settings,
// and every other connection that reads values as text (snapshots) or sends them back as text
// (the realtime cleanup's keys) must use the same ones, or a timestamp, interval, float, bytea
// or money value would render, or parse back, differently. A new map is returned each time.
func OutputSettings() map[string]string {
	return map[string]string{
		"DateStyle":          "ISO, MDY",
		"TimeZone":           "UTC",
		"IntervalStyle":      "postgres",
		"extra_float_digits": "3",
		"bytea_output":       "hex",
		"lc_monetary":        "C",
	}
}

// SearchPath is the search_path of every session Procon opens: the catalog, then the
// session's own temporary schema (named last, or it would be searched first for tables and
// types). No other role can create anything there, so no function, operator, type or table
// another role made can stand in for the catalog's (a public.unnest(bigint[]) would otherwise
// win over pg_catalog.unnest(anyarray) as the closer match). Procon's SQL names every other
// relation with its schema.
const SearchPath = "pg_catalog, pg_temp"

// guardSettings are pinned on every connection beside OutputSettings, for safety rather than
// rendering: SearchPath, and row_security off, which makes a statement that a row security
// policy would filter fail instead (naming the table): a policy would silently hide rows from
// a snapshot or a cleanup, and run its expressions with Procon's role.
func guardSettings() map[string]string {
	return map[string]string{"search_path": SearchPath, "row_security": "off"}
}

// Connect opens a connection to dsn with OutputSettings and SearchPath pinned, whatever the
// server's, database's or role's defaults (and whatever the DSN says of them, in its own
// parameters or in options: PostgreSQL applies options first, then the other startup
// parameters). application names the
// connection in pg_stat_activity unless the DSN (or PGAPPNAME) already names it. A DSN that
// does not parse gives an error naming postgres.dsn that never shows the DSN; connection
// errors are pgx's.
func Connect(ctx context.Context, dsn, application string) (*pgx.Conn, error) {
	cfg, err := connConfig(dsn, application)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

func connConfig(dsn, application string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, dsnError(err)
	}
	pin(cfg.RuntimeParams, application)
	boundConnect(&cfg.Config)
	return cfg, nil
}

// ApplicationName is the application_name of a connection to dsn opened for application: the
// DSN's own, if it sets one.
func ApplicationName(dsn, application string) (string, error) {
	cfg, err := connConfig(dsn, application)
	if err != nil {
		return "", err
	}
	return param(cfg.RuntimeParams, "application_name"), nil
}

// ConnectReplication opens a logical replication connection (replication=database) to dsn
// with the same settings as Connect: the walsender renders pgoutput's values under them.
func ConnectReplication(ctx context.Context, dsn, application string) (*pgconn.PgConn, error) {
	cfg, err := replicationConfig(dsn, application)
	if err != nil {
		return nil, err
	}
	return pgconn.ConnectConfig(ctx, cfg)
}

// replicationConfig is connConfig's with replication=database. pgx's parser, not pgconn's, so
// that pgx's own DSN keys (statement_cache_capacity, default_query_exec_mode) are taken out
// rather than sent to the walsender as settings it does not know.
func replicationConfig(dsn, application string) (*pgconn.Config, error) {
	cfg, err := connConfig(dsn, application)
	if err != nil {
		return nil, err
	}
	setParam(cfg.RuntimeParams, "replication", "database")
	return &cfg.Config, nil
}

// DefaultConnectTimeout bounds a connection attempt, the server's answer to the startup
// included, when the DSN sets no connect_timeout. libpq waits for ever; behind a partition
// that leaves the server unanswering, a reconnection would then hang until TCP gives up,
// minutes later, instead of trying again (and another host of the DSN) as soon as the path
// is back.
const DefaultConnectTimeout = 30 * time.Second

func boundConnect(cfg *pgconn.Config) {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
}

// pin sets the output settings, the guard settings and the application name in a
// connection's startup parameters.
func pin(params map[string]string, application string) {
	for k, v := range OutputSettings() {
		setParam(params, k, v)
	}
	for k, v := range guardSettings() {
		setParam(params, k, v)
	}
	if application != "" && param(params, "application_name") == "" {
		params["application_name"] = application
	}
}

// setParam sets a startup parameter, replacing any spelling of it the DSN used: PostgreSQL
// matches setting names case-insensitively, and pgconn sends its map in random order, so a
// DSN's "timezone" beside our "TimeZone" would win half the time.
func setParam(params map[string]string, name, value string) {
	for k := range params {
		if strings.EqualFold(k, name) {
			delete(params, k)
		}
	}
	params[name] = value
}

func param(params map[string]string, name string) string {
	for k, v := range params {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// dsnReasons are the reasons pgx gives for a DSN it cannot parse that hold no part of the DSN,
// so they can be shown. Other reasons can quote a value, and a value of a malformed DSN can be
// a password (a missing space makes "connect_timeout=5password=…" one value), so they are left
// out with the DSN.
var dsnReasons = []string{
	"failed to parse as URL",
	"failed to parse as keyword/value",
	"invalid port",
	"invalid connect_timeout",
	"invalid sslcertmode",
	"failed to configure TLS",
	"failed to read service",
	"invalid require_auth",
}

// dsnError reports a DSN that does not parse without its text. pgconn's ParseConfigError masks
// the passwords it recognises, but by its own account only on a best-effort basis: it shows
// "password = secret" (spaces around '=', which it accepts) and a misspelt "passwrd secret"
// verbatim.
func dsnError(err error) error {
	const hidden = " (the DSN is not shown: it may hold a password)"
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		bare := *pce
		bare.ConnString = ""
		text := strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
		for _, r := range dsnReasons {
			if text == r || strings.HasPrefix(text, r+" (") {
				return fmt.Errorf("postgres.dsn: %s%s", r, hidden)
			}
		}
	}
	return errors.New("postgres.dsn: not a valid connection string; write a URL (postgres://user:password@host:5432/db) or key=value pairs" + hidden)
}

// NewPool opens a pool of at most maxConns connections to dsn, each set up as Connect sets up
// one.
func NewPool(ctx context.Context, dsn, application string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, dsnError(err)
	}
	pin(cfg.ConnConfig.RuntimeParams, application)
	boundConnect(&cfg.ConnConfig.Config)
	cfg.MaxConns = maxConns
	return pgxpool.NewWithConfig(ctx, cfg)
}
