package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testServer is a TCP server on loopback. In echo mode it echoes every
// connection until EOF, then closes it. Every accepted connection is also
// sent on conns, so that a test can write on (or, in raw mode, read from)
// the server side.
type testServer struct {
	ln    *net.TCPListener
	conns chan *net.TCPConn
	wg    sync.WaitGroup

	mu  sync.Mutex
	all []*net.TCPConn
}

func startServer(t *testing.T, echo bool) *testServer {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{ln: ln, conns: make(chan *net.TCPConn, 16)}
	s.wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.all = append(s.all, c)
			s.mu.Unlock()
			select {
			case s.conns <- c:
			default:
			}
			if echo {
				s.wg.Go(func() {
					_, _ = io.Copy(c, c)
					_ = c.Close()
				})
			}
		}
	})
	t.Cleanup(s.close)
	return s
}

func (s *testServer) addr() string { return s.ln.Addr().String() }

func (s *testServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.all {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// accepted returns the server side of the next connection.
func (s *testServer) accepted(t *testing.T) *net.TCPConn {
	t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(2 * time.Second):
		t.Fatal("no connection reached the server")
		return nil
	}
}

// newProxy starts a proxy to target, closed at the end of the test, when no
// goroutine of the proxy may be left.
func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if g := proxyGoroutines(); len(g) > 0 {
			t.Errorf("%d goroutines of the proxy left after Close:\n%s", len(g), strings.Join(g, "\n\n"))
		}
	})
	return p
}

// proxyGoroutines returns the stacks of the goroutines, other than the
// caller, that run code of faultproxy.go.
func proxyGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i > 0 && strings.Contains(g, "/faultproxy/faultproxy.go:") {
			found = append(found, g)
		}
	}
	return found
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// write writes msg on c, which must succeed.
func write(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

// expect reads len(want) bytes from c, which must be want.
func expect(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	write(t, c, msg)
	expect(t, c, msg)
}

// expectSilence checks that nothing, not even an EOF or an error, arrives on
// c within d.
func expectSilence(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := c.Read(b[:])
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %q, %v; want a timeout", b[:n], err)
	}
}

// waitFor polls cond until it holds, for up to 2s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitDropped(t *testing.T, p *Proxy, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d bytes dropped", n), func() bool { return p.dropped.Load() >= n })
}

// pattern returns n bytes of the test stream starting at offset off.
func pattern(off int64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((off + int64(i)) % 251)
	}
	return b
}

func TestForward(t *testing.T) {
	srv := startServer(t, true)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())

	roundTrip(t, c, "hello")
	roundTrip(t, c, "world")
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns() = %d, want 1", n)
	}

	// Server → client without a request.
	sc := srv.accepted(t)
	write(t, sc, "push")
	expect(t, c, "push")

	// A payload much larger than the copy buffer, both ways at once.
	big := pattern(0, 1<<20)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		errc <- err
	}()
	got := make([]byte, len(big))
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("1 MiB payload corrupted")
	}

	// A half-close travels: the echo server sees EOF and closes, and the
	// client sees EOF.
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(got); err != io.EOF {
		t.Fatalf("after CloseWrite: read %d, %v; want EOF", n, err)
	}
	waitFor(t, "Conns() == 0", func() bool { return p.Conns() == 0 })
}

func TestBlackholeBoth(t *testing.T) {
	srv := startServer(t, true)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "ping")
	sc := srv.accepted(t)

	p.Blackhole(Both)
	// Writes succeed on both sides, nothing arrives, nothing errors.
	write(t, c, "lost")
	write(t, sc, "gone")
	waitDropped(t, p, 8) // "lost" upstream, "gone" downstream
	expectSilence(t, c, 300*time.Millisecond)
	write(t, c, "more")
	waitDropped(t, p, 12)
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns() = %d, want 1", n)
	}

	// Only bytes read after Heal flow.
	p.Heal()
	roundTrip(t, c, "after")
	write(t, sc, "push")
	expect(t, c, "push")
}

