package replication

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
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

// warnFailoverSettings logs what the primary's synchronized_standby_slots lacks for a
// failover slot to be safe (check's findings on it). It does not refuse to start: a standby
// may be added later, and a primary that has just been promoted has none yet.
func (s *Stream) warnFailoverSettings(ctx context.Context) {
	checkStandbySlots(ctx, s.sql, func(level, subject, format string, args ...any) {
		if level != "ok" {
			s.log.Warn("postgres.failover: a failover could lose changes or stall the stream; procon-cdc check says what to set",
				"slot", s.cfg.Slot, "setting", subject, "problem", fmt.Sprintf(format, args...))
		}
	})
}

// guardStandby refuses a reconnection that reached a server in recovery when the stream was
// opened on a primary: in_hot_standby is reported by every PostgreSQL 14+ server at startup.
func (s *Stream) guardStandby() error {
	if !s.openedOnStandby && s.repl.ParameterStatus("in_hot_standby") == "on" {
		return errOnStandby
	}
	return nil
}

// errDiverged is a reconnection that reached a server whose WAL is not the continuation of
// what the stream read: a promoted standby that lacks WAL the stream already received, or
// another cluster. Streaming on would skip its transactions up to the position the stream
// asks for, and Kafka may hold changes it does not have: Run stops, confirming nothing more.
var errDiverged = errors.New("the server's WAL does not continue what procon-cdc read")

// checkTimeline compares the server a reconnection reached with the one the stream read. A
// server on a new timeline is a promoted standby; its timeline history says where it
// branched off the timeline the stream read, and every WAL position the stream received
// must lie before that point. With synchronized_standby_slots that always holds: the old
// primary sent nothing the standby had not flushed, and a promotion keeps all of it.
func (s *Stream) checkTimeline(ctx context.Context) error {
	sys, err := pglogrepl.IdentifySystem(ctx, s.repl)
	if err != nil {
		return fmt.Errorf("identify the server: %w", err)
	}
	if sys.SystemID != s.system.SystemID {
		return fmt.Errorf("%w: the server has system identifier %s, not %s: it is another database cluster; check postgres.dsn's hosts",
			errDiverged, sys.SystemID, s.system.SystemID)
	}
	if sys.Timeline == s.system.Timeline {
		return nil
	}
	hist, err := pglogrepl.TimelineHistory(ctx, s.repl, sys.Timeline)
	if err != nil {
		return fmt.Errorf("read the history of timeline %d: %w", sys.Timeline, err)
	}
	branch, ok := branchPoint(hist.Content, s.system.Timeline)
	if !ok {
		return fmt.Errorf("%w: the server's timeline %d does not descend from timeline %d, which procon-cdc read; check postgres.dsn's hosts",
			errDiverged, sys.Timeline, s.system.Timeline)
	}
	if branch < s.received {
		return fmt.Errorf("%w: the server is a promoted standby whose timeline %d branched off at %s, before WAL procon-cdc had already received (up to %s): "+
			"Kafka may hold changes it lacks, and reading on would skip its own transactions up to there; "+
			"synchronized_standby_slots on the primary prevents this (README: Failover). procon-cdc stopped without confirming anything further: "+
			"compare Kafka with the database, then drop the slot (procon-cdc drop) and start again with a snapshot",
			errDiverged, sys.Timeline, branch, s.received)
	}
	s.log.Info("the server is on a new timeline (a promoted standby) and has all WAL procon-cdc received",
		"slot", s.cfg.Slot, "timeline", sys.Timeline, "previous_timeline", s.system.Timeline, "branch_lsn", branch.String(), "received_lsn", s.received.String())
	s.system.Timeline = sys.Timeline
	return nil
}

// Lineage is what a stream read: the cluster (system identifier), the timeline and the
// highest WAL position it received. A later stream of the same process is opened After it.
type Lineage struct {
	SystemID  string
	Timeline  int32
	Received  pglogrepl.LSN
	OnStandby bool // the stream was opened on a standby (in recovery)
}

// Lineage says what the stream has read so far; call it once Run has returned. A stream opened
// After another and not yet past it keeps the earlier one's position.
func (s *Stream) Lineage() Lineage {
	return Lineage{SystemID: s.system.SystemID, Timeline: s.system.Timeline, Received: s.received, OnStandby: s.openedOnStandby}
}

// checkContinues holds a stream Open just identified to what an earlier stream of this process
// read (Config.After), as checkTimeline holds a reconnection: the earlier stream's engine
// stopped when its lock's session ended (a primary that crashed, say), and the new one must
// not read on from a promoted standby that lacks what the earlier one received. The partition
// tails in Kafka would then skip the standby's own transactions up to there.
func (s *Stream) checkContinues(ctx context.Context, prev Lineage) error {
	if prev.SystemID == "" {
		return nil // the earlier stream never identified a server
	}
	if !prev.OnStandby && s.openedOnStandby {
		return errOnStandby // a primary's standby, not yet promoted: Transient
	}
	opened := s.system
	s.system.SystemID, s.system.Timeline, s.received = prev.SystemID, prev.Timeline, prev.Received
	err := s.checkTimeline(ctx)
	s.system = opened
	return err
}

