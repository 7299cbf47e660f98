//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
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
	awaitPongs(t, conns, interval, start)
}

// TestEpollFloorFrames feeds the floor frames by hand over TCP: two
// frames in one write come back in one piece, and a frame larger than the
// floor's buffer closes the connection. The end of the stream closes the
// server's socket, and stopping the server closes every socket it holds.
// (Frames cut over several reads: TestEpollFloorServe.)
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
	two := append(rawFrame(1, "one"), rawFrame(0, "")...)
	c.Write(two)
	if got := readN(c, len(two)); string(got) != string(two) {
		t.Fatalf("two frames: got %q, want %q", got, two)
	}

	big := dial()
	defer big.Close()
	hdr := rawFrame(2, "")
	binary.BigEndian.PutUint32(hdr, epollFloorBuf)
	big.Write(hdr)
	if n, err := big.Read(make([]byte, 1)); err == nil {
		t.Fatalf("an oversized frame: read %d bytes, want the connection closed", n)
	}

	// A client that closes: the server closes its socket too. The
	// connection that still talks is the only one left.
	eof := dial()
	eof.Write(rawFrame(3, "x"))
	readN(eof, rawHeader+1)
	eof.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.Write(rawFrame(4, "ping"))
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

// rawFrame is a raw TCP frame: payload's length, id, payload.
func rawFrame(id uint64, payload string) []byte {
	b := make([]byte, rawHeader+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	binary.BigEndian.PutUint64(b[4:], id)
	copy(b[rawHeader:], payload)
	return b
}

// TestEpollFloorServe drives the floor's handling of one readable socket
// (serve) by hand, on a socket pair, one read at a time: a frame cut in
// three writes is echoed whole once its last piece is read and not
// before, and a frame larger than the floor's buffer drops the socket.
func TestEpollFloorServe(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv, peer := int32(fds[0]), fds[1]
	defer syscall.Close(peer)
	f := &epollFloor{partial: map[int32][]byte{}, fds: map[int32]struct{}{srv: {}}}
	defer f.drop(srv)
	buf := make([]byte, epollFloorBuf)
	echoed := func() []byte {
		b := make([]byte, 2*epollFloorBuf)
		n, err := syscall.Read(peer, b)
		if err == syscall.EAGAIN {
			return nil
		}
		if err != nil {
			t.Fatalf("peer read: %v", err)
		}
		return b[:n]
	}

	cut := rawFrame(7, "a frame that arrives in three pieces")
	for i, piece := range [][]byte{cut[:5], cut[5:20], cut[20:]} {
		if _, err := syscall.Write(peer, piece); err != nil {
			t.Fatal(err)
		}
		f.serve(srv, buf)
		got := echoed()
		if i < 2 {
			if got != nil || len(f.partial[srv]) != len(cut[:5])+len(cut[5:20])*i {
				t.Fatalf("after piece %d: echoed %q, holding %d bytes", i+1, got, len(f.partial[srv]))
			}
			continue
		}
		if string(got) != string(cut) || len(f.partial) != 0 {
			t.Fatalf("after the last piece: echoed %q, holding %v; want the frame, nothing held", got, f.partial)
		}
	}

	big := rawFrame(2, "")
	binary.BigEndian.PutUint32(big, epollFloorBuf)
	syscall.Write(peer, big)
	f.serve(srv, buf)
	if _, open := f.fds[srv]; open {
		t.Fatal("an oversized frame left the socket open")
	}
	if n, err := syscall.Read(peer, make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("peer after the oversized frame: read %d, %v; want the end of the stream", n, err)
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
