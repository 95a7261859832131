package faultnet

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echo is a line echo server, the upstream of the tests.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func proxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := Listen("127.0.0.1:0", echo(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip sends a line and returns how long its echo took, or the error.
func roundTrip(c net.Conn, r *bufio.Reader, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if line != "ping\n" {
		return 0, errors.New("echo changed the bytes: " + line)
	}
	return time.Since(start), nil
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func TestLatencyDelaysEachWay(t *testing.T) {
	p := proxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetLatency(100*time.Millisecond, 20*time.Millisecond)
	took, err := roundTrip(c, r, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took < 160*time.Millisecond { // two ways, each at least 80 ms
		t.Fatalf("round trip took %s through 100±20 ms of latency each way", took)
	}
}

func TestBlackholeStallsAndHealResumes(t *testing.T) {
	p := proxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, time.Second); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	if _, err := roundTrip(c, r, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("through a blackhole: %v, want a timeout", err)
	}
	// A connection opened now is accepted but not answered.
	c2, r2 := dial(t, p)
	if _, err := roundTrip(c2, r2, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection through a blackhole: %v, want a timeout", err)
	}
	p.Heal()
	// The stalled bytes arrive: the first connection reads the echo it waited for.
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("after heal: %q, %v", line, err)
	}
	if _, err := roundTrip(c, r, time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
	_ = c2.SetDeadline(time.Now().Add(time.Second))
	if line, err := r2.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("connection opened during the blackhole, after heal: %q, %v", line, err)
	}
}

func TestResetAndRefuse(t *testing.T) {
	p := proxy(t)
	c, r := dial(t, p)
	if _, err := roundTrip(c, r, time.Second); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	if _, err := roundTrip(c, r, time.Second); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("after reset: %v, want a connection reset", err)
	}
	c2, r2 := dial(t, p)
	if _, err := roundTrip(c2, r2, time.Second); err != nil {
		t.Fatalf("a new connection after reset: %v", err)
	}
	p.Refuse()
	// The reset may end the connection before the dial returns, or on its first read.
	if c3, err := net.Dial("tcp", p.Addr()); err == nil {
		defer c3.Close()
		if _, err := roundTrip(c3, bufio.NewReader(c3), time.Second); err == nil || isTimeout(err) {
			t.Fatalf("a connection while refusing: %v, want it ended", err)
		}
	}
	p.Heal()
	c4, r4 := dial(t, p)
	if _, err := roundTrip(c4, r4, time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}

func TestBandwidth(t *testing.T) {
	p := proxy(t)
	c, r := dial(t, p)
	p.SetBandwidth(10 << 10) // 10 KiB/s
	start := time.Now()
	payload := make([]byte, 10<<10)
	for i := range payload {
		payload[i] = 'x'
	}
	payload[len(payload)-1] = '\n'
	go func() { _, _ = c.Write(payload) }()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("10 KiB at 10 KiB/s each way took %s", took)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
