package liveness

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Every default lives here, so that one block tells what a zero config does.
const (
	// DefaultThreshold is the phi at which PhiAccrual convicts: a healthy
	// link would stay that silent about once in 10^8 gaps (Akka's default).
	DefaultThreshold = 8.0
	// DefaultWindow is how many gaps PhiAccrual's estimate covers.
	DefaultWindow = 100
	// RetransmitPause is the least silence a lost packet adds on a TCP
	// connection: Linux's minimum retransmission timeout (TCP_RTO_MIN).
	// DefaultPhiConfig uses it as the Pause; a session adds its round
	// trip once measured, and two more of it on a path that has been
	// losing packets (a retransmission can be lost too, and the next
	// waits twice as long).
	RetransmitPause = 200 * time.Millisecond
	// DefaultStallSlack is how late a check may run before StallGuard
	// blames this process rather than the peer. A healthy Go process runs
	// timers within a few milliseconds; a quarter of a second late means
	// something stopped it.
	DefaultStallSlack = 250 * time.Millisecond
	// DefaultStallGrace is how long StallGuard gives the reader to drain
	// the socket after a stall before the silence is judged again.
	DefaultStallGrace = 100 * time.Millisecond
	// DefaultBackoffBase, DefaultBackoffFactor and DefaultBackoffCap are
	// the reconnect backoff of DefaultBackoff, grpc-go's connection backoff
	// (1.6 per attempt, capped) with a shorter base and cap.
	DefaultBackoffBase   = 100 * time.Millisecond
	DefaultBackoffFactor = 1.6
	DefaultBackoffCap    = 10 * time.Second
)

const (
	// Never is a Verdict.NextCheck that needs no timer: the detector will
	// not convict, however long the silence (a Fixed with no Timeout).
	Never = time.Duration(math.MaxInt64)

	// MaxPhi is the largest suspicion level reported. The tail probability
	// behind a higher phi is below 10^-300, close to where float64 runs out
	// of precision, so phi is capped here rather than becoming +Inf.
	MaxPhi = 300.0
)

// ErrInvalidConfig is wrapped by every configuration error of the package.
var ErrInvalidConfig = errors.New("liveness: invalid config")

// A Detector decides, from the history of arrivals it is shown, whether a
// silent peer should be declared dead.
//
// Times are time.Durations since an epoch chosen by the caller and shared by
// every call on the same Detector. The detectors of this package are safe for
// concurrent use: a connection's reader calls Observe while a timer calls
// Check.
type Detector interface {
	// Observe records that bytes arrived at now after a silence of gap.
	// The caller reports heartbeat-scale gaps only; see PhiAccrual.
	Observe(now, gap time.Duration)
	// Check says whether the peer should be declared dead at now, given
	// the time of the last arrival.
	Check(now, lastArrival time.Duration) Verdict
	// Phi returns the current suspicion level (0 for the fixed detector),
	// for stats.
	Phi(now, lastArrival time.Duration) float64
}

// A Verdict is the answer of Detector.Check.
type Verdict struct {
	// Dead reports that the peer should be declared dead.
	Dead bool
	// Reason says why the peer is dead, for logs and for the error given
	// to pending calls, e.g. "no byte for 3s (timeout 3s)" or
	// "phi 9.2 >= threshold 8 after 1.7s of silence". StallGuard.Review
	// also sets it when it postpones a conviction. Empty otherwise.
	Reason string
	// NextCheck is the time at which the detector, knowing what it knows
	// now, convicts: lastArrival plus the silence it tolerates. When Dead
	// is false it is after now, and checking earlier is useless; when Dead
	// is true it is not after now. Never if the detector never convicts.
	// A later Observe may move it.
	NextCheck time.Duration
}

// StallGuard recognises checks that ran so late that this process, not the
// peer, was the one stalled (a long GC pause, CPU starvation, a suspended
// VM), and postpones convictions made by such checks.
//
// Why: while the process is stopped, whatever the peer sends piles up
// unread in the kernel's socket buffer. When the process resumes, the
// overdue timer and the reader become runnable together; if the timer's
// check runs first it sees the reader's last arrival from before the stall
// and convicts a peer that was talking all along. Giving the reader a grace
// period to drain the buffer, then judging the silence again, avoids that.
//
// A conviction is postponed only by a check that was itself late, so on a
// process that merely runs timers a little late the cost is one grace period
// per conviction. A process so starved that every check runs more than
// Slack late keeps postponing: it can no longer tell silence from its own
// absence.
//
// The zero StallGuard uses DefaultStallSlack and DefaultStallGrace. Its
// methods are safe for concurrent use.
type StallGuard struct {
	// Slack is how late a check may run and still be trusted. Zero or
	// negative means DefaultStallSlack.
	Slack time.Duration
	// Grace is how long after a late check the silence is judged again.
	// Zero or negative means DefaultStallGrace.
	Grace time.Duration
}

func (g StallGuard) slack() time.Duration {
	if g.Slack <= 0 {
		return DefaultStallSlack
	}
	return g.Slack
}

func (g StallGuard) grace() time.Duration {
	if g.Grace <= 0 {
		return DefaultStallGrace
	}
	return g.Grace
}

// Late reports whether a check scheduled for scheduled and running at now
// ran more than Slack late, which means this process itself was stalled.
func (g StallGuard) Late(scheduled, now time.Duration) bool {
	return now > scheduled && now-scheduled > g.slack()
}

// Recheck returns when to judge the silence again after a late check that
// runs at now: now plus Grace.
func (g StallGuard) Recheck(now time.Duration) time.Duration {
	return addSat(now, g.grace())
}

// Review applies the stall rule to a verdict v reached by a check that was
// scheduled for scheduled and ran at now. If v convicts and the check was
// Late, Review returns a verdict that does not convict, with NextCheck set to
// Recheck(now) and a Reason saying what was postponed. Otherwise it returns v
// unchanged.
func (g StallGuard) Review(v Verdict, scheduled, now time.Duration) Verdict {
	if !v.Dead || !g.Late(scheduled, now) {
		return v
	}
	return Verdict{
		Reason: fmt.Sprintf("conviction postponed: check ran %v late (slack %v), this process stalled; re-checking in %v (was: %s)",
			roundDur(now-scheduled), g.slack(), g.grace(), v.Reason),
		NextCheck: g.Recheck(now),
	}
}

// addSat returns t+d, saturated at Never instead of overflowing.
func addSat(t, d time.Duration) time.Duration {
	if d > 0 && t > Never-d {
		return Never
	}
	return t + d
}

// roundDur rounds d for messages: to the millisecond unless that would
// lose everything.
func roundDur(d time.Duration) time.Duration {
	if d >= 10*time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
