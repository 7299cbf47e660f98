// Package faultproxy is a small in-process TCP proxy that injects network
// faults between a client and a server without closing either socket. It is
// meant for tests and for the "pulse demo" command, on loopback only: the
// proxy listens on 127.0.0.1, and the target should be a local address too.
//
// A client dials [Proxy.Addr]; for each accepted connection the proxy dials
// the target and copies bytes both ways. Faults are set per [Direction]
// (Upstream is client→server, Downstream is server→client), apply at once to
// existing and new connections, and are all removed by [Proxy.Heal]. None of
// them closes a socket, so neither endpoint's kernel sees a FIN or an RST:
// only a timeout (a heartbeat, a read deadline) can tell that something is
// wrong, as on a real network.
//
//   - [Proxy.Blackhole] models a half-open connection: a cable pulled, a
//     route withdrawn, a firewall or NAT silently dropping packets, a host
//     that lost power. Writes keep succeeding (the bytes land in kernel
//     buffers, and the proxy reads and discards them), nothing arrives,
//     nothing errors. Unlike real TCP, discarded bytes are never
//     retransmitted: after Heal the stream goes on with a gap, so a framed
//     protocol that lost bytes is out of sync. Heal a blackhole to let new
//     connections through, or after the endpoints have given up on the old
//     ones. A FIN or RST from an endpoint is held back while its direction
//     is blackholed, and passed on after Heal.
//   - [Proxy.Freeze] models a frozen peer process (stopped, swapping, stuck in
//     a long pause) or a receiver that advertises a zero window: the proxy
//     stops reading, the bytes pile up in kernel buffers, and the sender's
//     writes eventually block. Nothing is lost: Heal delivers every byte, in
//     order.
//   - [Proxy.Throttle] models a slow link: a token bucket limits the
//     bandwidth, with bursts of at most a few KiB.
//   - [Proxy.Delay] models latency: every byte is delivered a fixed time
//     after the proxy read it, in order.
//
// [Proxy.CloseConns] resets every proxied connection (RST on both sides)
// while the proxy keeps accepting new ones, as after a crash of a middlebox.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction selects which way of the proxied connections a fault applies to.
type Direction int

const (
	// Upstream is the client → server direction.
	Upstream Direction = 1 << iota
	// Downstream is the server → client direction.
	Downstream
	// Both is Upstream and Downstream.
	Both = Upstream | Downstream
)

