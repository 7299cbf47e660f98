package pulse_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
)

// callSentinels are the per-call sentinels; a *CallError matches one at most.
var callSentinels = []error{
	pulse.ErrUnknownService, pulse.ErrUnknownMethod, pulse.ErrBadArgs, pulse.ErrHandlerPanic,
	pulse.ErrBusy, pulse.ErrMessageTooLarge, pulse.ErrBadReply,
}

// checkOnlySentinel checks that err matches want and no other per-call
// sentinel, nor a connection one.
func checkOnlySentinel(t *testing.T, err, want error) {
	t.Helper()
	for _, s := range callSentinels {
		if got := errors.Is(err, s); got != (s == want) {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, s == want)
		}
	}
	for _, s := range []error{pulse.ErrShutdown, pulse.ErrProtocol, pulse.ErrGoAway, pulse.ErrHandshake} {
		if errors.Is(err, s) {
			t.Errorf("errors.Is(%v, %v) = true, want false", err, s)
		}
	}
}

func TestServerError(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, new(Arith))
		c := ts.dial(t)

		err := c.Call(testContext(t), "Arith.Div", Args{1, 0}, new(Reply))
		var se pulse.ServerError
		if !errors.As(err, &se) {
			t.Fatalf("Call(Arith.Div, 1/0) = %v (%T), want a pulse.ServerError", err, err)
		}
		if want := "divide by zero"; string(se) != want || err.Error() != want {
			t.Errorf("ServerError = %q (Error() %q), want %q", string(se), err.Error(), want)
		}
		var ce *pulse.CallError
		if errors.As(err, &ce) {
			t.Errorf("errors.As(%v, *CallError) = true, want false", err)
		}
		checkOnlySentinel(t, err, nil)
	})
}

func TestUnknownServiceAndMethod(t *testing.T) {
	tests := []struct {
		method string
		want   error
	}{
		{"Nope.Add", pulse.ErrUnknownService},
		{"NoDot", pulse.ErrUnknownService},
		{"", pulse.ErrUnknownService},
		{"Arith.Nope", pulse.ErrUnknownMethod},
		{"Arith.add", pulse.ErrUnknownMethod},
	}
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		arith := new(Arith)
		ts.register(t, arith)
		c := ts.dial(t)
		ctx := testContext(t)

		for _, tt := range tests {
			err := c.Call(ctx, tt.method, Args{1, 2}, new(Reply))
			if !errors.Is(err, tt.want) {
				t.Errorf("Call(%q) = %v, want %v", tt.method, err, tt.want)
				continue
			}
			checkOnlySentinel(t, err, tt.want)
			var ce *pulse.CallError
			if !errors.As(err, &ce) {
				t.Errorf("Call(%q) error is %T, want *pulse.CallError", tt.method, err)
				continue
			}
			if !ce.Remote || ce.Executed() || ce.Method != tt.method {
				t.Errorf("Call(%q) = CallError{Method: %q, Remote: %v, Executed(): %v}, want {%q, true, false}",
					tt.method, ce.Method, ce.Remote, ce.Executed(), tt.method)
			}
		}
		if n := arith.calls.Load(); n != 0 {
			t.Errorf("Arith handlers ran %d times, want 0", n)
		}
		var r Reply
		if err := c.Call(ctx, "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
			t.Errorf("Call(Arith.Add) after failed calls = %d, %v; want 3, nil", r.C, err)
		}
	})
}

func TestBadArgs(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		arith := new(Arith)
		ts.register(t, arith)
		c := ts.dial(t, pulse.WithCodec("json"))

		// A string where Args (a struct) is expected.
		err := c.Call(testContext(t), "Arith.Add", "not a struct", new(Reply))
		if !errors.Is(err, pulse.ErrBadArgs) {
			t.Fatalf("Call(Arith.Add, string) = %v, want %v", err, pulse.ErrBadArgs)
		}
		checkOnlySentinel(t, err, pulse.ErrBadArgs)
		var ce *pulse.CallError
		if !errors.As(err, &ce) || ce.Executed() || !ce.Remote {
			t.Errorf("Call(Arith.Add, string) = %#v, want a remote *CallError with Executed() false", err)
		}
		if n := arith.calls.Load(); n != 0 {
			t.Errorf("handler ran %d times, want 0", n)
		}

		// Arguments that cannot be encoded fail on this side.
		err = c.Call(testContext(t), "Arith.Add", make(chan int), new(Reply))
		if !errors.Is(err, pulse.ErrBadArgs) {
			t.Errorf("Call(Arith.Add, chan) = %v, want %v", err, pulse.ErrBadArgs)
		}
		if errors.As(err, &ce) && (ce.Remote || ce.Executed()) {
			t.Errorf("Call(Arith.Add, chan) = CallError{Remote: %v, Executed(): %v}, want false, false", ce.Remote, ce.Executed())
		}
	})
}

