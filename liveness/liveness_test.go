package liveness_test

import (
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulse-rpc/pulse/liveness"
)

const (
	interval = time.Second
	timeout  = 3 * time.Second
)

func TestStallGuardLate(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		guard           liveness.StallGuard
		scheduled, now  time.Duration
		wantLate        bool
		wantRecheckFrom time.Duration // Recheck(now) - now
	}{
		{liveness.StallGuard{}, 10 * time.Second, 10 * time.Second, false, liveness.DefaultStallGrace},
		{liveness.StallGuard{}, 10 * time.Second, 10*time.Second + liveness.DefaultStallSlack, false, liveness.DefaultStallGrace},
		{liveness.StallGuard{}, 10 * time.Second, 10*time.Second + liveness.DefaultStallSlack + 1, true, liveness.DefaultStallGrace},
		{liveness.StallGuard{}, 10 * time.Second, 9 * time.Second, false, liveness.DefaultStallGrace}, // early
		{liveness.StallGuard{Slack: 50 * ms, Grace: 20 * ms}, 0, 50 * ms, false, 20 * ms},
		{liveness.StallGuard{Slack: 50 * ms, Grace: 20 * ms}, 0, 51 * ms, true, 20 * ms},
		{liveness.StallGuard{Slack: -1, Grace: -1}, 0, liveness.DefaultStallSlack + 1, true, liveness.DefaultStallGrace},
		{liveness.StallGuard{}, 0, liveness.Never, true, 0}, // saturates
	}
	for _, tt := range tests {
		if got := tt.guard.Late(tt.scheduled, tt.now); got != tt.wantLate {
			t.Errorf("%+v.Late(%v, %v) = %v, want %v", tt.guard, tt.scheduled, tt.now, got, tt.wantLate)
		}
		if got := tt.guard.Recheck(tt.now); got != tt.now+tt.wantRecheckFrom {
			t.Errorf("%+v.Recheck(%v) = %v, want %v", tt.guard, tt.now, got, tt.now+tt.wantRecheckFrom)
		}
	}
}

func TestStallGuardReview(t *testing.T) {
	g := liveness.StallGuard{Slack: 100 * time.Millisecond, Grace: 50 * time.Millisecond}
	dead := liveness.Verdict{Dead: true, Reason: "no byte for 5s (timeout 3s)", NextCheck: 3 * time.Second}
	alive := liveness.Verdict{NextCheck: 6 * time.Second}

	if got := g.Review(dead, 3*time.Second, 3*time.Second+100*time.Millisecond); got != dead {
		t.Errorf("Review(dead, on time) = %+v, want the verdict unchanged", got)
	}
	if got := g.Review(alive, 3*time.Second, 5*time.Second); got != alive {
		t.Errorf("Review(alive, late) = %+v, want the verdict unchanged", got)
	}
	got := g.Review(dead, 3*time.Second, 5*time.Second)
	if got.Dead || got.NextCheck != 5*time.Second+50*time.Millisecond {
		t.Errorf("Review(dead, 2s late) = %+v, want alive, NextCheck 5.05s", got)
	}
	for _, want := range []string{"postponed", "2s late", "slack 100ms", dead.Reason} {
		if !strings.Contains(got.Reason, want) {
			t.Errorf("Review(dead, 2s late).Reason = %q, want it to contain %q", got.Reason, want)
		}
	}
}

// conn simulates, inside a synctest bubble, a peer sending heartbeats over a
// connection and the session's side of it: the socket buffer, the reader
// goroutine that records arrivals, and a gate that can stop the reader as a
// process stall would.
type conn struct {
	start    time.Time
	det      liveness.Detector
	socket   chan struct{} // the kernel's receive buffer
	gate     chan struct{} // held by the test to stall the reader
	done     chan struct{}
	lastRead atomic.Int64
	reads    atomic.Int64
	wg       sync.WaitGroup
}

