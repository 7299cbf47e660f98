package liveness

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	ms = time.Millisecond
	s  = time.Second
)

func newPhi(t testing.TB, cfg PhiConfig) *PhiAccrual {
	t.Helper()
	p, err := NewPhiAccrual(cfg)
	if err != nil {
		t.Fatalf("NewPhiAccrual(%+v) failed: %v", cfg, err)
	}
	return p
}

// feed observes n gaps drawn by gap, arriving back to back from time 0,
// and returns the time of the last arrival.
func feed(p *PhiAccrual, n int, gap func() time.Duration) time.Duration {
	var now time.Duration
	for range n {
		g := gap()
		now += g
		p.Observe(now, g)
	}
	return now
}

func steady(r *rand.Rand) func() time.Duration {
	// 1s ± 5ms, a healthy LAN.
	return func() time.Duration { return s - 5*ms + time.Duration(r.Int64N(int64(10*ms))) }
}

func jittery(r *rand.Rand) func() time.Duration {
	// Uniform in 0.5s..1.5s, a congested or wireless link.
	return func() time.Duration { return s/2 + time.Duration(r.Int64N(int64(s))) }
}

// crossing returns the least silence, to the millisecond, at which phi
// reaches th, or -1 if it does not by limit.
func crossing(p *PhiAccrual, th float64, limit time.Duration) time.Duration {
	for d := time.Duration(0); d <= limit; d += ms {
		if p.Phi(d, 0) >= th {
			return d
		}
	}
	return -1
}

func TestPhiSteadyLink(t *testing.T) {
	cfg := DefaultPhiConfig(s, 3*s)
	if cfg.Floor != 2*s || cfg.MinStdDev != 100*ms || cfg.Pause != RetransmitPause {
		t.Fatalf("DefaultPhiConfig(1s, 3s) = %+v, want Floor 2s, MinStdDev 100ms, Pause %v", cfg, RetransmitPause)
	}
	cfg.Pause = 0 // the plain model; TestPhiPause covers the pause
	p := newPhi(t, cfg)
	last := feed(p, 200, steady(rand.New(rand.NewPCG(1, 2))))

	if phi := p.Phi(last+1100*ms, last); phi >= 1 {
		t.Errorf("Phi() after 1.1s of silence = %.3f, want < 1", phi)
	}
	cross := crossing(p, 8, cfg.Ceiling)
	if cross < 0 || cross >= cfg.Ceiling {
		t.Fatalf("phi crosses 8 after %v of silence, want before Ceiling %v", cross, cfg.Ceiling)
	}
	// 100ms is MinStdDev: mean 1s + 5.61 standard deviations.
	if cross < 1500*ms || cross > 1600*ms {
		t.Errorf("phi crosses 8 after %v of silence, want about 1.56s", cross)
	}
	// phi is far past the threshold before the floor, yet no conviction.
	if phi := p.Phi(last+cfg.Floor-ms, last); phi < 15 {
		t.Errorf("Phi() just before Floor = %.1f, want > 15", phi)
	}
	for d := time.Duration(0); d < cfg.Floor; d += 10 * ms {
		if v := p.Check(last+d, last); v.Dead {
			t.Fatalf("Check() after %v of silence = %+v, want alive before Floor %v", d, v, cfg.Floor)
		}
	}
	v := p.Check(last+cfg.Floor, last)
	if !v.Dead || v.NextCheck != last+cfg.Floor {
		t.Errorf("Check() at Floor = %+v, want Dead with NextCheck %v", v, last+cfg.Floor)
	}
	if want := regexp.MustCompile(`^phi \d+\.\d >= threshold 8 after 2s of silence$`); !want.MatchString(v.Reason) {
		t.Errorf("Check() at Floor: Reason = %q, want match for %v", v.Reason, want)
	}
	if v := p.Check(last+cfg.Ceiling, last); !v.Dead {
		t.Errorf("Check() at Ceiling = %+v, want Dead", v)
	}
}

