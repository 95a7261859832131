package engine

import (
	"context"
	"time"

	"github.com/procon-cdc/procon/replication"
)

// takeLock takes the slot's lock, waiting as a standby while another procon-cdc holds it.
// Every procon-cdc of a configuration takes it before it reads, creates or streams the slot
// (and, with exactly-once delivery, before it fences the transactional id), so one streams
// and the others wait; they race for nothing else. The slot itself, held by the active one's
// walsender, is the second guard: a successor streams only once the previous one's
// replication connection is closed, which Run does after closing its Kafka clients.
func (e *Engine) takeLock(ctx context.Context) (*replication.SlotLock, error) {
	l, err := replication.LockSlot(ctx, replication.LockConfig{
		DSN:     e.cfg.Postgres.DSN,
		Slot:    e.cfg.Postgres.Slot,
		Waiting: func(replication.Holder) { e.obs.setStandby(true) },
		Logger:  e.log,
	})
	e.obs.setStandby(false)
	return l, err
}

// watchLock stops every writer with the lock's error once the lock is lost, until ctx ends:
// another procon-cdc may take the lock and stream, so nothing more may be produced. The
// errgroup sees the writer fail and stops the rest; what was not acknowledged is not
// confirmed, and the successor sends it again.
func (e *Engine) watchLock(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-e.lock.Lost():
		err := e.lock.Err()
		for _, w := range e.writers() {
			w.Fail(err)
		}
	}
}

// slotWait bounds the wait for the slot once the lock is held. Its user is then a previous
// procon-cdc that lost the lock (it stops producing at once and closes its replication
// connection) or died unseen (a host or network gone: the server ends its walsender after
// wal_sender_timeout, 60 s by default): 90 s. With exactly-once delivery the default (10 s)
// is kept: openStream then ends the walsender of the instance it fenced.
func (e *Engine) slotWait() time.Duration {
	if e.writer.Transactional() {
		return 0
	}
	return 90 * time.Second
}
