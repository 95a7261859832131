package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
)

var (
	insertOneSQL   = insertOneInto(table)
	insertRangeSQL = `INSERT INTO public.pbench_rows (` + rowColumns + `) SELECT g, ` + rowExprs +
		` FROM generate_series($1::bigint, $2::bigint) g`
	updateRangeSQL = `UPDATE public.pbench_rows SET payload = md5((id + 1)::text) || md5((id * 3)::text),
		amount = amount + 1, created_at = now() WHERE id BETWEEN $1 AND $2`
	deleteRangeSQL = `DELETE FROM public.pbench_rows WHERE id BETWEEN $1 AND $2`
)

// insertOneInto is the single-row insert of row $1 into table t.
func insertOneInto(t string) string {
	return `INSERT INTO public.` + t + ` (` + rowColumns + `) SELECT g, ` + rowExprs + ` FROM (SELECT $1::bigint AS g) s`
}

// split cuts [0, n) into at most parts contiguous ranges.
func split(n int64, parts int) [][2]int64 {
	if parts < 1 {
		parts = 1
	}
	per := (n + int64(parts) - 1) / int64(parts)
	var out [][2]int64
	for lo := int64(0); lo < n; lo += per {
		out = append(out, [2]int64{lo, min(lo+per, n)})
	}
	return out
}

// writeSingleRows commits n single-row insert transactions (ids first .. first+n-1) over
// o.writers connections. Each connection pipelines its inserts: every insert is followed by a
// Sync, so each is its own (implicit) transaction, without a round trip per row.
func (b *bench) writeSingleRows(ctx context.Context, first, n int64) error {
	return b.writeSingleRowsInto(ctx, []string{table}, first, n)
}

// writeSingleRowsInto is writeSingleRows over several tables: the i-th writer inserts into
// tables[i % len(tables)], so that with an even writer count every table gets the same share
// of the transactions, written at the same time.
func (b *bench) writeSingleRowsInto(ctx context.Context, tables []string, first, n int64) error {
	g, gctx := errgroup.WithContext(ctx)
	for i, r := range split(n, b.o.writers) {
		t := tables[i%len(tables)]
		g.Go(func() error { return b.pipelineInserts(gctx, t, first+r[0], first+r[1]) })
	}
	return g.Wait()
}

// rowsPerTable is how many of writeSingleRowsInto's n rows go to each of k tables.
func (b *bench) rowsPerTable(n int64, k int) []int64 {
	out := make([]int64, k)
	for i, r := range split(n, b.o.writers) {
		out[i%k] += r[1] - r[0]
	}
	return out
}

func (b *bench) pipelineInserts(ctx context.Context, t string, lo, hi int64) error {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	stmt := insertOneStmt + "_" + t
	if _, err := conn.Conn().Prepare(ctx, stmt, insertOneInto(t)); err != nil {
		return fmt.Errorf("prepare insert into %s: %w", t, err)
	}
	const depth = 256
	for id := lo; id < hi; id += depth {
		if err := pipelineRange(ctx, conn.Conn().PgConn(), stmt, id, min(id+depth, hi)); err != nil {
			return err
		}
	}
	return nil
}

const insertOneStmt = "pbench_insert_one"

// pipelineRange commits one single-row insert transaction per id in [lo, hi) with the prepared
// statement stmt, pipelined: all are sent, each followed by a Sync (which ends its implicit
// transaction), then all results read.
func pipelineRange(ctx context.Context, pc *pgconn.PgConn, stmt string, lo, hi int64) error {
	p := pc.StartPipeline(ctx)
	for i := lo; i < hi; i++ {
		p.SendQueryPrepared(stmt, [][]byte{strconv.AppendInt(nil, i, 10)}, nil, nil)
		p.SendPipelineSync()
	}
	if err := p.Flush(); err != nil {
		p.Close()
		return err
	}
	for i := lo; i < hi; i++ {
		for _, want := range []string{"result", "sync"} {
			res, err := p.GetResults()
			if err != nil {
				p.Close()
				return fmt.Errorf("insert %d: %w", i, err)
			}
			switch r := res.(type) {
			case *pgconn.ResultReader:
				if _, err := r.Close(); err != nil {
					p.Close()
					return fmt.Errorf("insert %d: %w", i, err)
				}
			case *pgconn.PipelineSync:
			default:
				p.Close()
				return fmt.Errorf("insert %d: unexpected pipeline result %T, want %s", i, res, want)
			}
		}
	}
	return p.Close()
}

// batchedPlan is drain-batched's workload: txs transactions of size changes each, half
// inserts, 40% updates and 10% deletes. Transaction k inserts ids k*ins+1 .. k*ins+ins and
// updates (the first 80%) and deletes (the last 20%) of the rows the previous transaction of
// its writer inserted; a writer's first transaction works on seed rows written before the
// slots exist, so every transaction has exactly the same mix.
type batchedPlan struct {
	txs, size, writers int
}

func (p batchedPlan) ins() int64 { return int64(p.size) / 2 }
func (p batchedPlan) upd() int64 { return int64(p.size) * 4 / 10 }
func (p batchedPlan) del() int64 { return int64(p.size) - p.ins() - p.upd() }

