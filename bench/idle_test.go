package main

import (
	"testing"
	"time"
)

// TestIdleRaw runs the raw system's idle test as the driver does (runIdle:
// a server process and an idle client process, this test binary
// re-executed), with a few connections held for a little over two
// heartbeat intervals: every connection is alive after the hold, the
// client read about one PONG per connection per second, and the server's
// system calls are counted.
func TestIdleRaw(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Setenv("GORACE", "atexit_sleep_ms=0") // see TestEndToEnd
	done := checkLeaks(t)
	defer done()
	const n = 8
	r := runIdle("raw", n, 200*time.Millisecond, 2500*time.Millisecond, "", func(msg string) { t.Log(msg) })
	if r.Error != "" {
		t.Fatalf("error: %s", r.Error)
	}
	if r.Dial.OK != n || r.Check.OK != n || r.Check.Errors != 0 {
		t.Fatalf("dialed %d, alive after hold %d of %d (%s)", r.Dial.OK, r.Check.OK, n, r.Check.FirstError)
	}
	if r.Heartbeats != idleHeartbeatDesc("raw") || r.HoldSec < 2.5 {
		t.Errorf("heartbeats %q, hold %.2fs", r.Heartbeats, r.HoldSec)
	}
	// One PING per connection per second: 2 or 3 in the 2.5 s hold.
	if got := r.ClientHeartbeatRepliesPerSec; got < 0.5*n || got > 1.5*n {
		t.Errorf("%.1f PONGs/s for %d connections, want about %d", got, n, n)
	}
	// Each PONG costs the server at least a read and a write.
	if r.ServerSyscallsPerSec < r.ClientHeartbeatRepliesPerSec {
		t.Errorf("server: %.1f system calls/s for %.1f PONGs/s", r.ServerSyscallsPerSec, r.ClientHeartbeatRepliesPerSec)
	}
	if r.ServerGoroutinesPerConn < 0.9 || r.ClientGoroutinesPerConn < 0.9 {
		t.Errorf("goroutines per connection: server %.2f, client %.2f, want a reader each", r.ServerGoroutinesPerConn, r.ClientGoroutinesPerConn)
	}
}
