package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/procon-cdc/procon/retrylog"
)

// GroupConfig configures a GroupReader.
type GroupConfig struct {
	Group  string
	Topics []string
	// InstanceID, when set, makes the member static (group.instance.id).
	InstanceID     string
	SessionTimeout time.Duration // 0: franz-go's default (45s)
	// Assigned says where newly assigned partitions start: the offset of the next record to
	// read, or -1 for the partition's first record. It is called before any of their records
	// is fetched; an error leaves the group (the reader's next Poll returns it).
	Assigned func(ctx context.Context, partitions map[string][]int32) (map[string]map[int32]int64, error)
	// Revoked is called when partitions leave this member (a rebalance, the membership lost,
	// or Close), before the group gives them to another member when it can; it returns once
	// no work on them is in flight.
	Revoked func(ctx context.Context, partitions map[string][]int32)
}

// GroupReader reads topics as a member of a consumer group, read_committed, with the offsets
// kept by its user rather than by Kafka: GroupConfig.Assigned says where partitions start. A
// partition whose start offset is gone (retention) is an error, never a silent jump. Poll is
// called by one goroutine; Seek and CommitOffsets by any.
type GroupReader struct {
	cl    *kgo.Client
	log   *slog.Logger
	group string

	mu  sync.Mutex
	err error // from Assigned: returned by the next Poll

	// outside: the group's session was lost and the client is joining again (Poll's alone).
	outside retrylog.Outage
}

// NewGroupReader joins the group and checks that a broker answers within cfg.ConnectTimeout.
func NewGroupReader(ctx context.Context, cfg Config, gc GroupConfig) (*GroupReader, error) {
	cfg.defaults()
	g := &GroupReader{log: cfg.Logger, group: gc.Group}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(gc.Group),
		kgo.ConsumeTopics(gc.Topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		// Between a Poll and AllowRebalance no partition is revoked: the user binds what it
		// polled to the owners of this assignment before any can change.
		kgo.BlockRebalanceOnPoll(),
		// Never jump: an offset out of range is an error for the user to see.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.AdjustFetchOffsetsFn(func(ctx context.Context, fetched map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			parts := map[string][]int32{}
			for t, ps := range fetched {
				for p := range ps {
					parts[t] = append(parts[t], p)
				}
			}
			starts, err := gc.Assigned(ctx, parts)
			if err != nil {
				if ctx.Err() == nil {
					g.setErr(fmt.Errorf("start offsets of %v: %w", parts, err))
				}
				// Else a rebalance began while the offsets were read: the client assigns
				// again in the next session.
				return nil, err
			}
			out := map[string]map[int32]kgo.Offset{}
			for t, ps := range parts {
				out[t] = map[int32]kgo.Offset{}
				for _, p := range ps {
					o, ok := starts[t][p]
					if !ok || o < 0 {
						out[t][p] = kgo.NewOffset().AtStart()
					} else {
						out[t][p] = kgo.NewOffset().At(o)
					}
				}
			}
			return out, nil
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, parts map[string][]int32) {
			gc.Revoked(ctx, parts)
		}),
		kgo.OnPartitionsLost(func(ctx context.Context, _ *kgo.Client, parts map[string][]int32) {
			gc.Revoked(ctx, parts)
		}),
	}
	if gc.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(gc.InstanceID))
	}
	if gc.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(gc.SessionTimeout))
	}
	cl, err := cfg.newClient(ctx, true, opts...)
	if err != nil {
		return nil, err
	}
	g.cl = cl
	return g, nil
}

func (g *GroupReader) setErr(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
}

// Poll waits for at most max records. Errors a client retries (brokers unreachable, leaders
// moving) are not returned; any other partition error is, since reading past it would skip
// records. When ctx ends it returns ctx's error. No partition is revoked from a Poll until
// AllowRebalance: the caller must call it after every Poll.
func (g *GroupReader) Poll(ctx context.Context, max int) ([]ConsumedRecord, error) {
	fs := g.cl.PollRecords(ctx, max)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g.mu.Lock()
	err := g.err
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var errs []error
	joining := false
	for _, fe := range fs.Errors() {
		var session *kgo.ErrGroupSession
		var netErr net.Error
		switch {
		case errors.Is(fe.Err, context.Canceled), errors.Is(fe.Err, kgo.ErrClientClosed):
			return nil, fe.Err
		case errors.As(fe.Err, &session):
			// The client keeps trying to (re)join; partitions it lost were revoked first.
			joining = true
			g.outside.Failed(g.log, "consumer group: not a member for now; the client retries", fe.Err, "group", g.group)
			continue
		case kerr.IsRetriable(fe.Err), errors.As(fe.Err, &netErr), errors.Is(fe.Err, io.EOF), kgo.IsRetryableBrokerErr(fe.Err):
			g.log.Debug("fetch error; the client retries", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			continue
		}
		errs = append(errs, fmt.Errorf("%s[%d]: %w", fe.Topic, fe.Partition, fe.Err))
	}
	if !joining {
		// Fetches only come from a member (the errors of a session come without any).
		g.outside.Recovered(g.log, "consumer group: a member again", "group", g.group)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	recs := make([]ConsumedRecord, 0, fs.NumRecords())
	fs.EachRecord(func(rec *kgo.Record) {
		recs = append(recs, ConsumedRecord{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
			Key: rec.Key, Value: rec.Value, Headers: headersOf(rec), Timestamp: rec.Timestamp})
	})
	return recs, nil
}

// EndOffsets returns the end offset a read_committed reader sees (the last stable offset) of
// each partition of topics, for the consumer's lag. In a partition written in Kafka
// transactions it lies one past the last commit marker, one past the offset a consumer that
// has applied everything stores.
func (g *GroupReader) EndOffsets(ctx context.Context, topics ...string) (map[string]map[int32]int64, error) {
	offs, err := kadm.NewClient(g.cl).ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	out := map[string]map[int32]int64{}
	var errs []error
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", o.Topic, o.Partition, o.Err))
			return
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out, errors.Join(errs...)
}

// AllowRebalance lets the group revoke partitions again after a Poll.
func (g *GroupReader) AllowRebalance() { g.cl.AllowRebalance() }

// CommitOffsets records offsets in the group (the next offset to read, per partition), for
// the tools that show a group's lag; the offsets that count are the user's own.
func (g *GroupReader) CommitOffsets(ctx context.Context, offsets map[string]map[int32]int64) error {
	out := map[string]map[int32]kgo.EpochOffset{}
	for t, ps := range offsets {
		out[t] = map[int32]kgo.EpochOffset{}
		for p, o := range ps {
			out[t][p] = kgo.EpochOffset{Epoch: -1, Offset: o}
		}
	}
	var cerr error
	g.cl.CommitOffsetsSync(ctx, out, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		cerr = err
	})
	return cerr
}

// Close leaves the group (Revoked is called for every partition first) and closes the client.
func (g *GroupReader) Close() { g.cl.Close() }
