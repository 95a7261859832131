package apply_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/procon-cdc/procon/consumer/apply"
	"github.com/procon-cdc/procon/consumer/event"
)

// BenchmarkApply applies 10k-event batches, each in a transaction of its own (commit
// included), to a 6-column table: "insert" has only new keys; "update" updates existing
// rows (every column); "mixed" is 60% updates (a third
// with an unchanged-TOAST placeholder), 25% inserts and 15% deletes over 200k keys.
func BenchmarkApply(b *testing.B) {
	const batchSize = 10_000
	const ddl = `CREATE TABLE public.bench (id bigint PRIMARY KEY, tenant integer, name text,
		amount numeric(12,2), created timestamptz, payload text)`
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Format(time.RFC3339Nano)
	rec := func(id, v int, payload any) *event.Row {
		return row("id", id, "tenant", id%50, "name", "name-"+strconv.Itoa(v), "amount", strconv.Itoa(v)+".25",
			"created", ts, "payload", payload)
	}
	entity := apply.Entity{Topic: "bench", Table: "public.bench", MasterKey: []apply.KeyColumn{{Column: "id", Field: "id"}}}

	b.Run("insert", func(b *testing.B) {
		tg := newTarget(b, ddl)
		a := tg.applier(entity)
		next := 0
		batch := make([]*event.Event, batchSize)
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			for i := range batch {
				batch[i] = create(rec(next, next, "payload of a modest size, about one line long"))
				next++
			}
			b.StartTimer()
			tg.mustApply(a, batch...)
		}
		b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("update", func(b *testing.B) {
		tg := newTarget(b, ddl)
		tg.db.Exec(b, `INSERT INTO public.bench SELECT g, g % 50, 'name-' || g, g, now(), 'payload' FROM generate_series(0, 199999) g`)
		tg.db.Exec(b, `VACUUM ANALYZE public.bench`)
		a := tg.applier(entity)
		next, total := 0, 0
		batch := make([]*event.Event, batchSize)
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			for i := range batch {
				batch[i] = update(nil, rec(next%200_000, next, "updated payload"))
				next++
			}
			total += len(batch)
			b.StartTimer()
			tg.mustApply(a, batch...)
		}
		b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("mixed", func(b *testing.B) {
		tg := newTarget(b, ddl)
		tg.db.Exec(b, `INSERT INTO public.bench SELECT g, g % 50, 'name-' || g, g, now(), 'payload' FROM generate_series(0, 199999) g`)
		tg.db.Exec(b, `VACUUM ANALYZE public.bench`)
		a := tg.applier(entity)
		const keys = 200_000
		rnd := uint64(1)
		rand := func(n int) int {
			rnd = rnd*6364136223846793005 + 1442695040888963407
			return int((rnd >> 33) % uint64(n))
		}
		next := keys
		total := 0
		batch := make([]*event.Event, batchSize)
		b.ResetTimer()
		for b.Loop() {
			b.StopTimer()
			for i := range batch {
				switch r := rand(100); {
				case r < 60:
					var payload any = "updated payload " + strconv.Itoa(r)
					if r < 20 {
						payload = toast
					}
					batch[i] = update(nil, rec(rand(keys), r, payload))
				case r < 85:
					batch[i] = create(rec(next, r, "new payload"))
					next++
				default:
					batch[i] = del(row("id", rand(keys)))
				}
			}
			total += len(batch)
			b.StartTimer()
			tg.mustApply(a, batch...)
		}
		b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "rows/s")
	})
}