func TestBadReply(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		arith := new(Arith)
		ts.register(t, arith)
		c := ts.dial(t, pulse.WithCodec("json"))
		ctx := testContext(t)

		// Echo replies a string, decoded into an int.
		var n int
		err := c.Call(ctx, "Arith.Echo", "text", &n)
		if !errors.Is(err, pulse.ErrBadReply) {
			t.Fatalf("Call(Arith.Echo) into *int = %v, want %v", err, pulse.ErrBadReply)
		}
		checkOnlySentinel(t, err, pulse.ErrBadReply)
		var ce *pulse.CallError
		if !errors.As(err, &ce) {
			t.Fatalf("Call() error is %T, want *pulse.CallError", err)
		}
		if !ce.Executed() {
			t.Errorf("CallError.Executed() = false for a reply that did not decode, want true: the method ran")
		}
		var s string
		if err := c.Call(ctx, "Arith.Echo", "ok", &s); err != nil || s != "ok" {
			t.Errorf("Call(Arith.Echo) after a bad reply = %q, %v; want %q, nil", s, err, "ok")
		}
	})
}

// Panicker's method panics.
type Panicker struct{}

func (Panicker) Boom(n int, reply *int) error { panic("boom") }

func TestHandlerPanic(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		var logs syncBuffer
		ts := newTestServer(t, tr, pulse.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		ts.register(t, Panicker{})
		ts.register(t, new(Arith))
		c := ts.dial(t)
		ctx := testContext(t)

		err := c.Call(ctx, "Panicker.Boom", 1, new(int))
		if !errors.Is(err, pulse.ErrHandlerPanic) {
			t.Fatalf("Call(Panicker.Boom) = %v, want %v", err, pulse.ErrHandlerPanic)
		}
		checkOnlySentinel(t, err, pulse.ErrHandlerPanic)
		var ce *pulse.CallError
		if !errors.As(err, &ce) || !ce.Executed() || !ce.Remote {
			t.Errorf("Call(Panicker.Boom) = %#v, want a remote *CallError with Executed() true", err)
		}
		if !strings.Contains(err.Error(), "boom") {
			t.Errorf("Call(Panicker.Boom) error %q does not contain the panic value %q", err, "boom")
		}

		// The connection survives the panic.
		var r Reply
		if err := c.Call(ctx, "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
			t.Errorf("Call(Arith.Add) after a panic = %d, %v; want 3, nil", r.C, err)
		}

		// The stack was logged, before the reply was sent.
		log := logs.String()
		for _, want := range []string{"panic serving Panicker.Boom", "boom", "Panicker.Boom(", "goroutine "} {
			if !strings.Contains(log, want) {
				t.Errorf("log does not contain %q:\n%s", want, log)
			}
		}
	})
}

// TestServerClosePendingCalls closes the server while calls run: they all
// fail at once with a *ConnError that says the requests were sent.
func TestServerClosePendingCalls(t *testing.T) {
	const n = 5
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		b := newBlocker(t)
		ts.register(t, b)
		c := ts.dial(t)

		calls := make([]*pulse.Call, n)
		for i := range calls {
			calls[i] = goCall(c, "Blocker.Wait", i, new(int))
		}
		b.waitStarted(t, n)
		if err := ts.Close(); err != nil {
			t.Fatalf("Server.Close() = %v, want nil", err)
		}
		for i, call := range calls {
			err := waitCall(t, call)
			var ce *pulse.ConnError
			if !errors.As(err, &ce) {
				t.Errorf("call %d after Server.Close = %v (%T), want a *pulse.ConnError", i, err, err)
				continue
			}
			if !ce.Sent {
				t.Errorf("call %d: ConnError.Sent = false, want true: its handler was running", i)
			}
			if errors.Is(err, pulse.ErrShutdown) {
				t.Errorf("errors.Is(%v, ErrShutdown) = true, want false: this side did not close", err)
			}
		}
		// The handlers' contexts are cancelled.
		for i := 0; i < n; i++ {
			recv(t, b.ended, "the handlers' contexts to end")
		}
		recv(t, c.Peer().Done(), "the client to see the connection close")
		if c.Peer().Err() == nil {
			t.Errorf("Peer().Err() = nil after the server closed, want an error")
		}
		// A new call is never sent: with no server to reconnect to, it
		// waits for a connection within its context and fails when that
		// ends (a client that cannot redial, over a pipe, fails at once).
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := c.Call(ctx, "Blocker.Wait", 0, new(int))
		var ce *pulse.ConnError
		var callErr *pulse.CallError
		switch {
		case errors.As(err, &ce):
			if ce.Sent {
				t.Errorf("Call() on a closed connection = %v, want Sent false", err)
			}
		case errors.As(err, &callErr):
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Call() with no server = %v, want the context's deadline", err)
			}
		default:
			t.Errorf("Call() on a closed connection = %#v, want a *ConnError or a *CallError", err)
		}
	})
}

