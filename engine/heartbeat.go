package engine

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/retrylog"
)

// runHeartbeats asks the pipeline for a heartbeat record every debezium.heartbeat.interval.ms,
// after running debezium.heartbeat.action.query, until ctx ends. The query runs here, not on
// the pipeline goroutine: a slow or hanging query must not hold the stream up.
func (e *Engine) runHeartbeats(ctx context.Context) {
	ms := e.cfg.Debezium.HeartbeatIntervalMS
	if ms <= 0 {
		return
	}
	action := &heartbeatAction{dsn: e.cfg.Postgres.DSN, query: e.cfg.Debezium.HeartbeatActionQuery, log: e.log}
	defer action.close()
	t := time.NewTicker(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			action.run(ctx)
			e.pipe.Heartbeat()
		}
	}
}

// heartbeatAction runs debezium.heartbeat.action.query before each heartbeat, as Debezium
// does, on a connection of its own (opened on first use, reopened after an error). Procon does
// not need it to advance an idle slot; it is there for what users make it do (a heartbeat
// table other consumers watch). A failure is logged and the next heartbeat tries again:
// unlike Debezium, a broken action query does not stop the stream.
type heartbeatAction struct {
	dsn, query string
	log        *slog.Logger
	conn       *pgx.Conn
	failing    retrylog.Outage
}

func (h *heartbeatAction) run(ctx context.Context) {
	if h.query == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if h.conn == nil {
		conn, err := pg.Connect(ctx, h.dsn, "procon-cdc heartbeat")
		if err != nil {
			if ctx.Err() == nil {
				h.failing.Failed(h.log, "heartbeat.action.query: cannot connect; trying again at the next heartbeat", err)
			}
			return
		}
		h.conn = conn
	}
	if _, err := h.conn.Exec(ctx, h.query); err != nil {
		var args []any
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "42883" || pgErr.Code == "42704") {
			args = append(args, "hint", "it runs with search_path "+pg.SearchPath+": name tables, functions and types with their schema (public.heartbeat)")
		}
		h.failing.Failed(h.log, "heartbeat.action.query failed; trying again at the next heartbeat", err, args...)
		h.close()
		return
	}
	h.failing.Recovered(h.log, "heartbeat.action.query runs again")
}

func (h *heartbeatAction) close() {
	if h.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.conn.Close(ctx)
		h.conn = nil
	}
}
