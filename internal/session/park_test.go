//go:build linux

package session

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/pulse-rpc/pulse/wire"
)

// ParkEcho is the service of the parking test.
type ParkEcho struct{}

// Echo replies with its argument.
func (ParkEcho) Echo(a string, r *string) error { *r = a; return nil }

// Nap sleeps for d. A nap longer than onReaderMax makes the reader hand
// its reading to a worker while it runs, and the method then runs on
// workers.
func (ParkEcho) Nap(d time.Duration, _ *struct{}) error { time.Sleep(d); return nil }

// parkedReaders returns how many readers are parked.
func parkedReaders() int {
	parkMu.Lock()
	defer parkMu.Unlock()
	if theParker == nil {
		return 0
	}
	return theParker.used
}

// readerGoroutines counts the goroutines running a connection's reader.
func readerGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "session.(*Session).readFrames(")
}

// checkReadersGone waits for the parker to stop and checks that no reader
// goroutine is left, once every connection is closed.
func checkReadersGone(t *testing.T) {
	t.Helper()
	waitFor(t, 5*time.Second, "the parker to stop", func() bool {
		parkMu.Lock()
		defer parkMu.Unlock()
		return theParker == nil
	})
	// A reader that has ended its session may still be on its way out.
	waitFor(t, 5*time.Second, "every reader goroutine to end after every connection closed", func() bool { return readerGoroutines() == 0 })
}

// startParkServer starts a test server with ParkEcho, heartbeats hb, on a
// loopback listener. It is closed when the test ends; closing it earlier
// (close) is allowed.
func startParkServer(t *testing.T, hb Heartbeat) *testServer {
	t.Helper()
	return startTestServer(t, testConfig(hb), ParkEcho{})
}

// parkOpenSessions returns the server's sessions that are not closed (the
// root's Server.Peers).
func parkOpenSessions(ts *testServer) []*Session {
	var open []*Session
	for _, s := range ts.all() {
		if s.Err() == nil {
			open = append(open, s)
		}
	}
	return open
}

// startQuietParkServer starts a ParkEcho server whose heartbeats stay out
// of the way (1 min interval), for tests that send their own; when the
// test ends it closes the server and checks that no reader is left.
func startQuietParkServer(t *testing.T) *testServer {
	t.Helper()
	ts := startParkServer(t, Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute})
	t.Cleanup(func() {
		ts.close()
		checkReadersGone(t)
	})
	return ts
}

// dialEcho dials addr and makes one call, so that the connection has
// carried data before it goes idle. The session is closed when the test
// ends; closing it earlier is allowed.
func dialEcho(t *testing.T, addr string, hb Heartbeat, rcvrs ...any) *Session {
	t.Helper()
	s := dialSession(t, addr, testConfig(hb), rcvrs...)
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	var r string
	if err := call(ctx, s, "ParkEcho.Echo", "hi", &r); err != nil || r != "hi" {
		t.Fatalf("call: %q, %v", r, err)
	}
	return s
}

// parkCloseSession closes s from its side and waits for its reader to end.
func parkCloseSession(s *Session) {
	s.Close()
	<-s.ReaderDone()
}

