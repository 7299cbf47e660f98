package pulse_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
)

// deadlineTolerance is how far the handler's deadline may be from the
// caller's: the server recomputes it from the remaining time on receipt.
const deadlineTolerance = time.Second

func TestHandlerSeesCallerDeadline(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, new(Arith))
		c := ts.dial(t)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		want, _ := ctx.Deadline()
		var reply DeadlineReply
		if err := c.Call(ctx, "Arith.Deadline", 0, &reply); err != nil {
			t.Fatalf("Call(Arith.Deadline) failed: %v", err)
		}
		if !reply.Has {
			t.Fatalf("handler's ctx.Deadline() = _, false; want the caller's deadline %v", want)
		}
		got := time.Unix(0, reply.UnixNano)
		if d := got.Sub(want).Abs(); d > deadlineTolerance {
			t.Errorf("handler's ctx.Deadline() = %v, want %v ± %v (off by %v)", got, want, deadlineTolerance, d)
		}

		// Without a deadline, the handler has none.
		reply = DeadlineReply{}
		if err := c.Call(context.Background(), "Arith.Deadline", 0, &reply); err != nil {
			t.Fatalf("Call(Arith.Deadline) failed: %v", err)
		}
		if reply.Has {
			t.Errorf("handler's ctx.Deadline() = %v, true for a call without deadline; want none", time.Unix(0, reply.UnixNano))
		}
	})
}

func TestCallCancel(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		b := newBlocker(t)
		ts.register(t, b)
		ts.register(t, new(Arith))
		c := ts.dial(t)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- c.Call(ctx, "Blocker.Wait", 1, new(int)) }()
		b.waitStarted(t, 1)
		cancel()
		err := recv(t, errc, "Call to return after cancel")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Call() after cancel = %v, want %v", err, context.Canceled)
		}
		var ce *pulse.CallError
		if !errors.As(err, &ce) {
			t.Fatalf("Call() error is %T, want *pulse.CallError", err)
		}
		if !ce.Executed() {
			t.Errorf("CallError.Executed() = false for a call cancelled while its handler ran, want true")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, context.DeadlineExceeded) = true, want false", err)
		}
		// The handler's context is cancelled by the caller's CANCEL.
		if herr := recv(t, b.ended, "the handler's context to end"); !errors.Is(herr, context.Canceled) {
			t.Errorf("handler's ctx.Err() = %v, want %v", herr, context.Canceled)
		}

		// The connection is still usable.
		var r Reply
		if err := c.Call(testContext(t), "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
			t.Errorf("Call(Arith.Add) after a cancelled call = %d, %v; want 3, nil", r.C, err)
		}
	})
}

func TestCallDeadlineExceeded(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		b := newBlocker(t)
		ts.register(t, b)
		c := ts.dial(t)

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err := c.Call(ctx, "Blocker.Wait", 1, new(int))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Call() past its deadline = %v, want %v", err, context.DeadlineExceeded)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("Call() past its deadline = %v (%T), want a net.Error with Timeout() true", err, err)
		}
		if errors.Is(err, context.Canceled) {
			t.Errorf("errors.Is(%v, context.Canceled) = true, want false", err)
		}
		// The handler's context ends too: by its own deadline or by the
		// caller's CANCEL, whichever comes first.
		if herr := recv(t, b.ended, "the handler's context to end"); herr == nil {
			t.Errorf("handler's ctx.Err() = nil, want an error")
		}

		// A deadline already past fails at once, without sending.
		ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel()
		err = c.Call(ctx, "Blocker.Wait", 2, new(int))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Call() with a past deadline = %v, want %v", err, context.DeadlineExceeded)
		}
		if n := b.calls.Load(); n != 1 {
			t.Errorf("handler ran %d times, want 1", n)
		}
	})
}

