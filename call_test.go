package pulse_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/faultproxy"
)

func TestCallMethodShapes(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, new(Arith))
		ts.register(t, Value{})
		c := ts.dial(t)
		ctx := testContext(t)

		tests := []struct {
			method string
			args   any
			want   int
		}{
			{"Arith.Add", Args{7, 8}, 15},   // value argument
			{"Arith.Add", &Args{7, 8}, 15},  // a pointer encodes the same
			{"Arith.Mul", Args{7, 8}, 56},   // pointer argument
			{"Arith.Mul", &Args{7, 8}, 56},  //
			{"Arith.AddCtx", Args{2, 3}, 5}, // context first
			{"Arith.MulCtx", &Args{2, 3}, 6},
		}
		for _, tt := range tests {
			var reply Reply
			if err := c.Call(ctx, tt.method, tt.args, &reply); err != nil {
				t.Errorf("Call(%s, %+v) failed: %v", tt.method, tt.args, err)
				continue
			}
			if reply.C != tt.want {
				t.Errorf("Call(%s, %+v) = %d, want %d", tt.method, tt.args, reply.C, tt.want)
			}
		}

		// Builtin types and a value receiver.
		var s string
		if err := c.Call(ctx, "Arith.Echo", "héllo, wörld", &s); err != nil || s != "héllo, wörld" {
			t.Errorf("Call(Arith.Echo) = %q, %v; want %q, nil", s, err, "héllo, wörld")
		}
		var n int
		if err := c.Call(ctx, "Value.Negate", 42, &n); err != nil || n != -42 {
			t.Errorf("Call(Value.Negate, 42) = %d, %v; want -42, nil", n, err)
		}
		// A nil reply discards the result.
		if err := c.Call(ctx, "Arith.Add", Args{1, 1}, nil); err != nil {
			t.Errorf("Call(Arith.Add) with nil reply failed: %v", err)
		}
		// No deadline at all.
		var r Reply
		if err := c.Call(context.Background(), "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
			t.Errorf("Call(Arith.Add) without deadline = %d, %v; want 3, nil", r.C, err)
		}
	})
}

// TestCallConcurrent makes many calls from many goroutines; the handler's
// delay depends on the arguments, so that replies come back out of order.
func TestCallConcurrent(t *testing.T) {
	const (
		goroutines = 64
		calls      = 50
	)
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		arith := new(Arith)
		ts.register(t, arith)
		c := ts.dial(t)
		ctx := testContext(t)

		var wg sync.WaitGroup
		errc := make(chan error, goroutines)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < calls; i++ {
					args := Args{A: g*calls + i, B: g}
					var reply Reply
					if err := c.Call(ctx, "Arith.SlowAdd", args, &reply); err != nil {
						errc <- fmt.Errorf("Call(Arith.SlowAdd, %+v) failed: %v", args, err)
						return
					}
					if want := args.A + args.B; reply.C != want {
						errc <- fmt.Errorf("Call(Arith.SlowAdd, %+v) = %d, want %d", args, reply.C, want)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		if got, want := arith.calls.Load(), int64(goroutines*calls); got != want {
			t.Errorf("handler ran %d times, want %d", got, want)
		}
	})
}

// Gate's Hold blocks call n until the test opens gate n.
type Gate struct {
	arrived chan int
	gates   []chan struct{}
}

func newGate(n int) *Gate {
	g := &Gate{arrived: make(chan int, n), gates: make([]chan struct{}, n)}
	for i := range g.gates {
		g.gates[i] = make(chan struct{})
	}
	return g
}

func (g *Gate) Hold(ctx context.Context, n int, reply *int) error {
	g.arrived <- n
	select {
	case <-g.gates[n]:
		*reply = n
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestCallRepliesOutOfOrder holds every call in its handler and releases
// them in reverse order: each completes alone, before the earlier ones.
func TestCallRepliesOutOfOrder(t *testing.T) {
	const n = 8
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		g := newGate(n)
		ts.register(t, g)
		c := ts.dial(t)

		calls := make([]*pulse.Call, n)
		replies := make([]int, n)
		for i := range calls {
			calls[i] = c.Go(testContext(t), "Gate.Hold", i, &replies[i], nil)
		}
		for i := 0; i < n; i++ {
			recv(t, g.arrived, "the calls to reach the handler")
		}
		for i := n - 1; i >= 0; i-- {
			close(g.gates[i])
			if err := waitCall(t, calls[i]); err != nil {
				t.Fatalf("Go(Gate.Hold, %d) failed: %v", i, err)
			}
			if replies[i] != i {
				t.Errorf("Go(Gate.Hold, %d) reply = %d, want %d", i, replies[i], i)
			}
			for j := 0; j < i; j++ {
				select {
				case <-calls[j].Done:
					t.Fatalf("call %d completed before its handler was released", j)
				default:
				}
			}
		}
	})
}

