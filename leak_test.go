package pulse_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
)

// pulseFramePrefixes mark a stack frame (or the function that created the
// goroutine) as code of this module, not of its tests.
var pulseFramePrefixes = []string{
	"github.com/pulse-rpc/pulse.",
	"github.com/pulse-rpc/pulse/",
}

// pulseGoroutines returns the stacks of the goroutines that run code of
// package pulse (or its subpackages), other than the calling goroutine.
// A handler of a test service that is still running counts: it runs on a
// goroutine that Pulse started.
func pulseGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var leaked []string
	// The first goroutine is the caller's.
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue
		}
		if isPulseGoroutine(g) {
			leaked = append(leaked, g)
		}
	}
	return leaked
}

func isPulseGoroutine(stack string) bool {
	lines := strings.Split(stack, "\n")
	for _, line := range lines[1:] { // lines[0] is "goroutine N [state]:"
		if strings.HasPrefix(line, "\t") {
			continue // file:line
		}
		fn := strings.TrimPrefix(line, "created by ")
		for _, p := range pulseFramePrefixes {
			if strings.HasPrefix(fn, p) {
				return true
			}
		}
	}
	return false
}

// checkLeaks makes the test fail if goroutines of Pulse are still running
// once the test and its other cleanups are done (grpc-go's leakcheck). Call
// it first in a test, so that its cleanup runs last, after the clients and
// servers are closed. Tests that use it must not run in parallel.
func checkLeaks(t *testing.T) {
	t.Helper()
	if g := pulseGoroutines(); len(g) > 0 {
		// A previous test leaked; it reported that already. Wait for them
		// to go, so this test is judged on its own goroutines.
		waitNoPulseGoroutines(leakCheckTimeout)
	}
	t.Cleanup(func() {
		if leaked := waitNoPulseGoroutines(leakCheckTimeout); len(leaked) > 0 {
			t.Errorf("%d Pulse goroutines still running %v after the test:\n\n%s",
				len(leaked), leakCheckTimeout, strings.Join(leaked, "\n\n"))
		}
	})
}

// waitNoPulseGoroutines polls until no Pulse goroutine runs, or d passes,
// and returns those still running then.
func waitNoPulseGoroutines(d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		leaked := pulseGoroutines()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLeakCheckFindsHandlers checks the leak check itself: a handler that
// is blocked, and the connection's reader, are reported while they run,
// and nothing is left once the client and server are closed.
func TestLeakCheckFindsHandlers(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportPipe)
	b := newBlocker(t)
	ts.register(t, b)
	c := ts.dial(t)
	call := c.Go(context.Background(), "Blocker.Wait", 1, new(int), nil)
	b.waitStarted(t, 1)

	var handler, reader bool
	for _, g := range pulseGoroutines() {
		handler = handler || strings.Contains(g, "(*Blocker).Wait")
		reader = reader || strings.Contains(g, "(*Session).ReadLoop")
	}
	if !handler || !reader {
		t.Errorf("pulseGoroutines() found handler %v, reader %v; want both", handler, reader)
	}

	b.Release()
	if call := recv(t, call.Done, "the call to complete"); call.Error != nil {
		t.Fatalf("Blocker.Wait failed: %v", call.Error)
	}
	c.Close()
	ts.Close()
	if leaked := waitNoPulseGoroutines(leakCheckTimeout); len(leaked) > 0 {
		t.Errorf("Pulse goroutines running after Close:\n%s", strings.Join(leaked, "\n\n"))
	}
}

// TestNoLeakAfterAbruptClose closes the transport under a busy connection,
// not the client: every goroutine must still end.
func TestNoLeakAfterAbruptClose(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		b := newBlocker(t)
		ts.register(t, b)
		ts.register(t, new(Arith))
		hook := newConnHook(t)
		c := ts.dialWrapped(t, hook.wrap)
		var calls []*pulse.Call
		for i := 0; i < 4; i++ {
			calls = append(calls, goCall(c, "Blocker.Wait", i, new(int)))
		}
		b.waitStarted(t, 4)
		for i := 0; i < 4; i++ {
			calls = append(calls, goCall(c, "Arith.Make", 1<<20, new(string)))
		}
		p := c.Peer() // the client may reconnect: keep the broken connection's Peer
		hook.closeNow()
		for i, call := range calls {
			// The large calls may have completed before the break.
			if err := waitCall(t, call); err == nil && i < 4 {
				t.Errorf("Blocker.Wait after the connection broke = nil error, want an error")
			}
		}
		recv(t, p.Done(), "the client's connection to close")
	})
}
