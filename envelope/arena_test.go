package envelope

import (
	"runtime"
	"strconv"
	"testing"
)

// TestArenaValues checks what the arena hands out: values of the right dynamic type that
// compare equal to ordinary ones, Fields that an append cannot spill into a neighbour, and
// contents that survive garbage collections while chunks are replaced.
func TestArenaValues(t *testing.T) {
	var a arena
	s := structSchema("t", 0, false, field("a", prim(String, false)), field("b", prim(Int64, false)))
	type kept struct {
		v    *Value
		text string
		n    int64
	}
	var all []kept
	for i := range 5000 {
		v := a.value(s)
		text := "value " + strconv.Itoa(i)
		if i%97 == 0 {
			text += string(make([]byte, arenaTextMax)) // longer than a chunk takes
		}
		v.Fields[0] = a.str([]byte(text))
		v.Fields[1] = a.int64(int64(i) << 20)
		if cap(v.Fields) != 2 {
			t.Fatalf("value %d: Fields has capacity %d, want 2", i, cap(v.Fields))
		}
		all = append(all, kept{v, text, int64(i) << 20})
		if i%1000 == 0 {
			runtime.GC()
		}
	}
	runtime.GC()
	for i, k := range all {
		if got, ok := k.v.Fields[0].(string); !ok || got != k.text {
			t.Fatalf("value %d: text %T %q, want %q", i, k.v.Fields[0], k.v.Fields[0], k.text)
		}
		if k.v.Fields[1] != any(k.n) {
			t.Fatalf("value %d: int64 %T %v, want %d", i, k.v.Fields[1], k.v.Fields[1], k.n)
		}
	}
	if x := a.str(nil); x != any("") {
		t.Fatalf("empty text: %T %q", x, x)
	}
	var none *arena // the Reader's: plain allocations
	if v := none.value(s); len(v.Fields) != 2 || none.str([]byte("x")) != any("x") || none.int64(7) != any(int64(7)) {
		t.Fatal("nil arena")
	}
}
