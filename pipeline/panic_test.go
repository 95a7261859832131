package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/procon-cdc/procon/envelope"
	"github.com/procon-cdc/procon/replication"
)

// panicBuilder builds as rowBuilder does and panics on the row 7, as a converter meeting a
// value nobody foresaw would.
type panicBuilder struct{ rowBuilder }

func (b *panicBuilder) Build(c *replication.Change, out []*envelope.Event) ([]*envelope.Event, error) {
	if c.Op == replication.OpInsert && string(c.New[0].Data) == "7" {
		var values []int
		_ = values[len(c.New)] // index out of range
	}
	return b.rowBuilder.Build(c, out)
}

// panicEncoder encodes as slowEncoder does and panics on the event of the row "7".
type panicEncoder struct{ *slowEncoder }

func (e panicEncoder) Encode(ctx context.Context, ev *envelope.Event) ([]byte, []byte, error) {
	if ev.Key != nil && ev.Key.Fields[0] == 7 {
		panic("an encoder's bug")
	}
	return e.slowEncoder.Encode(ctx, ev)
}

func (e panicEncoder) ForTopic(string) Encoder          { return e }
func (e panicEncoder) ForEvent(*envelope.Event) Encoder { return e }

// A panic while building or encoding a change's events stops the pipeline with an error
// naming the change's LSN, instead of killing the process, and nothing of or after its
// transaction is confirmed.
func TestPanicsStopAtTheirLSN(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(p *Pipeline)
	}{
		{"build", func(p *Pipeline) {
			p.cfg.Builder = &panicBuilder{rowBuilder{schema: &envelope.Schema{Type: envelope.Struct}}}
		}},
		{"encode", func(p *Pipeline) { p.cfg.Encoders = panicEncoder{p.cfg.Encoders.(*slowEncoder)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := replication.NewTracker(10)
			k := &fakeKafka{partitions: 1, ackAtOnce: true}
			p := newTestPipeline(t, k, tr)
			tc.setup(p)
			s := &stream{tracker: tr}
			for range 10 {
				s.tx(1) // rows 1 to 10, one per transaction
			}
			bad := s.txs[6]
			var badLSN string
			for _, c := range s.changes {
				if c.Op == replication.OpInsert && c.Tx == bad {
					badLSN = c.LSN.String()
				}
			}
			ch := make(chan []*replication.Change, len(s.changes))
			for _, c := range s.changes {
				ch <- []*replication.Change{c}
			}
			close(ch)
			err := p.Run(context.Background(), ch)
			if err == nil || !strings.Contains(err.Error(), "panic") || !strings.Contains(err.Error(), "at LSN "+badLSN) {
				t.Fatalf("Run: %v, want an error naming the panic and LSN %s", err, badLSN)
			}
			if got := tr.Confirmed(); got >= bad.CommitLSN {
				t.Fatalf("confirmed %s, at or past the failing transaction's commit %s", got, bad.CommitLSN)
			}
		})
	}
}
