package testenv

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka returns a client of the real broker, closed at cleanup.
func (e *Env) Kafka(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.Brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("testenv: kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Topic creates a topic with a fresh name and the given partitions; it is deleted at cleanup
// unless the test failed.
func (e *Env) Topic(t testing.TB, partitions int32) string {
	t.Helper()
	name := strings.ReplaceAll(Name(t, "t"), "_", "-")
	adm := kadm.NewClient(e.Kafka(t))
	resp, err := adm.CreateTopic(Context(t, 30*time.Second), partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("testenv: create topic %s: %v", name, err)
	}
	e.DeleteTopicsAtCleanup(t, name)
	return name
}

// DeleteTopicsAtCleanup deletes every topic whose name starts with prefix when the test ends,
// unless it failed. Engines under test create their own topics; this removes them.
func (e *Env) DeleteTopicsAtCleanup(t testing.TB, prefix string) {
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(e.Brokers...))
		if err != nil {
			return
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			return
		}
		var del []string
		for _, name := range topics.Names() {
			if strings.HasPrefix(name, prefix) {
				del = append(del, name)
			}
		}
		if len(del) > 0 {
			_, _ = adm.DeleteTopics(ctx, del...)
		}
	})
}

// ReadN consumes topic from the beginning until it has n records, failing the test if they do
// not arrive within timeout. It returns exactly the first n records in partition order.
func (e *Env) ReadN(t testing.TB, topic string, n int, timeout time.Duration, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	recs, err := e.ReadUntil(topic, timeout, func(got []*kgo.Record) bool { return len(got) >= n }, opts...)
	if err != nil {
		t.Fatalf("reading %d records from %s: %v (got %d)", n, topic, err, len(recs))
	}
	return recs[:n]
}

// ReadUntil consumes topic from the beginning until done says it has seen enough, or timeout.
func (e *Env) ReadUntil(topic string, timeout time.Duration, done func([]*kgo.Record) bool, opts ...kgo.Opt) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(e.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []*kgo.Record
	for !done(recs) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return recs, errors.New("timed out")
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				return recs, fe.Err
			}
		}
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	return recs, nil
}