// branchPoint finds in a timeline history file (lines of "parent timeline, switch point,
// reason", tab-separated) where timeline tli ended.
func branchPoint(history []byte, tli int32) (pglogrepl.LSN, bool) {
	for line := range strings.SplitSeq(string(history), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") || fields[0] != strconv.Itoa(int(tli)) {
			continue
		}
		lsn, err := pglogrepl.ParseLSN(fields[1])
		if err != nil {
			return 0, false
		}
		return lsn, true
	}
	return 0, false
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

// Transient reports whether Open or Run may succeed when tried again after err: PostgreSQL's
// transient errors (pg.Transient), and a server in recovery reached where the stream needs a
// primary (a failover under way).
func Transient(err error) bool {
	return errors.Is(err, errOnStandby) || errors.Is(err, errServerSilent) || pg.Transient(err)
}

// checkFailover is Check's part for postgres.failover: on the primary (conn), the slot's
// failover flag and synchronized_standby_slots; through the DSN's other hosts, each standby's
// settings (they can only be read there). Each finding says what to set, and where.
func checkFailover(ctx context.Context, conn *pgx.Conn, cfg Config) []Finding {
	var out []Finding
	add := func(level, subject, format string, args ...any) {
		out = append(out, Finding{Level: level, Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	var version int
	var inRecovery bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('server_version_num')::int / 10000, pg_catalog.pg_is_in_recovery()`).Scan(&version, &inRecovery); err != nil {
		add("error", "failover", "read the server version: %v", err)
		return out
	}
	if err := checkFailoverVersion(true, version); err != nil {
		add("error", "failover", "%v", err)
		return out
	}
	if inRecovery {
		add("error", "failover", "postgres.dsn reached a standby: with postgres.failover it must reach the primary; list the hosts with target_session_attrs=read-write")
		return out
	}

	var failover *bool
	err := conn.QueryRow(ctx, `SELECT failover FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, cfg.Slot).Scan(&failover)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		add("ok", "failover", "slot %s does not exist yet; run creates it with FAILOVER", cfg.Slot)
	case err != nil:
		add("error", "failover", "read slot %s: %v", cfg.Slot, err)
	case failover == nil || !*failover:
		add("ok", "failover", "slot %s is not a failover slot yet; run sets FAILOVER on it at start", cfg.Slot)
	default:
		add("ok", "failover", "slot %s is a failover slot", cfg.Slot)
	}

	standbySlots := checkStandbySlots(ctx, conn, add)

	hosts, err := pg.Hosts(cfg.DSN)
	if err != nil {
		add("error", "failover", "%v", err)
		return out
	}
	if len(hosts) < 2 {
		add("warn", "failover", "postgres.dsn names one host: after a failover procon-cdc reaches the new primary only if that name moves to it, "+
			"and check cannot read the standbys' settings; list the standbys too, e.g. postgres://user@primary:5432,standby:5432/db?target_session_attrs=read-write")
		return out
	}
	if writable, err := pg.WritableOnly(cfg.DSN); err == nil && !writable {
		add("error", "failover", "postgres.dsn names %d hosts without target_session_attrs=read-write: procon-cdc could connect to a standby, "+
			"where the slot cannot be read; add target_session_attrs=read-write to postgres.dsn", len(hosts))
	}
	var db string
	_ = conn.QueryRow(ctx, `SELECT pg_catalog.current_database()`).Scan(&db)
	for _, host := range hosts {
		out = append(out, checkStandbyHost(ctx, cfg, host, db, standbySlots)...)
	}
	return out
}

// checkStandbySlots checks the primary's synchronized_standby_slots and returns the slots it
// names.
func checkStandbySlots(ctx context.Context, conn *pgx.Conn, add func(level, subject, format string, args ...any)) []string {
	const subject = "synchronized_standby_slots"
	var setting string
	if err := conn.QueryRow(ctx, `SHOW synchronized_standby_slots`).Scan(&setting); err != nil {
		add("error", subject, "read it on the primary: %v", err)
		return nil
	}
	var names []string
	for n := range strings.SplitSeq(setting, ",") {
		if n = strings.Trim(strings.TrimSpace(n), `"`); n != "" {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		add("error", subject, "is empty on the primary: procon-cdc can then receive changes no standby has yet, which a failover loses from "+
			"the database but not from Kafka; on the primary: ALTER SYSTEM SET synchronized_standby_slots = '<the standby's physical slot>'; SELECT pg_reload_conf();")
		return nil
	}
	for _, name := range names {
		var kind string
		var active bool
		var standby *string
		err := conn.QueryRow(ctx, `SELECT s.slot_type, s.active, r.application_name || ' at ' || COALESCE(pg_catalog.host(r.client_addr), 'local socket')
			FROM pg_catalog.pg_replication_slots s LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid
			WHERE s.slot_name = $1`, name).Scan(&kind, &active, &standby)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			add("error", subject, "names slot %s, which does not exist on the primary: SELECT pg_create_physical_replication_slot('%s'); "+
				"on the primary, and primary_slot_name = '%s' on the standby", name, name, name)
		case err != nil:
			add("error", subject, "read slot %s: %v", name, err)
		case kind != "physical":
			add("error", subject, "names slot %s, which is a %s slot: name the physical slots of the standbys (their primary_slot_name)", name, kind)
		case !active:
			add("warn", subject, "slot %s is not in use: no standby streams from it, and the primary sends procon-cdc no change until one does "+
				"(start the standby, or remove the slot from synchronized_standby_slots)", name)
		default:
			who := "a standby"
			if standby != nil {
				who = *standby
			}
			add("ok", subject, "slot %s is physical and in use (%s): procon-cdc receives only what that standby has flushed", name, who)
		}
	}
	return names
}

// checkStandbyHost checks the settings a standby needs to keep a copy of the slot: they can
// only be read on the standby itself. A host that is not in recovery is the primary.
func checkStandbyHost(ctx context.Context, cfg Config, host, db string, standbySlots []string) []Finding {
	subject := "standby " + host
	var out []Finding
	add := func(level, format string, args ...any) {
		out = append(out, Finding{Level: level, Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	conn, err := pg.ConnectHost(ctx, cfg.DSN, host, "procon-cdc check")
	if err != nil {
		add("warn", "cannot connect: %v; its standby settings are not checked", err)
		return out
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_is_in_recovery()`).Scan(&inRecovery); err != nil {
		add("error", "read pg_is_in_recovery(): %v", err)
		return out
	}
	if !inRecovery {
		return []Finding{{Level: "ok", Subject: "primary " + host, Message: "is the primary (not in recovery)"}}
	}
	settings := map[string]string{}
	for _, name := range []string{"sync_replication_slots", "hot_standby_feedback", "primary_slot_name", "wal_level"} {
		var v string
		if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting($1)`, name).Scan(&v); err != nil {
			add("error", "read %s: %v", name, err)
			return out
		}
		settings[name] = v
	}
	fix := "in its postgresql.conf (or ALTER SYSTEM on it), then SELECT pg_reload_conf();"
	bad := 0
	if settings["sync_replication_slots"] != "on" {
		bad++
		add("error", "sync_replication_slots is off: the standby does not copy failover slots; set sync_replication_slots = on %s", fix)
	}
	if settings["hot_standby_feedback"] != "on" {
		bad++
		add("error", "hot_standby_feedback is off: slot synchronization needs it; set hot_standby_feedback = on %s", fix)
	}
	if settings["wal_level"] != "logical" {
		bad++
		add("error", "wal_level is %s: slot synchronization needs wal_level = logical on the standby too; set it and restart the standby", settings["wal_level"])
	}
	switch slot := settings["primary_slot_name"]; {
	case slot == "":
		bad++
		add("error", "primary_slot_name is not set: the standby must stream through a physical slot that the primary's synchronized_standby_slots names; "+
			"set primary_slot_name = '<slot>' %s", fix)
	case !slices.Contains(standbySlots, slot):
		bad++
		add("error", "streams through slot %s, which the primary's synchronized_standby_slots does not name: procon-cdc can receive changes this standby lacks; "+
			"add %s to synchronized_standby_slots on the primary", slot, slot)
	}
	var conninfo string
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.current_setting('primary_conninfo')`).Scan(&conninfo); err != nil {
		add("warn", "cannot read primary_conninfo (%v): grant pg_read_all_settings to procon-cdc's role to check that it names dbname", err)
	} else if !conninfoHasDBName(conninfo) {
		bad++
		add("error", "primary_conninfo names no dbname: slot synchronization connects to a database of the primary; add dbname=%s to primary_conninfo %s", db, fix)
	}
	var synced, temporary bool
	err = conn.QueryRow(ctx, `SELECT synced, temporary FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND invalidation_reason IS NULL`, cfg.Slot).Scan(&synced, &temporary)
	switch {
	case err == nil && synced && !temporary:
		add("ok", "slot %s is synchronized here: after a promotion procon-cdc reads on from it", cfg.Slot)
	case bad == 0:
		add("warn", "slot %s is not synchronized here yet (it is once run has created it and the standby has caught up): a failover now would lose it", cfg.Slot)
	}
	if bad == 0 {
		add("ok", "sync_replication_slots, hot_standby_feedback, primary_slot_name, wal_level and primary_conninfo are set for failover slots")
	}
	return out
}

// conninfoHasDBName reports whether a libpq connection string (key=value or URL) names a
// database.
func conninfoHasDBName(conninfo string) bool {
	if strings.HasPrefix(conninfo, "postgres://") || strings.HasPrefix(conninfo, "postgresql://") {
		u, err := url.Parse(conninfo)
		return err == nil && (strings.Trim(u.Path, "/") != "" || u.Query().Get("dbname") != "")
	}
	return dbnameKey.MatchString(conninfo)
}

var dbnameKey = regexp.MustCompile(`(^|\s)dbname\s*=\s*('[^']+'|[^'\s]+)`)
