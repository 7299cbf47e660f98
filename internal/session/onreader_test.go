//go:build linux

package session

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// OnReader is the service of the tests of methods run on the reader.
type OnReader struct {
	entered chan string   // Block sends its argument when it starts
	release chan struct{} // closed to let Block return
}

// Where reports whether it runs on the connection's reader goroutine.
// It looks at the program counters of its callers only, so that it stays
// well under burstMax.
func (*OnReader) Where(_ string, onReader *bool) error {
	var pcs [16]uintptr
	n := runtime.Callers(2, pcs[:])
	for _, pc := range pcs[:n] {
		if f := runtime.FuncForPC(pc); f != nil && strings.HasSuffix(f.Name(), ".serveOnReader") {
			*onReader = true
		}
	}
	return nil
}

// Block waits for release or for its context to end.
func (o *OnReader) Block(ctx context.Context, a string, r *string) error {
	o.entered <- a
	select {
	case <-o.release:
		*r = a
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onReaderSessionKey is the context key under which the handlers of
// startOnReader's server find their session (the root's Peer).
type onReaderSessionKey struct{}

// CallBack calls the client's ClientEcho.Back over the same connection
// and returns what it answered.
func (*OnReader) CallBack(ctx context.Context, a string, r *string) error {
	s, _ := ctx.Value(onReaderSessionKey{}).(*Session)
	if s == nil {
		return fmt.Errorf("no session in the handler's context")
	}
	return call(ctx, s, "ClientEcho.Back", a, r)
}

// ClientEcho is served by the client.
type ClientEcho struct{}

func (ClientEcho) Back(a string, r *string) error { *r = "back:" + a; return nil }

// onReaderHeartbeat keeps heartbeats out of the way of these tests.
var onReaderHeartbeat = Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute}

// startOnReader starts a server of OnReader whose handlers find their
// session in their context, and dials it with a client that serves
// ClientEcho.
func startOnReader(t *testing.T) (*OnReader, *Session, *testServer) {
	t.Helper()
	o := &OnReader{entered: make(chan string, 4), release: make(chan struct{})}
	cfg := testConfig(onReaderHeartbeat)
	cfg.BaseContext = func(s *Session) context.Context {
		return context.WithValue(context.Background(), onReaderSessionKey{}, s)
	}
	ts := startTestServer(t, cfg, o)
	c := dialSession(t, ts.addr(), testConfig(onReaderHeartbeat), ClientEcho{})
	return o, c, ts
}

// goCall starts a call on s and returns it with the channel told when it
// completes (the root's Client.Go): the call abandons itself when ctx
// ends.
func goCall(ctx context.Context, s *Session, method string, args, reply any) (*Call, doneChan) {
	done := make(doneChan, 1)
	c := &Call{Reply: reply, Owner: done}
	s.Send(ctx, c, method, args, true)
	return c, done
}

// waitCallsEnded waits until no call runs on any of ts's sessions: a
// worker ends its call (running--) after the reply went out, so the next
// call may otherwise find the previous one still running.
func waitCallsEnded(t *testing.T, ts *testServer) {
	t.Helper()
	waitFor(t, 5*time.Second, "the calls to end", func() bool {
		for _, s := range ts.all() {
			if s.running.Load() != 0 {
				return false
			}
		}
		return true
	})
}

// TestLoneCallRunsOnReader: a call alone on its connection runs on the
// reader goroutine, with no hand-over to a worker; calls that overlap run
// on workers.
func TestLoneCallRunsOnReader(t *testing.T) {
	o, c, _ := startOnReader(t)
	ctx := context.Background()
	var onReader bool
	for i := range 3 {
		if err := call(ctx, c, "OnReader.Where", "", &onReader); err != nil {
			t.Fatal(err)
		}
		if !onReader {
			t.Fatalf("call %d: a lone call ran on a worker", i)
		}
	}
	// With a call blocked on the reader, the reader's job has moved to
	// a worker; the next call cannot run on a reader that is busy.
	_, blockedDone := goCall(ctx, c, "OnReader.Block", "first", new(string))
	<-o.entered
	if err := call(ctx, c, "OnReader.Where", "", &onReader); err != nil {
		t.Fatal(err)
	}
	if onReader {
		t.Error("a call that overlapped another ran on the reader")
	}
	close(o.release)
	if err := <-blockedDone; err != nil {
		t.Fatal(err)
	}
}

// TestSlowMethodOnReaderMovesReader: a method that holds the reader does
// not hold the connection. Its reader moves to a worker, so heartbeats are
// answered, other calls run and its cancellation arrives while it runs,
// and a method that calls back to the peer over the same connection gets
// its answer. Each step waits for the previous one to be done while the
// first method still blocks, so none of them could finish otherwise.
func TestSlowMethodOnReaderMovesReader(t *testing.T) {
	o, c, _ := startOnReader(t)
	ctx := context.Background()

	bctx, cancelBlock := context.WithCancel(ctx)
	defer cancelBlock()
	_, blockedDone := goCall(bctx, c, "OnReader.Block", "first", new(string))
	if got := <-o.entered; got != "first" {
		t.Fatalf("entered %q", got)
	}

	wait := func(what string, f func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer while a method held the reader", what)
		}
	}
	wait("ping", func() error { _, err := c.Ping(ctx); return err })
	wait("another call", func() error {
		var onReader bool
		return call(ctx, c, "OnReader.Where", "", &onReader)
	})
	wait("a call back to the client", func() error {
		var r string
		if err := call(ctx, c, "OnReader.CallBack", "x", &r); err != nil {
			return err
		}
		if r != "back:x" {
			t.Errorf("CallBack = %q", r)
		}
		return nil
	})
	// Cancelling the blocked call reaches its method (CANCEL is read).
	cancelBlock()
	select {
	case <-blockedDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked call did not end after its cancellation")
	}
	// The method saw the cancellation: a later call on the same
	// connection still works, and nothing waits on release.
	wait("a call after the cancellation", func() error {
		var onReader bool
		return call(ctx, c, "OnReader.Where", "", &onReader)
	})
}