func TestBlackholeOneDirection(t *testing.T) {
	for _, dir := range []Direction{Upstream, Downstream} {
		t.Run(dir.String(), func(t *testing.T) {
			srv := startServer(t, true)
			p := newProxy(t, srv.addr())
			c := dial(t, p.Addr())
			roundTrip(t, c, "ping")
			sc := srv.accepted(t)

			p.Blackhole(dir)
			// The request is dropped on its way up, or its echo on its way
			// down.
			write(t, c, "lost")
			waitDropped(t, p, 4)
			expectSilence(t, c, 100*time.Millisecond)

			if dir == Upstream {
				// Downstream still flows.
				write(t, sc, "down")
				expect(t, c, "down")
			} else {
				// Upstream still flows: the echo server gets the bytes,
				// and its echo is dropped.
				write(t, c, "up")
				waitDropped(t, p, 6)
			}
			expectSilence(t, c, 50*time.Millisecond)

			p.Heal()
			roundTrip(t, c, "healed")
		})
	}
}

func TestFaultsApplyToNewConns(t *testing.T) {
	srv := startServer(t, true)
	p := newProxy(t, srv.addr())
	p.Blackhole(Both)

	c := dial(t, p.Addr())
	write(t, c, "lost")
	waitDropped(t, p, 4)
	expectSilence(t, c, 100*time.Millisecond)

	p.Heal()
	roundTrip(t, c, "ping")
}

// A FIN is held back while its direction is blackholed: the peer keeps a
// half-open connection until Heal.
func TestBlackholeHoldsFIN(t *testing.T) {
	srv := startServer(t, false)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())
	write(t, c, "ping")
	sc := srv.accepted(t)
	expect(t, sc, "ping")

	p.Blackhole(Both)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	expectSilence(t, sc, 200*time.Millisecond)
	write(t, sc, "anyone?") // dropped, and no RST from the closed client
	expectSilence(t, sc, 50*time.Millisecond)

	p.Heal()
	_ = sc.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b [16]byte
	if n, err := sc.Read(b[:]); err != io.EOF {
		t.Fatalf("after Heal: read %q, %v; want EOF", b[:n], err)
	}
}

func TestFreeze(t *testing.T) {
	srv := startServer(t, true)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "ping")

	// The client reads the echo until EOF, checking every byte.
	type result struct {
		n   int64
		err error
	}
	var mu sync.Mutex
	var received int64
	done := make(chan result, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var off int64
		for {
			n, err := c.Read(buf)
			if want := pattern(off, n); !bytes.Equal(buf[:n], want) {
				done <- result{off, fmt.Errorf("stream corrupted in [%d, %d)", off, off+int64(n))}
				return
			}
			off += int64(n)
			mu.Lock()
			received = off
			mu.Unlock()
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				done <- result{off, err}
				return
			}
		}
	}()

	p.Freeze(Upstream)
	// Write until the buffers are full and a write blocks.
	const chunk = 64 << 10
	var sent int64
	start := time.Now()
	for {
		if sent > 256<<20 {
			t.Fatalf("wrote %d MiB to a frozen proxy without blocking", sent>>20)
		}
		_ = c.SetWriteDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Write(pattern(sent, chunk))
		sent += int64(n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	t.Logf("sender blocked after %d KiB in %v", sent>>10, time.Since(start).Round(time.Millisecond))
	mu.Lock()
	r := received
	mu.Unlock()
	if r != 0 {
		t.Fatalf("%d bytes went through a frozen proxy", r)
	}

	p.Heal()
	_ = c.SetWriteDeadline(time.Time{})
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.n != sent {
			t.Fatalf("received %d bytes after Heal, want %d", res.n, sent)
		}
	case <-time.After(5 * time.Second):
		_ = c.Close()
		t.Fatal("Heal did not deliver the frozen bytes")
	}
}

