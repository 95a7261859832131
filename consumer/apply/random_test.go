package apply_test

import (
	mathrand "math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/procon-cdc/procon/consumer/apply"
	"github.com/procon-cdc/procon/consumer/event"
	"github.com/procon-cdc/procon/test/testenv"
)

// TestApplyRandomBatches: random event sequences (creates, reads, updates with and without
// before, key changes, unchanged-TOAST placeholders, fields left out, deletes of present and
// missing rows, tombstones, truncates) applied in random batches leave the same rows and
// counts as applying them one event per batch. Replay a failure with the seed it logs.
func TestApplyRandomBatches(t *testing.T) {
	for _, soft := range []string{"", "deleted"} {
		t.Run("soft_delete="+soft, func(t *testing.T) {
			const ddl = `(k1 integer, k2 text, a text, b integer, c text, deleted boolean NOT NULL DEFAULT false, PRIMARY KEY (k1, k2))`
			tg := newTarget(t, `CREATE TABLE public.one `+ddl+`; CREATE TABLE public.batched `+ddl)
			rnd := testenv.Rand(t, 0)
			e := apply.Entity{
				Topic:      "r",
				MasterKey:  []apply.KeyColumn{{Column: "k1", Field: "k1"}, {Column: "k2", Field: "k2"}},
				SoftDelete: soft,
				OnTruncate: apply.TruncateDelete,
			}
			e.Table = "public.one"
			one := tg.applier(e)
			e.Table = "public.batched"
			batched := tg.applier(e)
			for round := range 5 {
				events := randomEvents(rnd, 150)
				var want, got apply.Stats
				for _, ev := range events {
					add(&want, tg.mustApply(one, ev))
				}
				for rest := events; len(rest) > 0; {
					n := min(len(rest), 1+rnd.IntN(60))
					add(&got, tg.mustApply(batched, rest[:n]...))
					rest = rest[n:]
				}
				if g, w := tg.rows("public.batched"), tg.rows("public.one"); !slices.Equal(g, w) {
					t.Fatalf("round %d: rows applied in batches:\n%v\none by one:\n%v\nevents:\n%s", round, g, w, describe(events))
				}
				if got != want {
					t.Fatalf("round %d: stats in batches %+v, one by one %+v", round, got, want)
				}
			}
		})
	}
}

func add(s *apply.Stats, o apply.Stats) {
	s.Upserted += o.Upserted
	s.Deleted += o.Deleted
	s.SoftDeleted += o.SoftDeleted
	s.MissingDeletes += o.MissingDeletes
	s.Truncated += o.Truncated
	s.Ignored += o.Ignored
}

func randomEvents(rnd *mathrand.Rand, n int) []*event.Event {
	key := func() []any { return []any{"k1", 1 + rnd.IntN(3), "k2", []string{"x", "y"}[rnd.IntN(2)]} }
	value := func(name string) any {
		switch r := rnd.IntN(10); {
		case r == 0:
			return nil
		case r < 3 && name != "b":
			return toast
		case name == "b":
			return rnd.IntN(100)
		default:
			return name + strconv.Itoa(rnd.IntN(100))
		}
	}
	image := func(k []any, placeholders bool) *event.Row {
		pairs := slices.Clone(k)
		for _, f := range []string{"a", "b", "c"} {
			if rnd.IntN(6) == 0 {
				continue // a field the event does not have
			}
			v := value(f)
			for !placeholders && v == toast {
				v = value(f)
			}
			pairs = append(pairs, f, v)
		}
		return row(pairs...)
	}
	events := make([]*event.Event, 0, n)
	for range n {
		switch r := rnd.IntN(100); {
		case r < 25:
			events = append(events, create(image(key(), false)))
		case r < 30:
			events = append(events, read(image(key(), false)))
		case r < 65:
			k := key()
			var before *event.Row
			switch rnd.IntN(4) {
			case 0: // no before (replica identity default)
			case 1: // a key change (or not, when the keys happen to be equal)
				before = row(key()...)
			default:
				before = row(k...)
			}
			events = append(events, update(before, image(k, true)))
		case r < 90:
			events = append(events, del(row(key()...)))
		case r < 96:
			events = append(events, tombstone())
		default:
			events = append(events, truncate())
		}
	}
	return events
}

func describe(events []*event.Event) string {
	var out []byte
	img := func(r *event.Row) string {
		if r == nil {
			return "-"
		}
		s := "{"
		for i, f := range r.Fields {
			if i > 0 {
				s += " "
			}
			s += f.Name + "=" + func() string {
				if f.Value.Raw == nil {
					return "null"
				}
				if f.Value.Raw == toast {
					return "TOAST"
				}
				return toString(f.Value.Raw)
			}()
		}
		return s + "}"
	}
	for i, ev := range events {
		op := string(rune(ev.Op))
		if ev.Tombstone {
			op = "tombstone"
		}
		out = append(out, strconv.Itoa(i)+" "+op+" "+img(ev.Before)+" "+img(ev.After)+"\n"...)
	}
	return string(out)
}

func toString(x any) string {
	switch v := x.(type) {
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	}
	return "?"
}
