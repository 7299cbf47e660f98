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
	r := idleRunChecked(t, "raw")
	if r.ServerGoroutinesPerConn < 0.9 || r.ClientGoroutinesPerConn < 0.9 {
		t.Errorf("goroutines per connection: server %.2f, client %.2f, want a reader each", r.ServerGoroutinesPerConn, r.ClientGoroutinesPerConn)
	}
}

// idleRunChecked runs the idle test of sys (a system whose client counts
// PONGs: raw TCP's) with 8 connections held for 2.5 s, and checks what
// every such run must show: every connection alive after the hold, about
// one PONG per connection per second, and at least a system call of the
// server's per PONG. It skips in -short mode.
func idleRunChecked(t *testing.T, sys string) idleResult {
	t.Helper()
	done := startsProcesses(t)
	defer done()
	const n = 8
	r := runIdle(sys, false, n, 1, 200*time.Millisecond, 2500*time.Millisecond, "", func(msg string) { t.Log(msg) })
	if r.Error != "" {
		t.Fatalf("error: %s", r.Error)
	}
	if r.Dial.OK != n || r.Check.OK != n || r.Check.Errors != 0 {
		t.Fatalf("dialed %d, alive after hold %d of %d (%s)", r.Dial.OK, r.Check.OK, n, r.Check.FirstError)
	}
	if r.Heartbeats != idleHeartbeatDesc(sys) || r.HoldSec < 2.5 {
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
	return r
}

// TestIdleSharded runs the idle test over three pairs of processes with a
// heartbeat interval of 500 ms: the figures must be those of all six
// processes added up (PONGs of every client, goroutines of every server).
func TestIdleSharded(t *testing.T) {
	done := startsProcesses(t)
	defer done()
	defer setIdleHeartbeat(idleHeartbeat)
	setIdleHeartbeat(500 * time.Millisecond)
	const n, procs = 10, 3
	r := runIdle("raw", false, n, procs, 200*time.Millisecond, 2500*time.Millisecond, "", func(msg string) { t.Log(msg) })
	if r.Error != "" {
		t.Fatalf("error: %s", r.Error)
	}
	if r.Procs != procs || r.Dial.OK != n || r.Check.OK != n || r.Check.Errors != 0 {
		t.Fatalf("procs %d, dialed %d, alive after hold %d of %d (%s)", r.Procs, r.Dial.OK, r.Check.OK, n, r.Check.FirstError)
	}
	if want := "client PING every 0.5 s, server PONG at once; client timeout 2 s"; r.Heartbeats != want {
		t.Errorf("heartbeats %q, want %q", r.Heartbeats, want)
	}
	// Two PINGs per connection per second, from all three clients.
	if got := r.ClientHeartbeatRepliesPerSec; got < 0.5*2*n || got > 1.5*2*n {
		t.Errorf("%.1f PONGs/s for %d connections at 500 ms, want about %d", got, n, 2*n)
	}
	// A reader goroutine per connection, whichever server holds it.
	if r.ServerGoroutinesPerConn < 0.9 || r.ClientGoroutinesPerConn < 0.9 {
		t.Errorf("goroutines per connection: server %.2f, client %.2f, want a reader each", r.ServerGoroutinesPerConn, r.ClientGoroutinesPerConn)
	}
}

func TestIdleShare(t *testing.T) {
	for _, tt := range []struct{ n, procs int }{{10, 3}, {100000, 5}, {7, 7}, {1, 1}, {5, 2}} {
		sum, lo, hi := 0, tt.n, 0
		for i := range tt.procs {
			k := idleShare(tt.n, tt.procs, i)
			sum += k
			lo, hi = min(lo, k), max(hi, k)
		}
		if sum != tt.n || hi-lo > 1 {
			t.Errorf("idleShare(%d, %d, ·) adds up to %d, from %d to %d", tt.n, tt.procs, sum, lo, hi)
		}
	}
}

func TestSumStats(t *testing.T) {
	a := childStats{PID: 1, Goroutines: 2, HeapInuse: 3, StackInuse: 4, HeartbeatReplies: 5, Proc: procSample{SchedNs: 6, TickNs: 7, SysR: 8, SysW: 9, RSSKiB: 10}}
	b := childStats{PID: 2, Goroutines: 20, HeapInuse: 30, StackInuse: 40, HeartbeatReplies: 50, Proc: procSample{SchedNs: 60, TickNs: 70, SysR: 80, SysW: 90, RSSKiB: 100}}
	got := sumStats([]childStats{a, b})
	want := childStats{PID: 1, Goroutines: 22, HeapInuse: 33, StackInuse: 44, HeartbeatReplies: 55, Proc: procSample{SchedNs: 66, TickNs: 77, SysR: 88, SysW: 99, RSSKiB: 110}}
	if got != want {
		t.Errorf("sumStats = %+v, want %+v", got, want)
	}
	b.Proc.SchedNs = -1
	if got := sumStats([]childStats{a, b}); got.Proc.SchedNs != -1 {
		t.Errorf("SchedNs = %d with one process lacking it, want -1", got.Proc.SchedNs)
	}
}

// TestHoldRates: each process's rates are taken over its own two samples.
// A process that answered the first sample 8 s before the other (so the
// driver's window opened late) used 5 s of CPU over its own 10 s: 50 %,
// not 5 s over the driver's 2 s.
func TestHoldRates(t *testing.T) {
	s := func(atSec, cpuSec float64, syscalls, replies uint64) childStats {
		return childStats{AtNs: int64(atSec * 1e9), HeartbeatReplies: replies,
			Proc: procSample{SchedNs: int64(cpuSec * 1e9), SysR: syscalls}}
	}
	a := []childStats{s(1, 0, 0, 0), s(9, 1, 100, 10)}
	b := []childStats{s(11, 5, 1000, 110), s(11, 1.5, 300, 30)}
	near := func(got, want float64) bool { return got > want-0.01 && got < want+0.01 }
	cpu, sys, replies := holdRates(a, b, 2*time.Second)
	// 5 s over 10 s and 0.5 s over 2 s; 1000/10 + 200/2; 110/10 + 20/2.
	if !near(cpu, 75) || !near(sys, 200) || !near(replies, 21) {
		t.Errorf("holdRates = %.2f %%, %.2f syscalls/s, %.2f replies/s; want 75 %%, 200, 21", cpu, sys, replies)
	}
	// Samples without their time fall back on the driver's window.
	a[0].AtNs, b[0].AtNs = 0, 0
	if cpu, _, _ := holdRates(a[:1], b[:1], 10*time.Second); !near(cpu, 50) {
		t.Errorf("without sample times: %.2f %%, want 50 %% (5 s over the 10 s window)", cpu)
	}
}
