package sink

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Observer is told what a Kafka client does, for metrics. Its methods run on the client's
// goroutines: they must be quick and must not block.
type Observer interface {
	// BatchWritten reports a batch of records Kafka acknowledged, and their uncompressed size.
	BatchWritten(topic string, records, bytes int)
	// RequestFailed reports a request to a broker that failed; the client retries it. kind
	// is ErrorKind's name of the error.
	RequestFailed(kind string)
	// ProduceFailed reports a record Kafka refused for good (the writer stops).
	ProduceFailed(kind string)
	// Connected reports a connection attempt to a broker: err is nil when it succeeded.
	Connected(err error)
	// Disconnected reports a broker connection that closed.
	Disconnected()
}

// ErrorKind names an error for a metric's label, from a small set: Kafka's error code name
// (NOT_LEADER_FOR_PARTITION), "timeout", "canceled", "network" or "other".
func ErrorKind(err error) string {
	var ke *kerr.Error
	var ne net.Error
	switch {
	case errors.As(err, &ke):
		return ke.Message
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ne):
		if ne.Timeout() {
			return "timeout"
		}
		return "network"
	}
	return "other"
}

// reachability logs, once per change, that the client cannot reach the brokers and that it
// can again: an outage is two lines in the log, however many attempts the client makes.
type reachability struct {
	log  *slog.Logger
	down atomic.Bool
}

var (
	_ kgo.HookBrokerConnect       = (*reachability)(nil)
	_ kgo.HookProduceBatchWritten = (*reachability)(nil)
)

func (r *reachability) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	if err != nil {
		if r.down.CompareAndSwap(false, true) {
			r.log.Warn("kafka: cannot connect to a broker; the client keeps trying", "broker", addr, "err", err)
		}
		return
	}
	if r.down.CompareAndSwap(true, false) {
		r.log.Info("kafka: connected again", "broker", addr)
	}
}

func (r *reachability) OnProduceBatchWritten(_ kgo.BrokerMetadata, topic string, _ int32, _ kgo.ProduceBatchMetrics) {
	if r.down.CompareAndSwap(true, false) {
		r.log.Info("kafka: producing again", "topic", topic)
	}
}

// hooks adapts an Observer to the client's hooks.
type hooks struct{ o Observer }

var (
	_ kgo.HookProduceBatchWritten = hooks{}
	_ kgo.HookBrokerE2E           = hooks{}
	_ kgo.HookBrokerConnect       = hooks{}
	_ kgo.HookBrokerDisconnect    = hooks{}
)

func (h hooks) OnProduceBatchWritten(_ kgo.BrokerMetadata, topic string, _ int32, m kgo.ProduceBatchMetrics) {
	h.o.BatchWritten(topic, m.NumRecords, m.UncompressedBytes)
}

func (h hooks) OnBrokerE2E(_ kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	if err := e2e.Err(); err != nil {
		h.o.RequestFailed(ErrorKind(err))
	}
}

func (h hooks) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.o.Connected(err)
}

func (h hooks) OnBrokerDisconnect(kgo.BrokerMetadata, net.Conn) { h.o.Disconnected() }
