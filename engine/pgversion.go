package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/snapshot"
)

// MessagesSince is the first PostgreSQL major version whose pgoutput decodes logical decoding
// messages (its messages option). On older servers pg_logical_emit_message still writes them
// to the WAL, but no pgoutput stream ever shows them: a feature that waits for one of its own
// messages would wait forever, and one that tells transactions apart by them would guess.
const MessagesSince = 14

// serverMajor reads the major version of the server conn talks to.
func serverMajor(ctx context.Context, conn *pgx.Conn) (int, error) {
	var major int
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		return 0, fmt.Errorf("read the server's version: %w", err)
	}
	return major, nil
}

// checkServerVersion refuses, before anything is changed, the settings the server's version
// cannot serve the same way as every supported version does, naming each setting and the
// version it needs. It returns the server's major version.
func checkServerVersion(ctx context.Context, cfg *config.Config, log *slog.Logger) (int, error) {
	conn, err := pg.Connect(ctx, cfg.Postgres.DSN, "procon-cdc start")
	if err != nil {
		return 0, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	major, err := serverMajor(ctx, conn)
	if err != nil {
		return 0, err
	}
	if major >= MessagesSince {
		return major, nil
	}
	log.Info("PostgreSQL decodes no logical decoding messages before 14: pg_logical_emit_message's messages make no events", "server_version", major)
	return major, errors.Join(messageFieldErrors(cfg, major)...)
}

// NeedsMessages lists the settings of cfg that rely on logical decoding messages (so on
// PostgreSQL MessagesSince or newer), by key.
func NeedsMessages(cfg *config.Config) []string {
	var keys []string
	for _, err := range messageFieldErrors(cfg, 0) {
		var fe *config.FieldError
		if errors.As(err, &fe) {
			keys = append(keys, fe.Key)
		}
	}
	return keys
}

// messageFieldErrors lists the settings that rely on logical decoding messages, for a server
// that does not decode them.
func messageFieldErrors(cfg *config.Config, major int) []error {
	needs := func(key, what, instead string) error {
		return &config.FieldError{Key: key, Problem: fmt.Sprintf("%s relies on logical decoding messages, which PostgreSQL decodes from version %d; this server is %d: %s",
			what, MessagesSince, major, instead)}
	}
	var errs []error
	if cfg.Realtime.MessagesOn() {
		errs = append(errs, needs("realtime.messages", "turning realtime.message_prefix messages into notifications",
			"set realtime.messages: false (notifications then come from the realtime table and relation rules only)"))
	}
	if cfg.Realtime.On() && cfg.Realtime.CleanupOn() {
		if _, listed := cfg.Relations[cfg.Realtime.Table]; listed {
			errs = append(errs, needs("realtime.cleanup", fmt.Sprintf("telling the cleanup's deletes of %s (listed in relation_configs) from other deletes", cfg.Realtime.Table),
				fmt.Sprintf("set realtime.cleanup: false, or remove relation_configs.%s", cfg.Realtime.Table)))
		}
	}
	if cfg.Snapshot.SignalTable != "" {
		errs = append(errs, needs("snapshot.signal_table", "an in-stream snapshot (its watermarks)",
			"remove snapshot.signal_table; an initial snapshot (snapshot.mode: initial) works on every version"))
	}
	return errs
}

// inStreamSnapshotError is the refusal of an in-stream snapshot that the start would run (an
// interrupted initial snapshot's remainder, snapshot.mode always on an existing slot, or one
// recorded running) on a server that decodes no logical decoding messages: its watermarks
// would never come back.
func inStreamSnapshotError(cfg *config.Config, major int, d snapshot.Decision, running []*snapshot.Snapshot) error {
	if major >= MessagesSince {
		return nil
	}
	var what string
	switch {
	case d.Resume != nil:
		what = "the interrupted initial snapshot of slot " + cfg.Postgres.Slot + " resumes in the stream"
	case d.Full:
		what = "snapshot.mode " + cfg.Snapshot.Mode + " on the existing slot " + cfg.Postgres.Slot + " snapshots in the stream"
	case len(running) > 0:
		what = "the interrupted in-stream snapshot " + running[0].ID + " of slot " + cfg.Postgres.Slot + " would resume"
	default:
		return nil
	}
	return &config.FieldError{Key: "snapshot.mode", Problem: fmt.Sprintf(
		"%s, between watermarks that are logical decoding messages, which PostgreSQL decodes from version %d; this server is %d: "+
			"start again from a new slot (procon-cdc drop, then run: the initial snapshot runs whole before streaming), or use PostgreSQL %d or newer",
		what, MessagesSince, major, MessagesSince)}
}

// CheckServerVersion is the start's check of the server's version, for procon-cdc check: it
// returns the server's major version and the settings it cannot serve, each a
// *config.FieldError (joined), or the error that kept it from asking.
func CheckServerVersion(ctx context.Context, cfg *config.Config) (int, error) {
	return checkServerVersion(ctx, cfg, slog.New(slog.DiscardHandler))
}
