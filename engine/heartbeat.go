package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// heartbeatAction runs debezium.heartbeat.action.query before each heartbeat, as Debezium
// does, on a connection of its own (opened on first use, reopened after an error). Procon does
// not need it to advance an idle slot; it is there for what users make it do (a heartbeat
// table other consumers watch). A failure is logged and the next heartbeat tries again:
// unlike Debezium, a broken action query does not stop the stream.
type heartbeatAction struct {
	dsn, query string
	log        *slog.Logger
	conn       *pgx.Conn
}

func (h *heartbeatAction) run(ctx context.Context) {
	if h == nil || h.query == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if h.conn == nil {
		conn, err := pgx.Connect(ctx, h.dsn)
		if err != nil {
			h.log.Warn("heartbeat.action.query: cannot connect; trying again at the next heartbeat", "err", err)
			return
		}
		h.conn = conn
	}
	if _, err := h.conn.Exec(ctx, h.query); err != nil {
		h.log.Warn("heartbeat.action.query failed; trying again at the next heartbeat", "err", err)
		h.close()
	}
}

func (h *heartbeatAction) close() {
	if h != nil && h.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.conn.Close(ctx)
		h.conn = nil
	}
}