func TestPhiNeverBeforeFloorAlwaysAtCeiling(t *testing.T) {
	cfg := PhiConfig{MinStdDev: ms, Floor: 2 * s, Ceiling: 3 * s, FirstGap: s}

	// Perfectly regular: phi is at MaxPhi long before the floor.
	p := newPhi(t, cfg)
	last := feed(p, 200, func() time.Duration { return s })
	if phi := p.Phi(last+1500*ms, last); phi != MaxPhi {
		t.Errorf("Phi() after 1.5s = %v, want MaxPhi", phi)
	}
	for _, d := range []time.Duration{0, 1100 * ms, 1500 * ms, 2*s - 1} {
		if v := p.Check(last+d, last); v.Dead || v.NextCheck != last+cfg.Floor {
			t.Errorf("Check() after %v of silence = %+v, want alive until %v", d, v, last+cfg.Floor)
		}
	}
	if v := p.Check(last+2*s, last); !v.Dead {
		t.Errorf("Check() at Floor = %+v, want Dead", v)
	}

	// Gaps close to the ceiling on a link with a wide spread: phi is low
	// at the ceiling, which convicts anyway.
	cfg.MinStdDev = 500 * ms
	p = newPhi(t, cfg)
	last = feed(p, 200, func() time.Duration { return 2900 * ms })
	if phi := p.Phi(last+cfg.Ceiling, last); phi >= 8 {
		t.Fatalf("Phi() at Ceiling = %v, want < 8 for this test", phi)
	}
	v := p.Check(last+cfg.Ceiling-1, last)
	if v.Dead || v.NextCheck != last+cfg.Ceiling {
		t.Errorf("Check() just before Ceiling = %+v, want alive until %v", v, last+cfg.Ceiling)
	}
	v = p.Check(last+cfg.Ceiling, last)
	if !v.Dead || v.NextCheck != last+cfg.Ceiling {
		t.Errorf("Check() at Ceiling = %+v, want Dead with NextCheck %v", v, last+cfg.Ceiling)
	}
	if want := regexp.MustCompile(`^no byte for 3s \(timeout 3s, phi \d+\.\d\)$`); !want.MatchString(v.Reason) {
		t.Errorf("Check() at Ceiling: Reason = %q, want match for %v", v.Reason, want)
	}
}

func TestPhiAdapts(t *testing.T) {
	// No floor, a distant ceiling and a small MinStdDev, so that phi alone
	// decides.
	cfg := PhiConfig{MinStdDev: 10 * ms, Ceiling: 10 * s, FirstGap: s}
	r := rand.New(rand.NewPCG(3, 4))
	st, jt := newPhi(t, cfg), newPhi(t, cfg)
	feed(st, 300, steady(r))
	feed(jt, 300, jittery(r))

	stCross, jtCross := crossing(st, 8, cfg.Ceiling), crossing(jt, 8, cfg.Ceiling)
	if stCross < 0 || jtCross < 0 {
		t.Fatalf("phi crosses 8 after %v (steady) and %v (jittery), want both before %v", stCross, jtCross, cfg.Ceiling)
	}
	if jtCross <= stCross+500*ms {
		t.Errorf("phi crosses 8 after %v on a jittery link, want well after %v on a steady one", jtCross, stCross)
	}
	// Uniform 0.5..1.5s has stddev 0.289s: 1s + 5.61·0.289s ≈ 2.62s.
	if jtCross < 2400*ms || jtCross > 2850*ms {
		t.Errorf("phi crosses 8 after %v on a jittery link, want about 2.62s", jtCross)
	}
	// NextCheck says the same, to within the 1ms step of crossing.
	for _, tc := range []struct {
		p     *PhiAccrual
		cross time.Duration
	}{{st, stCross}, {jt, jtCross}} {
		if next := tc.p.Check(0, 0).NextCheck; next > tc.cross || next <= tc.cross-ms {
			t.Errorf("Check(0, 0).NextCheck = %v, want in (%v, %v]", next, tc.cross-ms, tc.cross)
		}
	}
}