func TestGoDoneChannel(t *testing.T) {
	const n = 20
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, new(Arith))
		c := ts.dial(t)
		ctx := testContext(t)

		done := make(chan *pulse.Call, n)
		sent := make(map[*pulse.Call]int)
		for i := 0; i < n; i++ {
			call := c.Go(ctx, "Arith.SlowAdd", Args{i, 100}, new(Reply), done)
			if call.Done != done {
				t.Fatalf("Go() returned a Call whose Done is not the channel given")
			}
			sent[call] = i
		}
		for range n {
			call := recv(t, done, "a call on the done channel")
			i, ok := sent[call]
			if !ok {
				t.Fatalf("done channel delivered a Call that Go did not return (or twice): %+v", call)
			}
			delete(sent, call)
			if call.Error != nil {
				t.Errorf("Go(Arith.SlowAdd, %d) failed: %v", i, call.Error)
				continue
			}
			if got := call.Reply.(*Reply).C; got != i+100 {
				t.Errorf("Go(Arith.SlowAdd, %d) = %d, want %d", i, got, i+100)
			}
			if call.ServiceMethod != "Arith.SlowAdd" || call.Args.(Args).A != i {
				t.Errorf("completed Call = {%q, %v}, want {Arith.SlowAdd, %v}", call.ServiceMethod, call.Args, Args{i, 100})
			}
		}
	})
}

func TestGoNilDone(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, new(Arith))
		c := ts.dial(t)

		var reply Reply
		call := c.Go(testContext(t), "Arith.Mul", Args{6, 7}, &reply, nil)
		if call.Done == nil || cap(call.Done) == 0 {
			t.Fatalf("Go(nil done) returned Done with capacity %d, want a buffered channel", cap(call.Done))
		}
		if got := recv(t, call.Done, "the call"); got != call {
			t.Fatalf("Done delivered %p, want the Call Go returned (%p)", got, call)
		}
		if call.Error != nil || reply.C != 42 {
			t.Errorf("Go(Arith.Mul, 6*7) = %d, %v; want 42, nil", reply.C, call.Error)
		}
	})
}

func TestGoUnbufferedDonePanics(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportPipe)
	ts.register(t, new(Arith))
	c := ts.dial(t)
	defer func() {
		if r := recover(); r == nil {
			t.Errorf("Go() with an unbuffered done channel did not panic")
		}
	}()
	c.Go(context.Background(), "Arith.Add", Args{}, new(Reply), make(chan *pulse.Call))
}

func TestNotify(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		in := newInbox()
		ts.register(t, in)
		c := ts.dial(t)
		ctx := testContext(t)

		for i := 0; i < 3; i++ {
			msg := fmt.Sprintf("hello %d", i)
			if err := c.Notify(ctx, "Inbox.Push", msg); err != nil {
				t.Fatalf("Notify(Inbox.Push, %q) failed: %v", msg, err)
			}
			if got := recv(t, in.got, "the notification"); got != msg {
				t.Errorf("handler got %q, want %q", got, msg)
			}
		}
		// A notification for a method that does not exist is dropped by
		// the server; the connection goes on.
		if err := c.Notify(ctx, "Nope.Push", "x"); err != nil {
			t.Errorf("Notify(Nope.Push) failed: %v", err)
		}
		if err := c.Notify(ctx, "Inbox.Push", "after"); err != nil {
			t.Fatalf("Notify(Inbox.Push) failed: %v", err)
		}
		if got := recv(t, in.got, "the notification"); got != "after" {
			t.Errorf("handler got %q, want %q", got, "after")
		}
	})
}

