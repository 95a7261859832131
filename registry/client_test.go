package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

func TestRegisterRetriesUntilTheRegistryAnswers(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, `{"error_code":50301,"message":"starting"}`, http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/subjects/t-value/versions" {
			t.Errorf("got %s %s", r.Method, r.URL.Path)
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != "secret" {
			t.Errorf("basic auth: got %q %q %v", u, p, ok)
		}
		_, _ = w.Write([]byte(`{"id":42}`))
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, Username: "me", Password: "secret", MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Register(context.Background(), "t-value", `"string"`)
	if err != nil || id != 42 || calls.Load() != 3 {
		t.Fatalf("got id %d, err %v after %d calls; want 42 after 3", id, err, calls.Load())
	}
}

func TestRegisterIncompatibleIsPermanent(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error_code":409,"message":"Schema being registered is incompatible with an earlier schema"}`))
	}))
	defer srv.Close()
	c, _ := New(Config{URL: srv.URL})
	_, err := c.Register(context.Background(), "orders-value", `"string"`)
	if !IsIncompatible(err) || calls.Load() != 1 {
		t.Fatalf("got %v after %d calls, want one 409", err, calls.Load())
	}
	for _, want := range []string{"orders-value", "HTTP 409", "incompatible with an earlier schema"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestRetryEndsWithTheContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	url := srv.URL
	srv.Close() // nothing listens any more
	c, _ := New(Config{URL: url, MaxBackoff: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, _, err := c.SchemaByVersion(ctx, "s", 1)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "version 1 of subject s") {
		t.Fatalf("got %v", err)
	}
}

func TestDecoder(t *testing.T) {
	schema := `{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"d","type":["null",{"type":"bytes","logicalType":"decimal","precision":5,"scale":2}],"default":null},{"name":"tags","type":{"type":"array","items":["null","string"]}}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/schemas/ids/7" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"schema":` + jsonString(schema) + `}`))
	}))
	defer srv.Close()
	c, _ := New(Config{URL: srv.URL})
	raw, err := ParseRaw(schema)
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(raw, map[string]any{"id": int64(5), "d": []byte{0x04, 0xe2}, "tags": []any{"a", nil}})
	if err != nil {
		t.Fatal(err)
	}
	framed := binary.BigEndian.AppendUint32([]byte{0}, 7)
	framed = append(framed, body...)
	out, id, err := NewDecoder(c).Decode(context.Background(), framed)
	if err != nil || id != 7 {
		t.Fatalf("decode: %v (id %d)", err, id)
	}
	if want := `{"id":5,"d":"BOI=","tags":["a",null]}`; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
