package replication

import (
	"fmt"
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