func (p batchedPlan) seedBase(w int) int64 { return 1_000_000_000_000 + int64(w)*p.ins() }

// seed writes each writer's seed rows (not captured: the slots do not exist yet).
func (b *bench) seedBatched(ctx context.Context, p batchedPlan) error {
	for w := range split(int64(p.txs), p.writers) {
		base := p.seedBase(w)
		if err := b.exec(ctx, insertRangeSQL, base+1, base+p.ins()); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) writeBatched(ctx context.Context, p batchedPlan) error {
	g, gctx := errgroup.WithContext(ctx)
	for w, r := range split(int64(p.txs), p.writers) {
		g.Go(func() error {
			conn, err := b.pool.Acquire(gctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			for k := r[0]; k < r[1]; k++ {
				base := k * p.ins()
				prev := (k - 1) * p.ins()
				if k == r[0] {
					prev = p.seedBase(w)
				}
				err := pgx.BeginFunc(gctx, conn.Conn(), func(tx pgx.Tx) error {
					batch := &pgx.Batch{}
					batch.Queue(insertRangeSQL, base+1, base+p.ins())
					batch.Queue(updateRangeSQL, prev+1, prev+p.upd())
					batch.Queue(deleteRangeSQL, prev+p.upd()+1, prev+p.ins())
					br := tx.SendBatch(gctx, batch)
					for i, want := range []int64{p.ins(), p.upd(), p.del()} {
						tag, err := br.Exec()
						if err != nil {
							br.Close()
							return err
						}
						if tag.RowsAffected() != want {
							br.Close()
							return fmt.Errorf("transaction %d statement %d: %d rows, want %d", k, i, tag.RowsAffected(), want)
						}
					}
					return br.Close()
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// writeHugeTx inserts n rows in one statement, hence one transaction.
func (b *bench) writeHugeTx(ctx context.Context, n int64) error {
	return b.exec(ctx, insertRangeSQL, 1, n)
}

// fillTable writes n rows (ids 1..n) in 100k-row transactions over the writers, for the
// snapshot scenario, then vacuums the table so that no reader pays for hint bits.
func (b *bench) fillTable(ctx context.Context, n int64) error {
	const chunk = 100_000
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(b.o.writers, 4) {
		g.Go(func() error {
			for {
				lo := next.Add(chunk) - chunk
				if lo >= n {
					return nil
				}
				if err := b.exec(gctx, insertRangeSQL, lo+1, min(lo+chunk, n)); err != nil {
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return b.exec(ctx, "VACUUM (FREEZE, ANALYZE) public."+table)
}

// steadyStats is how well the steady writer kept its rate.
type steadyStats struct {
	Transactions int64   `json:"transactions"`
	Seconds      float64 `json:"seconds"`
	Rate         float64 `json:"rate"`
	MaxBehindMs  float64 `json:"max_behind_ms"`
	// BackendCPU is the CPU seconds of the writer's PostgreSQL backends while it wrote.
	BackendCPU float64 `json:"backend_cpu_seconds"`
}

// writeSteady commits rate single-row transactions per second for d, ids from first on: the
// i-th is due at start + i/rate. Every 2 ms the transactions due by then are handed to one
// of a few connections, which commits them pipelined (each its own transaction); a connection
// still busy with the previous batch leaves the next one to another.
func (b *bench) writeSteady(ctx context.Context, first int64, rate int, d time.Duration) (steadyStats, error) {
	total := int64(float64(rate) * d.Seconds())
	var maxBehind, backendCPU atomic.Int64
	batches := make(chan [2]int64, 4096)
	start := time.Now()
	due := func(i int64) time.Time {
		return start.Add(time.Duration(float64(i) * float64(time.Second) / float64(rate)))
	}
	g, gctx := errgroup.WithContext(ctx)
	for range 3 {
		g.Go(func() error {
			conn, err := b.pool.Acquire(gctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Conn().Prepare(gctx, insertOneStmt, insertOneSQL); err != nil {
				return err
			}
			pid := int(conn.Conn().PgConn().PID())
			cpu0 := pidCPU(pid, b.clkTck)
			defer func() { backendCPU.Add(int64((pidCPU(pid, b.clkTck) - cpu0) * 1e6)) }()
			for r := range batches {
				if behind := time.Since(due(r[0])); int64(behind) > maxBehind.Load() {
					maxBehind.Store(int64(behind))
				}
				if err := pipelineRange(gctx, conn.Conn().PgConn(), insertOneStmt, first+r[0], first+r[1]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(batches)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		var sent int64
		for sent < total {
			select {
			case <-gctx.Done():
				return gctx.Err()
			case now := <-t.C:
				upto := min(total, int64(now.Sub(start).Seconds()*float64(rate))+1)
				if upto > sent {
					batches <- [2]int64{sent, upto}
					sent = upto
				}
			}
		}
		return nil
	})
	err := g.Wait()
	el := time.Since(start).Seconds()
	return steadyStats{
		Transactions: total,
		Seconds:      el,
		Rate:         float64(total) / el,
		MaxBehindMs:  float64(maxBehind.Load()) / 1e6,
		BackendCPU:   float64(backendCPU.Load()) / 1e6,
	}, err
}