// TestIdleReadersPark: the readers of idle connections give up their
// goroutines on Linux and come back for heartbeats, calls, pushes and the
// end of the connection. Heartbeats keep flowing while they are parked (a
// Timeout of ten intervals would kill connections whose PINGs went
// unanswered), and nothing is left running once everything is closed.
func TestIdleReadersPark(t *testing.T) {
	const n = 20
	hb := Heartbeat{Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, MinInterval: 10 * time.Millisecond}
	srv := startParkServer(t, hb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	clients := make([]*Session, n)
	pushes := make(chan string, 2*n)
	for i := range clients {
		clients[i] = dialSession(t, srv.addr(), testConfig(hb), ParkPush(pushes))
		var r string
		if err := call(ctx, clients[i], "ParkEcho.Echo", "hi", &r); err != nil || r != "hi" {
			t.Fatalf("call %d: %q, %v", i, r, err)
		}
	}

	waitFor(t, 5*time.Second, "every reader of both sides to park", func() bool { return parkedReaders() == 2*n })
	if g := readerGoroutines(); g > n/2 {
		t.Errorf("%d reader goroutines with %d readers parked, want few", g, 2*n)
	}
	// Ten intervals, half of the Timeout each way: heartbeats go on.
	time.Sleep(10 * 20 * time.Millisecond)
	for i, c := range clients {
		if err := c.Err(); err != nil {
			t.Fatalf("client %d is closed after an idle spell with parked readers: %v", i, err)
		}
	}
	if got := len(parkOpenSessions(srv)); got != n {
		t.Fatalf("server has %d connections after an idle spell, want %d", got, n)
	}
	if parkedReaders() == 0 {
		t.Fatal("no reader parked during the idle spell")
	}

	// Calls wake the server's readers and the replies the clients'.
	for i, c := range clients {
		var r string
		if err := call(ctx, c, "ParkEcho.Echo", "again", &r); err != nil || r != "again" {
			t.Fatalf("call %d after parking: %q, %v", i, r, err)
		}
	}
	// Pushes wake the clients' readers.
	waitFor(t, 5*time.Second, "readers to park again", func() bool { return parkedReaders() >= n })
	sent := 0
	for _, s := range parkOpenSessions(srv) { // the root's Server.Broadcast
		if s.Notify(ctx, "ParkPush.Note", "news") == nil {
			sent++
		}
	}
	if sent != n {
		t.Fatalf("notified %d clients, want %d", sent, n)
	}
	for range n {
		select {
		case m := <-pushes:
			if m != "news" {
				t.Fatalf("push %q, want news", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a push to a client with a parked reader did not arrive")
		}
	}

	// Closing clients wakes the server's parked readers with the end of
	// stream.
	waitFor(t, 5*time.Second, "readers to park again", func() bool { return parkedReaders() >= n })
	for _, c := range clients[:n/2] {
		parkCloseSession(c)
	}
	waitFor(t, 5*time.Second, "the server to see half of the clients go", func() bool { return len(parkOpenSessions(srv)) == n-n/2 })

	// Closing the server wakes the rest, on both sides.
	srv.close()
	for _, c := range clients[n/2:] {
		parkCloseSession(c)
	}
	checkReadersGone(t)
}

// TestReadersParkAfterCalls: a connection that carried a call parks its
// readers, on both sides, soon after (parkLinger), not at its next frame:
// with heartbeats a minute apart, that frame would be a minute away, and
// every connection dialed meanwhile would hold a reader goroutine. A call
// that arrives while a reader lingers is read by it. A reader that waited
// while a long call ran parks once the call ends.
func TestReadersParkAfterCalls(t *testing.T) {
	const n = 20
	hb := Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute, MaxInterval: time.Minute}
	srv := startParkServer(t, hb)
	clients := make([]*Session, n)
	defer func() {
		if t.Failed() {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			for _, g := range strings.Split(string(buf), "\n\n") {
				if strings.Contains(g, "readFrames") {
					t.Log(g)
				}
			}
		}
		srv.close()
		for _, c := range clients {
			if c != nil {
				parkCloseSession(c)
			}
		}
		if !t.Failed() {
			checkReadersGone(t)
		}
	}()
	for i := range clients {
		clients[i] = dialEcho(t, srv.addr(), hb)
	}
	waitFor(t, 10*time.Second, "every reader of both sides to park after its call", func() bool { return parkedReaders() == 2*n })
	if g := readerGoroutines(); g != 0 {
		t.Errorf("%d reader goroutines with every reader parked", g)
	}

	// Calls closer together than parkLinger: each after the reply to the
	// one before, on a connection whose readers have just read data.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 50 {
		var r string
		arg := fmt.Sprint("burst ", i)
		if err := call(ctx, clients[0], "ParkEcho.Echo", arg, &r); err != nil || r != arg {
			t.Fatalf("call %d: %q, %v", i, r, err)
		}
	}
	waitFor(t, 10*time.Second, "the readers to park again", func() bool { return parkedReaders() == 2*n })

	// Calls that run while the server's reader waits for the next frame:
	// the end of the last one makes that wait short (readSoon).
	for i := range 3 {
		if err := call(ctx, clients[1], "ParkEcho.Nap", 5*time.Millisecond, nil); err != nil {
			t.Fatalf("nap %d: %v", i, err)
		}
	}
	waitFor(t, 10*time.Second, "the readers to park after calls that ran long", func() bool { return parkedReaders() == 2*n })
}

// ParkPush is the client-side service that receives the server's pushes
// (the root's test registered it as "Push").
type ParkPush chan string

// Note receives a push.
func (p ParkPush) Note(m string, _ *struct{}) error { p <- m; return nil }

// TestParkCloseRace closes connections, from either end, while their
// readers park and wake every few milliseconds: each close must end the
// session's reading exactly once (a second reader would close readerDone
// twice and crash), and nothing may be left running.
func TestParkCloseRace(t *testing.T) {
	hb := Heartbeat{Interval: 5 * time.Millisecond, Timeout: 100 * time.Millisecond, MinInterval: time.Millisecond}
	srv := startParkServer(t, hb)
	clients := make([]*Session, 16)
	for i := range clients {
		clients[i] = dialEcho(t, srv.addr(), hb)
	}
	deadline := time.Now().Add(time.Second)
	for round := 0; round < 200 && time.Now().Before(deadline); round++ {
		i := round % len(clients)
		if round%2 == 0 {
			parkCloseSession(clients[i]) // the client's end
		} else {
			for _, p := range parkOpenSessions(srv) { // the server's end of one connection
				p.Close()
				break
			}
			parkCloseSession(clients[i])
		}
		time.Sleep(time.Duration(round%7) * time.Millisecond)
		clients[i] = dialEcho(t, srv.addr(), hb)
	}
	srv.close()
	for _, c := range clients {
		parkCloseSession(c)
	}
	checkReadersGone(t)
}

// readSyscalls returns the read-like system calls this process has made
// (syscr of /proc/self/io).
func readSyscalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no syscr in /proc/self/io")
	return 0
}

// TestIdleHeartbeatsDoNotAllocate: an idle connection's heartbeats (the
// PING, the PONG, the reader parking and resuming on both sides) allocate
// nothing, so that a process holding many idle connections does not grow
// its heap between collections. Allocations are counted per read system
// call (each heartbeat costs each side at least one); they were about
// five per read when the socket operations took closures.
func TestIdleHeartbeatsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts do not hold under the race detector (sync.Pool drops items)")
	}
	const n = 50
	hb := Heartbeat{Interval: 10 * time.Millisecond, Timeout: 500 * time.Millisecond, MinInterval: 5 * time.Millisecond}
	srv := startParkServer(t, hb)
	var clients []*Session
	for range n {
		clients = append(clients, dialEcho(t, srv.addr(), hb))
	}
	waitFor(t, 5*time.Second, "idle readers to park", func() bool { return parkedReaders() >= n })
	time.Sleep(50 * time.Millisecond) // past the first heartbeats (the workers that resume readers start)

	var before, after runtime.MemStats
	r0 := readSyscalls(t)
	runtime.ReadMemStats(&before)
	time.Sleep(500 * time.Millisecond)
	runtime.ReadMemStats(&after)
	reads := readSyscalls(t) - r0
	mallocs := after.Mallocs - before.Mallocs
	t.Logf("%d mallocs over %d read system calls", mallocs, reads)
	if reads < n {
		t.Fatalf("only %d reads in the window: heartbeats did not flow", reads)
	}
	if per := float64(mallocs) / float64(reads); per > 0.2 {
		t.Errorf("%.2f allocations per read on idle connections, want none", per)
	}
	for _, c := range clients {
		parkCloseSession(c)
	}
	srv.close()
}

// TestFramesQueuedDuringNoWaitWrite: a frame queued by another goroutine
// while the reader (or a method running on it) writes without waiting is
// written when that write is done. It was left in the queue until the next
// write: the other goroutine saw a writer at work and left the frame to
// it, and the writer then stopped. A reply could wait for the next
// heartbeat.
func TestFramesQueuedDuringNoWaitWrite(t *testing.T) {
	hb := Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute}
	srv := startParkServer(t, hb)
	ctx := context.Background()
	s := dialEcho(t, srv.addr(), hb)
	pinged := make(chan error, 1)
	var once sync.Once
	hook := func(hs *Session) {
		if hs != s {
			return
		}
		once.Do(func() {
			// A PING queued while this write is in progress.
			go func() {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				_, err := s.Ping(pctx)
				pinged <- err
			}()
			waitFor(t, 5*time.Second, "the PING to be queued", func() bool {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.ctrl != nil
			})
		})
	}
	testHookNoWaitWritten.Store(&hook)
	defer testHookNoWaitWritten.Store(nil)

	// A PONG nobody waits for (the peer ignores it), written without waiting.
	s.queueControl(func(b []byte) []byte { return wire.AppendPing(b, wire.TypePong, 0) }, noWait)
	select {
	case err := <-pinged:
		if err != nil {
			t.Fatalf("ping: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the PING queued during the write was not sent")
	}
	parkCloseSession(s)
	srv.close()
}

// TestParkerAnswersHeartbeats: the parker answers the heartbeats that
// arrive on a parked socket itself, without a worker, and hands anything
// else it read with them to a worker intact: a CALL that arrives in the
// same read as a PING is answered, and a malformed PING behind a good one
// is refused as a protocol error.
func TestParkerAnswersHeartbeats(t *testing.T) {
	srv := startQuietParkServer(t)
	conn, fr := rawDial(t, srv.addr())
	write := func(b []byte) {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	read := func(want wire.FrameType) []byte {
		t.Helper()
		h, p, err := fr.ReadFrame()
		if err != nil || h.Type != want {
			t.Fatalf("ReadFrame() = %v, %v; want %v", h, err, want)
		}
		return p
	}
	pong := func(want uint64) {
		t.Helper()
		if got, err := wire.ParsePing(read(wire.TypePong)); err != nil || got != want {
			t.Fatalf("PONG %d, %v; want %d", got, err, want)
		}
	}
	parked := func() {
		t.Helper()
		waitFor(t, 5*time.Second, "the server's reader to park", func() bool { return parkedReaders() == 1 })
	}

	callFrame := func(id uint32) []byte {
		return wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, id, append(wire.AppendCallHead(nil, "ParkEcho.Echo", 0), `"x"`...))
	}
	reply := func() {
		t.Helper()
		if st, body, err := wire.ParseReply(read(wire.TypeReply)); err != nil || st != wire.StatusOK || string(body) != `"x"` {
			t.Fatalf("reply %v %q, %v; want OK \"x\"", st, body, err)
		}
	}
	// A call, then a PING: a reader parks once it has found the socket
	// drained after a burst without calls.
	write(callFrame(1))
	reply()
	write(wire.AppendPing(nil, wire.TypePing, 0))
	pong(0)

	// A PING alone: the parker answers it.
	parked()
	beats := parkedBeats.Load()
	write(wire.AppendPing(nil, wire.TypePing, 1))
	pong(1)
	waitFor(t, 5*time.Second, "the parker to count the PING", func() bool { return parkedBeats.Load() == beats+1 })

	// A PING and a CALL in one write: the parker answers the PING and a
	// worker the CALL, from the bytes the parker read.
	parked()
	write(append(wire.AppendPing(nil, wire.TypePing, 2), callFrame(3)...))
	pong(2)
	reply()
	if got := parkedBeats.Load(); got != beats+2 {
		t.Errorf("the parker handled %d heartbeats, want 2", got-beats)
	}

	// After a call the reader parks again once a burst without one has
	// come.
	write(wire.AppendPing(nil, wire.TypePing, 4))
	pong(4)

	// A good PING and a malformed one: the second is a protocol error.
	parked()
	write(wire.AppendFrame(wire.AppendPing(nil, wire.TypePing, 3), wire.TypePing, 0, 0, make([]byte, wire.PingSize-1)))
	pong(3)
	g, err := wire.ParseGoAway(read(wire.TypeGoAway))
	if err != nil || g.Code != wire.GoAwayProtocolError {
		t.Fatalf("GOAWAY %+v, %v; want a protocol error", g, err)
	}
}