func TestGoCancel(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		b := newBlocker(t)
		ts.register(t, b)
		c := ts.dial(t)

		ctx, cancel := context.WithCancel(context.Background())
		call := c.Go(ctx, "Blocker.Wait", 1, new(int), nil)
		b.waitStarted(t, 1)
		cancel()
		if err := waitCall(t, call); !errors.Is(err, context.Canceled) {
			t.Errorf("Go() call after cancel completed with %v, want %v", err, context.Canceled)
		}
		if herr := recv(t, b.ended, "the handler's context to end"); !errors.Is(herr, context.Canceled) {
			t.Errorf("handler's ctx.Err() = %v, want %v", herr, context.Canceled)
		}

		// A context cancelled before Go completes the call at once.
		call = c.Go(ctx, "Blocker.Wait", 2, new(int), nil)
		err := waitCall(t, call)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Go() with a cancelled context completed with %v, want %v", err, context.Canceled)
		}
		var ce *pulse.CallError
		if errors.As(err, &ce) && ce.Executed() {
			t.Errorf("CallError.Executed() = true for a call never sent, want false")
		}

		// A deadline on Go.
		dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer dcancel()
		call = c.Go(dctx, "Blocker.Wait", 3, new(int), nil)
		if err := waitCall(t, call); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Go() past its deadline completed with %v, want %v", err, context.DeadlineExceeded)
		}
	})
}

// TestCancelLargeCall cancels a call whose arguments are being sent in
// frames: the call fails at once, the server drops what it gathered and
// never runs the method, and the connection goes on working.
func TestCancelLargeCall(t *testing.T) {
	const (
		size    = 8 << 20
		maxSize = 16 << 20
	)
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr, pulse.WithMaxMessageSize(maxSize))
		arith := new(Arith)
		ts.register(t, arith)
		hook := newConnHook(t)
		c := ts.dialWrapped(t, hook.wrap, pulse.WithMaxMessageSize(maxSize))
		ctx := testContext(t)

		// Stall the connection after 1 MiB of the 8 MiB arguments.
		hook.blockAfter(1 << 20)
		cctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		call := c.Go(cctx, "Arith.Echo", pattern(size), new(string), nil)
		recv(t, hook.reached, "the large call to be partly written")
		cancel()
		if err := waitCall(t, call); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled large Go(Arith.Echo) completed with %v, want %v", err, context.Canceled)
		}
		hook.unblock()

		var r Reply
		if err := c.Call(ctx, "Arith.Add", Args{2, 2}, &r); err != nil || r.C != 4 {
			t.Fatalf("Call(Arith.Add) after a cancelled large call = %d, %v; want 4, nil", r.C, err)
		}
		// Another large message reassembles correctly after the aborted one.
		in := pattern(2 << 20)
		var out string
		if err := c.Call(ctx, "Arith.Echo", in, &out); err != nil || out != in {
			t.Fatalf("Call(Arith.Echo, 2 MiB) after a cancelled large call: equal %v, err %v; want equal, nil", out == in, err)
		}
		// Add and the second Echo ran; the cancelled Echo did not.
		if n := arith.calls.Load(); n != 2 {
			t.Errorf("handlers ran %d times, want 2: the cancelled call must not run", n)
		}
	})
}

// TestCancelLargeCallUnhooked cancels large calls at arbitrary points, with
// nothing stalling the connection.
func TestCancelLargeCallUnhooked(t *testing.T) {
	const maxSize = 16 << 20
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr, pulse.WithMaxMessageSize(maxSize))
		ts.register(t, new(Arith))
		c := ts.dial(t, pulse.WithMaxMessageSize(maxSize))
		ctx := testContext(t)

		arg := pattern(8 << 20)
		for i := 0; i < 3; i++ {
			cctx, cancel := context.WithCancel(context.Background())
			call := c.Go(cctx, "Arith.Echo", arg, new(string), nil)
			cancel()
			if err := waitCall(t, call); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("cancelled Go(Arith.Echo) completed with %v, want nil or %v", err, context.Canceled)
			}
		}
		var r Reply
		if err := c.Call(ctx, "Arith.Add", Args{2, 2}, &r); err != nil || r.C != 4 {
			t.Fatalf("Call(Arith.Add) after cancelled large calls = %d, %v; want 4, nil", r.C, err)
		}
	})
}
