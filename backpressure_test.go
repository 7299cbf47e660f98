package pulse_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/wire"
)

// stalledAcceptor accepts one connection, answers its HELLO granting the
// largest window, and then reads nothing more until the test ends: a
// server that has stopped. It returns the address.
func stalledAcceptor(t *testing.T) string {
	t.Helper()
	return acceptOne(t, func(conn net.Conn, _ *wire.Reader, offer wire.Hello) {
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetReadBuffer(4 << 10)
		}
		b, _ := wire.AppendHello(nil, wire.Hello{Role: wire.RoleAcceptor, MaxFrameSize: wire.DefaultMaxFrameSize,
			MaxMessageSize: 64 << 20, InitialWindow: wire.MaxWindow, Codecs: offer.Codecs[:1]})
		conn.Write(b)
		<-t.Context().Done()
	})
}

// TestCallsWaitForQueueRoom: calls to a server that stopped reading fill
// the client's send queue up to its bound; the calls after that wait for
// room within their context and fail with its error, unsent, instead of
// queueing without end.
func TestCallsWaitForQueueRoom(t *testing.T) {
	checkLeaks(t)
	const queue, arg = 256 << 10, 64 << 10
	c, err := pulse.Dial(testContext(t), stalledAcceptor(t), pulse.WithLogger(testLogger(t)), pulse.WithMaxQueued(queue),
		pulse.WithHeartbeat(pulse.Heartbeat{Interval: -1}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var waited int
	for range 400 { // 25 MiB offered: more than any socket buffers hold
		ctx, cancel := context.WithTimeout(testContext(t), 20*time.Millisecond)
		err := c.Call(ctx, "Any.Thing", make([]byte, arg), nil)
		cancel()
		var ce *pulse.CallError
		switch {
		case errors.As(err, &ce) && errors.Is(err, context.DeadlineExceeded):
			if q := c.Stats().Queued; q > queue+arg {
				t.Fatalf("%d bytes queued, over the bound of %d and one call", q, queue)
			}
			if !ce.Executed() && waited > 3 {
				return // waited for room, and was never sent
			}
			waited++
		default:
			t.Fatalf("Call() = %v, want a deadline error", err)
		}
	}
	t.Fatalf("no call failed unsent in %d tries", 400)
}

// TestBroadcastSkipsSlowConsumer: a client that stops reading does not
// hold up Broadcast, which reports it unreached and, by the server's
// default policy, closes it; the other client gets every push.
func TestBroadcastSkipsSlowConsumer(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP, pulse.WithMaxQueued(1<<20))
	in := newInbox()
	good := ts.dial(t)
	if err := good.Register(in); err != nil {
		t.Fatal(err)
	}
	conn := dialRaw(t, ts.addr)
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetReadBuffer(4 << 10)
	}
	rawHandshake(t, conn) // then reads nothing
	waitFor(t, "the server to list both clients", func() bool { return len(ts.Peers()) == 2 })

	push := string(make([]byte, 64<<10))
	slowOut := false
	const pushes = 200 // 12.5 MiB: more than the socket buffers hold
	for i := range pushes {
		ctx, cancel := context.WithTimeout(testContext(t), time.Minute)
		unreached, err := ts.Broadcast(ctx, "Inbox.Push", push)
		late := ctx.Err()
		cancel()
		if err != nil || late != nil {
			t.Fatalf("Broadcast %d = %v, context %v; want it to return without waiting", i, err, late)
		}
		for _, p := range unreached {
			if p.RemoteAddr().String() != conn.LocalAddr().String() {
				t.Fatalf("Broadcast %d did not reach the reading client", i)
			}
			slowOut = true
		}
		recv(t, in.got, "a push to the reading client")
	}
	if !slowOut {
		t.Errorf("the client that reads nothing was never reported unreached")
	}
	waitFor(t, "the slow consumer to be closed", func() bool { return len(ts.Peers()) == 1 })
	if st := good.Stats(); st.State != pulse.StateReady {
		t.Errorf("the reading client is %v, want ready", st.State)
	}
}