// TestLargeMessages sends arguments and replies larger than a frame, so
// that they are split into frames, while small calls go on in parallel.
func TestLargeMessages(t *testing.T) {
	sizes := []int{1 << 20, 3 << 20}
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, new(Arith))
		c := ts.dial(t)
		ctx := testContext(t)

		stop := make(chan struct{})
		var small atomic.Int64
		smallErr := make(chan error, 1)
		go func() {
			defer close(smallErr)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var r Reply
				if err := c.Call(ctx, "Arith.Add", Args{i, 1}, &r); err != nil || r.C != i+1 {
					smallErr <- fmt.Errorf("small Call(Arith.Add, %d+1) = %d, %v; want %d, nil", i, r.C, err, i+1)
					return
				}
				small.Add(1)
			}
		}()

		var wg sync.WaitGroup
		for _, size := range sizes {
			wg.Add(2)
			go func() { // large argument and reply
				defer wg.Done()
				in := pattern(size)
				var out string
				if err := c.Call(ctx, "Arith.Echo", in, &out); err != nil {
					t.Errorf("Call(Arith.Echo, %d bytes) failed: %v", size, err)
					return
				}
				if out != in {
					t.Errorf("Call(Arith.Echo, %d bytes) returned %d bytes that differ from the argument", size, len(out))
				}
			}()
			go func() { // small argument, large reply
				defer wg.Done()
				var out string
				if err := c.Call(ctx, "Arith.Make", size, &out); err != nil {
					t.Errorf("Call(Arith.Make, %d) failed: %v", size, err)
					return
				}
				if out != pattern(size) {
					t.Errorf("Call(Arith.Make, %d) returned %d bytes that differ from pattern(%d)", size, len(out), size)
				}
			}()
		}
		wg.Wait()
		close(stop)
		if err := <-smallErr; err != nil {
			t.Error(err)
		}
		t.Logf("%d small calls completed alongside the large ones", small.Load())
	})
}

func TestMessageTooLarge(t *testing.T) {
	const limit = 64 << 10
	testConnTypes(t, func(t *testing.T, tr transport) {
		t.Run("args", func(t *testing.T) {
			ts := newTestServer(t, tr, pulse.WithMaxMessageSize(limit))
			arith := new(Arith)
			ts.register(t, arith)
			c := ts.dial(t)
			ctx := testContext(t)

			var out string
			err := c.Call(ctx, "Arith.Echo", pattern(limit+1), &out)
			if !errors.Is(err, pulse.ErrMessageTooLarge) {
				t.Fatalf("Call(Arith.Echo, %d bytes) = %v, want %v", limit+1, err, pulse.ErrMessageTooLarge)
			}
			var ce *pulse.CallError
			if !errors.As(err, &ce) {
				t.Fatalf("Call() error is %T, want *pulse.CallError", err)
			}
			if ce.Remote || ce.Executed() {
				t.Errorf("CallError{Remote: %v, Executed(): %v}, want false, false: the request must not be sent", ce.Remote, ce.Executed())
			}
			if n := arith.calls.Load(); n != 0 {
				t.Errorf("the handler ran %d times, want 0", n)
			}
			// Just under the limit fits, and the connection still works.
			if err := c.Call(ctx, "Arith.Echo", pattern(limit-100), &out); err != nil {
				t.Errorf("Call(Arith.Echo, %d bytes) failed: %v", limit-100, err)
			}
		})
		t.Run("reply", func(t *testing.T) {
			ts := newTestServer(t, tr)
			arith := new(Arith)
			ts.register(t, arith)
			c := ts.dial(t, pulse.WithMaxMessageSize(limit))
			ctx := testContext(t)

			var out string
			err := c.Call(ctx, "Arith.Make", limit+1, &out)
			if !errors.Is(err, pulse.ErrMessageTooLarge) {
				t.Fatalf("Call(Arith.Make, %d) = %v, want %v", limit+1, err, pulse.ErrMessageTooLarge)
			}
			var ce *pulse.CallError
			if !errors.As(err, &ce) {
				t.Fatalf("Call() error is %T, want *pulse.CallError", err)
			}
			if !ce.Executed() {
				t.Errorf("CallError.Executed() = false, want true: the method ran")
			}
			if n := arith.calls.Load(); n != 1 {
				t.Errorf("the handler ran %d times, want 1", n)
			}
			var r Reply
			if err := c.Call(ctx, "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
				t.Errorf("Call(Arith.Add) after a too-large reply = %d, %v; want 3, nil", r.C, err)
			}
		})
	})
}

// RawArgs records the arguments it gets on the raw codec.
type RawArgs struct{ got chan []byte }

func (r *RawArgs) Take(a []byte, n *[]byte) error {
	r.got <- a
	*n = fmt.Append(nil, len(a))
	return nil
}

func (r *RawArgs) TakeRaw(a *codec.RawMessage, n *[]byte) error {
	r.got <- *a
	*n = fmt.Append(nil, len(*a))
	return nil
}

