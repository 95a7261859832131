package realtime

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func note(channel string, i int) *item {
	return &item{n: Notification{Channel: channel, Metadata: []byte(fmt.Sprintf(`{"i":%d}`, i))}, seq: i}
}

func withSession(it *item, s string) *item {
	it.n.SessionID = &s
	return it
}

func spaced(it *item, d time.Duration) *item {
	it.threshold = d
	return it
}

// drain pops and sends everything, advancing a fake time to each wait, and returns what went
// out with the time it went.
type sentAt struct {
	it *item
	at time.Time
}

func drain(t *testing.T, thr *throttle, now time.Time) []sentAt {
	t.Helper()
	var out []sentAt
	for range 10_000 {
		it, wait := thr.pop(now)
		if it == nil {
			if wait < 0 {
				return out
			}
			if wait == 0 {
				t.Fatal("pop returned nothing and no wait")
			}
			now = now.Add(wait)
			continue
		}
		out = append(out, sentAt{it, now})
		thr.sent(it, now)
	}
	t.Fatal("the throttle never emptied")
	return nil
}

func TestThrottleSpacesAChannelAndKeepsItsOrder(t *testing.T) {
	thr := newThrottle(false)
	for i := 1; i <= 50; i++ {
		thr.push(spaced(note("room", i), 200*time.Millisecond), t0)
	}
	got := drain(t, thr, t0)
	if len(got) != 50 {
		t.Fatalf("got %d notifications, want 50", len(got))
	}
	for i, s := range got {
		if s.it.seq != i+1 {
			t.Fatalf("notification %d is #%d: the burst must come out in order", i, s.it.seq)
		}
		if want := t0.Add(time.Duration(i) * 200 * time.Millisecond); !s.at.Equal(want) {
			t.Fatalf("notification %d went at %v, want %v", i, s.at.Sub(t0), want.Sub(t0))
		}
	}
	if thr.total != 0 || thr.waitingIn("room") != 0 {
		t.Fatalf("got %d waiting, want 0", thr.total)
	}
}

func TestThrottleChannelsAreIndependentAndFair(t *testing.T) {
	thr := newThrottle(false)
	for i := 1; i <= 3; i++ {
		thr.push(spaced(note("a", i), time.Second), t0)
		thr.push(spaced(note("b", 10+i), time.Second), t0)
	}
	got := drain(t, thr, t0)
	var order []string
	for _, s := range got {
		order = append(order, fmt.Sprintf("%s%d@%v", s.it.n.Channel, s.it.seq, s.at.Sub(t0)))
	}
	want := "[a1@0s b11@0s a2@1s b12@1s a3@2s b13@2s]"
	if fmt.Sprint(order) != want {
		t.Fatalf("got %v, want %s", order, want)
	}
}

func TestThrottleSpacingCountsFromTheLastSend(t *testing.T) {
	thr := newThrottle(false)
	thr.push(spaced(note("a", 1), time.Second), t0)
	it, _ := thr.pop(t0)
	// Produce took 300ms (a full producer buffer): the next one waits a second from then.
	thr.sent(it, t0.Add(300*time.Millisecond))
	thr.push(spaced(note("a", 2), time.Second), t0.Add(400*time.Millisecond))
	if it, wait := thr.pop(t0.Add(400 * time.Millisecond)); it != nil || wait != 900*time.Millisecond {
		t.Fatalf("got %v, wait %v; want nothing for 900ms", it, wait)
	}
	// A channel whose last send is older than its threshold goes at once.
	thr.push(spaced(note("b", 3), time.Second), t0)
	thr.sent(mustPop(t, thr, t0), t0)
	thr.push(spaced(note("b", 4), time.Second), t0.Add(5*time.Second))
	if it, _ := thr.pop(t0.Add(5 * time.Second)); it == nil || it.seq != 2 {
		t.Fatalf("got %v, want a2 (ready since 1.3s) before b4", it)
	}
}

func mustPop(t *testing.T, thr *throttle, now time.Time) *item {
	t.Helper()
	it, wait := thr.pop(now)
	if it == nil {
		t.Fatalf("nothing to pop at %v (wait %v)", now.Sub(t0), wait)
	}
	return it
}

