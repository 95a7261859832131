package consumer

import (
	"testing"
	"time"

	"github.com/procon-cdc/procon/txid"
)

func key(instance uint16, lsn uint64, seq int) txid.Key {
	// Commit times are deliberately not in LSN order: the position must not depend on them.
	return txid.Key{Tx: txid.New(time.UnixMilli(int64(1_700_000_000_000-lsn)), instance, lsn), Seq: seq}
}

func TestPositionRecognisesRepeats(t *testing.T) {
	const src = "7300000000000000001/app/procon_app"
	var p position
	p = p.after(src, key(1, 100, 1))
	p = p.after(src, key(1, 100, 2))
	p = p.after(src, key(1, 200, 1))
	cases := []struct {
		name     string
		source   string
		k        txid.Key
		snapshot bool
		want     bool
	}{
		{"an earlier transaction", src, key(1, 100, 5), false, true},
		{"the same record", src, key(1, 200, 1), false, true},
		{"the next record of the same transaction", src, key(1, 200, 2), false, false},
		{"a later transaction", src, key(1, 300, 1), false, false},
		// Initial snapshot rows share one transaction but arrive out of seq order.
		{"a snapshot row of the same transaction", src, key(1, 200, 1), true, false},
		{"a snapshot row of an earlier transaction", src, key(1, 100, 1), true, true},
		{"another pipeline", "other", key(1, 100, 1), false, false},
		{"another instance", src, key(2, 100, 1), false, false},
	}
	for _, c := range cases {
		if got := p.repeats(c.source, c.k, c.snapshot); got != c.want {
			t.Errorf("%s: repeats = %v, want %v", c.name, got, c.want)
		}
	}
	if q := p.after(src, key(1, 100, 9)); q != p {
		t.Errorf("moving past an earlier record changed the position: %+v", q)
	}
	if q := (position{}).repeats(src, key(1, 1, 1), false); q {
		t.Error("nothing applied yet, yet a repeat")
	}
}