// String returns "upstream", "downstream" or "both".
func (d Direction) String() string {
	switch d {
	case Upstream:
		return "upstream"
	case Downstream:
		return "downstream"
	case Both:
		return "both"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

const (
	// chunkSize is the size of the copy buffer, and the largest burst of a
	// throttled direction.
	chunkSize = 4 << 10
	// queueLen is how many chunks a direction holds between its reader and
	// its writer. It bounds the bytes in flight under Delay (queueLen ×
	// chunkSize per Delay) and the bytes a frozen direction keeps in the
	// proxy instead of in kernel buffers.
	queueLen = 64
	// dialTimeout bounds the dial of the target for an accepted connection.
	dialTimeout = 5 * time.Second
)

const (
	up   = 0 // index of Upstream in Proxy.faults
	down = 1 // index of Downstream in Proxy.faults
)

// faults is the fault state of one direction.
type faults struct {
	blackhole bool
	freeze    bool
	rate      int // bytes per second; 0 is unlimited
	delay     time.Duration
}

// Proxy is a TCP proxy that injects faults. Its methods are safe for
// concurrent use.
type Proxy struct {
	target string
	ln     *net.TCPListener
	ctx    context.Context // canceled by Close; bounds dials of the target
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the proxy started

	mu      sync.Mutex
	faults  [2]faults     // indexed by up and down
	changed chan struct{} // closed and replaced on every change of faults
	closed  bool
	conns   map[*pair]struct{}

	dropped atomic.Int64 // bytes discarded by blackholes, for tests
}

// New starts a proxy that listens on 127.0.0.1 (an ephemeral port) and
// forwards each accepted connection to target, which it dials on accept. If
// the dial fails, the accepted connection is reset.
func New(target string) (*Proxy, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target:  target,
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		changed: make(chan struct{}),
		conns:   make(map[*pair]struct{}),
	}
	p.wg.Go(p.acceptLoop)
	return p, nil
}

// Addr returns the address clients dial, as "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding in dir: bytes read from the source are
// discarded, not buffered, and the sockets stay open, so the path looks dead
// (half-open) to both ends. Bytes the proxy read before and has not yet
// delivered are discarded too, like packets in flight. Heal ends it; only
// bytes read after Heal are delivered.
func (p *Proxy) Blackhole(dir Direction) {
	p.update(dir, func(f *faults) { f.blackhole = true })
}

// Freeze stops reading in dir: bytes stay in the kernel buffers of the
// source socket, and the sender's writes block once they are full. The proxy
// delivers nothing in dir meanwhile, not even the few KiB it had already
// read. Heal resumes the copy and delivers every byte, in order.
func (p *Proxy) Freeze(dir Direction) {
	p.update(dir, func(f *faults) { f.freeze = true })
}

// Throttle limits the bandwidth in dir to bytesPerSec, with bursts of at
// most 4 KiB (less at rates under 64 KiB/s). 0 removes the limit.
func (p *Proxy) Throttle(dir Direction, bytesPerSec int) {
	if bytesPerSec < 0 {
		panic("faultproxy: negative rate")
	}
	p.update(dir, func(f *faults) { f.rate = bytesPerSec })
}

// Delay adds a fixed one-way latency in dir: each byte is delivered d after
// the proxy read it, in order. 0 removes the latency. At most 64 reads of up
// to 4 KiB are in flight per direction and connection, which bounds the
// bandwidth to 256 KiB per d.
func (p *Proxy) Delay(dir Direction, d time.Duration) {
	if d < 0 {
		panic("faultproxy: negative delay")
	}
	p.update(dir, func(f *faults) { f.delay = d })
}

// Heal removes every fault in both directions. Forwarding resumes on
// existing connections.
func (p *Proxy) Heal() {
	p.update(Both, func(f *faults) { *f = faults{} })
}

func (p *Proxy) update(dir Direction, set func(*faults)) {
	if dir&^Both != 0 || dir&Both == 0 {
		panic(fmt.Sprintf("faultproxy: invalid direction %d", int(dir)))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if dir&Upstream != 0 {
		set(&p.faults[up])
	}
	if dir&Downstream != 0 {
		set(&p.faults[down])
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

// state returns the faults of direction i, and a channel that is closed on
// the next change.
func (p *Proxy) state(i int) (faults, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults[i], p.changed
}

// CloseConns resets every proxied connection: both of its sockets are closed
// with SetLinger(0), so both endpoints get an RST. The proxy keeps listening.
func (p *Proxy) CloseConns() {
	for _, c := range p.pairs() {
		c.close(true)
	}
}

// Conns returns the number of live proxied connection pairs.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops listening, closes every proxied connection and waits for all
// the goroutines of the proxy to exit. Calling it again returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	err := p.ln.Close()
	p.cancel()
	for _, c := range p.pairs() {
		c.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) pairs() []*pair {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]*pair, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

func (p *Proxy) acceptLoop() {
	for {
		conn, err := p.ln.AcceptTCP()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error, such as too many open files.
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-p.ctx.Done():
				return
			}
		}
		p.wg.Go(func() { p.connect(conn) })
	}
}

// connect dials the target for the accepted connection client and starts
// copying.
func (p *Proxy) connect(client *net.TCPConn) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		_ = client.SetLinger(0)
		_ = client.Close()
		return
	}
	server := conn.(*net.TCPConn)
	c := &pair{p: p, client: client, server: server, done: make(chan struct{})}
	c.open.Store(2)

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = client.Close()
		_ = server.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	for _, l := range []*link{
		{c: c, dir: up, src: client, dst: server},
		{c: c, dir: down, src: server, dst: client},
	} {
		l.queue = make(chan chunk, queueLen)
		p.wg.Go(l.read)
		p.wg.Go(l.write)
	}
}

// pair is a proxied connection: the socket accepted from the client and the
// one dialed to the server.
type pair struct {
	p      *Proxy
	client *net.TCPConn
	server *net.TCPConn
	done   chan struct{} // closed by close
	once   sync.Once
	open   atomic.Int32 // directions not yet finished with a FIN
}

// close closes both sockets, with an RST if reset, unblocking every
// goroutine of the pair, and forgets the pair.
func (c *pair) close(reset bool) {
	c.once.Do(func() {
		if reset {
			_ = c.client.SetLinger(0)
			_ = c.server.SetLinger(0)
		}
		_ = c.client.Close()
		_ = c.server.Close()
		close(c.done)
		c.p.mu.Lock()
		delete(c.p.conns, c)
		c.p.mu.Unlock()
	})
}

// link is one direction of a pair. Its reader goroutine reads src and hands
// chunks to its writer goroutine, which applies the faults and writes dst.
// Two goroutines let Delay keep reading while earlier bytes are in flight.
type link struct {
	c        *pair
	dir      int // up or down
	src, dst *net.TCPConn
	queue    chan chunk // chunks read, closed by the reader at the end
	err      error      // why the reader stopped; read after queue is closed

	timer  *time.Timer
	bucket bucket
}

// chunk is the bytes of one read of src.
type chunk struct {
	b      []byte
	readAt time.Time
}

