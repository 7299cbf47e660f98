// Package liveness decides when the peer of a long-lived connection should be
// declared dead, and how long a client waits before dialling again.
//
// The package is pure logic. It starts no goroutines, arms no timers and never
// reads the clock: every method takes the current time as a time.Duration
// since an epoch the caller picks once (time.Since(start) is monotonic, which
// is what a session uses). The same code therefore runs under the real clock,
// under testing/synctest, and in plain table tests.
//
// # Detectors
//
// Any byte read from the peer is a sign of life. The session keeps the time
// of the last read; its reader goroutine reports heartbeat-scale gaps to a
// [Detector] with Observe, and a timer asks Check whether the silence since
// the last read is now long enough to convict. Check returns a [Verdict]; when
// the peer is alive, Verdict.NextCheck says when to ask again, so one timer
// per connection, re-armed from the verdict, is enough.
//
// [Fixed] is the classic rule: dead after Timeout of silence. It needs no
// history and is exact, but it must be set for the worst link it will meet,
// so on a good link it is slow.
//
// [PhiAccrual] is the φ accrual detector of Hayashibara et al. (2004), as
// used by Akka and Cassandra. It models the gaps between heartbeats as a
// normal distribution estimated over a sliding window, and turns the current
// silence t into a suspicion level
//
//	phi(t) = -log10(1 - F(t))
//
// where F is the distribution's CDF: phi 1 means a healthy link stays silent
// this long about once in 10 gaps, phi 8 once in 10^8. A regular link gets a
// narrow distribution and convicts soon after the heartbeats stop; a jittery
// one gets a wide distribution and waits longer. The detector adapts to the
// link instead of being tuned for the worst one.
//
// # Floor and ceiling
//
// PhiAccrual is fenced by two fixed bounds from [PhiConfig]: it never
// convicts before Floor of silence, however high phi is (a few unlucky
// samples must not kill a healthy connection), and it always convicts at
// Ceiling, however low phi is. Ceiling is the connection's Timeout, so the
// guarantee of the fixed rule holds: a peer that vanishes is declared dead
// within Ceiling of the last byte read from it. Phi only makes that earlier.
//
// # Local stalls
//
// A check that runs far later than it was scheduled means this process was
// stalled (a long GC pause, CPU starvation, a suspended VM). Whatever the
// peer sent meanwhile sits unread in the kernel's socket buffer, so the
// silence the detector measures is this process's own, not the peer's.
// [StallGuard] spots such a check and postpones the conviction by a short
// grace period, during which the reader catches up.
//
// # Reconnecting
//
// [Backoff] computes the delay before the next dial: exponential growth from
// Base by Factor up to Cap, with full jitter (a uniform delay between zero
// and that bound), so that clients cut off together do not return together.
//
// # Example
//
// A session wires the pieces together like this (error handling and
// locking elided):
//
//	det, err := liveness.NewPhiAccrual(liveness.DefaultPhiConfig(interval, timeout))
//	guard := liveness.StallGuard{}
//	start := time.Now()
//	now := func() time.Duration { return time.Since(start) }
//
//	// Reader goroutine, after every read that returned bytes:
//	t := now()
//	if gap := t - lastRead.Load(); gap >= interval/2 {
//		det.Observe(t, gap) // heartbeat-scale gaps only
//	}
//	lastRead.Store(t)
//
//	// Timer callback; scheduled is the NextCheck the timer was armed for:
//	t := now()
//	v := guard.Review(det.Check(t, lastRead.Load()), scheduled, t)
//	if v.Dead {
//		closeWith(errSilent(v.Reason))
//		return
//	}
//	scheduled = v.NextCheck
//	timer.Reset(v.NextCheck - t)
package liveness
