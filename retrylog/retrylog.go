// Package retrylog logs an operation that is retried until it succeeds as its state changes,
// not as it repeats: a warning when an attempt first fails, and an info line when one succeeds
// again, saying how many attempts failed, for how long, and the last error. The failures in
// between are logged at debug level, so their errors can still be seen. An outage of an hour
// is two lines, whatever the backoff.
package retrylog

import (
	"log/slog"
	"time"
)

// Outage is the state of one retried operation. The zero value is ready for use. It is not
// safe for concurrent use: the loop that retries owns it.
type Outage struct {
	failures int
	since    time.Time
	last     error
	now      func() time.Time // time.Now unless a test sets it
}

// Failed records a failed attempt. The first one since the operation last succeeded is
// logged at warn level as msg, with args and err; later ones at debug level, with their count.
func (o *Outage) Failed(log *slog.Logger, msg string, err error, args ...any) {
	o.failures++
	o.last = err
	args = append(args[:len(args):len(args)], "err", err)
	if o.failures == 1 {
		o.since = o.clock()
		log.Warn(msg, args...)
		return
	}
	log.Debug(msg, append(args, "failures", o.failures)...)
}

// Recovered ends the outage, if attempts failed since the operation last succeeded: it logs
// msg at info level, with args, the number of failed attempts, how long since the first, and
// the last error. It reports whether there was an outage to end.
func (o *Outage) Recovered(log *slog.Logger, msg string, args ...any) bool {
	if o.failures == 0 {
		return false
	}
	args = append(args[:len(args):len(args)], "failures", o.failures,
		"after", o.clock().Sub(o.since).Round(time.Millisecond), "last_err", o.last)
	log.Info(msg, args...)
	o.failures, o.last = 0, nil
	return true
}

// Failing reports whether the last attempt failed.
func (o *Outage) Failing() bool { return o.failures > 0 }

func (o *Outage) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}
