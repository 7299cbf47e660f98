package liveness

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// maxWindow bounds PhiConfig.Window: the window costs 8 bytes a sample for
// every connection, and beyond a few thousand samples the estimate stops
// following the link.
const maxWindow = 1 << 16

// PhiConfig configures a PhiAccrual detector. The zero value of each
// optional field is documented; Ceiling and FirstGap are required.
type PhiConfig struct {
	// Threshold is the suspicion level at which the peer is convicted
	// (between Floor and Ceiling): phi 8 means a healthy link stays that
	// silent about once in 10^8 gaps. Zero means DefaultThreshold. At
	// most MaxPhi.
	Threshold float64
	// Window is how many gaps the estimate covers, at least 2. Zero means
	// DefaultWindow.
	Window int
	// MinStdDev is the least standard deviation the model uses, so that a
	// very regular link (loopback, a quiet LAN) does not convict at its
	// first delay of a few milliseconds. Zero means FirstGap/10.
	MinStdDev time.Duration
	// Pause is silence a healthy link adds now and then beyond the gaps
	// the window has seen, which a normal model of those gaps would take
	// for a wild outlier: over TCP, a lost packet holds back everything
	// behind it for a retransmission timeout. Phi is computed as if the
	// mean gap were Pause longer (Akka's acceptable heartbeat pause).
	// Zero means none; SetPause changes it as the round trip becomes
	// known.
	Pause time.Duration
	// Floor is the silence before which the detector never convicts,
	// however high phi is. Zero means no floor. Less than Ceiling.
	Floor time.Duration
	// Ceiling is the silence at which the detector always convicts,
	// however low phi is: the connection's Timeout, the bound users rely
	// on. Required.
	Ceiling time.Duration
	// FirstGap is the gap expected before any has been observed: the
	// heartbeat interval. Until Window real gaps have been observed the
	// estimate includes two made-up gaps, FirstGap ± FirstGap/4, so that
	// the detector starts from mean FirstGap and standard deviation
	// FirstGap/4 (as Akka's first-heartbeat estimate). Required, and less
	// than Ceiling.
	FirstGap time.Duration
}

// DefaultPhiConfig returns the configuration a session uses for heartbeat
// interval and timeout: DefaultThreshold, DefaultWindow, MinStdDev
// interval/10, Pause RetransmitPause (a session adds the round trip once
// it knows it), Ceiling timeout, FirstGap interval, and a Floor of two
// intervals or halfway from interval to timeout, whichever is more (but
// short of the timeout). With a 1s interval and a 3s timeout, a steady
// link convicts after 2s of silence and a jittery one after up to 3s; with
// 200ms and 1s, never before 600ms.
func DefaultPhiConfig(interval, timeout time.Duration) PhiConfig {
	return PhiConfig{
		Threshold: DefaultThreshold,
		Window:    DefaultWindow,
		MinStdDev: interval / 10,
		Pause:     RetransmitPause,
		Floor:     floorFor(interval, timeout),
		Ceiling:   timeout,
		FirstGap:  interval,
	}
}

// Validate reports every problem in c, each wrapping ErrInvalidConfig and
// naming the field and its value.
func (c PhiConfig) Validate() error {
	_, err := c.resolve()
	return err
}

