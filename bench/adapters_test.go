package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// serveDial starts sys on a loopback listener and dials one connection.
func serveDial(t *testing.T, sys system, o serveOptions, d dialOptions) (echoConn, func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := sys.Serve(l, o)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sys.Dial(ctx, l.Addr().String(), d)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	return c, func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		stop()
	}
}

func TestAdaptersEcho(t *testing.T) {
	for _, name := range cellSystems(systemNames) {
		t.Run(name, func(t *testing.T) {
			done := checkLeaks(t)
			defer done()
			c, stop := serveDial(t, systems[name], serveOptions{}, dialOptions{})
			defer stop()
			var resp []byte
			for _, size := range []int{64, 4 << 10, 1 << 20, 0, 64} {
				req := make([]byte, size)
				fillPayload(req, size)
				if err := c.Echo(&req, &resp); err != nil {
					t.Fatalf("Echo of %d bytes: %v", size, err)
				}
				if !bytes.Equal(resp, req) {
					t.Fatalf("Echo of %d bytes returned %d different bytes", size, len(resp))
				}
			}
		})
	}
}

// TestAdaptersConcurrent checks that concurrent callers on one connection
// each get their own payload back (the multiplexing of the raw client in
// particular), with payloads of mixed sizes, some split into several
// frames by Pulse.
func TestAdaptersConcurrent(t *testing.T) {
	for _, name := range cellSystems(systemNames) {
		t.Run(name, func(t *testing.T) {
			done := checkLeaks(t)
			defer done()
			c, stop := serveDial(t, systems[name], serveOptions{}, dialOptions{})
			defer stop()
			var wg sync.WaitGroup
			errs := make(chan error, 12)
			for g := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					size := []int{64, 4 << 10, 40 << 10, 200 << 10}[g%4]
					req := make([]byte, size)
					fillPayload(req, g)
					var resp []byte
					for i := range 10 {
						if err := c.Echo(&req, &resp); err != nil {
							errs <- fmt.Errorf("goroutine %d call %d: %v", g, i, err)
							return
						}
						if !bytes.Equal(resp, req) {
							errs <- fmt.Errorf("goroutine %d call %d: got %d bytes, not its own %d", g, i, len(resp), size)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestAdaptersIdleSettings dials with the idle-test settings from a
// second loopback source address, the idle test's floor included.
func TestAdaptersIdleSettings(t *testing.T) {
	for _, name := range systemNames {
		t.Run(name, func(t *testing.T) {
			done := checkLeaks(t)
			defer done()
			c, stop := serveDial(t, systems[name], serveOptions{Idle: true}, dialOptions{Idle: true, LocalAddr: idleSourceAddr(0, 1, 4)})
			defer stop()
			if err := checkEcho(c, 64); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRawServerClosesOnGarbage checks that the raw server drops a
// connection announcing an oversized frame instead of allocating it.
func TestRawServerClosesOnGarbage(t *testing.T) {
	done := checkLeaks(t)
	defer done()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := rawSystem{}.Serve(l, serveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes; want the connection closed", n)
	}
}

func TestRawClientFailsPendingOnClose(t *testing.T) {
	done := checkLeaks(t)
	defer done()
	// A server that reads and never answers.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := rawSystem{}.Dial(context.Background(), l.Addr().String(), dialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srvConn := <-accepted
	defer srvConn.Close()
	errc := make(chan error, 1)
	go func() {
		req, resp := []byte("hello"), []byte(nil)
		errc <- c.Echo(&req, &resp)
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Echo succeeded without a reply")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Echo still blocked after Close")
	}
	req, resp := []byte("again"), []byte(nil)
	if err := c.Echo(&req, &resp); err == nil {
		t.Fatal("Echo on a closed connection succeeded")
	}
}

// TestRawHeartbeat checks the raw idle client's heartbeats with a short
// interval: the first PINGs of connections dialed together are spread
// over the first interval, every connection then reads a PONG per
// interval, and calls still work between them.
func TestRawHeartbeat(t *testing.T) {
	done := checkLeaks(t)
	defer done()
	const interval = 200 * time.Millisecond
	sys := rawSystem{heartbeat: interval, heartbeatTimeout: 4 * interval}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := sys.Serve(l, serveOptions{Idle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	const n = 40
	start := time.Now()
	conns := dialRawIdle(t, sys, l.Addr().String(), n)
	pinged := func() (k int) {
		for _, c := range conns {
			if c.heartbeatReplies() > 0 {
				k++
			}
		}
		return k
	}
	time.Sleep(interval/2 - time.Since(start))
	// Half of them, give or take: none or all would mean that the first
	// PINGs were not spread.
	if k := pinged(); k == 0 || k == n {
		t.Errorf("%d of %d connections had a PONG half an interval after dialing", k, n)
	}
	awaitPongs(t, conns, interval, start)
}

// awaitPongs waits until every connection, dialed at start with
// heartbeats every interval, has read two PONGs (at most ten intervals),
// and checks that none read more than one per interval since start and
// that each still echoes a call.
func awaitPongs(t *testing.T, conns []*rawConn, interval time.Duration, start time.Time) {
	t.Helper()
	for !time.Now().After(start.Add(10 * interval)) {
		all := true
		for _, c := range conns {
			all = all && c.heartbeatReplies() >= 2
		}
		if all {
			break
		}
		time.Sleep(interval / 10)
	}
	most := uint64(time.Since(start)/interval) + 1
	for i, c := range conns {
		if p := c.heartbeatReplies(); p < 2 || p > most {
			t.Errorf("connection %d read %d PONGs in %v, want 2 to %d", i, p, time.Since(start).Round(time.Millisecond), most)
		}
		if err := checkEcho(c, 64); err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
}

// dialRawIdle dials n idle raw connections to addr from four loopback
// source addresses; they close when the test ends.
func dialRawIdle(t *testing.T, sys rawSystem, addr string, n int) []*rawConn {
	t.Helper()
	conns := make([]*rawConn, n)
	for i := range conns {
		c, err := sys.Dial(context.Background(), addr, dialOptions{Idle: true, LocalAddr: idleSourceAddr(0, i, 4)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c.(*rawConn)
	}
	return conns
}

// TestRawHeartbeatTimeout checks that a raw idle client connection whose
// server reads but never answers fails once the timeout has passed,
// failing the call waiting on it.
func TestRawHeartbeatTimeout(t *testing.T) {
	done := checkLeaks(t)
	defer done()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	sys := rawSystem{heartbeat: 20 * time.Millisecond, heartbeatTimeout: 100 * time.Millisecond}
	dialed := time.Now()
	c, err := sys.Dial(context.Background(), l.Addr().String(), dialOptions{Idle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srvConn := <-accepted
	defer srvConn.Close()
	read := make(chan int64, 1)
	go func() { // a server that reads everything and answers nothing
		n, _ := io.Copy(io.Discard, srvConn)
		read <- n
	}()
	errc := make(chan error, 1)
	go func() {
		req, resp := []byte("hello"), []byte(nil)
		errc <- c.Echo(&req, &resp)
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, errRawHeartbeatTimeout) {
			t.Fatalf("Echo returned %v, want %v", err, errRawHeartbeatTimeout)
		}
		if d := time.Since(dialed); d < 100*time.Millisecond {
			t.Errorf("failed %v after dialing, before the 100ms timeout", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Echo still blocked 5 s after a 100ms heartbeat timeout")
	}
	// The client closed the connection; the server read the call and
	// at least a few PINGs before that.
	select {
	case n := <-read:
		if n < rawHeader+5+2*rawHeader {
			t.Errorf("the server read %d bytes, want the call and some PINGs", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not closed")
	}
}
