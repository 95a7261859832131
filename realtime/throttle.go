package realtime

import (
	"container/heap"
	"container/list"
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
// The throttle counts the bytes it holds (bytes): the waiting notifications and every channel
// it knows, including the idle ones it remembers only for their spacing, so that a bound on
// bytes bounds its memory however many channels are written to. Idle channels are forgotten
// once the largest threshold has passed since their last notification; admit forgets the
// oldest ones sooner when their room is needed.
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
	idle         list.List     // of *channel: idle channels, in the order they went idle (by last)

	bytes     int   // what the waiting notifications and the known channels cost (itemCost, channelCost)
	idleBytes int   // the part of bytes that idle channels cost
	peak      int   // the most bytes held
	forgotten int64 // idle channels forgotten before their spacing ran out, to make room
	delayed   int64 // notifications that could not go when they arrived
}

// The bookkeeping a waiting notification and a known channel cost beyond their own bytes (the
// structs, their places in the maps, queues and lists), counted in throttle.bytes.
const (
	itemOverhead    = 256
	channelOverhead = 256
)

func itemCost(it *item) int       { return it.n.size() + itemOverhead }
func channelCost(name string) int { return len(name) + channelOverhead }

// channel is one channel's queue and the time its previous notification was produced.
type channel struct {
	name    string
	queue   []*slot // waiting, oldest first, from head
	head    int
	last    time.Time     // when the previous notification was produced; zero if never
	sending bool          // its head was popped and is being produced
	next    time.Time     // when queue[head] may go
	index   int           // position in the ready heap, -1 when not in it
	idle    *list.Element // its place in throttle.idle while nothing waits and nothing is sent
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
	return &throttle{coalesce: coalesce, chans: map[string]*channel{}, sessions: map[sessionKey]*slot{}}
}

func (c *channel) waiting() int { return len(c.queue) - c.head }

// limits bound what a throttle holds.
type limits struct {
	perChannel int // waiting notifications in one channel
	total      int // waiting notifications in all channels
	bytes      int // throttle.bytes
}

// admit reports whether it can be pushed at now without going past the limits. To make room in
// bytes, it forgets idle channels, oldest first, if that is enough. A notification that
// replaces a waiting one (coalescing) fits the counts, and an empty queue takes any
// notification, so that none can be too large to ever go.
func (t *throttle) admit(it *item, lim limits, now time.Time) bool {
	t.expire(now)
	if t.coalesce {
		if s, ok := t.sessions[keyOf(it)]; ok {
			return t.makeRoom(itemCost(it)-itemCost(s.it), lim.bytes)
		}
	}
	if t.total >= lim.total {
		return false
	}
	need := itemCost(it)
	switch c, ok := t.chans[it.n.Channel]; {
	case !ok:
		need += channelCost(it.n.Channel)
	case c.waiting() >= lim.perChannel:
		return false
	case c.idle != nil: // making room may forget it: count it as new
		need += channelCost(it.n.Channel)
	}
	return t.makeRoom(need, lim.bytes)
}

// makeRoom reports whether need more bytes fit under limit, forgetting idle channels (oldest
// first) if that makes them fit or if nothing waits.
func (t *throttle) makeRoom(need, limit int) bool {
	if t.bytes+need <= limit {
		return true
	}
	if t.total > 0 && t.bytes-t.idleBytes+need > limit {
		return false // forgetting every idle channel would not be enough
	}
	for t.bytes+need > limit && t.idle.Len() > 0 {
		t.forget(t.idle.Front().Value.(*channel))
		t.forgotten++
	}
	return true
}

// expire forgets the idle channels whose previous notification is older than any threshold:
// they no longer constrain anything, and a busy system sees many channels come and go.
func (t *throttle) expire(now time.Time) {
	for e := t.idle.Front(); e != nil; e = t.idle.Front() {
		c := e.Value.(*channel)
		if now.Sub(c.last) < t.maxThreshold {
			return
		}
		t.forget(c)
	}
}

// forget drops an idle channel.
func (t *throttle) forget(c *channel) {
	t.idle.Remove(c.idle)
	c.idle = nil
	delete(t.chans, c.name)
	cost := channelCost(c.name)
	t.bytes -= cost
	t.idleBytes -= cost
}

// push adds it at the end of its channel's queue, or, when coalescing, in place of the waiting
// notification of the same channel and session, which it returns.
func (t *throttle) push(it *item, now time.Time) (dropped *item) {
	it.threshold = max(it.threshold, 0)
	it.queued = now
	t.maxThreshold = max(t.maxThreshold, it.threshold)
	c := t.chans[it.n.Channel]
	if t.coalesce {
		if s, ok := t.sessions[keyOf(it)]; ok {
			dropped, s.it = s.it, it
			t.grow(itemCost(it) - itemCost(dropped))
			if c.index >= 0 && c.queue[c.head] == s && it.threshold != dropped.threshold {
				c.next = t.readyAt(c, now)
				heap.Fix(&t.ready, c.index)
			}
			return dropped
		}
	}
	switch {
	case c == nil:
		c = &channel{name: it.n.Channel, index: -1}
		t.chans[c.name] = c
		t.grow(channelCost(c.name))
	case c.idle != nil:
		t.idle.Remove(c.idle)
		c.idle = nil
		t.idleBytes -= channelCost(c.name)
	}
	t.arrivals++
	s := &slot{it: it, arrival: t.arrivals}
	c.queue = append(c.queue, s)
	t.total++
	t.grow(itemCost(it))
	if t.coalesce {
		t.sessions[keyOf(it)] = s
	}
	if c.waiting() == 1 && !c.sending {
		c.next = t.readyAt(c, now)
		heap.Push(&t.ready, c)
	}
	return nil
}

// grow adds to the bytes held.
func (t *throttle) grow(n int) {
	t.bytes += n
	t.peak = max(t.peak, t.bytes)
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
	if c.next.After(s.it.queued) {
		t.delayed++
	}
	c.queue[c.head] = nil
	c.head++
	if c.head >= 64 && c.head*2 >= len(c.queue) {
		n := copy(c.queue, c.queue[c.head:])
		clear(c.queue[n:])
		c.queue, c.head = c.queue[:n], 0
	}
	t.total--
	t.bytes -= itemCost(s.it) // from now on, the producer's buffer holds it
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
	} else {
		c.idle = t.idle.PushBack(c)
		t.idleBytes += channelCost(c.name)
	}
	t.expire(now)
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