func (l *link) read() {
	p := l.c.p
	defer close(l.queue)
	for {
		f, changed := p.state(l.dir)
		if f.freeze {
			select {
			case <-changed:
				continue
			case <-l.c.done:
				l.err = net.ErrClosed
				return
			}
		}
		buf := make([]byte, chunkSize)
		n, err := l.src.Read(buf)
		if n > 0 {
			if f, _ := p.state(l.dir); f.blackhole {
				p.dropped.Add(int64(n))
			} else {
				select {
				case l.queue <- chunk{buf[:n], time.Now()}:
				case <-l.c.done:
					l.err = net.ErrClosed
					return
				}
			}
		}
		if err != nil {
			l.err = err
			return
		}
	}
}

func (l *link) write() {
	l.timer = time.NewTimer(time.Hour)
	l.timer.Stop()
	defer l.timer.Stop()
	for {
		var ch chunk
		var ok bool
		select {
		case ch, ok = <-l.queue:
		case <-l.c.done:
			return
		}
		if !ok {
			l.finish()
			return
		}
		if err := l.deliver(ch.b, ch.readAt); err != nil {
			l.c.close(true)
			return
		}
	}
}

// deliver writes b, which was read at readAt, to dst once the faults allow.
func (l *link) deliver(b []byte, readAt time.Time) error {
	p := l.c.p
	for len(b) > 0 {
		f, changed := p.state(l.dir)
		if f.freeze {
			if !l.wait(0, changed) {
				return net.ErrClosed
			}
			continue
		}
		if d := time.Until(readAt.Add(f.delay)); d > 0 {
			if !l.wait(d, changed) {
				return net.ErrClosed
			}
			continue
		}
		if f.blackhole {
			p.dropped.Add(int64(len(b)))
			return nil
		}
		n := len(b)
		if f.rate > 0 {
			now := time.Now()
			l.bucket.setRate(f.rate, now)
			n = min(n, l.bucket.burst())
			if d := l.bucket.take(n, now); d > 0 {
				if !l.wait(d, changed) {
					return net.ErrClosed
				}
				continue
			}
		} else {
			l.bucket.setRate(0, time.Time{})
		}
		if _, err := l.dst.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// finish passes the end of the source stream on to dst, once the direction
// is neither frozen nor blackholed: a FIN as a FIN (half-close), anything
// else as a reset of the pair.
func (l *link) finish() {
	for {
		f, changed := l.c.p.state(l.dir)
		if !f.freeze && !f.blackhole {
			break
		}
		if !l.wait(0, changed) {
			return
		}
	}
	if !errors.Is(l.err, io.EOF) {
		l.c.close(true)
		return
	}
	if err := l.dst.CloseWrite(); err != nil {
		l.c.close(true)
		return
	}
	if l.c.open.Add(-1) == 0 {
		l.c.close(false)
	}
}

// wait waits for d (forever if d is 0), for changed to be closed or for the
// pair to be closed. It reports false in the last case.
func (l *link) wait(d time.Duration, changed <-chan struct{}) bool {
	var expired <-chan time.Time
	if d > 0 {
		l.timer.Reset(d)
		defer l.timer.Stop()
		expired = l.timer.C
	}
	select {
	case <-expired:
		return true
	case <-changed:
		return true
	case <-l.c.done:
		return false
	}
}

// bucket is a token bucket. It holds at most two bursts, so that a timer
// that fires late does not lose tokens, and starts with one burst.
type bucket struct {
	rate   int // bytes per second; 0 when unlimited
	tokens float64
	last   time.Time
}

// burst returns the largest write at the current rate: 1/16 s worth of
// bytes, between 1 byte and chunkSize.
func (b *bucket) burst() int {
	return max(1, min(chunkSize, b.rate/16))
}

func (b *bucket) setRate(rate int, now time.Time) {
	if rate == b.rate {
		return
	}
	if b.rate == 0 {
		b.rate = rate
		b.tokens = float64(b.burst())
		b.last = now
		return
	}
	if rate == 0 {
		*b = bucket{}
		return
	}
	b.refill(now)
	b.rate = rate
	b.tokens = min(b.tokens, float64(2*b.burst()))
}

func (b *bucket) refill(now time.Time) {
	b.tokens += now.Sub(b.last).Seconds() * float64(b.rate)
	b.tokens = min(b.tokens, float64(2*b.burst()))
	b.last = now
}

// take takes n tokens and returns 0, or returns how long to wait until there
// are n tokens.
func (b *bucket) take(n int, now time.Time) time.Duration {
	b.refill(now)
	if missing := float64(n) - b.tokens; missing > 0 {
		return time.Duration(missing/float64(b.rate)*float64(time.Second)) + time.Millisecond/4
	}
	b.tokens -= float64(n)
	return 0
}
