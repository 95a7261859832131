package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// table is the relation every scenario writes: ~200-byte rows.
const table = "pbench_rows"

// table2 is the second relation of drain-split, of the same shape: the workload split over two
// relations, for one pipeline against two.
const table2 = "pbench_rows_b"

// objectPrefix starts the name of every slot, publication and topic the bench creates, so that
// leftovers of an interrupted run can be found and removed.
const objectPrefix = "pbench_"

// createTable is the DDL of a bench table; %s is its name.
const createTable = `CREATE TABLE public.%s (
	id         bigint PRIMARY KEY,
	name       text NOT NULL,
	payload    text NOT NULL,
	amount     numeric(12,2) NOT NULL,
	created_at timestamptz NOT NULL,
	doc        jsonb NOT NULL
) WITH (autovacuum_enabled = false)`

// rowExprs are the non-key columns of row g, computed by the server (identical rows whatever
// writes them). A row is ~210 bytes on disk: 36 + 64 characters of text, a numeric, a
// timestamptz and a ~60-byte jsonb.
const rowExprs = `'customer-' || lpad(g::text, 12, '0') || '-bench-row',
	md5(g::text) || md5((g * 7)::text),
	((g % 10000000) / 100.0)::numeric(12,2),
	now(),
	jsonb_build_object('n', g, 'tags', jsonb_build_array('alpha', 'beta'), 'note', 'benchmark')`

const rowColumns = `id, name, payload, amount, created_at, doc`

func (b *bench) exec(ctx context.Context, sql string, args ...any) error {
	_, err := b.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", firstLine(sql), err)
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

// recreateTables drops every bench table (a split run's second one included) and creates
// tables afresh.
func (b *bench) recreateTables(ctx context.Context, tables []string) error {
	if err := b.exec(ctx, "DROP TABLE IF EXISTS public."+table+", public."+table2); err != nil {
		return err
	}
	for _, t := range tables {
		if err := b.exec(ctx, fmt.Sprintf(createTable, t)); err != nil {
			return err
		}
	}
	return nil
}

// createPublication publishes tables (each in the public schema) as pub.
func (b *bench) createPublication(ctx context.Context, pub string, tables ...string) error {
	if len(tables) == 0 {
		return fmt.Errorf("publication %s: no tables to publish", pub)
	}
	list := make([]string, len(tables))
	for i, t := range tables {
		list[i] = "public." + t
	}
	return b.exec(ctx, fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s", pgx.Identifier{pub}.Sanitize(), strings.Join(list, ", ")))
}

func (b *bench) createSlot(ctx context.Context, slot string) error {
	return b.exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
}

func (b *bench) currentLSN(ctx context.Context) (string, error) {
	var lsn string
	err := b.pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn)
	return lsn, err
}

// slotState is the slot's walsender pid (0 when inactive) and whether confirmed_flush_lsn has
// reached lsn.
func (b *bench) slotState(ctx context.Context, slot, lsn string) (pid int, reached bool, confirmed string, err error) {
	var p *int32
	var c *string
	var r *bool
	err = b.pool.QueryRow(ctx, `SELECT active_pid, confirmed_flush_lsn::text,
		confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, slot, orLSN(lsn)).Scan(&p, &c, &r)
	if err == pgx.ErrNoRows {
		return 0, false, "", nil
	}
	if p != nil {
		pid = int(*p)
	}
	if c != nil {
		confirmed = *c
	}
	return pid, r != nil && *r, confirmed, err
}

func orLSN(lsn string) string {
	if lsn == "" {
		return "0/0"
	}
	return lsn
}

// dropSlot drops a slot, waiting (up to 30 s) for a walsender that is still releasing it.
func (b *bench) dropSlot(ctx context.Context, slot string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := b.pool.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				b.logf("dropping slot %s: %v", slot, err)
			}
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (b *bench) dropPublication(ctx context.Context, pub string) {
	if err := b.exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{pub}.Sanitize()); err != nil {
		b.logf("%v", err)
	}
}

// cleanupLeftovers removes inactive slots, publications and topics of earlier, interrupted runs.
func (b *bench) cleanupLeftovers(ctx context.Context) {
	b.cleanupApplyLeftovers(ctx)
	rows, err := b.pool.Query(ctx, `SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pbench\_%' AND NOT active`)
	if err == nil {
		slots, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, s := range slots {
			b.logf("dropping leftover slot %s", s)
			b.dropSlot(ctx, s)
		}
	}
	rows, err = b.pool.Query(ctx, `SELECT pubname FROM pg_publication WHERE pubname LIKE 'pbench\_%'`)
	if err == nil {
		pubs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, p := range pubs {
			b.dropPublication(ctx, p)
		}
	}
	b.deleteTopicsWithPrefix(ctx, objectPrefix)
}

// checkpoint makes PostgreSQL write its dirty buffers now, not while a contender reads the WAL.
func (b *bench) checkpoint(ctx context.Context) error {
	return b.exec(ctx, "CHECKPOINT")
}