// naive recomputes a window's statistics from its samples.
type naive struct{ samples []time.Duration }

func (n *naive) add(g time.Duration, window int) {
	n.samples = append(n.samples, g)
	if len(n.samples) > window {
		n.samples = n.samples[1:]
	}
}

func (n *naive) sums() (sum uint64, sumSq *big.Int) {
	sumSq = new(big.Int)
	for _, g := range n.samples {
		sum += uint64(g)
		b := big.NewInt(int64(g))
		sumSq.Add(sumSq, b.Mul(b, b))
	}
	return sum, sumSq
}

// meanStd is a two-pass computation in float64.
func (n *naive) meanStd() (mean, sd float64) {
	for _, g := range n.samples {
		mean += float64(g)
	}
	mean /= float64(len(n.samples))
	for _, g := range n.samples {
		d := float64(g) - mean
		sd += d * d
	}
	return mean, math.Sqrt(sd / float64(len(n.samples)))
}

func (a uint128) big() *big.Int {
	b := new(big.Int).SetUint64(a.hi)
	b.Lsh(b, 64)
	return b.Add(b, new(big.Int).SetUint64(a.lo))
}

// checkAgainstNaive compares p's sums and estimate with a recomputation.
func checkAgainstNaive(t testing.TB, p *PhiAccrual, ref *naive) {
	t.Helper()
	p.mu.Lock()
	sum, sumSq, n := p.sum, p.sumSq, p.n
	mean, sd := p.estimateLocked()
	p.mu.Unlock()
	wantSum, wantSq := ref.sums()
	if n != len(ref.samples) || sum != wantSum || sumSq.big().Cmp(wantSq) != 0 {
		t.Fatalf("window holds %d gaps, sum %d, sum of squares %v; want %d, %d, %v",
			n, sum, sumSq.big(), len(ref.samples), wantSum, wantSq)
	}
	wantMean, wantSD := ref.meanStd()
	wantSD = max(wantSD, float64(p.cfg.MinStdDev))
	if math.Abs(mean-wantMean) > 1e-9*wantMean || math.Abs(sd-wantSD) > 1e-6*wantSD+1 {
		t.Fatalf("estimate = (%v, %v), want (%v, %v)", mean, sd, wantMean, wantSD)
	}
}

func TestPhiWindowRollover(t *testing.T) {
	for _, window := range []int{2, 3, 7, 100} {
		cfg := PhiConfig{Window: window, MinStdDev: 1, Ceiling: time.Hour, FirstGap: s}
		p := newPhi(t, cfg)
		ref := &naive{}
		ref.add(s-s/4, window)
		ref.add(s+s/4, window)
		checkAgainstNaive(t, p, ref)
		r := rand.New(rand.NewPCG(uint64(window), 5))
		for i := range 20 * window {
			// Mix scales so that cancellation would show: microseconds
			// to an hour, and runs of identical gaps.
			var g time.Duration
			switch i % 4 {
			case 0:
				g = time.Duration(r.Int64N(int64(time.Hour))) + 1
			case 1:
				g = time.Duration(r.Int64N(1000)) + 1
			default:
				g = 2 * s
			}
			p.Observe(0, g)
			ref.add(g, window)
			checkAgainstNaive(t, p, ref)
		}
	}
}

