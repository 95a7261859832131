package replication

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/procon-cdc/procon/pg"
)

// Finding is one result of Check.
type Finding struct {
	Level   string // ok, warn or error
	Subject string
	Message string
}

// Check inspects the server, the captured relations, the publication and the slot, and says
// what each means and how to fix it. It changes nothing.
func Check(ctx context.Context, cfg Config) []Finding {
	var out []Finding
	add := func(level, subject, format string, args ...any) {
		out = append(out, Finding{Level: level, Subject: subject, Message: fmt.Sprintf(format, args...)})
	}
	conn, err := pg.Connect(ctx, cfg.DSN, "procon-cdc check")
	if err != nil {
		add("error", "postgres", "cannot connect: %v; check postgres.dsn and that the server is running", err)
		return out
	}
	defer conn.Close(context.Background())
	add("ok", "postgres", "connected to database %s", conn.Config().Database)
	if err := checkServer(ctx, conn); err != nil {
		add("error", "postgres", "%v", err)
	} else {
		add("ok", "postgres", "wal_level is logical and the role may replicate")
	}

	cat := newCatalog(conn)
	for _, name := range sortedKeys(cfg.Relations) {
		if err := checkRelations(ctx, conn, []string{name}); err != nil {
			add("error", name, "%v", err)
			continue
		}
		if err := checkKeys(ctx, cat, map[string]RelationSpec{name: cfg.Relations[name]}); err != nil {
			add("error", name, "%v", err)
		} else {
			add("ok", name, "exists and has a record key")
		}
		var ident string
		var rowSecurity bool
		var role string
		if err := conn.QueryRow(ctx, `SELECT c.relreplident::text, u.rolname::text,
				c.relrowsecurity AND NOT (u.rolsuper OR u.rolbypassrls) AND (c.relowner <> u.oid OR c.relforcerowsecurity)
			FROM pg_catalog.pg_class c, pg_catalog.pg_roles u WHERE c.oid = $1::pg_catalog.regclass AND u.rolname = current_user`,
			pg.QuoteQualified(name)).Scan(&ident, &role, &rowSecurity); err != nil {
			add("error", name, "read replica identity: %v", err)
			continue
		}
		if rowSecurity {
			// pgoutput sends every row; a snapshot would see only those the policies let
			// through. procon-cdc reads with row_security off, so the snapshot fails instead.
			add("warn", name, "row level security applies to procon-cdc's role: a snapshot of it fails rather than miss rows; "+
				"ALTER ROLE %s BYPASSRLS, or ALTER TABLE %s DISABLE ROW LEVEL SECURITY", pgx.Identifier{role}.Sanitize(), pg.QuoteQualified(name))
		}
		switch ident {
		case "d":
			add("ok", name, "REPLICA IDENTITY DEFAULT: updates have before = null and deletes carry only the key in before; "+
				"unchanged TOASTed values are replaced by the placeholder (ALTER TABLE %s REPLICA IDENTITY FULL for full before images)", pg.QuoteQualified(name))
		case "f":
			add("ok", name, "REPLICA IDENTITY FULL: before holds the whole old row of updates and deletes")
		case "i":
			add("ok", name, "REPLICA IDENTITY USING INDEX: before holds the index columns")
		case "n":
			add("warn", name, "REPLICA IDENTITY NOTHING: once published, UPDATE and DELETE on it fail; ALTER TABLE %s REPLICA IDENTITY DEFAULT", pg.QuoteQualified(name))
		}
	}

	var allTables bool
	err = conn.QueryRow(ctx, `SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1`, cfg.Publication).Scan(&allTables)
	switch {
	case err == pgx.ErrNoRows && cfg.PublicationMode == PublicationDisabled:
		add("error", "publication", "%s does not exist and publication_autocreate is disabled: create it or set publication_autocreate: filtered", cfg.Publication)
	case err == pgx.ErrNoRows:
		add("ok", "publication", "%s does not exist yet; run creates it (%s)", cfg.Publication, cfg.PublicationMode)
	case err != nil:
		add("error", "publication", "read publication %s: %v", cfg.Publication, err)
	case allTables:
		add("ok", "publication", "%s publishes all tables", cfg.Publication)
	default:
		have, err := publishedTables(ctx, conn, cfg.Publication)
		if err != nil {
			add("error", "publication", "%v", err)
			break
		}
		missing := diff(sortedKeys(cfg.Relations), have)
		switch {
		case len(missing) == 0:
			add("ok", "publication", "%s includes every configured relation", cfg.Publication)
		case cfg.PublicationMode == PublicationFiltered:
			add("ok", "publication", "%s lacks %s; run will update it (filtered)", cfg.Publication, strings.Join(missing, ", "))
		default:
			add("error", "publication", "%s lacks %s: ALTER PUBLICATION %s ADD TABLE ...", cfg.Publication, strings.Join(missing, ", "), cfg.Publication)
		}
	}

	slot, err := ReadSlot(ctx, conn, cfg.Slot)
	switch {
	case err != nil:
		add("error", "slot", "%v", err)
	case !slot.Exists:
		add("ok", "slot", "%s does not exist yet; run creates it", cfg.Slot)
	case slot.Plugin != "pgoutput":
		add("error", "slot", "%s uses plugin %s, not pgoutput: drop it or choose another postgres.slot", cfg.Slot, slot.Plugin)
	default:
		var retained int64
		_ = conn.QueryRow(ctx, `SELECT pg_catalog.pg_current_wal_lsn() - $1::pg_catalog.pg_lsn`, slot.Confirmed).Scan(&retained)
		state := "inactive"
		if slot.ActivePID != 0 {
			state = fmt.Sprintf("active (server process %d)", slot.ActivePID)
		}
		add("ok", "slot", "%s exists, %s, confirmed at %s, %d bytes of WAL behind", cfg.Slot, state, slot.Confirmed, retained)
	}
	if cfg.Failover {
		out = append(out, checkFailover(ctx, conn, cfg)...)
	}
	return out
}
