//go:build linux

package pulse

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// OnReader is the service of the tests of methods run on the reader.
type OnReader struct {
	entered chan string   // Block sends its argument when it starts
	release chan struct{} // closed to let Block return
}

// Where reports whether it runs on the connection's reader goroutine.
func (*OnReader) Where(_ string, onReader *bool) error {
	buf := make([]byte, 16<<10)
	*onReader = strings.Contains(string(buf[:runtime.Stack(buf, false)]), "serveOnReader")
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

// CallBack calls the client's Echo.Back over the same connection and
// returns what it answered.
func (*OnReader) CallBack(ctx context.Context, a string, r *string) error {
	return PeerFromContext(ctx).Call(ctx, "ClientEcho.Back", a, r)
}

// ClientEcho is served by the client.
type ClientEcho struct{}

func (ClientEcho) Back(a string, r *string) error { *r = "back:" + a; return nil }

func startOnReader(t *testing.T) (*OnReader, *Client) {
	t.Helper()
	hb := WithHeartbeat(Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute})
	srv, l, served := startParkServer(t, hb)
	o := &OnReader{entered: make(chan string, 4), release: make(chan struct{})}
	if err := srv.Register(o); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(context.Background(), l.Addr().String(), hb)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ClientEcho{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
		<-served
	})
	return o, c
}

// TestLoneCallRunsOnReader: a call alone on its connection runs on the
// reader goroutine, with no hand-over to a worker; calls that overlap run
// on workers.
func TestLoneCallRunsOnReader(t *testing.T) {
	o, c := startOnReader(t)
	ctx := context.Background()
	var onReader bool
	for i := range 3 {
		if err := c.Call(ctx, "OnReader.Where", "", &onReader); err != nil {
			t.Fatal(err)
		}
		if !onReader {
			t.Fatalf("call %d: a lone call ran on a worker", i)
		}
	}
	// With a call blocked on the reader, the reader's job has moved to
	// a worker; the next call cannot run on a reader that is busy.
	blocked := c.Go(ctx, "OnReader.Block", "first", new(string), nil)
	<-o.entered
	if err := c.Call(ctx, "OnReader.Where", "", &onReader); err != nil {
		t.Fatal(err)
	}
	if onReader {
		t.Error("a call that overlapped another ran on the reader")
	}
	close(o.release)
	<-blocked.Done
	if blocked.Error != nil {
		t.Fatal(blocked.Error)
	}
}

// TestSlowMethodOnReaderMovesReader: a method that holds the reader does
// not hold the connection. Its reader moves to a worker, so heartbeats are
// answered, other calls run and its cancellation arrives while it runs,
// and a method that calls back to the peer over the same connection gets
// its answer. Each step waits for the previous one to be done while the
// first method still blocks, so none of them could finish otherwise.
func TestSlowMethodOnReaderMovesReader(t *testing.T) {
	o, c := startOnReader(t)
	ctx := context.Background()

	bctx, cancelBlock := context.WithCancel(ctx)
	blocked := c.Go(bctx, "OnReader.Block", "first", new(string), nil)
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
		return c.Call(ctx, "OnReader.Where", "", &onReader)
	})
	wait("a call back to the client", func() error {
		var r string
		if err := c.Call(ctx, "OnReader.CallBack", "x", &r); err != nil {
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
	case <-blocked.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked call did not end after its cancellation")
	}
	// The method saw the cancellation: a later call on the same
	// connection still works, and nothing waits on release.
	wait("a call after the cancellation", func() error {
		var onReader bool
		return c.Call(ctx, "OnReader.Where", "", &onReader)
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
	_, c := startOnReader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, "OnReader.Exit", "", new(string)); err == nil {
		t.Fatal("a method that exited its goroutine replied")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	var onReader bool
	if err := c.Call(ctx2, "OnReader.Where", "", &onReader); err != nil {
		t.Fatalf("call after the Goexit: %v", err)
	}
}

// Nap sleeps for its argument, then reports where it ran.
func (o *OnReader) Nap(d time.Duration, onReader *bool) error {
	time.Sleep(d)
	return o.Where("", onReader)
}

// TestSlowMethodLeavesReader: a method that held the reader too long runs
// on workers for its next offReaderCalls calls, so that a method that is
// usually slow does not hold up the frames behind it each time.
func TestSlowMethodLeavesReader(t *testing.T) {
	_, c := startOnReader(t)
	ctx := context.Background()
	var onReader bool
	if err := c.Call(ctx, "OnReader.Nap", time.Duration(0), &onReader); err != nil {
		t.Fatal(err)
	}
	if !onReader {
		t.Fatal("a lone fast call ran on a worker")
	}
	if err := c.Call(ctx, "OnReader.Nap", 20*onReaderMax, &onReader); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Call(ctx, "OnReader.Nap", time.Duration(0), &onReader); err != nil {
			t.Fatal(err)
		}
		if onReader {
			t.Fatalf("call %d after a slow one ran on the reader", i)
		}
	}
	// Other methods still run on the reader.
	if err := c.Call(ctx, "OnReader.Where", "", &onReader); err != nil {
		t.Fatal(err)
	}
	if !onReader {
		t.Error("a lone call of a fast method ran on a worker")
	}
}
