package replication

import (
	"context"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pglogrepl"
)

func beginMessage(final uint64, at int64, xid uint32) []byte {
	b := binary.BigEndian.AppendUint64([]byte{'B'}, final)
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	return binary.BigEndian.AppendUint32(b, xid)
}

func commitMessage(commit, end uint64, at int64) []byte {
	b := binary.BigEndian.AppendUint64([]byte{'C', 0}, commit)
	b = binary.BigEndian.AppendUint64(b, end)
	return binary.BigEndian.AppendUint64(b, uint64(at))
}

// The decoder reads Begin and Commit itself (pglogrepl allocates a message for each): the
// transaction it makes must be the one pglogrepl's parse describes.
func TestDecodeBeginCommitAsPglogrepl(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	d := newDecoder(map[string]RelationSpec{}, &catalog{}, NewTracker(0), slog.New(slog.DiscardHandler))
	for range 1000 {
		final, end, xid := r.Uint64(), r.Uint64(), r.Uint32()
		at := r.Int64N(1<<50) - 1<<49
		b, c := beginMessage(final, at, xid), commitMessage(final, end, at)
		var got []*Change
		for _, msg := range [][]byte{b, c} {
			if err := d.decode(context.Background(), 1, msg, func(ch *Change) error { got = append(got, ch); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		pb, err := pglogrepl.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		pc, err := pglogrepl.Parse(c)
		if err != nil {
			t.Fatal(err)
		}
		want := pb.(*pglogrepl.BeginMessage)
		tx := got[0].Tx
		if len(got) != 2 || got[0].Op != OpBegin || got[1].Op != OpCommit || got[1].Tx != tx {
			t.Fatalf("changes %+v", got)
		}
		if tx.XID != want.Xid || tx.CommitLSN != want.FinalLSN || !tx.CommitTime.Equal(want.CommitTime) ||
			tx.CommitTime.Location() != want.CommitTime.Location() || tx.EndLSN != pc.(*pglogrepl.CommitMessage).TransactionEndLSN {
			t.Fatalf("transaction %+v, want begin %+v, commit %+v", tx, want, pc)
		}
	}
	for _, short := range [][]byte{beginMessage(1, 2, 3)[:20], commitMessage(1, 2, 3)[:25]} {
		if err := d.decode(context.Background(), 1, short, func(*Change) error { return nil }); err == nil {
			t.Fatalf("%q message of %d bytes decoded without an error", short[0], len(short))
		}
	}
}

// BenchmarkDecodeTransaction decodes a single-row transaction (Begin, Insert of six text
// columns, Commit): the stream loop's share of drain-small per event.
func BenchmarkDecodeTransaction(b *testing.B) {
	d := newDecoder(map[string]RelationSpec{}, &catalog{}, NewTracker(0), slog.New(slog.DiscardHandler))
	d.rels[1] = &Relation{ID: 1, Schema: "public", Table: "bench", Captured: true}
	ins := []byte{'I', 0, 0, 0, 1, 'N', 0, 6}
	for _, v := range []string{"123456", "8f14e45fceea167a5a36dedd4bea25438f14e45fceea167a5a36dedd4bea2543",
		"c9f0f895fb98ab9159f51fd0297e236d", "1234.56", "2026-11-27 03:10:15.123456+00", `{"k": 123456}`} {
		ins = binary.BigEndian.AppendUint32(append(ins, 't'), uint32(len(v)))
		ins = append(ins, v...)
	}
	msgs := [][]byte{beginMessage(100, 1, 7), ins, commitMessage(100, 101, 1)}
	ctx := context.Background()
	emit := func(*Change) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		for _, m := range msgs {
			if err := d.decode(ctx, 1, m, emit); err != nil {
				b.Fatal(err)
			}
		}
		d.tracker.queue = d.tracker.queue[:0]
	}
}
