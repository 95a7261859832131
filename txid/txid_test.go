package txid

import (
	"testing"
	"time"
)

func TestDeterministicAndReadable(t *testing.T) {
	commit := time.UnixMilli(1_700_000_000_123)
	a := New(commit, 1234, 0x16B374D8)
	b := New(commit, 1234, 0x16B374D8)
	if a != b || a.String() != b.String() {
		t.Fatalf("the same transaction got two ids: %s and %s", a, b)
	}
	back, err := Parse(a.String())
	if err != nil || back != a {
		t.Fatalf("Parse(%s) = %s, %v", a, back, err)
	}
	if !back.Time().Equal(commit) || back.Instance() != 1234 || back.CommitLSN() != 0x16B374D8 {
		t.Fatalf("got time %v instance %d lsn %x", back.Time(), back.Instance(), back.CommitLSN())
	}
	later := New(commit, 1234, 0x16B374D9)
	if a.Compare(later) != -1 || later.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Fatal("ids must order by commit position")
	}
}

func TestKeyFromHeaders(t *testing.T) {
	id := New(time.UnixMilli(1), 7, 99)
	h := map[string]string{HeaderTx: id.String(), HeaderSeq: "3"}
	k, err := FromHeaders(func(n string) (string, bool) { v, ok := h[n]; return v, ok })
	if err != nil || k.Tx != id || k.Seq != 3 {
		t.Fatalf("got %+v, %v", k, err)
	}
	if k.Compare(Key{Tx: id, Seq: 4}) != -1 {
		t.Fatal("keys order by position within a transaction")
	}
	if _, err := FromHeaders(func(string) (string, bool) { return "", false }); err == nil {
		t.Fatal("missing headers must be an error")
	}
	if _, err := ParseSeq("0"); err == nil {
		t.Fatal("positions start at 1")
	}
}
