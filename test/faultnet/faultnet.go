// Package faultnet puts network faults between a client and a server on loopback, for tests: a
// TCP proxy whose links a test slows down (latency with jitter, a bandwidth limit), cuts
// (connection resets, refused connections) or partitions (a blackhole: nothing passes either
// way and nobody is told, so connections stay half-open, as behind a dropped route or a
// crashed switch), and heals again.
//
// A blackhole stalls the bytes instead of dropping them: TCP under a real partition
// retransmits what it sent, and once the path is back the stream resumes where it stopped, or
// a peer that gave up meanwhile learns it from the next segment it gets. Dropping bytes in the
// middle of a stream would corrupt it, which no network does. A connection opened during a
// blackhole is accepted by the proxy's kernel but neither answered nor forwarded until the
// blackhole ends, like a SYN that gets no answer.
//
// Every method may be called from any goroutine.
package faultnet

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy forwards the connections made to its address to upstream, through the faults set on it.
type Proxy struct {
	ln       net.Listener
	upstream string

	mu        sync.Mutex
	latency   time.Duration
	jitter    time.Duration
	bandwidth int           // bytes per second each way per connection; 0 is unlimited
	passing   chan struct{} // closed while traffic passes; open (blocking) during a blackhole
	refusing  bool
	rnd       *rand.Rand
	conns     map[*pair]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// Listen starts a proxy on addr ("127.0.0.1:0" for any free port) to upstream.
func Listen(addr, upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen on %s: %w", addr, err)
	}
	passing := make(chan struct{})
	close(passing)
	p := &Proxy{ln: ln, upstream: upstream, passing: passing, rnd: rand.New(rand.NewPCG(1, 2)), conns: map[*pair]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address, host:port, to give the client instead of upstream's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetLatency delays every chunk of bytes, each way, by latency plus up to ±jitter (uniform),
// keeping their order; zero removes the delay.
func (p *Proxy) SetLatency(latency, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency, p.jitter = latency, jitter
}

// SetBandwidth limits each connection to bytesPerSecond each way; zero removes the limit.
func (p *Proxy) SetBandwidth(bytesPerSecond int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bandwidth = bytesPerSecond
}

// Blackhole stops all traffic, both ways, on every connection, and leaves new ones unanswered,
// until Heal. Nobody is told: no FIN, no RST.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.passing:
		p.passing = make(chan struct{})
	default: // already a blackhole
	}
}

// Heal ends a blackhole and stops refusing connections.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.passing:
	default:
		close(p.passing)
	}
	p.refusing = false
}

// Reset ends every open connection with a TCP reset to both of its ends, as a restarted
// firewall or load balancer does. New connections are forwarded as before.
func (p *Proxy) Reset() {
	p.mu.Lock()
	conns := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.reset()
	}
}

// Refuse resets every open connection and every new one at once, as a server that is down does
// (connection refused), until Heal.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	p.refusing = true
	p.mu.Unlock()
	p.Reset()
}

// Conns is the number of connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	select {
	case <-p.passing:
	default:
		close(p.passing) // nothing waits for a heal that will not come
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

// gate returns a channel that is closed while traffic may pass.
func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.passing
}

// delay is how long a chunk read now waits before it may be written, and how long n bytes take
// on the wire under the bandwidth limit.
func (p *Proxy) delay(n int) (latency, pace time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	latency = p.latency
	if p.jitter > 0 {
		latency += time.Duration(p.rnd.Int64N(int64(2*p.jitter+1))) - p.jitter
	}
	if p.bandwidth > 0 {
		pace = time.Duration(n) * time.Second / time.Duration(p.bandwidth)
	}
	return max(latency, 0), pace
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		refusing, closed := p.refusing, p.closed
		p.mu.Unlock()
		if refusing || closed {
			abort(client)
			continue
		}
		c := newPair(client)
		p.mu.Lock()
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
		}()
	}
}

// serve connects c's client to upstream once traffic passes, and forwards both ways until
// either end closes or c is reset.
func (p *Proxy) serve(c *pair) {
	select {
	case <-p.gate():
	case <-c.done():
		return
	}
	server, err := net.DialTimeout("tcp", p.upstream, 10*time.Second)
	if err != nil {
		abort(c.client) // the client sees what it would see from the server: a reset
		return
	}
	if !c.setServer(server) {
		abort(server)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.forward(c, c.client, server) }()
	go func() { defer wg.Done(); p.forward(c, server, c.client) }()
	wg.Wait()
	c.close()
}

type chunk struct {
	data  []byte
	due   time.Time
	eof   bool // src ended: half-close dst
	reset bool // src was reset or failed: reset both
}

// forward copies src to dst through the proxy's faults: a reader that stops reading during a
// blackhole (so the sender's buffers fill, as they do when nothing is acknowledged), and a
// writer that holds each chunk until its due time and the end of any blackhole. The end of
// src is passed on as a half-close once everything before it is written.
func (p *Proxy) forward(c *pair, src, dst net.Conn) {
	queue := make(chan chunk, 64)
	go func() {
		defer close(queue)
		last := time.Time{}
		for {
			select {
			case <-p.gate():
			case <-c.done():
				return
			}
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				latency, _ := p.delay(0)
				due := time.Now().Add(latency)
				if due.Before(last) {
					due = last // jitter never reorders a stream
				}
				last = due
				select {
				case queue <- chunk{data: buf[:n], due: due}:
				case <-c.done():
					return
				}
			}
			if err != nil {
				// The end of src, a FIN or a reset, reaches dst behind the bytes before it,
				// and not during a blackhole.
				select {
				case queue <- chunk{eof: errors.Is(err, io.EOF), reset: !errors.Is(err, io.EOF), due: last}:
				case <-c.done():
				}
				return
			}
		}
	}()
	for ch := range queue {
		if wait := time.Until(ch.due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-c.done():
				return
			}
		}
		select {
		case <-p.gate():
		case <-c.done():
			return
		}
		if ch.reset {
			c.reset()
			return
		}
		if ch.eof {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
		if _, pace := p.delay(len(ch.data)); pace > 0 { // the time the bytes take on the wire
			select {
			case <-time.After(pace):
			case <-c.done():
				return
			}
		}
		if _, err := dst.Write(ch.data); err != nil {
			c.reset()
			return
		}
	}
}

// pair is a client's connection and its connection to upstream.
type pair struct {
	client net.Conn
	ended  chan struct{} // closed once the pair is reset or closed

	mu     sync.Mutex
	server net.Conn
}

func newPair(client net.Conn) *pair { return &pair{client: client, ended: make(chan struct{})} }

func (c *pair) done() <-chan struct{} { return c.ended }

// setServer records the upstream connection; false if the pair ended meanwhile.
func (c *pair) setServer(server net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ended:
		return false
	default:
		c.server = server
		return true
	}
}

// end marks the pair ended and returns its connections; first is false if it had ended before.
func (c *pair) end() (client, server net.Conn, first bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.ended:
		return c.client, c.server, false
	default:
		close(c.ended)
		return c.client, c.server, true
	}
}

// reset ends both connections with a TCP reset.
func (c *pair) reset() {
	client, server, first := c.end()
	if !first {
		return
	}
	abort(client)
	if server != nil {
		abort(server)
	}
}

// close ends both connections normally, once both directions are done.
func (c *pair) close() {
	client, server, first := c.end()
	if !first {
		return
	}
	_ = client.Close()
	if server != nil {
		_ = server.Close()
	}
}

// abort closes conn with a reset instead of a FIN.
func abort(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
