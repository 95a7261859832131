package realtime

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/test/testenv"
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
		if !thr.admit(note("hot", i), limits{3, 5, 1 << 20}, t0) {
			t.Fatalf("notification %d must fit", i)
		}
		thr.push(note("hot", i), t0)
	}
	if thr.admit(note("hot", 4), limits{3, 5, 1 << 20}, t0) {
		t.Fatal("a fourth notification in a channel bounded to 3 must not fit")
	}
	thr.push(note("b", 5), t0)
	thr.push(note("c", 6), t0)
	if thr.admit(note("d", 7), limits{3, 5, 1 << 20}, t0) {
		t.Fatal("a sixth notification in a queue bounded to 5 must not fit")
	}
	c := newThrottle(true)
	c.push(withSession(note("hot", 1), "s"), t0)
	if !c.admit(withSession(note("hot", 2), "s"), limits{1, 1, 1 << 20}, t0) {
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

// sized is a notification of channel with n bytes of metadata.
func sized(channel string, i, n int) *item {
	it := note(channel, i)
	it.n.Metadata = []byte(`"` + strings.Repeat("x", n-2) + `"`)
	return it
}

func TestThrottleBoundsBytes(t *testing.T) {
	thr := newThrottle(false)
	lim := limits{perChannel: 100, total: 100, bytes: 10_000}
	one := itemCost(sized("a", 0, 3000)) + channelCost("a") // a notification in a new channel
	for i, ch := range []string{"a", "b"} {
		if !thr.admit(sized(ch, i, 3000), lim, t0) {
			t.Fatalf("notification %d must fit: %d of %d bytes held", i, thr.bytes, lim.bytes)
		}
		thr.push(spaced(sized(ch, i, 3000), time.Second), t0)
	}
	if thr.bytes != 2*one {
		t.Fatalf("got %d bytes held, want %d", thr.bytes, 2*one)
	}
	if thr.admit(sized("c", 2, 3000), lim, t0) {
		t.Fatalf("a third notification of 3000 bytes must not fit in 10000 (%d held)", thr.bytes)
	}
	if !thr.admit(sized("c", 2, 1000), lim, t0) {
		t.Fatal("a smaller one fits")
	}
	if thr.admit(sized("a", 2, 3000), lim, t0) {
		t.Fatal("nor in a channel it already knows")
	}
	thr.sent(mustPop(t, thr, t0), t0) // a goes: its bytes are the producer's now
	if !thr.admit(sized("c", 2, 3000), lim, t0) {
		t.Fatalf("after one went, a third fits (%d held)", thr.bytes)
	}
	if thr.peak > lim.bytes {
		t.Fatalf("peak %d over the bound %d", thr.peak, lim.bytes)
	}

	// An empty queue takes any notification, so that none waits for ever.
	empty := newThrottle(false)
	if !empty.admit(sized("huge", 0, 20_000), lim, t0) {
		t.Fatal("an empty queue must take a notification larger than its bound")
	}

	// Coalescing: a larger replacement must fit in bytes too.
	c := newThrottle(true)
	c.push(withSession(sized("a", 1, 3000), "s"), t0)
	c.push(withSession(sized("b", 2, 3000), "s"), t0)
	if c.admit(withSession(sized("a", 3, 8000), "s"), lim, t0) {
		t.Fatal("a replacement that makes the queue go past its bytes must not fit")
	}
	if !c.admit(withSession(sized("a", 3, 4000), "s"), lim, t0) {
		t.Fatal("a replacement within the bytes fits")
	}
	c.push(withSession(sized("a", 3, 4000), "s"), t0)
	if want := 2*one + 2 + 1000; c.bytes != want { // + the sessions' bytes
		t.Fatalf("got %d bytes held after the replacement, want %d", c.bytes, want)
	}
}

// TestThrottleManyChannelsStayWithinBytes: notifications to ever new channels, each sent at
// once and remembered for its spacing, never make the throttle hold more than its bound; the
// oldest idle channels are forgotten to make room, and counted.
func TestThrottleManyChannelsStayWithinBytes(t *testing.T) {
	rng := testenv.Rand(t, 0)
	thr := newThrottle(false)
	lim := limits{perChannel: 100, total: 10_000, bytes: 64 << 10}
	now := t0
	for i := range 3000 {
		name := fmt.Sprintf("ch%d-%s", i, strings.Repeat("n", rng.IntN(2000)))
		it := spaced(sized(name, i, 2+rng.IntN(2000)), time.Hour)
		if !thr.admit(it, lim, now) {
			t.Fatalf("notification %d does not fit while nothing waits (%d bytes held)", i, thr.bytes)
		}
		thr.push(it, now)
		thr.sent(mustPop(t, thr, now), now)
		if thr.bytes > lim.bytes {
			t.Fatalf("after %d channels the throttle holds %d bytes, over its bound %d", i+1, thr.bytes, lim.bytes)
		}
		now = now.Add(time.Millisecond)
	}
	if thr.peak > lim.bytes || thr.forgotten == 0 {
		t.Fatalf("peak %d (bound %d), %d channels forgotten early: want within the bound, some forgotten", thr.peak, lim.bytes, thr.forgotten)
	}
	if thr.idle.Len() != len(thr.chans) {
		t.Fatalf("%d channels known, %d of them idle: want all idle", len(thr.chans), thr.idle.Len())
	}
	// The newest channel is still remembered, and still spaced.
	last := "ch2999-"
	for name := range thr.chans {
		if strings.HasPrefix(name, last) {
			last = name
		}
	}
	thr.push(spaced(note(last, 1), time.Hour), now)
	if it, wait := thr.pop(now); it != nil || wait <= 0 {
		t.Fatalf("got %v, wait %v: the channel sent 1ms ago must wait", it, wait)
	}
	// Waiting notifications are never forgotten: a queue of waiting ones refuses more.
	full := newThrottle(false)
	for i := 0; ; i++ {
		it := spaced(sized(fmt.Sprint("w", i), i, 1000), time.Hour)
		if !full.admit(it, lim, now) {
			break
		}
		full.push(it, now)
	}
	if full.total == 0 || full.bytes > lim.bytes || full.forgotten != 0 {
		t.Fatalf("%d waiting in %d bytes, %d forgotten", full.total, full.bytes, full.forgotten)
	}
}
