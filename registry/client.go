package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/procon-cdc/procon/retrylog"
)

// Config says where the registry is and how to reach it.
type Config struct {
	URL                string
	Username, Password string      // HTTP basic auth, when Username is set
	TLS                *tls.Config // nil: the system's defaults (https URLs still work)
	// Timeout bounds one HTTP request (default 10s).
	Timeout time.Duration
	// MaxBackoff caps the wait between attempts while the registry is unreachable (default 5s).
	MaxBackoff time.Duration
	Logger     *slog.Logger
}

// RedactedURL returns u as it may be shown: a password in it (https://user:password@host) is
// replaced by "xxxxx".
func RedactedURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(a schema_registry.url that does not parse)"
	}
	return p.Redacted()
}

// Client is a schema registry client that retries transient failures.
type Client struct {
	sr         *sr.Client
	url        string // redacted: it goes into logs and errors
	log        *slog.Logger
	maxBackoff time.Duration
}

// New returns a Client; it does not contact the registry.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("registry: no URL")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	opts := []sr.ClientOpt{
		sr.URLs(cfg.URL),
		sr.HTTPClient(&http.Client{Timeout: cfg.Timeout}),
		sr.UserAgent("procon-cdc"),
	}
	if cfg.TLS != nil {
		opts = append(opts, sr.DialTLSConfig(cfg.TLS))
	}
	if cfg.Username != "" {
		opts = append(opts, sr.BasicAuth(cfg.Username, cfg.Password))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Client{sr: cl, url: RedactedURL(cfg.URL), log: cfg.Logger, maxBackoff: cfg.MaxBackoff}, nil
}

// Ping asks the registry for its subjects once, without retrying: whether it answers now.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.sr.Subjects(ctx); err != nil {
		return fmt.Errorf("registry %s: %w", c.url, err)
	}
	return nil
}

// Register registers an Avro schema under subject, or finds it already registered there, and
// returns its id: one POST /subjects/{subject}/versions. A schema the registry refuses (HTTP 409
// for an incompatible schema, 422 for an invalid one) is an *Error.
func (c *Client) Register(ctx context.Context, subject, schema string) (int, error) {
	var id int
	err := c.retry(ctx, "register a schema under subject "+subject, func(ctx context.Context) error {
		var err error
		id, err = c.sr.RegisterSchema(ctx, subject, sr.Schema{Schema: schema, Type: sr.TypeAvro}, -1, -1)
		return err
	})
	return id, err
}

// SchemaByVersion returns the id and text of one registered version of subject.
func (c *Client) SchemaByVersion(ctx context.Context, subject string, version int) (int, string, error) {
	var ss sr.SubjectSchema
	err := c.retry(ctx, fmt.Sprintf("fetch version %d of subject %s", version, subject), func(ctx context.Context) error {
		var err error
		ss, err = c.sr.SchemaByVersion(ctx, subject, version)
		return err
	})
	if err != nil {
		return 0, "", err
	}
	if ss.Type != sr.TypeAvro {
		return 0, "", fmt.Errorf("registry: version %d of subject %s is a %s schema, not Avro", version, subject, ss.Type)
	}
	return ss.ID, ss.Schema.Schema, nil
}

// SchemaByID returns the text of the schema with the given id.
func (c *Client) SchemaByID(ctx context.Context, id int) (string, error) {
	var s sr.Schema
	err := c.retry(ctx, fmt.Sprintf("fetch schema id %d", id), func(ctx context.Context) error {
		var err error
		s, err = c.sr.SchemaByID(ctx, id)
		return err
	})
	return s.Schema, err
}

// Error is a request the registry answered with a refusal; retrying it would not help.
type Error struct {
	Op         string // what was attempted, naming the subject
	StatusCode int    // HTTP status: 409 incompatible schema, 404 unknown subject or version, ...
	Message    string // the registry's own message
}

func (e *Error) Error() string {
	what := "refused"
	switch e.StatusCode {
	case http.StatusConflict:
		what = "refused the schema as incompatible with the subject's earlier versions"
	case http.StatusNotFound:
		what = "does not have it"
	case http.StatusUnprocessableEntity:
		what = "refused the schema as invalid"
	case http.StatusUnauthorized, http.StatusForbidden:
		what = "refused the credentials (check schema_registry.username and password)"
	}
	return fmt.Sprintf("registry: %s: the registry %s (HTTP %d): %s", e.Op, what, e.StatusCode, e.Message)
}

// IsIncompatible reports whether err is the registry refusing a schema as incompatible (409).
func IsIncompatible(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusConflict
}

// permanent turns the registry's deliberate answers into *Error; anything else (no
// connection, timeouts, 5xx, 408, 429) is worth retrying.
func permanent(op string, err error) error {
	var re *sr.ResponseError
	if !errors.As(err, &re) {
		return nil
	}
	if re.StatusCode >= 500 || re.StatusCode == http.StatusRequestTimeout || re.StatusCode == http.StatusTooManyRequests {
		return nil
	}
	msg := re.Message
	if msg == "" {
		msg = string(re.Raw)
	}
	return &Error{Op: op, StatusCode: re.StatusCode, Message: msg}
}

// retry runs fn until it succeeds, fails permanently, or ctx ends, waiting with exponential
// backoff between attempts while the registry is unreachable.
func (c *Client) retry(ctx context.Context, op string, fn func(context.Context) error) error {
	backoff := 100 * time.Millisecond
	var down retrylog.Outage
	for {
		err := fn(ctx)
		if err == nil {
			down.Recovered(c.log, "schema registry answers again", "url", c.url, "op", op)
			return nil
		}
		if perr := permanent(op, err); perr != nil {
			return perr
		}
		if ctx.Err() != nil {
			return fmt.Errorf("registry: %s: gave up waiting for the registry: %w (last error: %v)", op, context.Cause(ctx), err)
		}
		down.Failed(c.log, "schema registry unavailable; waiting and retrying (events are held, nothing is lost)",
			err, "url", c.url, "op", op)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("registry: %s: gave up waiting for the registry: %w (last error: %v)", op, context.Cause(ctx), err)
		case <-t.C:
		}
		if backoff *= 2; backoff > c.maxBackoff {
			backoff = c.maxBackoff
		}
	}
}