// TestClientClose closes the client while calls are pending.
func TestClientClose(t *testing.T) {
	const n = 3
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		b := newBlocker(t)
		ts.register(t, b)
		c := ts.dial(t)
		ctx := testContext(t)

		calls := make([]*pulse.Call, n)
		for i := range calls {
			calls[i] = goCall(c, "Blocker.Wait", i, new(int))
		}
		b.waitStarted(t, n)
		if err := c.Close(); err != nil {
			t.Fatalf("Close() = %v, want nil", err)
		}
		for i, call := range calls {
			if err := waitCall(t, call); !errors.Is(err, pulse.ErrShutdown) {
				t.Errorf("pending call %d after Close = %v, want %v", i, err, pulse.ErrShutdown)
			}
		}
		for i := 0; i < n; i++ {
			recv(t, b.ended, "the server's handlers to be cancelled")
		}

		if err := c.Call(ctx, "Blocker.Wait", 0, new(int)); !errors.Is(err, pulse.ErrShutdown) {
			t.Errorf("Call() after Close = %v, want %v", err, pulse.ErrShutdown)
		}
		if err := waitCall(t, goCall(c, "Blocker.Wait", 0, new(int))); !errors.Is(err, pulse.ErrShutdown) {
			t.Errorf("Go() after Close = %v, want %v", err, pulse.ErrShutdown)
		}
		if err := c.Notify(ctx, "Blocker.Wait", 0); !errors.Is(err, pulse.ErrShutdown) {
			t.Errorf("Notify() after Close = %v, want %v", err, pulse.ErrShutdown)
		}
		if err := c.Close(); !errors.Is(err, pulse.ErrShutdown) {
			t.Errorf("second Close() = %v, want %v", err, pulse.ErrShutdown)
		}
		// The server forgets the client.
		waitFor(t, "the server to drop the closed client", func() bool { return len(ts.Peers()) == 0 })
	})
}

func TestBusy(t *testing.T) {
	const max = 2
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr, pulse.WithMaxConcurrentCalls(max))
		b := newBlocker(t)
		ts.register(t, b)
		c := ts.dial(t)
		ctx := testContext(t)

		calls := make([]*pulse.Call, max)
		for i := range calls {
			calls[i] = goCall(c, "Blocker.Wait", i, new(int))
		}
		b.waitStarted(t, max)

		err := c.Call(ctx, "Blocker.Wait", max, new(int))
		if !errors.Is(err, pulse.ErrBusy) {
			t.Fatalf("Call() beyond %d running calls = %v, want %v", max, err, pulse.ErrBusy)
		}
		checkOnlySentinel(t, err, pulse.ErrBusy)
		var ce *pulse.CallError
		if !errors.As(err, &ce) || ce.Executed() {
			t.Errorf("busy Call() = %#v, want a *CallError with Executed() false", err)
		}
		if n := b.calls.Load(); n != max {
			t.Errorf("handler ran %d times, want %d", n, max)
		}

		b.Release()
		for i, call := range calls {
			if err := waitCall(t, call); err != nil {
				t.Errorf("blocked call %d failed: %v", i, err)
			}
		}
		var got int
		if err := c.Call(ctx, "Blocker.Wait", 7, &got); err != nil || got != 7 {
			t.Errorf("Call() once the handlers returned = %d, %v; want 7, nil", got, err)
		}
	})
}

