//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// startEpollFloor serves the epoll floor on a loopback listener.
func startEpollFloor(t *testing.T) (addr string, stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, err = epollSystem{}.Serve(l, serveOptions{Idle: true})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	return l.Addr().String(), stop
}

// TestEpollFloorRefusesCells checks that the floor serves the idle test
// only.
func TestEpollFloorRefusesCells(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if stop, err := (epollSystem{}).Serve(l, serveOptions{}); err == nil {
		stop()
		t.Fatal("Serve without Idle: no error")
	}
	if got := cellSystems(systemNames); len(got) != len(systemNames)-1 || got[len(got)-1] != "raw" {
		t.Errorf("cell systems %v", got)
	}
}

// TestEpollFloorHeartbeats holds raw idle clients with a short interval
// against the floor: every connection reads a PONG per interval and calls
// still work between them.
func TestEpollFloorHeartbeats(t *testing.T) {
	done := checkLeaks(t)
	defer done()
	addr, stop := startEpollFloor(t)
	defer stop()
	const interval = 200 * time.Millisecond
	sys := rawSystem{heartbeat: interval, heartbeatTimeout: 4 * interval}
	const n = 40
	start := time.Now()
	conns := dialRawIdle(t, sys, addr, n)
	for i, c := range conns {
		if err := checkEcho(c, 64); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	time.Sleep(3*interval - time.Since(start))
	for i, c := range conns {
		if p := c.heartbeatReplies(); p < 2 || p > 4 {
			t.Errorf("connection %d read %d PONGs in 3 intervals, want 2 to 4", i, p)
		}
		if err := checkEcho(c, 100); err != nil {
			t.Errorf("connection %d: %v", i, err)
		}
	}
}

// TestEpollFloorFrames feeds the floor frames by hand: two frames in one
// write come back in one piece, a frame cut in three writes comes back
// whole once complete, and a frame larger than the floor's buffer closes
// the connection. The end of the stream closes the server's socket, and
// stopping the server closes every socket it holds.
func TestEpollFloorFrames(t *testing.T) {
	done := checkLeaks(t)
	defer done()
	addr, stop := startEpollFloor(t)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	frame := func(id uint64, payload string) []byte {
		b := make([]byte, rawHeader+len(payload))
		binary.BigEndian.PutUint32(b, uint32(len(payload)))
		binary.BigEndian.PutUint64(b[4:], id)
		copy(b[rawHeader:], payload)
		return b
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	readN := func(c net.Conn, n int) []byte {
		t.Helper()
		b := make([]byte, n)
		for got := 0; got < n; {
			k, err := c.Read(b[got:])
			if err != nil {
				t.Fatalf("read %d of %d bytes: %v", got, n, err)
			}
			got += k
		}
		return b
	}

	c := dial()
	defer c.Close()
	two := append(frame(1, "one"), frame(0, "")...)
	c.Write(two)
	if got := readN(c, len(two)); string(got) != string(two) {
		t.Fatalf("two frames: got %q, want %q", got, two)
	}
	cut := frame(7, "a frame that arrives in three pieces")
	for _, piece := range [][]byte{cut[:5], cut[5:20], cut[20:]} {
		c.Write(piece)
		time.Sleep(20 * time.Millisecond) // separate reads on the server
	}
	if got := readN(c, len(cut)); string(got) != string(cut) {
		t.Fatalf("cut frame: got %q, want %q", got, cut)
	}

	big := dial()
	defer big.Close()
	hdr := frame(2, "")
	binary.BigEndian.PutUint32(hdr, epollFloorBuf)
	big.Write(hdr)
	if n, err := big.Read(make([]byte, 1)); err == nil {
		t.Fatalf("an oversized frame: read %d bytes, want the connection closed", n)
	}

	// A client that closes: the server closes its socket too. The
	// connection that still talks is the only one left.
	eof := dial()
	eof.Write(frame(3, "x"))
	readN(eof, rawHeader+1)
	eof.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.Write(frame(4, "ping"))
		readN(c, rawHeader+4)
		if open := countOpenConns(t, addr); open == 1 || time.Now().After(deadline) {
			if open != 1 {
				t.Fatalf("%d connections of the server still established, want 1", open)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	stop()
	stopped = true
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("after stop: read %d bytes, want the connection closed", n)
	}
}

// countOpenConns counts the server's TCP sockets on addr (an IPv4
// loopback address) that it has not closed: ESTABLISHED or CLOSE_WAIT in
// /proc/net/tcp.
func countOpenConns(t *testing.T, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ip := ap.Addr().As4()
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == local && (f[3] == "01" || f[3] == "08") {
			n++
		}
	}
	return n
}

// TestIdleEpoll runs the idle test of the floor as the driver does (see
// idleRunChecked), with no goroutine per connection on the server.
func TestIdleEpoll(t *testing.T) {
	r := idleRunChecked(t, "epoll")
	if r.ServerGoroutinesPerConn > 0.5 {
		t.Errorf("%.2f server goroutines per connection, want none", r.ServerGoroutinesPerConn)
	}
}
