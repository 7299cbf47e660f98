package main

import (
	"bytes"
	"context"
	"fmt"
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
	for _, name := range systemNames {
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
	for _, name := range systemNames {
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
// second loopback source address.
func TestAdaptersIdleSettings(t *testing.T) {
	for _, name := range systemNames {
		t.Run(name, func(t *testing.T) {
			done := checkLeaks(t)
			defer done()
			c, stop := serveDial(t, systems[name], serveOptions{Idle: true}, dialOptions{Idle: true, LocalAddr: idleSourceAddr(1, 4)})
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