func TestPhiBootstrap(t *testing.T) {
	p := newPhi(t, PhiConfig{MinStdDev: ms, Ceiling: 10 * s, FirstGap: 2 * s})
	mean, sd, n := p.Estimate()
	if mean != 2*s || sd != 500*ms || n != 2 {
		t.Errorf("Estimate() = %v, %v, %d before any gap, want 2s, 500ms, 2", mean, sd, n)
	}
	// The made-up gaps leave after Window real ones.
	for range DefaultWindow - 1 {
		p.Observe(0, 3*s)
	}
	if mean, _, _ := p.Estimate(); mean == 3*s {
		t.Errorf("Estimate() mean = %v after Window-1 gaps of 3s, want the made-up gap still counted", mean)
	}
	p.Observe(0, 3*s)
	if mean, sd, n := p.Estimate(); mean != 3*s || sd != ms || n != DefaultWindow {
		t.Errorf("Estimate() = %v, %v, %d after Window gaps of 3s, want 3s, 1ms (MinStdDev), %d", mean, sd, n, DefaultWindow)
	}
}

func TestPhiObserveFilters(t *testing.T) {
	p := newPhi(t, PhiConfig{MinStdDev: ms, Ceiling: 3 * s, FirstGap: s})
	p.Observe(0, 0)
	p.Observe(0, -s)
	if _, _, n := p.Estimate(); n != 2 {
		t.Errorf("Estimate() counts %d gaps after non-positive gaps, want 2 (made-up only)", n)
	}
	for range DefaultWindow {
		p.Observe(0, time.Hour)
	}
	if mean, _, _ := p.Estimate(); mean != 3*s {
		t.Errorf("Estimate() mean = %v after gaps of an hour, want them capped at Ceiling 3s", mean)
	}
}

func TestPhiMinStdDev(t *testing.T) {
	for _, tc := range []struct {
		name   string
		gap    func() time.Duration
		minSD  time.Duration
		wantSD time.Duration
	}{
		{"no variance", func() time.Duration { return s }, 50 * ms, 50 * ms},
		{"small variance", steady(rand.New(rand.NewPCG(6, 7))), 50 * ms, 50 * ms},
		{"default is FirstGap/10", func() time.Duration { return s }, 0, 100 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPhi(t, PhiConfig{MinStdDev: tc.minSD, Ceiling: 10 * s, FirstGap: s})
			feed(p, 300, tc.gap)
			mean, sd, _ := p.Estimate()
			if sd != tc.wantSD {
				t.Errorf("Estimate() stddev = %v, want MinStdDev %v", sd, tc.wantSD)
			}
			// One standard deviation above the mean: 1-Φ(1) = 0.1587.
			want := -math.Log10(0.15865525393145707)
			if got := p.Phi(mean+sd, 0); math.Abs(got-want) > 0.01 {
				t.Errorf("Phi() one stddev above the mean = %.4f, want %.4f", got, want)
			}
		})
	}
}

func TestPhiNextCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	for i := range 200 {
		cfg := PhiConfig{
			Threshold: []float64{0.5, 1, 3, 8, 12, 16, 50}[i%7],
			Window:    2 + r.IntN(50),
			MinStdDev: time.Duration(r.Int64N(int64(100*ms))) + 1,
			FirstGap:  s,
			Ceiling:   5 * s,
		}
		if i%3 != 0 {
			cfg.Floor = time.Duration(r.Int64N(int64(3 * s)))
		}
		p := newPhi(t, cfg)
		last := feed(p, r.IntN(100), jittery(r))
		now := last + time.Duration(r.Int64N(int64(6*s)))
		v := p.Check(now, last)
		next := v.NextCheck
		if next < last+cfg.Floor || next > last+cfg.Ceiling {
			t.Fatalf("%+v: NextCheck %v, want in [%v, %v]", cfg, next-last, cfg.Floor, cfg.Ceiling)
		}
		if v.Dead != (now >= next) {
			t.Fatalf("%+v: Check(%v) = %+v, want Dead exactly from NextCheck on", cfg, now-last, v)
		}
		if !v.Dead && v.Reason != "" {
			t.Fatalf("%+v: Check() = %+v, want no Reason when alive", cfg, v)
		}
		// Convicted at next and not a nanosecond before, by the same
		// verdict.
		if w := p.Check(next, last); !w.Dead || w.NextCheck != next {
			t.Fatalf("%+v: Check(NextCheck) = %+v, want Dead", cfg, w)
		}
		if w := p.Check(next-1, last); w.Dead || w.NextCheck != next {
			t.Fatalf("%+v: Check(NextCheck-1) = %+v, want alive with the same NextCheck", cfg, w)
		}
		// Where phi decided, it has reached the threshold at NextCheck
		// and not a microsecond before.
		if next > last+cfg.Floor && next < last+cfg.Ceiling {
			if phi := p.Phi(next, last); phi < cfg.Threshold-1e-9 {
				t.Fatalf("%+v: Phi(NextCheck) = %v, want >= %v", cfg, phi, cfg.Threshold)
			}
			if phi := p.Phi(next-time.Microsecond, last); phi >= cfg.Threshold {
				t.Fatalf("%+v: Phi(NextCheck-1µs) = %v, want < %v", cfg, phi, cfg.Threshold)
			}
		}
	}
}

