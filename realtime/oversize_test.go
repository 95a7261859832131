package realtime

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/deadletter"
)

type sameLimit int

func (l sameLimit) MaxRecordBytes(context.Context, string) (int, error) { return int(l), nil }

func oversizeGuard(t *testing.T, p deadletter.Policy) *deadletter.Guard {
	t.Helper()
	g, err := deadletter.New(deadletter.Config{Limits: sameLimit(4096), Topic: "dlq",
		Policies: [3]deadletter.Policy{deadletter.Fail, deadletter.Fail, p}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// A notification too large for the topic never reaches the producer as it is: skipped, it
// counts as sent; dead-lettered, a reference takes its place and its acknowledgement. The
// notifications after it go out.
func TestServiceTooLargeNotifications(t *testing.T) {
	big := `{"channel":"room","metadata":{"blob":"` + strings.Repeat("x", 5000) + `"}}`
	for _, p := range []deadletter.Policy{deadletter.Skip, deadletter.DLQ} {
		t.Run(p.String(), func(t *testing.T) {
			h := start(t, Config{Oversize: oversizeGuard(t, p)})
			tx := newTx(9)
			seq, err := h.svc.Handle(context.Background(), message(tx, big), txHeader(tx), 0)
			if err == nil {
				_, err = h.svc.Handle(context.Background(), message(tx, `{"channel":"other"}`), txHeader(tx), seq)
			}
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if p == deadletter.DLQ {
				want = 2
			}
			recs := h.waitProduced(t, want)
			if p == deadletter.DLQ {
				var v deadletter.Reference
				if err := json.Unmarshal(recs[0].rec.Value, &v); err != nil {
					t.Fatal(err)
				}
				if recs[0].rec.Topic != "dlq" || v.Kind != "realtime" || v.Channel != "room" || v.CommitLSN != "0/9000" || v.XID != 9 || v.Topic != "rt" {
					t.Fatalf("reference %.300s on %s", recs[0].rec.Value, recs[0].rec.Topic)
				}
				if header(recs[0], "procon.seq") != "1" {
					t.Fatalf("reference has procon.seq %q, want the notification's 1", header(recs[0], "procon.seq"))
				}
			}
			if last := recs[len(recs)-1]; last.rec.Topic != "rt" || string(last.rec.Key) != `{"channel":"other"}` {
				t.Fatalf("last record %.100s on %s, want the next notification", last.rec.Key, last.rec.Topic)
			}
			h.prod.wg.Wait()
			if n := h.tracker.open(tx); n != 0 {
				t.Fatalf("%d notifications of the transaction unacknowledged, want 0", n)
			}
		})
	}
}