// newConn starts a peer that sends beats heartbeats, gap(i) apart, then
// falls silent without closing (a frozen process, a pulled cable).
func newConn(t *testing.T, det liveness.Detector, beats int, gap func(i int) time.Duration) *conn {
	c := &conn{
		start:  time.Now(),
		det:    det,
		socket: make(chan struct{}, 1024),
		gate:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	c.wg.Go(func() { // the peer
		for i := range beats {
			select {
			case <-time.After(gap(i)):
				c.socket <- struct{}{}
			case <-c.done:
				return
			}
		}
	})
	c.wg.Go(func() { // the reader
		for {
			select {
			case <-c.socket:
			case <-c.done:
				return
			}
			c.gate <- struct{}{}
			now := c.now()
			if gap := now - time.Duration(c.lastRead.Load()); gap >= interval/2 {
				c.det.Observe(now, gap)
			}
			c.lastRead.Store(int64(now))
			c.reads.Add(1)
			<-c.gate
		}
	})
	t.Cleanup(func() {
		close(c.done)
		c.wg.Wait()
	})
	return c
}

func (c *conn) now() time.Duration { return time.Since(c.start) }

func (c *conn) last() time.Duration { return time.Duration(c.lastRead.Load()) }

// untilDead runs the session's liveness timer: check, sleep until
// NextCheck, check again. It returns the silence at conviction.
func (c *conn) untilDead(t *testing.T) time.Duration {
	for {
		now := c.now()
		v := c.det.Check(now, c.last())
		if v.Dead {
			t.Logf("dead at %v: %s", now, v.Reason)
			return now - c.last()
		}
		if v.NextCheck <= now {
			t.Fatalf("Check(%v, %v) = %+v: alive with NextCheck not after now", now, c.last(), v)
		}
		time.Sleep(v.NextCheck - now)
	}
}

func TestDetectorsUnderSynctest(t *testing.T) {
	steady := func(r *rand.Rand) func(int) time.Duration {
		return func(int) time.Duration {
			return interval - 5*time.Millisecond + time.Duration(r.Int64N(int64(10*time.Millisecond)))
		}
	}
	jittery := func(r *rand.Rand) func(int) time.Duration {
		return func(int) time.Duration { return interval/2 + time.Duration(r.Int64N(int64(interval))) }
	}
	phi := func(t *testing.T) liveness.Detector {
		cfg := liveness.DefaultPhiConfig(interval, timeout)
		cfg.Floor = interval + interval/2
		cfg.Pause = 0 // the plain model
		p, err := liveness.NewPhiAccrual(cfg)
		if err != nil {
			t.Fatalf("NewPhiAccrual() failed: %v", err)
		}
		return p
	}
	fixed := func(*testing.T) liveness.Detector { return liveness.Fixed{Timeout: timeout} }

	tests := []struct {
		name     string
		det      func(*testing.T) liveness.Detector
		gap      func(*rand.Rand) func(int) time.Duration
		min, max time.Duration // of the silence at conviction
	}{
		{"fixed/steady", fixed, steady, timeout, timeout},
		{"fixed/jittery", fixed, jittery, timeout, timeout},
		// Mean 1s, stddev 100ms (MinStdDev): phi reaches 8 at about 1.56s.
		{"phi/steady", phi, steady, 1500 * time.Millisecond, 1600 * time.Millisecond},
		// Stddev about 0.29s: phi reaches 8 at about 2.6s.
		{"phi/jittery", phi, jittery, 2300 * time.Millisecond, timeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const beats = 150
				c := newConn(t, tt.det(t), beats, tt.gap(rand.New(rand.NewPCG(10, 11))))
				silence := c.untilDead(t)
				if silence < tt.min || silence > tt.max {
					t.Errorf("peer declared dead after %v of silence, want in [%v, %v]", silence, tt.min, tt.max)
				}
				// No false conviction while the peer was sending.
				if n := c.reads.Load(); n != beats {
					t.Errorf("peer declared dead after %d of its %d beats", n, beats)
				}
			})
		})
	}
}

// TestStallUnderSynctest freezes the reader and the liveness timer, as a
// long GC pause or a starved CPU would, while the peer keeps sending into the
// socket buffer. Without the stall rule the overdue check convicts a healthy
// peer; with it the check waits for the reader to catch up.
func TestStallUnderSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		det := liveness.Fixed{Timeout: timeout}
		guard := liveness.StallGuard{Slack: 250 * time.Millisecond, Grace: 100 * time.Millisecond}
		c := newConn(t, det, 30, func(int) time.Duration { return interval })

		// Healthy checks, on time, until 10.5s.
		var scheduled time.Duration
		for c.now() < 10*interval+interval/2 {
			v := guard.Review(det.Check(c.now(), c.last()), scheduled, c.now())
			if v.Dead {
				t.Fatalf("healthy peer declared dead at %v: %s", c.now(), v.Reason)
			}
			scheduled = v.NextCheck
			time.Sleep(min(v.NextCheck, 10*interval+interval/2) - c.now())
		}

		// The process stalls for 5s: reader and timer stop; beats pile
		// up in the socket buffer.
		c.gate <- struct{}{}
		time.Sleep(5 * time.Second)
		now := c.now()
		v := det.Check(now, c.last())
		if !v.Dead {
			t.Fatalf("Check(%v, %v) after the stall = %+v, want a (false) conviction for the guard to catch", now, c.last(), v)
		}
		v = guard.Review(v, scheduled, now)
		if v.Dead || v.NextCheck != now+100*time.Millisecond {
			t.Fatalf("Review() of a check %v late = %+v, want postponed by the grace period", now-scheduled, v)
		}
		t.Logf("at %v: %s", now, v.Reason)

		// The process resumes; the reader drains the buffer within the
		// grace period.
		<-c.gate
		scheduled = v.NextCheck
		time.Sleep(v.NextCheck - c.now())
		if v := guard.Review(det.Check(c.now(), c.last()), scheduled, c.now()); v.Dead {
			t.Fatalf("re-check after the grace period = %+v, want alive: the reader has caught up", v)
		}

		// The stall rule does not stop a real conviction: the peer stops
		// after 30 beats and is declared dead on time.
		if silence := c.untilDead(t); silence != timeout {
			t.Errorf("peer declared dead after %v of silence, want %v", silence, timeout)
		}
		if want := 30*interval + timeout; c.now() != want {
			t.Errorf("peer declared dead at %v, want %v", c.now(), want)
		}
	})
}
