package liveness

import (
	"fmt"
	"time"
)

// Fixed is the fixed-timeout detector: the peer is dead once nothing has
// been read from it for Timeout. It keeps no history, so Observe does
// nothing, and it reports a phi of 0.
//
// A Fixed value is immutable and safe for concurrent use.
type Fixed struct {
	// Timeout is the silence after which the peer is dead. Zero or
	// negative disables the detector: Check never convicts and answers
	// NextCheck Never.
	Timeout time.Duration
}

var _ Detector = Fixed{}

// Observe does nothing: the fixed detector needs no history.
func (f Fixed) Observe(now, gap time.Duration) {}

// Check reports the peer dead when now-lastArrival >= Timeout. NextCheck is
// lastArrival+Timeout.
func (f Fixed) Check(now, lastArrival time.Duration) Verdict {
	if f.Timeout <= 0 {
		return Verdict{NextCheck: Never}
	}
	v := Verdict{NextCheck: addSat(lastArrival, f.Timeout)}
	// A last arrival after now is a read that raced with this check; it
	// means no silence at all.
	silence := max(now-lastArrival, 0)
	if silence >= f.Timeout {
		v.Dead = true
		v.Reason = fmt.Sprintf("no byte for %v (timeout %v)", roundDur(silence), f.Timeout)
	}
	return v
}

// Phi returns 0: the fixed detector has no notion of suspicion.
func (f Fixed) Phi(now, lastArrival time.Duration) float64 { return 0 }