// Exit ends the goroutine that runs it.
func (*OnReader) Exit(_ string, _ *string) error {
	runtime.Goexit()
	return nil
}

// TestGoexitOnReader: a method that ends its goroutine (runtime.Goexit)
// while running on the reader does not take the connection's reading with
// it. Its caller gets no reply; the next calls work.
func TestGoexitOnReader(t *testing.T) {
	_, c, _ := startOnReader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := call(ctx, c, "OnReader.Exit", "", new(string)); err == nil {
		t.Fatal("a method that exited its goroutine replied")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	var onReader bool
	if err := call(ctx2, c, "OnReader.Where", "", &onReader); err != nil {
		t.Fatalf("call after the Goexit: %v", err)
	}
}

// Nap keeps its goroutine busy for its argument (a sleep that short can
// take a millisecond), then reports where it ran.
func (o *OnReader) Nap(d time.Duration, onReader *bool) error {
	for start := time.Now(); time.Since(start) < d; {
	}
	return o.Where("", onReader)
}

// readerMoved reports whether the watchdog has moved the reader's job off
// a method that runs on a reader.
func readerMoved() bool {
	for i := range onReaderShards {
		sh := &onReaderShards[i]
		sh.mu.Lock()
		for _, r := range sh.runs {
			if r.moved {
				sh.mu.Unlock()
				return true
			}
		}
		sh.mu.Unlock()
	}
	return false
}

// Hog, on a reader, keeps its goroutine busy until the watchdog has moved
// the reader's job off it (or for 10 s); on a worker it returns at once.
// It reports where it ran. How soon the watchdog gets a core depends on
// the scheduler: with GOMAXPROCS 1 it runs only once the runtime preempts
// the busy goroutine, which can take longer than onReaderMax many times
// over.
func (o *OnReader) Hog(_ string, onReader *bool) error {
	if o.Where("", onReader); !*onReader {
		return nil
	}
	for start := time.Now(); !readerMoved() && time.Since(start) < 10*time.Second; {
		for spin := time.Now(); time.Since(spin) < 100*time.Microsecond; {
		}
	}
	return nil
}

// TestSlowMethodLeavesReader: a method that held the reader too long runs
// on workers for its next offReaderCalls calls, so that a method that is
// usually slow does not hold up the frames behind it each time.
func TestSlowMethodLeavesReader(t *testing.T) {
	_, c, ts := startOnReader(t)
	ctx := context.Background()
	var onReader bool
	if err := call(ctx, c, "OnReader.Nap", time.Duration(0), &onReader); err != nil {
		t.Fatal(err)
	}
	if !onReader {
		t.Fatal("a lone fast call ran on a worker")
	}
	if err := call(ctx, c, "OnReader.Hog", "", &onReader); err != nil {
		t.Fatal(err)
	}
	if !onReader {
		t.Fatal("a lone call of Hog ran on a worker")
	}
	_, mt, _ := ts.reg.Lookup([]byte("OnReader.Hog"))
	// The reply leaves before the reader's run ends.
	waitFor(t, 5*time.Second, "Hog to be marked as holding the reader", func() bool { return mt.Sched.OffReader.Load() > 0 })
	for i := range 3 {
		if err := call(ctx, c, "OnReader.Hog", "", &onReader); err != nil {
			t.Fatal(err)
		}
		if onReader {
			t.Fatalf("call %d after a slow one ran on the reader", i)
		}
	}
	// Other methods still run on the reader.
	waitCallsEnded(t, ts)
	if err := call(ctx, c, "OnReader.Where", "", &onReader); err != nil {
		t.Fatal(err)
	}
	if !onReader {
		t.Error("a lone call of a fast method ran on a worker")
	}
}

// TestLongMethodLeavesBursts: with calls waiting behind it, a method that
// took over burstMax runs on workers (which other cores can run in
// parallel); a short one runs on the reader; a lone call runs on the
// reader whatever its method.
func TestLongMethodLeavesBursts(t *testing.T) {
	ts := startTestServer(t, testConfig(onReaderHeartbeat), &OnReader{})
	conn, fr := rawDial(t, ts.addr())
	id := uint32(1)
	// burst sends n calls of method with arg in one write and returns
	// how many ran on the reader.
	burst := func(n int, method, arg string) int {
		t.Helper()
		waitCallsEnded(t, ts)
		var b []byte
		for range n {
			msg := append(wire.AppendCallHead(nil, method, 0), arg...)
			b = wire.AppendFrame(b, wire.TypeCall, wire.FlagEnd, id, msg)
			id += 2
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		on := 0
		for range n {
			h, p, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if h.Type != wire.TypeReply {
				t.Fatalf("frame %v, want a REPLY", h)
			}
			status, body, _ := wire.ParseReply(p)
			if status != wire.StatusOK {
				t.Fatalf("reply %v %q", status, body)
			}
			if string(body) == "true" {
				on++
			}
		}
		return on
	}
	nap := fmt.Sprint(int64(5 * burstMax)) // long, yet far from onReaderMax
	for range slowScore / slowStep {
		if on := burst(1, "OnReader.Nap", nap); on != 1 {
			t.Fatal("a lone call of a long method ran on a worker")
		}
	}
	// The lone calls found Nap long: with calls behind it, it goes to
	// workers.
	if on := burst(8, "OnReader.Nap", nap); on > 1 {
		t.Errorf("%d of 8 calls of a long method in a burst ran on the reader, want at most the last", on)
	}
	// A method not found long runs on the reader in a burst (how many of
	// its calls do depends on how long they take on this machine).
	if on := burst(8, "OnReader.Where", `""`); on < 1 {
		t.Errorf("none of 8 calls of a short method in a burst ran on the reader")
	}
}