// resolve validates c and returns it with defaults filled in.
func (c PhiConfig) resolve() (PhiConfig, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if !(c.Threshold > 0 && c.Threshold <= MaxPhi) {
		bad("Threshold (%g) must be in (0, %g]", c.Threshold, MaxPhi)
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Window < 2 || c.Window > maxWindow {
		bad("Window (%d) must be between 2 and %d samples", c.Window, maxWindow)
	}
	if c.FirstGap <= 0 {
		bad("FirstGap (%v) must be positive: it is the heartbeat interval", c.FirstGap)
	}
	if c.Ceiling <= 0 {
		bad("Ceiling (%v) must be positive: it is the connection's timeout", c.Ceiling)
	}
	if c.Floor < 0 {
		bad("Floor (%v) must not be negative", c.Floor)
	}
	if c.MinStdDev < 0 {
		bad("MinStdDev (%v) must not be negative", c.MinStdDev)
	}
	if c.Pause < 0 {
		bad("Pause (%v) must not be negative", c.Pause)
	}
	if c.Ceiling > 0 {
		if c.Floor >= c.Ceiling {
			bad("Floor (%v) must be less than Ceiling (%v)", c.Floor, c.Ceiling)
		}
		if c.FirstGap >= c.Ceiling {
			bad("FirstGap (%v) must be less than Ceiling (%v): a healthy idle peer would be declared dead between two heartbeats", c.FirstGap, c.Ceiling)
		}
		// Samples are capped at Ceiling; their sum must fit an int64.
		if c.Window > 0 && int64(c.Window) > math.MaxInt64/int64(c.Ceiling) {
			bad("Window (%d) times Ceiling (%v) overflows", c.Window, c.Ceiling)
		}
	}
	if c.MinStdDev == 0 {
		c.MinStdDev = max(c.FirstGap/10, 1)
	}
	return c, errors.Join(errs...)
}

// PhiAccrual is the φ accrual failure detector (Hayashibara, Défago,
// Yared, Katayama: "The φ Accrual Failure Detector", 2004), as in Akka and
// Cassandra, fenced by a fixed floor and ceiling.
//
// It models the gaps it is given as a normal distribution whose mean and
// standard deviation are those of the last Window gaps (the mean lengthened
// by Pause, the deviation raised to MinStdDev), and judges a silence t by
//
//	phi(t) = -log10(1 - F(t))
//
// with F the distribution's CDF. Check convicts when the silence reaches
// Ceiling, or when it reaches Floor and phi reaches Threshold.
//
// Which gaps to feed it matters. A session records a gap only when it is
// heartbeat-scale, at least half a heartbeat interval, not the gap before
// every read: on a busy connection reads come microseconds apart, and a
// window full of such gaps would make the first idle gap, a normal
// heartbeat interval, look like a wild outlier and convict at once. The
// caller does that filtering; the detector models the gaps it is given.
// Gaps longer than Ceiling are recorded as Ceiling.
//
// A PhiAccrual is safe for concurrent use. Observe and Check are O(1) and
// do not allocate, except for Check's Reason when it convicts.
type PhiAccrual struct {
	cfg PhiConfig // resolved; read-only after NewPhiAccrual
	// zThreshold is the z-score (silence-mean)/stddev at which phi reaches
	// cfg.Threshold. It depends on Threshold alone, so it is found once.
	zThreshold float64

	pause atomic.Int64 // ns, the Pause in use; see SetPause

	mu    sync.Mutex      // protects following
	ring  []time.Duration // the last len(ring) gaps, oldest at next once full
	next  int             // slot of the next gap
	n     int             // gaps held, up to len(ring)
	sum   uint64          // of the gaps held; exact
	sumSq uint128         // of their squares in ns²; exact
}

var _ Detector = (*PhiAccrual)(nil)

// NewPhiAccrual returns a detector configured by cfg, or an error naming
// every invalid field. The detector starts from the FirstGap estimate.
func NewPhiAccrual(cfg PhiConfig) (*PhiAccrual, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	p := &PhiAccrual{
		cfg:        cfg,
		zThreshold: zForPhi(cfg.Threshold),
		ring:       make([]time.Duration, cfg.Window),
	}
	p.pause.Store(int64(cfg.Pause))
	// Two made-up gaps whose mean is FirstGap and whose (population)
	// standard deviation is FirstGap/4 (unless FirstGap is so close to
	// Ceiling that the second is capped like any gap). Real gaps push them
	// out of the window like any other.
	d := cfg.FirstGap / 4
	p.addLocked(cfg.FirstGap - d)
	p.addLocked(min(cfg.FirstGap+d, cfg.Ceiling))
	return p, nil
}

// Config returns the configuration in use, defaults filled in, with the
// Pause in use.
func (p *PhiAccrual) Config() PhiConfig {
	c := p.cfg
	c.Pause = time.Duration(p.pause.Load())
	return c
}

// SetPause changes the Pause in use (negative counts as zero). A session
// calls it as its round-trip estimate changes: a retransmission takes a
// round trip more than the minimum retransmission timeout.
func (p *PhiAccrual) SetPause(d time.Duration) { p.pause.Store(int64(max(d, 0))) }

// Observe records a gap of silence that ended with an arrival at now.
// Gaps that are not positive are ignored; now is not used.
func (p *PhiAccrual) Observe(now, gap time.Duration) {
	if gap <= 0 {
		return
	}
	gap = min(gap, p.cfg.Ceiling)
	p.mu.Lock()
	p.addLocked(gap)
	p.mu.Unlock()
}

func (p *PhiAccrual) addLocked(gap time.Duration) {
	x := uint64(gap)
	if p.n == len(p.ring) {
		old := uint64(p.ring[p.next])
		p.sum -= old
		p.sumSq = p.sumSq.sub(square(old))
	} else {
		p.n++
	}
	p.ring[p.next] = gap
	p.next++
	if p.next == len(p.ring) {
		p.next = 0
	}
	p.sum += x
	p.sumSq = p.sumSq.add(square(x))
}

// estimateLocked returns the model's mean and standard deviation in
// nanoseconds, the mean lengthened by the pause, the deviation raised to
// MinStdDev.
func (p *PhiAccrual) estimateLocked() (mean, stddev float64) {
	n := uint64(p.n)
	mean = float64(p.sum) / float64(n)
	// n·Σx² − (Σx)² is n² times the population variance and never
	// negative. It fits in 128 bits because every gap is at most Ceiling
	// and n·Ceiling < 2⁶³ (checked by resolve), so n·Σx² ≤ (n·Ceiling)²
	// < 2¹²⁶. Computed exactly, the sums do not drift however long the
	// window slides; only the final conversion rounds.
	m2 := p.sumSq.mul64(n).sub(square(p.sum))
	variance := m2.float64() / (float64(n) * float64(n))
	mean += float64(p.pause.Load())
	return mean, max(math.Sqrt(variance), float64(p.cfg.MinStdDev))
}

// Estimate returns the model's current mean gap (Pause included) and the
// standard deviation it uses (at least MinStdDev), and how many gaps,
// made-up ones included, the estimate is made of.
func (p *PhiAccrual) Estimate() (mean, stddev time.Duration, samples int) {
	p.mu.Lock()
	m, sd := p.estimateLocked()
	samples = p.n
	p.mu.Unlock()
	return time.Duration(math.Round(m)), time.Duration(math.Round(sd)), samples
}

// Phi returns the suspicion level for the silence since lastArrival, in
// [0, MaxPhi].
func (p *PhiAccrual) Phi(now, lastArrival time.Duration) float64 {
	p.mu.Lock()
	mean, sd := p.estimateLocked()
	p.mu.Unlock()
	return phiAt(max(now-lastArrival, 0), mean, sd)
}

// Check reports the peer dead when the silence since lastArrival reaches
// Ceiling, or reaches Floor and phi reaches Threshold. NextCheck is
// lastArrival plus the silence at which that happens under the current
// estimate: the earlier of Ceiling and the time phi reaches Threshold, but
// not before Floor.
//
// The time phi reaches Threshold is found by inverting the normal tail, and
// Check convicts by comparing the silence with it, so Check and NextCheck
// agree exactly: a check at NextCheck convicts unless a gap observed since
// changed the estimate.
func (p *PhiAccrual) Check(now, lastArrival time.Duration) Verdict {
	silence := max(now-lastArrival, 0) // see Fixed.Check
	p.mu.Lock()
	mean, sd := p.estimateLocked()
	p.mu.Unlock()
	limit, byPhi := p.limit(mean, sd)
	v := Verdict{NextCheck: addSat(lastArrival, limit)}
	if silence < limit {
		return v
	}
	v.Dead = true
	phi := phiAt(silence, mean, sd)
	if byPhi {
		v.Reason = fmt.Sprintf("phi %.1f >= threshold %g after %v of silence", phi, p.cfg.Threshold, roundDur(silence))
	} else {
		v.Reason = fmt.Sprintf("no byte for %v (timeout %v, phi %.1f)", roundDur(silence), p.cfg.Ceiling, phi)
	}
	return v
}

// limit returns the silence at which the detector convicts under the
// estimate (mean, sd), and whether that is phi's doing rather than the
// ceiling's.
func (p *PhiAccrual) limit(mean, sd float64) (time.Duration, bool) {
	t := mean + p.zThreshold*sd
	switch {
	case !(t < float64(p.cfg.Ceiling)):
		return p.cfg.Ceiling, false
	case t <= float64(p.cfg.Floor):
		return p.cfg.Floor, true
	}
	d := time.Duration(math.Ceil(t))
	if d >= p.cfg.Ceiling {
		return p.cfg.Ceiling, false
	}
	return max(d, p.cfg.Floor), true
}

// phiAt returns phi for a silence of t ns under a normal model.
func phiAt(t time.Duration, mean, sd float64) float64 {
	return phiOfZ((float64(t) - mean) / sd)
}

// phiOfZ returns -log10(1 - Φ(z)) for the standard normal CDF Φ, in
// [0, MaxPhi]. The tail is computed as 1 - Φ(z) = erfc(z/√2)/2, which keeps
// full relative precision far into the tail where 1 - Φ(z) would round to
// zero; below the mean, log1p keeps the small phi values accurate.
func phiOfZ(z float64) float64 {
	x := z / math.Sqrt2
	var phi float64
	if x > 0 {
		phi = -math.Log10(0.5 * math.Erfc(x)) // +Inf once Erfc underflows
	} else {
		phi = -math.Log1p(-0.5*math.Erfc(-x)) / math.Ln10
	}
	return min(max(phi, 0), MaxPhi)
}

// zForPhi returns the least z with phiOfZ(z) >= phi, for phi in (0, MaxPhi].
//
// It bisects rather than use math.Erfcinv, which computes Erfinv(1-x): the
// tail probabilities 10^-phi of useful thresholds lose most of their digits
// in 1-x, and from phi ≈ 16 on 1-x rounds to 1 and the answer is +Inf.
func zForPhi(phi float64) float64 {
	lo, hi := -40.0, 40.0 // phiOfZ(lo) == 0, phiOfZ(hi) == MaxPhi
	for range 2000 {
		mid := lo + (hi-lo)/2
		if mid == lo || mid == hi {
			break
		}
		if phiOfZ(mid) >= phi {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// uint128 is an unsigned 128-bit integer, enough for exact sums of squared
// nanosecond gaps.
type uint128 struct{ hi, lo uint64 }

func square(x uint64) uint128 {
	hi, lo := bits.Mul64(x, x)
	return uint128{hi, lo}
}

func (a uint128) add(b uint128) uint128 {
	lo, carry := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, carry)
	return uint128{hi, lo}
}

func (a uint128) sub(b uint128) uint128 {
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	hi, _ := bits.Sub64(a.hi, b.hi, borrow)
	return uint128{hi, lo}
}

// mul64 returns a·m; the caller knows it fits.
func (a uint128) mul64(m uint64) uint128 {
	hi, lo := bits.Mul64(a.lo, m)
	return uint128{hi + a.hi*m, lo}
}

func (a uint128) float64() float64 {
	return float64(a.hi)*0x1p64 + float64(a.lo)
}

// floorFor is DefaultPhiConfig's floor: two intervals, or halfway from the
// interval to the timeout when that is later, but always short of the
// timeout. On a lossy link one retransmission (200 ms at least) plus
// jitter can silence a healthy peer for two short intervals; halfway to
// the timeout leaves room for that (the fault suite's 200 ms / 1 s runs
// under 5 % loss convicted at a floor of 400 ms).
func floorFor(interval, timeout time.Duration) time.Duration {
	f := max(2*interval, interval+(timeout-interval)/2)
	if f >= timeout {
		f = interval + (timeout-interval)/2
	}
	return f
}
