package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/config"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/realtime"
	"github.com/procon-cdc/procon/replication"
	"github.com/procon-cdc/procon/snapshot"
)

// prepareRealtime checks the realtime table and the columns that relations' realtime settings
// name, then adds the table to the captured relations when the table path is on: its inserts
// must reach the pipeline even when relation_configs does not list it (its changes then never
// become events). It changes nothing in the database.
func prepareRealtime(ctx context.Context, cfg *config.Config, specs map[string]replication.RelationSpec) error {
	if !cfg.RealtimeUsed() {
		return nil
	}
	if err := checkRealtime(ctx, cfg); err != nil {
		return err
	}
	if cfg.Realtime.On() {
		if _, listed := specs[cfg.Realtime.Table]; !listed {
			specs[cfg.Realtime.Table] = replication.RelationSpec{}
		}
	}
	return nil
}

func checkRealtime(ctx context.Context, cfg *config.Config) error {
	conn, err := pg.Connect(ctx, cfg.Postgres.DSN, "procon-cdc start")
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var errs []error
	if cfg.Realtime.On() {
		t := cfg.Realtime.Table
		cols, pkey, err := tableShape(ctx, conn, t)
		switch {
		case err != nil:
			return err
		case cols == nil:
			errs = append(errs, &config.FieldError{Key: "realtime.table", Problem: fmt.Sprintf(
				"table %s does not exist: create it with the SQL that `procon-cdc init-sql` prints, or set realtime.enabled: false", t)})
		case !slices.Contains(cols, "channel"):
			errs = append(errs, &config.FieldError{Key: "realtime.table", Problem: fmt.Sprintf(
				"table %s has no channel column (columns: %s); see `procon-cdc init-sql`", t, strings.Join(cols, ", "))})
		case !pkey:
			if rc, listed := cfg.Relations[t]; !listed || len(rc.PKey) == 0 {
				errs = append(errs, &config.FieldError{Key: "realtime.table", Problem: fmt.Sprintf(
					"table %s has no primary key: the cleanup deletes published rows by key, and PostgreSQL refuses deletes on a published table without one", t)})
			}
		}
		if cols != nil {
			if err := checkRealtimeWrites(ctx, conn, cfg); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, name := range cfg.SortedRelations() {
		rr := cfg.Relations[name].Realtime
		if rr == nil {
			continue
		}
		cols, _, err := tableShape(ctx, conn, name)
		if err != nil {
			return err
		}
		if cols == nil {
			continue // replication.Open reports the missing table
		}
		at := "relation_configs." + name + ".realtime"
		for _, f := range []struct{ key, source string }{{"channel", rr.Channel}, {"session_id", rr.SessionID}, {"metadata", rr.Metadata}} {
			if f.source == "" || slices.Contains(cols, f.source) {
				continue
			}
			col, _, nested := strings.Cut(f.source, ".")
			if nested && f.key != "metadata" && slices.Contains(cols, col) {
				continue
			}
			errs = append(errs, &config.FieldError{Key: at + "." + f.key, Problem: fmt.Sprintf(
				"%s has no column %q (columns: %s); write a column name or <json column>.<key>", name, col, strings.Join(cols, ", "))})
		}
	}
	return errors.Join(errs...)
}

// checkRealtimeWrites refuses a realtime table on which the cleanup's deletes would run
// another role's code (the cleanup looks again before each delete).
func checkRealtimeWrites(ctx context.Context, conn *pgx.Conn, cfg *config.Config) error {
	if !cfg.Realtime.On() || !cfg.Realtime.CleanupOn() {
		return nil
	}
	if err := pg.CheckWrites(ctx, conn, cfg.Realtime.Table, pg.Delete); err != nil {
		return &config.FieldError{Key: "realtime.table", Problem: err.Error() + " (or set realtime.cleanup: false and delete the rows yourself)"}
	}
	return nil
}

// CheckWrittenTables refuses, without changing anything, the tables procon-cdc writes on
// which its writes would run another role's code: the realtime table (the cleanup deletes from
// it), the signal table (procon-cdc snapshot inserts into it) and the snapshot progress table
// with its schema (procon-cdc's own, which only its roles may own). run refuses the same at
// start; check reports it.
func CheckWrittenTables(ctx context.Context, cfg *config.Config) error {
	conn, err := pg.Connect(ctx, cfg.Postgres.DSN, "procon-cdc check")
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var errs []error
	if err := checkRealtimeWrites(ctx, conn, cfg); err != nil {
		errs = append(errs, err)
	}
	if signal := snapshot.QualifyTable(cfg.Snapshot.SignalTable); signal != "" {
		if err := pg.CheckWrites(ctx, conn, signal, pg.Insert); err != nil {
			errs = append(errs, &config.FieldError{Key: "snapshot.signal_table", Problem: err.Error()})
		}
	}
	if err := snapshot.CheckState(ctx, conn, cfg.Postgres.Slot); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// tableShape returns the columns of a table and whether it has a primary key; nil columns when
// the table does not exist.
func tableShape(ctx context.Context, conn *pgx.Conn, name string) ([]string, bool, error) {
	schema, table := config.SplitRelation(name)
	rows, err := conn.Query(ctx, `
		SELECT a.attname,
		       EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
		FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname = $1 AND c.relname = $2
		ORDER BY a.attnum`, schema, table)
	if err != nil {
		return nil, false, fmt.Errorf("read the columns of %s: %w", name, err)
	}
	var cols []string
	var pkey bool
	for rows.Next() {
		var col string
		if err := rows.Scan(&col, &pkey); err != nil {
			return nil, false, fmt.Errorf("read the columns of %s: %w", name, err)
		}
		cols = append(cols, col)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read the columns of %s: %w", name, err)
	}
	return cols, pkey, nil
}

// RealtimeStats returns what the realtime stage holds and has dropped; zero when realtime
// notifications are not configured.
func (e *Engine) RealtimeStats() realtime.Stats { return e.rt.Stats() }

// newRealtime builds the realtime stage when the configuration uses it; nil otherwise.
func (e *Engine) newRealtime() (*realtime.Service, error) {
	cfg := e.cfg
	if !cfg.RealtimeUsed() {
		return nil, nil
	}
	r := cfg.Realtime
	rc := realtime.Config{
		Topic:                r.Topic,
		Threshold:            time.Duration(*r.RTThreshold) * time.Millisecond,
		Coalesce:             r.RTCoalesce,
		MaxPending:           r.MaxPending,
		MaxQueueBytes:        r.MaxQueueBytes,
		MaxNotificationBytes: r.MaxNotificationBytes,
		Rules:                map[string]*realtime.Rule{},
		Producer:             e.rtWriter,
		Encoder:              e.enc.ForTopic(r.Topic),
		Tracker:              e.stream.Tracker(),
		Oversize:             e.guard,
		Source:               e.source,
		Logger:               e.log.With("stage", "realtime"),
	}
	if r.On() {
		rc.Table, rc.DSN, rc.Cleanup = r.Table, cfg.Postgres.DSN, r.CleanupOn()
		_, rc.TableListed = cfg.Relations[r.Table]
	}
	if r.MessagesOn() {
		rc.Prefix = r.Prefix
	}
	for name, relc := range cfg.Relations {
		rr := relc.Realtime
		if rr == nil {
			continue
		}
		rule := &realtime.Rule{Channel: rr.Channel, SessionID: rr.SessionID, Metadata: rr.Metadata,
			Ops: map[replication.Op]bool{}, Threshold: rc.Threshold}
		if relc.RTThreshold != nil {
			rule.Threshold = time.Duration(*relc.RTThreshold) * time.Millisecond
		}
		ops := []string(rr.Operations)
		if len(ops) == 0 {
			ops = config.RealtimeOperations
		}
		for _, op := range ops {
			rule.Ops[map[string]replication.Op{"insert": replication.OpInsert, "update": replication.OpUpdate, "delete": replication.OpDelete}[op]] = true
		}
		rc.Rules[name] = rule
	}
	return realtime.New(rc)
}