func TestZForPhi(t *testing.T) {
	// Standard normal upper quantiles: 1-Φ(z) = 10^-phi.
	for _, tc := range []struct{ phi, z float64 }{
		{1, 1.2815515655446004},
		{2, 2.3263478740408408},
		{3, 3.090232306167813},
		{8, 5.612001244174965},
		{16, 8.222082216130435},
	} {
		if z := zForPhi(tc.phi); math.Abs(z-tc.z) > 1e-9 {
			t.Errorf("zForPhi(%v) = %.12f, want %.12f", tc.phi, z, tc.z)
		}
	}
	for _, phi := range []float64{1e-6, 0.1, 0.3010299956639812, 1, 8, 100, 299.99, MaxPhi} {
		z := zForPhi(phi)
		if got := phiOfZ(z); got < phi {
			t.Errorf("phiOfZ(zForPhi(%v)) = %v, want >= %v", phi, got, phi)
		}
		if below := phiOfZ(math.Nextafter(z, -100)); below >= phi {
			t.Errorf("zForPhi(%v) = %v is not the least z: phiOfZ just below = %v", phi, z, below)
		}
	}
}

func TestPhiOfZ(t *testing.T) {
	for _, tc := range []struct{ z, want float64 }{
		{math.Inf(-1), 0},
		{-40, 0},
		{0, math.Log10(2)},
		{1, 0.7995455414919705},
		{10, 23.118053405486076},
		{37.5, MaxPhi}, // tail below 10^-300
		{100, MaxPhi},  // Erfc underflows to 0
		{math.Inf(1), MaxPhi},
	} {
		if got := phiOfZ(tc.z); math.Abs(got-tc.want) > 1e-9*max(1, tc.want) {
			t.Errorf("phiOfZ(%v) = %v, want %v", tc.z, got, tc.want)
		}
	}
}

// TestBusyGapsNeedFiltering shows why the session records heartbeat-scale
// gaps only: a window of a busy connection's inter-read gaps makes the
// first normal idle gap look like the peer died.
func TestBusyGapsNeedFiltering(t *testing.T) {
	cfg := DefaultPhiConfig(s, 30*s)
	cfg.Floor = 0
	unfiltered, filtered := newPhi(t, cfg), newPhi(t, cfg)
	feed(unfiltered, 500, func() time.Duration { return 100 * time.Microsecond })
	for range 500 {
		const g = 100 * time.Microsecond
		if g >= s/2 { // the session's filter
			filtered.Observe(0, g)
		}
	}
	// One heartbeat interval of silence, as when the connection goes idle.
	if phi := unfiltered.Phi(s, 0); phi < 8 {
		t.Errorf("unfiltered Phi() after 1s = %.1f, want over the threshold", phi)
	}
	if phi := filtered.Phi(s, 0); phi >= 1 {
		t.Errorf("filtered Phi() after 1s = %.1f, want < 1", phi)
	}
}

