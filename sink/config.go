package sink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/procon-cdc/procon/config"
)

// Config says how to reach the Kafka cluster and how to produce to it. Every Kafka client of
// Procon is built from one Config (the producer of run, the resume reads, and the clients of
// check, tail and drop), so TLS and SASL apply to all of them.
type Config struct {
	Brokers            []string
	ClientID           string
	TLS                *tls.Config
	SASLMechanism      string // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512; "" for none
	SASLUser, SASLPass string

	// Producer settings; ignored by Admin and Reader.
	MaxBufferedRecords int
	MaxBufferedBytes   int
	Linger             time.Duration
	Compression        string // none | gzip | snappy | lz4 | zstd
	MaxRecordBytes     int
	// TransactionalID, when set, makes the Writer transactional (kafka.delivery:
	// exactly_once): records are produced in Kafka transactions that Commit ends, and a
	// record's Ack is called once its transaction has committed. TransactionTimeout is the
	// transaction.timeout.ms it asks for.
	TransactionalID    string
	TransactionTimeout time.Duration

	// ConnectTimeout bounds the reachability check of New and NewAdmin (default 15s).
	ConnectTimeout time.Duration
	Logger         *slog.Logger
	// Observer, when set, is told what the clients built from this configuration do
	// (metrics).
	Observer Observer
}

// ConfigFrom maps the configuration's kafka section. A TLS file that cannot be read is a
// *config.FieldError naming kafka.tls.
func ConfigFrom(k *config.Kafka, log *slog.Logger) (Config, error) {
	c := Config{
		Brokers:            k.Brokers,
		ClientID:           k.ClientID,
		SASLMechanism:      k.SASL.Mechanism,
		SASLUser:           k.SASL.Username,
		SASLPass:           k.SASL.Password,
		MaxBufferedRecords: k.MaxBufferedRecords,
		MaxBufferedBytes:   k.MaxBufferedBytes,
		Linger:             time.Duration(k.Linger),
		Compression:        k.Compression,
		MaxRecordBytes:     k.MaxRecordBytes,
		Logger:             log,
	}
	if k.ExactlyOnce() {
		c.TransactionTimeout = time.Duration(k.Transactions.Timeout)
	}
	if k.TLS.Enabled {
		t, err := TLSConfig(k.TLS.CAFile, k.TLS.CertFile, k.TLS.KeyFile, k.TLS.InsecureSkipVerify)
		if err != nil {
			return c, &config.FieldError{Key: "kafka.tls", Problem: err.Error()}
		}
		c.TLS = t
	}
	return c, nil
}

func (c *Config) defaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 15 * time.Second
	}
}

// connOpts are the options that say how to reach the cluster: the one place where brokers,
// client id, TLS and SASL become client options.
func (c *Config) connOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS))
	}
	switch c.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASLUser, Pass: c.SASLPass}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPass}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASLUser, Pass: c.SASLPass}.AsSha512Mechanism()))
	case "":
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism %q: use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)
	}
	return opts, nil
}

// ErrUnreachable is a client's start that found no broker answering within ConnectTimeout.
var ErrUnreachable = errors.New("kafka unreachable")

// newClient builds a client from the connection options and extra (producer or consumer)
// options, and with ping checks first, within ConnectTimeout, that the cluster answers a
// metadata request (which needs authentication to succeed).
//
// The client retries a connection the broker closes before its first answer (AlwaysRetryEOF):
// franz-go takes that as a TLS or SASL misconfiguration and fails the requests (records
// included) at once, but a broker that is starting or stopping does the same, and a record
// failed for it would stop procon-cdc. Misconfigurations are found by the ping, which a client
// without the option makes, so that they fail fast with franz-go's diagnosis.
func (c *Config) newClient(ctx context.Context, ping bool, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := c.connOpts()
	if err != nil {
		return nil, err
	}
	if ping {
		if err := c.ping(ctx, opts); err != nil {
			return nil, err
		}
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts = append(opts, kgo.AlwaysRetryEOF(), kgo.WithHooks(&reachability{log: log}))
	if c.Observer != nil {
		opts = append(opts, kgo.WithHooks(hooks{c.Observer}))
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// ping checks with a client of its own that the cluster answers within ConnectTimeout.
func (c *Config) ping(ctx context.Context, opts []kgo.Opt) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		return fmt.Errorf("kafka brokers %v do not answer within %s: %w (%w)", c.Brokers, c.ConnectTimeout, ErrUnreachable, err)
	}
	return nil
}

func codec(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "", "none":
		return kgo.NoCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("unknown compression %q", name)
}

// TLSConfig builds a client TLS configuration from files (also used for the schema
// registry).
func TLSConfig(caFile, certFile, keyFile string, insecure bool) (*tls.Config, error) {
	c := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // only when the user asks
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