func TestThrottleNothingGoesWhileItsChannelIsSending(t *testing.T) {
	thr := newThrottle(false)
	thr.push(note("a", 1), t0)
	thr.push(note("a", 2), t0)
	first := mustPop(t, thr, t0)
	if it, wait := thr.pop(t0.Add(time.Hour)); it != nil || wait >= 0 {
		t.Fatalf("got %v (wait %v) while a1 is being produced", it, wait)
	}
	thr.sent(first, t0)
	if it := mustPop(t, thr, t0); it.seq != 2 {
		t.Fatalf("got #%d, want #2", it.seq)
	}
}

func TestThrottleCoalesceKeepsTheNewestPerChannelAndSession(t *testing.T) {
	thr := newThrottle(true)
	var dropped []int
	push := func(it *item) {
		if d := thr.push(spaced(it, time.Second), t0); d != nil {
			dropped = append(dropped, d.seq)
		}
	}
	push(withSession(note("a", 1), "s1"))
	thr.sent(mustPop(t, thr, t0), t0) // #1 goes at once
	for i := 2; i <= 20; i++ {
		push(withSession(note("a", i), "s1"))
	}
	push(withSession(note("a", 21), "s2"))
	push(note("a", 22)) // no session: a session of its own
	push(note("a", 23))
	if thr.total != 3 {
		t.Fatalf("got %d waiting, want 3 (one per session)", thr.total)
	}
	if len(dropped) != 19 {
		t.Fatalf("got %d dropped, want 19: %v", len(dropped), dropped)
	}
	got := drain(t, thr, t0)
	var seqs []int
	for _, s := range got {
		seqs = append(seqs, s.it.seq)
	}
	if fmt.Sprint(seqs) != "[20 21 23]" {
		t.Fatalf("got %v, want [20 21 23]: the newest per session, in the order the sessions first waited", seqs)
	}
	if !got[0].at.Equal(t0.Add(time.Second)) || !got[2].at.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("coalescing must keep the spacing: got %v and %v", got[0].at.Sub(t0), got[2].at.Sub(t0))
	}
}

func TestThrottleBounds(t *testing.T) {
	thr := newThrottle(false)
	for i := range 3 {
		if !thr.fits(note("hot", i), 3, 5) {
			t.Fatalf("notification %d must fit", i)
		}
		thr.push(note("hot", i), t0)
	}
	if thr.fits(note("hot", 4), 3, 5) {
		t.Fatal("a fourth notification in a channel bounded to 3 must not fit")
	}
	thr.push(note("b", 5), t0)
	thr.push(note("c", 6), t0)
	if thr.fits(note("d", 7), 3, 5) {
		t.Fatal("a sixth notification in a queue bounded to 5 must not fit")
	}
	c := newThrottle(true)
	c.push(withSession(note("hot", 1), "s"), t0)
	if !c.fits(withSession(note("hot", 2), "s"), 1, 1) {
		t.Fatal("with coalescing, a notification that replaces a waiting one always fits")
	}
}

func TestThrottleZeroThresholdIsFIFO(t *testing.T) {
	thr := newThrottle(false)
	for i := 1; i <= 5; i++ {
		thr.push(note("a", i), t0)
	}
	got := drain(t, thr, t0)
	for i, s := range got {
		if s.it.seq != i+1 || !s.at.Equal(t0) {
			t.Fatalf("got #%d at %v, want #%d at once", s.it.seq, s.at.Sub(t0), i+1)
		}
	}
}

func TestThrottleForgetsIdleChannels(t *testing.T) {
	thr := newThrottle(false)
	now := t0
	for i := range 5000 {
		thr.push(spaced(note(fmt.Sprint("ch", i), i), time.Second), now)
		thr.sent(mustPop(t, thr, now), now)
		now = now.Add(time.Millisecond)
	}
	if len(thr.chans) > 2100 {
		t.Fatalf("got %d channels remembered, want idle ones forgotten", len(thr.chans))
	}
	// A channel sent within its threshold is still remembered and still spaced.
	thr.push(spaced(note("ch4999", 1), time.Second), now)
	if it, wait := thr.pop(now); it != nil || wait <= 0 {
		t.Fatalf("got %v, wait %v: a channel sent 1ms ago must wait", it, wait)
	}
}