func TestPhiConfigValidate(t *testing.T) {
	good := PhiConfig{Ceiling: 3 * s, FirstGap: s}
	tests := []struct {
		name   string
		modify func(*PhiConfig)
		want   []string // substrings of the error, field names and values
	}{
		{"ok", func(*PhiConfig) {}, nil},
		{"defaults", func(c *PhiConfig) { *c = DefaultPhiConfig(s, 3*s) }, nil},
		{"no Ceiling", func(c *PhiConfig) { c.Ceiling = 0 }, []string{"Ceiling (0s) must be positive"}},
		{"no FirstGap", func(c *PhiConfig) { c.FirstGap = 0 }, []string{"FirstGap (0s) must be positive"}},
		{"negative FirstGap", func(c *PhiConfig) { c.FirstGap = -s }, []string{"FirstGap (-1s)"}},
		{"Floor at Ceiling", func(c *PhiConfig) { c.Floor = 3 * s }, []string{"Floor (3s) must be less than Ceiling (3s)"}},
		{"negative Floor", func(c *PhiConfig) { c.Floor = -ms }, []string{"Floor (-1ms) must not be negative"}},
		{"FirstGap at Ceiling", func(c *PhiConfig) { c.FirstGap = 3 * s }, []string{"FirstGap (3s) must be less than Ceiling (3s)"}},
		{"negative Threshold", func(c *PhiConfig) { c.Threshold = -1 }, []string{"Threshold (-1) must be in (0, 300]"}},
		{"NaN Threshold", func(c *PhiConfig) { c.Threshold = math.NaN() }, []string{"Threshold (NaN)"}},
		{"huge Threshold", func(c *PhiConfig) { c.Threshold = 301 }, []string{"Threshold (301)"}},
		{"Window 1", func(c *PhiConfig) { c.Window = 1 }, []string{"Window (1) must be between 2 and 65536"}},
		{"negative Window", func(c *PhiConfig) { c.Window = -5 }, []string{"Window (-5)"}},
		{"huge Window", func(c *PhiConfig) { c.Window = 1 << 20 }, []string{"Window (1048576)"}},
		{"negative MinStdDev", func(c *PhiConfig) { c.MinStdDev = -ms }, []string{"MinStdDev (-1ms) must not be negative"}},
		{"overflow", func(c *PhiConfig) { c.Window, c.Ceiling = 1<<16, 1<<50 }, []string{"Window (65536) times Ceiling (" + time.Duration(1<<50).String() + ") overflows"}},
		{"every problem reported", func(c *PhiConfig) { c.Window, c.Floor, c.FirstGap = 1, 5*s, 0 },
			[]string{"Window (1)", "Floor (5s)", "FirstGap (0s)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			err := cfg.Validate()
			p, nerr := NewPhiAccrual(cfg)
			if (err == nil) != (nerr == nil) {
				t.Fatalf("Validate() = %v but NewPhiAccrual() = %v", err, nerr)
			}
			if tt.want == nil {
				if err != nil || p == nil {
					t.Fatalf("NewPhiAccrual(%+v) = %v, %v, want a detector", cfg, p, err)
				}
				return
			}
			if err == nil || p != nil {
				t.Fatalf("NewPhiAccrual(%+v) = %v, %v, want an error", cfg, p, err)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewPhiAccrual() error %v does not wrap ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewPhiAccrual() error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestPhiConfigDefaults(t *testing.T) {
	p := newPhi(t, PhiConfig{Ceiling: 3 * s, FirstGap: 500 * ms})
	want := PhiConfig{Threshold: DefaultThreshold, Window: DefaultWindow, MinStdDev: 50 * ms, Ceiling: 3 * s, FirstGap: 500 * ms}
	if got := p.Config(); got != want {
		t.Errorf("Config() = %+v, want %+v", got, want)
	}
	// Floor halfway to the timeout when two intervals would pass it.
	if got := DefaultPhiConfig(5*s, 8*s).Floor; got != 6500*ms {
		t.Errorf("DefaultPhiConfig(5s, 8s).Floor = %v, want 6.5s", got)
	}
}

func TestPhiConcurrent(t *testing.T) {
	p := newPhi(t, DefaultPhiConfig(s, 3*s))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				now := time.Duration(i) * ms
				switch g {
				case 0:
					p.Observe(now, s+time.Duration(i%7)*ms)
				case 1:
					if v := p.Check(now, 0); v.Dead {
						t.Errorf("Check(%v, 0) = %+v, want alive before Floor", now, v)
						return
					}
				case 2:
					p.Phi(now, 0)
				default:
					p.Estimate()
				}
			}
		})
	}
	wg.Wait()
}

// TestPhiPause models the fault suite's lossy link at a 200ms interval: reads
// every 100-200ms, and now and then (a lost packet) a silence one
// retransmission timeout longer. Without a pause, phi takes the first such
// silence for a dead peer; with the pause a session sets (the minimum
// retransmission timeout plus the round trip), phi stays low, and a peer
// that is really gone is still convicted by the ceiling.
func TestPhiPause(t *testing.T) {
	const rtt = 200 * ms
	gaps := func(r *rand.Rand) func() time.Duration {
		return func() time.Duration { return 100*ms + time.Duration(r.Int64N(int64(100*ms))) }
	}
	// The longest gap, then a retransmission timeout, and half the round
	// trip for the retransmitted packet to arrive.
	lossSilence := 200*ms + RetransmitPause + rtt/2

	cfg := DefaultPhiConfig(200*ms, s)
	cfg.Pause = 0
	plain := newPhi(t, cfg)
	feed(plain, 200, gaps(rand.New(rand.NewPCG(3, 4))))
	if phi := plain.Phi(lossSilence, 0); phi < DefaultThreshold {
		t.Fatalf("without a pause, phi after %v = %.1f, want >= %v (else this test shows nothing)", lossSilence, phi, DefaultThreshold)
	}

	p := newPhi(t, DefaultPhiConfig(200*ms, s))
	p.SetPause(RetransmitPause + rtt)
	if got := p.Config().Pause; got != RetransmitPause+rtt {
		t.Errorf("Config().Pause = %v after SetPause(%v)", got, RetransmitPause+rtt)
	}
	feed(p, 200, gaps(rand.New(rand.NewPCG(3, 4))))
	mean, _, _ := p.Estimate()
	if mean < RetransmitPause+rtt+100*ms {
		t.Errorf("Estimate() mean = %v, want the pause included", mean)
	}
	if phi := p.Phi(lossSilence, 0); phi >= 1 {
		t.Errorf("with the pause, phi after %v = %.2f, want < 1", lossSilence, phi)
	}
	if late := lossSilence + 150*ms; p.Phi(late, 0) >= DefaultThreshold {
		t.Errorf("with the pause, phi after %v = %.2f, want < %v", late, p.Phi(late, 0), DefaultThreshold)
	}
	if v := p.Check(lossSilence, 0); v.Dead {
		t.Errorf("Check after %v: dead (%s)", lossSilence, v.Reason)
	}
	if v := p.Check(s, 0); !v.Dead {
		t.Errorf("Check after the 1s ceiling: alive, want dead")
	}
	p.SetPause(-ms)
	if got := p.Config().Pause; got != 0 {
		t.Errorf("SetPause(-1ms): Pause = %v, want 0", got)
	}
	if err := (PhiConfig{Ceiling: s, FirstGap: 200 * ms, Pause: -ms}).Validate(); err == nil || !strings.Contains(err.Error(), "Pause") {
		t.Errorf("Validate() with a negative Pause = %v, want an error naming Pause", err)
	}
}
