package realtime

import "time"

// Clock is the time source of the throttle; tests replace it with a fake.
type Clock interface {
	Now() time.Time
	// Until returns a channel that receives once the clock reaches t (at once if it has).
	// Timers are absolute so that a deadline computed from one reading of Now does not move
	// if time passes before the timer is set.
	Until(t time.Time) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                     { return time.Now() }
func (realClock) Until(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }
