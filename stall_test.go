package pulse_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/internal/faultproxy"
	"github.com/pulse-rpc/pulse/wire"
)

// The message timeout (WithMessageTimeout, PROTOCOL.md §9.6): a peer that
// starts a frame or a message and then dribbles, so that its connection
// looks alive, is closed with GOAWAY "stalled message" and what it held is
// let go; a slow link and a sender waiting for credit are not.

// dribble writes one byte of b every gap on conn, until b is written or a
// write fails, and reports the first error on the returned channel.
func dribble(conn interface{ Write([]byte) (int, error) }, b []byte, gap time.Duration) <-chan error {
	errc := make(chan error, 1)
	go func() {
		for i := range b {
			if _, err := conn.Write(b[i : i+1]); err != nil {
				errc <- err
				return
			}
			time.Sleep(gap)
		}
		errc <- nil
	}()
	return errc
}

// TestStalledFrameClosed: a frame whose header arrived and whose payload
// dribbles in is closed within the message timeout, although bytes keep
// coming (the heartbeat alone would never end it).
func TestStalledFrameClosed(t *testing.T) {
	checkLeaks(t)
	const timeout = 300 * time.Millisecond
	ts := newTestServer(t, transportTCP, pulse.WithMessageTimeout(timeout))
	conn := dialRaw(t, ts.addr)
	fr := rawHandshake(t, conn)
	pl := wire.AppendCallHead(nil, "Svc.Echo", 0)
	frame := wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 1, append(pl, make([]byte, 1000)...))
	start := time.Now()
	if _, err := conn.Write(frame[:wire.HeaderSize+10]); err != nil {
		t.Fatal(err)
	}
	dribble(conn, frame[wire.HeaderSize+10:], 20*time.Millisecond)
	checkStalled(t, conn, fr, start, timeout, "frame")
}

// checkStalled reads the GOAWAY that closes conn, which must be code 12
// (stalled message) with a message containing about, not earlier than
// timeout after start, and then the end of the connection.
func checkStalled(t *testing.T, conn net.Conn, fr *wire.Reader, start time.Time, timeout time.Duration, about string) {
	t.Helper()
	g := readGoAway(t, fr)
	if g.Code != wire.GoAwayStalled || !strings.Contains(g.Message, about) {
		t.Errorf("GOAWAY %v %q, want %v saying %q", g.Code, g.Message, wire.GoAwayStalled, about)
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("closed %v after it began, before the message timeout %v", d, timeout)
	}
	checkClosedByPeer(t, readUntilClosed(conn))
}

// TestStalledMessageClosed: a message of several frames whose next frames
// carry a few bytes each (with PINGs between them, so the connection is
// busy) is closed within the message timeout, and the shared budget gets
// back what the message held.
func TestStalledMessageClosed(t *testing.T) {
	checkLeaks(t)
	const timeout = 300 * time.Millisecond
	ts := newTestServer(t, transportTCP, pulse.WithMessageTimeout(timeout))
	conn := dialRaw(t, ts.addr)
	fr := rawHandshake(t, conn)
	const total = 64 << 10
	first := wire.AppendMessageLen(nil, total)
	first = wire.AppendCallHead(first, "Svc.Echo", 0)
	first = append(first, make([]byte, 2<<10)...)
	got := len(first) - wire.MessageLenSize
	start := time.Now()
	if _, err := conn.Write(wire.AppendFrame(nil, wire.TypeCall, 0, 1, first)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the server to hold the message", func() bool { return pulse.BudgetUsed(ts.Server) > 0 })
	errc := make(chan error, 1)
	go func() {
		for i := 0; got+100 < total; i++ {
			var b []byte
			b = wire.AppendFrame(b, wire.TypeContinuation, 0, 1, make([]byte, 100))
			b = wire.AppendPing(b, wire.TypePing, uint64(i))
			if _, err := conn.Write(b); err != nil {
				errc <- err
				return
			}
			got += 100
			time.Sleep(20 * time.Millisecond)
		}
		errc <- nil
	}()
	checkStalled(t, conn, fr, start, timeout, "no progress")
	<-errc
	waitFor(t, "the server to let go of the stalled message", func() bool { return pulse.BudgetUsed(ts.Server) == 0 })
}

// TestSlowLinkNotStalled: a message that takes several message timeouts to
// cross a slow link, but moves all the time, completes.
func TestSlowLinkNotStalled(t *testing.T) {
	checkLeaks(t)
	const timeout = 200 * time.Millisecond
	ts, addr := newTCPServer(t, pulse.WithMessageTimeout(timeout))
	h := newHold()
	close(h.release)
	ts.register(t, h)
	p := newProxy(t, addr)
	c := dialAddr(t, p.Addr())
	const n = 512 << 10
	p.Throttle(faultproxy.Upstream, 512<<10) // about 1 s for the call: five message timeouts
	start := time.Now()
	var reply int
	if err := c.Call(testContext(t), "Hold.Take", make([]byte, n), &reply); err != nil {
		t.Fatalf("Call() over the slow link = %v", err)
	}
	if reply != n {
		t.Errorf("reply = %d, want %d", reply, n)
	}
	if d := time.Since(start); d < 2*timeout {
		t.Logf("the call took %v, less than twice the message timeout: the link was not slow enough to tell", d)
	}
}

// TestCreditWaitNotStalled: a client whose message is half sent because
// the server holds its window (its handler keeps the previous call's
// bytes) waits for credit longer than the message timeout without being
// closed: that wait is the server's doing. Both calls complete once the
// handler lets go.
func TestCreditWaitNotStalled(t *testing.T) {
	checkLeaks(t)
	const (
		timeout = 200 * time.Millisecond
		maxMsg  = 64 << 10
		budget  = maxMsg + wire.MessageLenSize
	)
	hb := pulse.WithHeartbeat(pulse.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 2 * time.Second})
	ts := newTestServer(t, transportTCP, pulse.WithMessageTimeout(timeout), pulse.WithConnBudget(budget),
		pulse.WithMaxMessageSize(maxMsg), hb)
	h := newHold()
	ts.register(t, h)
	c := ts.dial(t, pulse.WithMaxMessageSize(maxMsg), hb)
	done := make(chan *pulse.Call, 2)
	var r1, r2 int
	c.Go(testContext(t), "Hold.Take", make([]byte, 40<<10), &r1, done)
	waitFor(t, "the first call's handler", func() bool { return h.entered.Load() == 1 })
	c.Go(testContext(t), "Hold.Take", make([]byte, 60<<10), &r2, done)
	// The second message starts with what credit is left, then waits.
	waitFor(t, "the second message to start", func() bool { return pulse.BudgetUsed(ts.Server) > 41<<10 })
	time.Sleep(5 * timeout)
	if st := c.Stats(); st.State != pulse.StateReady {
		t.Fatalf("client state %v after waiting for credit for %v, want ready", st.State, 5*timeout)
	}
	close(h.release)
	for range 2 {
		if call := recv(t, done, "a call's completion"); call.Error != nil {
			t.Errorf("call failed: %v", call.Error)
		}
	}
	if r1 != 40<<10 || r2 != 60<<10 {
		t.Errorf("replies %d and %d, want %d and %d", r1, r2, 40<<10, 60<<10)
	}
}
