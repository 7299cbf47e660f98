package liveness

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff computes reconnect delays: exponential backoff with full jitter.
// The delay before retry number attempt (counting from 0) is uniform in
// [0, min(Cap, Base·Factor^attempt)].
//
// Full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog,
// 2015) spreads clients that lost the same server at the same moment over
// the whole interval, instead of bunching them around the bound as grpc-go's
// ±20% jitter does; the server they come back to sees a trickle, not a wave.
// The price is that a single client may retry sooner than the bound.
//
// The zero value of each field means its default, so Backoff{} equals
// DefaultBackoff(). A Backoff is immutable and safe for concurrent use.
type Backoff struct {
	// Base is the bound for the first retry. Zero or negative means
	// DefaultBackoffBase.
	Base time.Duration
	// Factor multiplies the bound after each attempt. Zero means
	// DefaultBackoffFactor; below 1 counts as 1 (no growth).
	Factor float64
	// Cap is the largest bound. Zero or negative means DefaultBackoffCap.
	Cap time.Duration
}

// DefaultBackoff returns the reconnect backoff of a Client: Base 100ms,
// Factor 1.6, Cap 10s. The shape is grpc-go's connection backoff (which has
// Base 1s, Cap 120s and ±20% jitter), scaled for RPC between services that
// want a restarted server back in well under a second, with full jitter.
func DefaultBackoff() Backoff {
	return Backoff{Base: DefaultBackoffBase, Factor: DefaultBackoffFactor, Cap: DefaultBackoffCap}
}

// Limit returns the bound on the delay before retry number attempt:
// min(Cap, Base·Factor^attempt). A negative attempt counts as 0. Limit never
// overflows, whatever attempt is, and never decreases as attempt grows.
func (b Backoff) Limit(attempt int) time.Duration {
	base, factor, ceiling := b.Base, b.Factor, b.Cap
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if factor == 0 {
		factor = DefaultBackoffFactor
	}
	if !(factor >= 1) { // also NaN
		factor = 1
	}
	if ceiling <= 0 {
		ceiling = DefaultBackoffCap
	}
	attempt = max(attempt, 0)
	if base >= ceiling {
		return ceiling
	}
	// Pow saturates at +Inf for large attempts, which the comparison
	// turns into the cap; nothing is converted back to an integer unless
	// it is below Cap, so nothing overflows.
	f := float64(base) * math.Pow(factor, float64(attempt))
	if !(f < float64(ceiling)) {
		return ceiling
	}
	return min(time.Duration(f), ceiling)
}

// Delay returns a delay before retry number attempt, rnd()·Limit(attempt),
// where rnd returns a number in [0, 1) like rand.Float64. Values outside
// [0, 1] are clamped, so rnd returning 1 gives exactly Limit(attempt). A nil
// rnd means math/rand/v2's Float64.
func (b Backoff) Delay(attempt int, rnd func() float64) time.Duration {
	if rnd == nil {
		rnd = rand.Float64
	}
	limit := b.Limit(attempt)
	r := rnd()
	switch {
	case !(r > 0): // also NaN
		return 0
	case r >= 1:
		return limit
	}
	return min(time.Duration(r*float64(limit)), limit)
}
