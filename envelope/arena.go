package envelope

import "unsafe"

// arena hands out the memory of the events a Builder makes from chunks, so that an event
// costs a few allocations per chunk rather than about thirty of its own: each Value and its
// Fields, each text value (its bytes and the box an interface needs for a string), each
// int64 boxed into a field, the Event itself.
//
// Nothing handed out is reused: a chunk is only appended to, and every region belongs to the
// one value it was handed to, so events keep the ownership rules of separately allocated
// ones (the encoders read them on other goroutines after the Builder has sent them, a field
// may be set again by its event's owner). The price is that a chunk lives as long as any
// value carved from it; the chunks are small (a few KiB: some tens of events) and events
// live for one pipeline batch, so this holds back little.
//
// A nil *arena allocates each value on its own (the snapshot Reader, used by several
// goroutines).
type arena struct {
	vals   []Value
	anys   []any
	strs   []string
	ints   []int64
	text   []byte
	events []Event
}

const (
	arenaValues = 64
	arenaAnys   = 1024
	arenaBoxes  = 256
	arenaText   = 16 << 10
	arenaEvents = 64
	// arenaTextMax is the longest text copied into a chunk; longer ones get their own
	// allocation, so that one large value never holds a chunk of small ones.
	arenaTextMax = 1 << 10
)

// value returns an all-null value of a Struct schema.
func (a *arena) value(s *Schema) *Value {
	if a == nil {
		return NewValue(s)
	}
	n := len(s.Fields)
	if len(a.anys) < n {
		a.anys = make([]any, max(arenaAnys, n))
	}
	v := carve(&a.vals, arenaValues)
	v.Schema, v.Fields = s, a.anys[:n:n] // capacity n: an append never reaches a neighbour
	a.anys = a.anys[n:]
	return v
}

// event returns a zero Event.
func (a *arena) event() *Event {
	if a == nil {
		return &Event{}
	}
	return carve(&a.events, arenaEvents)
}

// str returns a copy of b as a string in an interface.
func (a *arena) str(b []byte) any {
	if a == nil || len(b) > arenaTextMax {
		return string(b)
	}
	if len(b) == 0 {
		return ""
	}
	if len(a.text) < len(b) {
		a.text = make([]byte, arenaText)
	}
	t := a.text[:len(b):len(b)]
	copy(t, b)
	a.text = a.text[len(b):]
	return a.boxString(unsafe.String(&t[0], len(t)))
}

// boxString returns s in an interface without allocating a box of its own.
func (a *arena) boxString(s string) any {
	if a == nil {
		return s
	}
	p := carve(&a.strs, arenaBoxes)
	*p = s
	return box(stringType, unsafe.Pointer(p))
}

// int64 returns n in an interface without allocating a box of its own.
func (a *arena) int64(n int64) any {
	if a == nil {
		return n
	}
	p := carve(&a.ints, arenaBoxes)
	*p = n
	return box(int64Type, unsafe.Pointer(p))
}

// carve hands out the next slot of a chunk, starting a chunk of size slots when it is used up.
func carve[T any](chunk *[]T, size int) *T {
	if len(*chunk) == 0 {
		*chunk = make([]T, size)
	}
	p := &(*chunk)[0]
	*chunk = (*chunk)[1:]
	return p
}

// eface is the layout of an empty interface: its dynamic type and a pointer to its value
// (for types that are not pointers themselves). Converting a string or an int64 to an
// interface allocates that value's box; box points an interface at a box carved from an
// arena chunk instead. The runtime never writes through that pointer, and the arena never
// writes a slot again once handed out, so the interface is as immutable as one the compiler
// made.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

var (
	stringType = typeOf("")
	int64Type  = typeOf(int64(0))
)

func typeOf(x any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&x)).typ }

func box(typ, data unsafe.Pointer) any {
	var x any
	e := (*eface)(unsafe.Pointer(&x))
	e.typ, e.data = typ, data
	return x
}