func TestThrottle(t *testing.T) {
	srv := startServer(t, true)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "ping")

	const rate = 64 << 10
	const total = 2 * rate // 2 s
	p.Throttle(Both, rate)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(pattern(0, total))
		errc <- err
	}()
	got := make([]byte, total)
	_ = c.SetReadDeadline(time.Now().Add(4 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pattern(0, total)) {
		t.Fatal("stream corrupted")
	}
	measured := float64(total) / elapsed.Seconds()
	t.Logf("%d KiB in %v: %.1f KiB/s", total>>10, elapsed.Round(time.Millisecond), measured/1024)
	if measured < 0.75*rate || measured > 1.25*rate {
		t.Fatalf("measured %.1f KiB/s, want %d KiB/s ± 25%%", measured/1024, rate>>10)
	}

	p.Throttle(Both, 0)
	start = time.Now()
	roundTrip(t, c, string(pattern(0, 256<<10)))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("256 KiB took %v after removing the throttle", d)
	}
}

func TestDelay(t *testing.T) {
	srv := startServer(t, true)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "ping")

	const delay = 100 * time.Millisecond
	p.Delay(Both, delay)
	start := time.Now()
	roundTrip(t, c, "slow")
	if rtt := time.Since(start); rtt < 2*delay || rtt > 2*delay+500*time.Millisecond {
		t.Fatalf("round trip took %v, want about %v", rtt, 2*delay)
	}

	// Back-to-back messages share the latency, in order.
	start = time.Now()
	var want strings.Builder
	for i := range 20 {
		msg := fmt.Sprintf("<message %02d>", i)
		write(t, c, msg)
		want.WriteString(msg)
		time.Sleep(2 * time.Millisecond)
	}
	expect(t, c, want.String())
	if d := time.Since(start); d > 2*delay+500*time.Millisecond {
		t.Fatalf("20 pipelined messages took %v, want about %v", d, 2*delay)
	}

	p.Heal()
	start = time.Now()
	roundTrip(t, c, "fast")
	if rtt := time.Since(start); rtt >= delay {
		t.Fatalf("round trip took %v after Heal", rtt)
	}
}

func TestCloseConns(t *testing.T) {
	srv := startServer(t, true)
	p := newProxy(t, srv.addr())
	c := dial(t, p.Addr())
	roundTrip(t, c, "ping")

	p.CloseConns()
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after CloseConns", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b [16]byte
	n, err := c.Read(b[:])
	if !errors.Is(err, syscall.ECONNRESET) && err != io.EOF {
		t.Fatalf("after CloseConns: read %q, %v; want a reset or EOF", b[:n], err)
	}

	c2 := dial(t, p.Addr())
	roundTrip(t, c2, "again")
	if n := p.Conns(); n != 1 {
		t.Fatalf("Conns() = %d, want 1", n)
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	baseline := runtime.NumGoroutine()

	srv := startServer(t, true)
	p, err := New(srv.addr())
	if err != nil {
		t.Fatal(err)
	}

	// An idle connection.
	idle := dial(t, p.Addr())
	roundTrip(t, idle, "ping")

	// A connection whose client does not read: the proxy's downstream
	// writer blocks in Write, the client's writer in Write.
	stuck := dial(t, p.Addr())
	roundTrip(t, stuck, "ping")
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		_, _ = stuck.Write(make([]byte, 64<<20))
	}()

	// Bytes waiting for their delay, and a frozen direction.
	p.Delay(Upstream, time.Hour)
	p.Freeze(Downstream)
	write(t, idle, "delayed")
	late := dial(t, p.Addr())
	write(t, late, "frozen?")
	waitFor(t, "3 proxied connections", func() bool { return p.Conns() == 3 })

	// Throttle with bytes waiting for tokens on a new connection.
	p.Heal()
	p.Throttle(Upstream, 1)
	throttled := dial(t, p.Addr())
	write(t, throttled, "slowly")
	waitFor(t, "4 proxied connections", func() bool { return p.Conns() == 4 })

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if g := proxyGoroutines(); len(g) > 0 {
		t.Fatalf("%d goroutines of the proxy left after Close:\n%s", len(g), strings.Join(g, "\n\n"))
	}
	if n := p.Conns(); n != 0 {
		t.Fatalf("Conns() = %d after Close", n)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts connections after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	select {
	case <-writerDone:
	case <-time.After(2 * time.Second):
		t.Fatal("the client's Write did not fail after Close")
	}
	srv.close()
	for _, c := range []net.Conn{idle, stuck, late, throttled} {
		_ = c.Close()
	}

	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the test:\n%s", runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