// TestParkerHandsOffWhenBehind: the parker answers the heartbeats of
// parked sockets itself, bursts included, until it falls behind: after
// parkerBehindRounds rounds in a row that each brought it a full set of
// events, it hands the sockets to workers, which answer too. Every PING
// gets its PONG either way.
func TestParkerHandsOffWhenBehind(t *testing.T) {
	const n = 400 // more than parkerBehindRounds+1 full rounds of 64
	srv := startQuietParkServer(t)
	conns := make([]net.Conn, n)
	readers := make([]*wire.Reader, n)
	pong := func(i int, want uint64) {
		t.Helper()
		h, p, err := readers[i].ReadFrame()
		if err != nil || h.Type != wire.TypePong {
			t.Fatalf("connection %d: ReadFrame() = %v, %v; want PONG", i, h, err)
		}
		if got, err := wire.ParsePing(p); err != nil || got != want {
			t.Fatalf("connection %d: PONG %d, %v; want %d", i, got, err, want)
		}
	}
	for i := range n {
		conns[i], readers[i] = rawDial(t, srv.addr())
		if _, err := conns[i].Write(wire.AppendPing(nil, wire.TypePing, 1)); err != nil {
			t.Fatal(err)
		}
		pong(i, 1)
	}
	waitFor(t, 10*time.Second, "every server reader to park", func() bool { return parkedReaders() == n })

	// Hold the parker at its first socket while a PING reaches every
	// socket (the server's kernel has acknowledged it): the parker then
	// finds them all ready at once, a backlog of n.
	beats := parkedBeats.Load()
	parkMu.Lock()
	for i := range n {
		if _, err := conns[i].Write(wire.AppendPing(nil, wire.TypePing, 2)); err != nil {
			parkMu.Unlock()
			t.Fatal(err)
		}
	}
	for i := range n {
		for deadline := time.Now().Add(5 * time.Second); unacked(t, conns[i]) > 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				parkMu.Unlock()
				t.Fatalf("connection %d: the server's kernel did not acknowledge the PING in 5 s", i)
			}
		}
	}
	parkMu.Unlock()
	for i := range n {
		pong(i, 2)
	}
	inline := parkedBeats.Load() - beats
	if inline < (parkerBehindRounds-1)*64 {
		t.Errorf("the parker answered %d of %d PINGs itself; want at least the %d of its first %d full rounds", inline, n, (parkerBehindRounds-1)*64, parkerBehindRounds-1)
	}
	if inline >= n {
		t.Errorf("the parker answered all %d PINGs itself; want the sockets of its later full rounds handed to workers", n)
	}
	t.Logf("the parker answered %d of %d PINGs itself", inline, n)
}

// unacked returns the bytes of conn's send queue that the peer's kernel
// has not acknowledged yet (SIOCOUTQ, alias TIOCOUTQ).
func unacked(t *testing.T, conn net.Conn) int {
	t.Helper()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var errno syscall.Errno
	if err := raw.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil {
		t.Fatal(err)
	}
	if errno != 0 {
		t.Fatal(errno)
	}
	return int(n)
}

// Helpers of TestMonitorPeerBytesUnread (monitor_unread_linux_test.go).

// unreadTCPPair returns both ends of a TCP connection over loopback: the
// dialer's, then the acceptor's. Both are closed when the test ends.
func unreadTCPPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		c.Close()
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
