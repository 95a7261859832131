package replication

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"

	"github.com/procon-cdc/procon/pg"
)

// TestServerEndingTheCopyReconnects: a walsender that ends the copy (CopyDone, as on a
// promotion or a shutdown) is going away, and Run must reconnect rather than stop.
func TestServerEndingTheCopyReconnects(t *testing.T) {
	if err := fmt.Errorf("stream: %w", errConnClosed); !pg.Transient(err) {
		t.Errorf("pg.Transient(%v) = false: Run would stop instead of reconnecting", err)
	}
}

// An empty CopyData from the server is an error, not a crash.
func TestEmptyCopyDataIsAnError(t *testing.T) {
	s := &Stream{tracker: NewTracker(0)}
	if err := s.handle(context.Background(), []byte{}, func(*Change) error { return nil }); err == nil {
		t.Fatal("an empty CopyData was accepted")
	}
}

// A truncate message that claims more relations than it carries is refused before anything
// is allocated for them.
func TestTruncateCountMustFit(t *testing.T) {
	d := newDecoder(map[string]RelationSpec{}, &catalog{}, NewTracker(0), slog.New(slog.DiscardHandler))
	msg := []byte{'T', 0x37, 0, 0, 1, 0, 0, 0, 0x10, 1} // 922,746,881 relations in 10 bytes
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := d.decode(context.Background(), 1, msg, func(*Change) error { return nil })
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncate message with an impossible relation count was accepted")
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("decoding it allocated %d bytes", n)
	}
}

// The lock key is documented (README, "Running a standby"): FNV-1a 64 of
// "procon-cdc/<database>/<slot>" as a signed bigint. Changing it would let an old and a new
// version stream side by side during an upgrade.
func TestLockKeyIsStable(t *testing.T) {
	// The value was computed apart from Go's hash/fnv (a few lines of Python).
	if got, want := LockKey("shop", "procon_shop"), int64(595958548590891267); got != want {
		t.Fatalf("LockKey = %d, want %d", got, want)
	}
}
