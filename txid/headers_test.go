package txid

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFromRecordHeaders(t *testing.T) {
	id := New(time.UnixMilli(1_700_000_000_000), 42, 0x1234)
	headers := []kgo.RecordHeader{
		{Key: "other", Value: []byte("x")},
		{Key: HeaderTx, Value: []byte(id.String())},
		{Key: HeaderSeq, Value: []byte("7")},
	}
	k, err := FromRecordHeaders(headers)
	if err != nil {
		t.Fatal(err)
	}
	if k.Tx != id || k.Seq != 7 {
		t.Fatalf("got %+v, want tx %s seq 7", k, id)
	}
	if got, want := k.String(), id.String()+"/7"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := FromRecordHeaders(headers[:2]); err == nil {
		t.Fatal("a record without procon.seq must be an error")
	}
	if _, err := FromRecordHeaders([]kgo.RecordHeader{{Key: HeaderTx, Value: []byte("nope")}, {Key: HeaderSeq, Value: []byte("1")}}); err == nil {
		t.Fatal("a malformed procon.tx must be an error")
	}
}

// A consumer drops the records it has already seen: after a crash, Procon may send a record
// again, always with the same procon.tx and procon.seq.
func ExampleFromRecordHeaders() {
	id := New(time.UnixMilli(1_700_000_000_000), 1234, 0x16B374D8)
	rec := &kgo.Record{Headers: []kgo.RecordHeader{
		{Key: HeaderTx, Value: id.AppendText(nil)},
		{Key: HeaderSeq, Value: []byte("1")},
	}}
	seen := map[Key]bool{}
	for range 2 { // the same record delivered twice
		k, err := FromRecordHeaders(rec.Headers)
		if err != nil {
			panic(err)
		}
		if seen[k] {
			fmt.Println("duplicate of", k)
			continue
		}
		seen[k] = true
		fmt.Println("process", k, "committed at", k.Tx.Time().UTC().Format(time.RFC3339), "instance", k.Tx.Instance())
	}
	// Output:
	// process 01HF7YAT000K90000000BB6X6R/1 committed at 2023-11-14T22:13:20Z instance 1234
	// duplicate of 01HF7YAT000K90000000BB6X6R/1
}