// TestRawLargeArgument: on the raw codec, the argument of a message of
// several frames arrives intact, on every transport, and is the message's
// own buffer (length equal to capacity: a copy made by append would have
// the capacity of an allocation size class), which the method may keep.
func TestRawLargeArgument(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			ts := newTestServer(t, tr, pulse.WithCodec("raw"))
			ra := &RawArgs{got: make(chan []byte, 8)}
			ts.register(t, ra)
			c := ts.dial(t, pulse.WithCodec("raw"))
			var kept [][]byte
			for _, size := range []int{100, 16<<10 + 1, 100_003, 1 << 20} {
				for _, method := range []string{"RawArgs.Take", "RawArgs.TakeRaw"} {
					arg := make([]byte, size)
					for i := range arg {
						arg[i] = byte(i * 7)
					}
					var n []byte
					var err error
					if method == "RawArgs.TakeRaw" {
						err = c.Call(testContext(t), method, codec.RawMessage(arg), &n)
					} else {
						err = c.Call(testContext(t), method, arg, &n)
					}
					if err != nil || string(n) != fmt.Sprint(size) {
						t.Fatalf("%s(%d bytes) = %q, %v", method, size, n, err)
					}
					got := <-ra.got
					if !bytes.Equal(got, arg) {
						t.Fatalf("%s(%d bytes): the method got different bytes", method, size)
					}
					if size > 16<<10 && cap(got) != len(got) {
						t.Errorf("%s(%d bytes): argument has capacity %d: copied, not the message's buffer", method, size, cap(got))
					}
					kept = append(kept, got)
				}
			}
			// What the methods kept is still theirs: later messages did
			// not write over it.
			for i, k := range kept {
				for j := range k {
					if k[j] != byte(j*7) {
						t.Fatalf("kept argument %d changed at byte %d", i, j)
					}
				}
			}
		})
	}
}

// Big replies with as many bytes as its argument, in decimal, asks for:
// byte i is i % 251.
func (r *RawArgs) Big(a []byte, out *[]byte) error {
	n, err := strconv.Atoi(string(a))
	if err != nil {
		return err
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	*out = b
	return nil
}

func checkBig(t *testing.T, got []byte, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("reply of %d bytes, want %d", len(got), n)
	}
	for i, b := range got {
		if b != byte(i%251) {
			t.Fatalf("reply byte %d = %d, want %d", i, b, i%251)
		}
	}
}

// TestRawReplyIntoCallerSlice: on the raw codec, a reply of several frames
// arrives intact in the caller's reply slice, in the same array when it
// has room (it goes straight there; TestRawReplyIntoAbandonedSlice shows
// that it does) and in a new one when it has not, on every transport.
func TestRawReplyIntoCallerSlice(t *testing.T) {
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			ts := newTestServer(t, tr, pulse.WithCodec("raw"))
			ts.register(t, &RawArgs{})
			c := ts.dial(t, pulse.WithCodec("raw"))
			buf := make([]byte, 0, 1<<20)
			for _, n := range []int{100, 16<<10 + 1, 100_003, 1 << 20} {
				got := buf
				if err := c.Call(testContext(t), "RawArgs.Big", []byte(strconv.Itoa(n)), &got); err != nil {
					t.Fatal(err)
				}
				checkBig(t, got, n)
				if &got[:1][0] != &buf[:1][0] {
					t.Errorf("%d bytes: the reply is not in the caller's slice", n)
				}
				var small codec.RawMessage = make([]byte, 0, 10)
				if err := c.Call(testContext(t), "RawArgs.Big", []byte(strconv.Itoa(n)), &small); err != nil {
					t.Fatal(err)
				}
				checkBig(t, small, n)
			}
		})
	}
}

// TestRawReplyIntoAbandonedSlice: once a call whose reply was going into
// the caller's slice has been given up (its context ended), nothing more
// is written to the slice, although the rest of the reply keeps arriving.
// The test writes the slice itself meanwhile: a late write from the
// connection would change what it reads back, and the race detector would
// report it.
func TestRawReplyIntoAbandonedSlice(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t, pulse.WithCodec("raw"))
	ts.register(t, &RawArgs{})
	p := newProxy(t, addr)
	c := dialAddr(t, p.Addr(), pulse.WithCodec("raw"))
	const n = 1 << 20
	p.Throttle(faultproxy.Downstream, 512<<10) // 2 s for the reply
	buf := make([]byte, 0, n)
	got := buf
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, "RawArgs.Big", []byte(strconv.Itoa(n)), &got); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call() = %v, want %v", err, context.DeadlineExceeded)
	}
	buf = buf[:n]
	for round := range 5 {
		for i := range buf {
			buf[i] = 0xEE
		}
		time.Sleep(100 * time.Millisecond) // the reply keeps arriving
		for i, b := range buf {
			if b != 0xEE {
				t.Fatalf("round %d: byte %d of the given-up reply slice changed to %d", round, i, b)
			}
		}
	}
	p.Heal()
	// The connection is still good.
	got = nil
	if err := c.Call(testContext(t), "RawArgs.Big", []byte("1000"), &got); err != nil {
		t.Fatal(err)
	}
	checkBig(t, got, 1000)
}