// TestCallErrorExecuted checks Executed for each status: false for the
// failures where the method cannot have run, true otherwise.
func TestCallErrorExecuted(t *testing.T) {
	tests := []struct {
		status pulse.Status
		want   bool
	}{
		{pulse.StatusUnknownService, false},
		{pulse.StatusUnknownMethod, false},
		{pulse.StatusBadArgs, false},
		{pulse.StatusBusy, false},
		{pulse.StatusPanic, true},
		{pulse.StatusTooLarge, true},
		{pulse.StatusCanceled, true},
		{pulse.StatusInternal, true},
	}
	for _, tt := range tests {
		e := &pulse.CallError{Method: "S.M", Status: tt.status, Remote: true}
		if got := e.Executed(); got != tt.want {
			t.Errorf("CallError{Status: %v, Remote: true}.Executed() = %v, want %v", tt.status, got, tt.want)
		}
	}
}

func TestErrorsAreNetErrors(t *testing.T) {
	var _ net.Error = (*pulse.CallError)(nil)
	var _ net.Error = (*pulse.ConnError)(nil)

	tests := []struct {
		err     *pulse.ConnError
		is      error
		timeout bool
		temp    bool
	}{
		{&pulse.ConnError{Reason: pulse.ReasonShutdown}, pulse.ErrShutdown, false, false},
		{&pulse.ConnError{Reason: pulse.ReasonSilent}, pulse.ErrPeerSilent, true, true},
		{&pulse.ConnError{Reason: pulse.ReasonGoAway, Code: pulse.CloseShutdown}, pulse.ErrGoAway, false, true},
		{&pulse.ConnError{Reason: pulse.ReasonProtocol}, pulse.ErrProtocol, false, true},
		{&pulse.ConnError{Reason: pulse.ReasonHandshake}, pulse.ErrHandshake, false, false},
		{&pulse.ConnError{Reason: pulse.ReasonWriteStall}, nil, true, true},
		{&pulse.ConnError{Reason: pulse.ReasonIO, Err: net.ErrClosed}, net.ErrClosed, false, true},
	}
	for _, tt := range tests {
		if tt.is != nil && !errors.Is(tt.err, tt.is) {
			t.Errorf("errors.Is(%v, %v) = false, want true", tt.err, tt.is)
		}
		if got := tt.err.Timeout(); got != tt.timeout {
			t.Errorf("(%v).Timeout() = %v, want %v", tt.err, got, tt.timeout)
		}
		if got := tt.err.Temporary(); got != tt.temp {
			t.Errorf("(%v).Temporary() = %v, want %v", tt.err, got, tt.temp)
		}
	}

	ce := &pulse.CallError{Method: "S.M", Status: pulse.StatusCanceled, Err: context.DeadlineExceeded}
	if !ce.Timeout() || !errors.Is(ce, context.DeadlineExceeded) || errors.Is(ce, context.Canceled) {
		t.Errorf("deadline CallError: Timeout() %v, Is(DeadlineExceeded) %v, Is(Canceled) %v; want true, true, false",
			ce.Timeout(), errors.Is(ce, context.DeadlineExceeded), errors.Is(ce, context.Canceled))
	}
}

// TestSentWhileWriterLate: the request was written whole and its handler
// runs, but the writing goroutine has not come back from its write when
// the connection is lost. The call may have run, so it must fail with
// Sent true, and must not be sent again on a new connection.
func TestSentWhileWriterLate(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		b := newBlocker(t)
		ts.register(t, b)
		hook := newConnHook(t)
		// No heartbeats: the held write must be the call's.
		c := ts.dialWrapped(t, hook.wrap, pulse.WithHeartbeat(pulse.Heartbeat{Interval: -1}))

		hook.holdAfterNextWrite()
		done := make(chan *pulse.Call, 1)
		// Go writes the call itself, and is held after the write.
		go c.Go(context.Background(), "Blocker.Wait", 1, new(int), done)
		b.waitStarted(t, 1)
		recv(t, hook.reached, "the write to be held")
		waitFor(t, "the server to list the client", func() bool { return len(ts.Peers()) == 1 })
		ts.Peers()[0].Close() // GOAWAY naming the call as processed, then close

		var call *pulse.Call
		select {
		case call = <-done:
		case n := <-b.started:
			t.Fatalf("call %d ran a second time: it was resent on a new connection", n)
		case <-time.After(defaultTestTimeout):
			t.Fatalf("the call did not complete after its connection was lost")
		}
		var ce *pulse.ConnError
		if !errors.As(call.Error, &ce) || !ce.Sent {
			t.Errorf("call whose handler ran, connection lost = %v, want a *ConnError with Sent true", call.Error)
		}
		if n := b.calls.Load(); n != 1 {
			t.Errorf("handler ran %d times, want 1", n)
		}
		hook.unblock()
	})
}
