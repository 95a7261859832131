package realtime

import (
	"container/heap"
	"time"
)

// throttle holds the notifications that wait for their channel's spacing. Each channel is a
// FIFO; the next notification of a channel may go once its threshold has passed since the
// previous one of the same channel was produced. Channels whose next notification may go are
// served in the order they became ready, so no channel starves another.
//
// With coalesce set, a channel and session has at most one waiting notification: a newer one
// takes the place of the older, which is returned to the caller as dropped.
//
// A throttle is not safe for concurrent use; Service guards it with its mutex.
type throttle struct {
	coalesce bool
	chans    map[string]*channel
	ready    chanHeap
	sessions map[sessionKey]*slot // coalesce: the waiting slot of each channel and session
	total    int                  // waiting notifications, all channels
	arrivals uint64

	maxThreshold time.Duration // the largest threshold seen: idle channels older than it are forgotten
	sweepAt      int
}

// channel is one channel's queue and the time its previous notification was produced.
type channel struct {
	name    string
	queue   []*slot // waiting, oldest first, from head
	head    int
	last    time.Time // when the previous notification was produced; zero if never (or forgotten)
	sending bool      // its head was popped and is being produced
	next    time.Time // when queue[head] may go
	index   int       // position in the ready heap, -1 when not in it
}

// slot is a place in a channel's queue; coalescing replaces the item in it.
type slot struct {
	it      *item
	arrival uint64
}

type sessionKey struct {
	channel, session string
	hasSession       bool
}

func keyOf(it *item) sessionKey {
	k := sessionKey{channel: it.n.Channel}
	if it.n.SessionID != nil {
		k.session, k.hasSession = *it.n.SessionID, true
	}
	return k
}

func newThrottle(coalesce bool) *throttle {
	return &throttle{coalesce: coalesce, chans: map[string]*channel{}, sessions: map[sessionKey]*slot{}, sweepAt: 1024}
}

func (c *channel) waiting() int { return len(c.queue) - c.head }

// fits reports whether it can be pushed without going past maxPerChannel waiting notifications
// in its channel or maxTotal in all. A notification that replaces a waiting one always fits.
func (t *throttle) fits(it *item, maxPerChannel, maxTotal int) bool {
	if t.coalesce {
		if _, ok := t.sessions[keyOf(it)]; ok {
			return true
		}
	}
	if t.total >= maxTotal {
		return false
	}
	c, ok := t.chans[it.n.Channel]
	return !ok || c.waiting() < maxPerChannel
}

// push adds it at the end of its channel's queue, or, when coalescing, in place of the waiting
// notification of the same channel and session, which it returns.
func (t *throttle) push(it *item, now time.Time) (dropped *item) {
	it.threshold = max(it.threshold, 0)
	t.maxThreshold = max(t.maxThreshold, it.threshold)
	c := t.chans[it.n.Channel]
	if t.coalesce {
		if s, ok := t.sessions[keyOf(it)]; ok {
			dropped, s.it = s.it, it
			if c.index >= 0 && c.queue[c.head] == s && it.threshold != dropped.threshold {
				c.next = t.readyAt(c, now)
				heap.Fix(&t.ready, c.index)
			}
			return dropped
		}
	}
	if c == nil {
		c = &channel{name: it.n.Channel, index: -1}
		t.chans[c.name] = c
	}
	t.arrivals++
	s := &slot{it: it, arrival: t.arrivals}
	c.queue = append(c.queue, s)
	t.total++
	if t.coalesce {
		t.sessions[keyOf(it)] = s
	}
	if c.waiting() == 1 && !c.sending {
		c.next = t.readyAt(c, now)
		heap.Push(&t.ready, c)
	}
	return nil
}

// readyAt is when the head of c may go: its threshold after the channel's previous
// notification, and not before now (so that ready channels are served in arrival order).
func (t *throttle) readyAt(c *channel, now time.Time) time.Time {
	at := now
	if !c.last.IsZero() {
		if r := c.last.Add(c.queue[c.head].it.threshold); r.After(at) {
			at = r
		}
	}
	return at
}

// pop removes the next notification that may go at now. When none may, it returns how long to
// wait for the next one, or a negative duration when nothing waits. The caller produces the
// notification and then calls sent; until then its channel sends nothing else.
func (t *throttle) pop(now time.Time) (*item, time.Duration) {
	if len(t.ready) == 0 {
		return nil, -1
	}
	c := t.ready[0]
	if c.next.After(now) {
		return nil, c.next.Sub(now)
	}
	heap.Pop(&t.ready)
	s := c.queue[c.head]
	c.queue[c.head] = nil
	c.head++
	if c.head >= 64 && c.head*2 >= len(c.queue) {
		n := copy(c.queue, c.queue[c.head:])
		clear(c.queue[n:])
		c.queue, c.head = c.queue[:n], 0
	}
	t.total--
	if t.coalesce {
		if k := keyOf(s.it); t.sessions[k] == s {
			delete(t.sessions, k)
		}
	}
	c.sending = true
	return s.it, 0
}

// sent records that it, returned by pop, has been handed to Kafka at now: the next
// notification of its channel waits for its threshold from now.
func (t *throttle) sent(it *item, now time.Time) {
	c := t.chans[it.n.Channel]
	c.sending = false
	c.last = now
	if c.waiting() > 0 {
		c.next = t.readyAt(c, now)
		heap.Push(&t.ready, c)
	}
	if len(t.chans) >= t.sweepAt {
		t.sweep(now)
	}
}

// sweep forgets idle channels whose previous notification is older than any threshold: they
// no longer constrain anything, and a busy system sees many channels come and go.
func (t *throttle) sweep(now time.Time) {
	for name, c := range t.chans {
		if c.waiting() == 0 && !c.sending && now.Sub(c.last) >= t.maxThreshold {
			delete(t.chans, name)
		}
	}
	t.sweepAt = max(1024, 2*len(t.chans))
}

// waitingIn returns the number of notifications waiting in a channel.
func (t *throttle) waitingIn(name string) int {
	if c, ok := t.chans[name]; ok {
		return c.waiting()
	}
	return 0
}

// chanHeap orders ready channels by the time their head may go, then by arrival.
type chanHeap []*channel

func (h chanHeap) Len() int { return len(h) }
func (h chanHeap) Less(i, j int) bool {
	if !h[i].next.Equal(h[j].next) {
		return h[i].next.Before(h[j].next)
	}
	return h[i].queue[h[i].head].arrival < h[j].queue[h[j].head].arrival
}
func (h chanHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *chanHeap) Push(x any) {
	c := x.(*channel)
	c.index = len(*h)
	*h = append(*h, c)
}
func (h *chanHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	c.index = -1
	*h = old[:len(old)-1]
	return c
}
