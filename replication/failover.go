package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/procon-cdc/procon/pg"
)

// Failover slots (PostgreSQL 17+). A slot created with FAILOVER is copied to the standbys that
// set sync_replication_slots, so that after a promotion the new primary has it, at a position
// no later than what procon-cdc confirmed. With synchronized_standby_slots naming the
// standbys' physical slots, the primary's walsender sends no logical change before those
// standbys have flushed its WAL: nothing reaches Kafka that a promoted standby lacks.

// failoverMinVersion is the first PostgreSQL major version with failover slots.
const failoverMinVersion = 17

// errOnStandby is a reconnect that reached a server in recovery. A slot synchronized to a
// standby cannot be read until the standby is promoted, so Run keeps retrying: the primary
// comes back, or the standby is promoted.
var errOnStandby = errors.New("the server is a standby (in recovery); waiting for a primary: list the hosts in postgres.dsn with target_session_attrs=read-write")

// checkFailoverVersion refuses postgres.failover on a server without failover slots.
func checkFailoverVersion(failover bool, version int) error {
	if failover && version < failoverMinVersion {
		return fmt.Errorf("postgres.failover: true needs PostgreSQL %d or later, and the server is PostgreSQL %d: "+
			"set postgres.failover: false (a slot then exists only on the primary; see the README's Failover section)", failoverMinVersion, version)
	}
	return nil
}

// createSlot creates the logical slot with pgoutput. snapshotAction is EXPORT_SNAPSHOT or
// NOEXPORT_SNAPSHOT. pglogrepl writes only the pre-15 syntax, which has no FAILOVER: a
// failover slot is created with the parenthesized options of PostgreSQL 15+.
func createSlot(ctx context.Context, conn *pgconn.PgConn, slot, snapshotAction string, failover bool) (pglogrepl.CreateReplicationSlotResult, error) {
	if !failover {
		return pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: snapshotAction})
	}
	snapshot := "nothing"
	if snapshotAction == "EXPORT_SNAPSHOT" {
		snapshot = "export"
	}
	// slot is a validated name (a-z, 0-9, _), as pglogrepl would send it.
	sql := fmt.Sprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT '%s', FAILOVER true)", slot, snapshot)
	return pglogrepl.ParseCreateReplicationSlot(conn.Exec(ctx, sql))
}

// ensureFailover makes an existing slot a failover slot. A slot created before
// postgres.failover was set would otherwise stay on the primary only, and a failover would
// lose it; ALTER_REPLICATION_SLOT needs the slot unused, which Open has made sure of. A slot
// with failover on is left as it is when postgres.failover is off: turning it off is the
// operator's decision (ALTER_REPLICATION_SLOT ... (FAILOVER false)), not a side effect.
func (s *Stream) ensureFailover(ctx context.Context) error {
	var failover bool
	if err := s.sql.QueryRow(ctx, `SELECT failover FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, s.cfg.Slot).Scan(&failover); err != nil {
		return fmt.Errorf("read slot %s's failover flag: %w", s.cfg.Slot, err)
	}
	if failover {
		return nil
	}
	if _, err := s.repl.Exec(ctx, fmt.Sprintf("ALTER_REPLICATION_SLOT %s (FAILOVER true)", s.cfg.Slot)).ReadAll(); err != nil {
		return fmt.Errorf("make slot %s a failover slot (postgres.failover): %w", s.cfg.Slot, err)
	}
	s.log.Info("slot was not a failover slot; set FAILOVER true (postgres.failover): standbys with sync_replication_slots now copy it", "slot", s.cfg.Slot)
	return nil
}

// warnFailoverSettings logs what the primary lacks for a failover slot to be safe. It does
// not refuse to start: a standby may be added later, and procon-cdc check says the rest.
func (s *Stream) warnFailoverSettings(ctx context.Context) {
	var standbySlots string
	if err := s.sql.QueryRow(ctx, "SHOW synchronized_standby_slots").Scan(&standbySlots); err != nil {
		s.log.Warn("cannot read synchronized_standby_slots", "slot", s.cfg.Slot, "err", err)
		return
	}
	if strings.TrimSpace(standbySlots) == "" {
		s.log.Warn("postgres.failover is on but synchronized_standby_slots is empty on the primary: procon-cdc can receive changes "+
			"a standby has not flushed, and after a failover Kafka would hold changes the new primary lacks; "+
			"set synchronized_standby_slots to the standby's physical slot (procon-cdc check says how)", "slot", s.cfg.Slot)
	}
}

// guardStandby refuses a reconnection that reached a server in recovery when the stream was
// opened on a primary: in_hot_standby is reported by every PostgreSQL 14+ server at startup.
func (s *Stream) guardStandby() error {
	if !s.openedOnStandby && s.repl.ParameterStatus("in_hot_standby") == "on" {
		return errOnStandby
	}
	return nil
}

// slotMissingHint explains a slot that does not exist on the server a reconnection reached.
func slotMissingHint(err error, failover bool) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42704" {
		return ""
	}
	if failover {
		return "; after a failover the slot exists on the new primary only if it was synchronized to it before the promotion " +
			"(sync_replication_slots on the standby; procon-cdc check)"
	}
	return "; after a failover the new primary has no slot unless postgres.failover is set (PostgreSQL 17+): " +
		"a new slot starts from a new snapshot, and changes between the two are not captured"
}

// isRetriable reports whether Run may retry after err.
func isRetriable(err error) bool {
	return errors.Is(err, errOnStandby) || pg.Transient(err)
}
