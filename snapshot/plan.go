package snapshot

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// planTable splits a table into key ranges that workers read in parallel, within the
// snapshot conn's transaction sees. Boundaries are keys sampled from the table itself
// (TABLESAMPLE), so every range holds at least its upper bound; the last range is open above
// and starts below the table's greatest key, so it is never empty either. A table that is
// empty in the snapshot gets no range; a small or keyless one gets a single range.
func planTable(ctx context.Context, conn *pgx.Conn, t *Table, chunk, parallelism int) ([]*Range, int64, error) {
	total, err := estimateRows(ctx, conn, t, t.from)
	if err != nil {
		return nil, 0, err
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.from+")").Scan(&exists); err != nil {
		return nil, 0, fmt.Errorf("look into %s: %w", t.Name, err)
	}
	if !exists {
		return nil, 0, nil
	}
	total = max(total, 1)
	whole := []*Range{{Relation: t.Name, Total: total}}
	nseg := int(min(total/int64(4*chunk), int64(4*parallelism)))
	if !t.Keyed() || parallelism < 2 || nseg < 2 {
		return whole, total, nil
	}
	bounds, err := sampleBounds(ctx, conn, t, total, nseg)
	if err != nil || len(bounds) == 0 {
		return whole, total, err
	}
	ranges := make([]*Range, 0, len(bounds)+1)
	var lo []string
	for i, b := range bounds {
		ranges = append(ranges, &Range{Relation: t.Name, Part: i, Lo: lo, Hi: b})
		lo = b
	}
	ranges = append(ranges, &Range{Relation: t.Name, Part: len(bounds), Lo: lo})
	for _, r := range ranges {
		r.Total = total / int64(len(ranges))
	}
	return ranges, total, nil
}

// sampleBounds picks nseg-1 increasing keys of t, below its greatest key, from a sample of
// its pages.
func sampleBounds(ctx context.Context, conn *pgx.Conn, t *Table, total int64, nseg int) ([][]string, error) {
	pct := min(100, max(0.001, float64(nseg*64)*100/float64(total)))
	keys := make([]int, len(t.Order))
	for i := range keys {
		keys[i] = i
	}
	var samples [][]string
	sql := "SELECT " + t.keyCols + " FROM " + t.from + " TABLESAMPLE SYSTEM (" + strconv.FormatFloat(pct, 'f', 4, 64) + ") ORDER BY " + t.keyCols
	err := readRows(ctx, conn, sql, nil, func(vals [][]byte) error {
		samples = append(samples, keyOf(vals, keys))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sample keys of %s: %w", t.Name, err)
	}
	var greatest []string
	err = readRows(ctx, conn, "SELECT "+t.keyCols+" FROM "+t.from+" ORDER BY "+t.keyDesc+" LIMIT 1", nil, func(vals [][]byte) error {
		greatest = keyOf(vals, keys)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the greatest key of %s: %w", t.Name, err)
	}
	if len(samples) < 2*nseg {
		nseg = len(samples) / 2
	}
	var bounds [][]string
	for i := 1; i < nseg; i++ {
		b := samples[i*len(samples)/nseg]
		if slices.Equal(b, greatest) {
			break // keys are sorted: the rest are the greatest too
		}
		if len(bounds) > 0 && slices.Equal(bounds[len(bounds)-1], b) {
			continue
		}
		bounds = append(bounds, b)
	}
	return bounds, nil
}
