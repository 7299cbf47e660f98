package liveness

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestDefaultBackoff(t *testing.T) {
	want := Backoff{Base: 100 * ms, Factor: 1.6, Cap: 10 * s}
	if got := DefaultBackoff(); got != want {
		t.Errorf("DefaultBackoff() = %+v, want %+v", got, want)
	}
	// The zero value means the defaults.
	for attempt := range 20 {
		if got, want := (Backoff{}).Limit(attempt), DefaultBackoff().Limit(attempt); got != want {
			t.Errorf("Backoff{}.Limit(%d) = %v, want %v", attempt, got, want)
		}
	}
}

func TestBackoffLimit(t *testing.T) {
	tests := []struct {
		b       Backoff
		attempt int
		want    time.Duration
	}{
		{DefaultBackoff(), 0, 100 * ms},
		{DefaultBackoff(), 1, 160 * ms},
		{DefaultBackoff(), 2, 256 * ms},
		{DefaultBackoff(), 9, time.Duration(float64(100*ms) * math.Pow(1.6, 9))}, // 6.87s
		{DefaultBackoff(), 10, 10 * s},
		{DefaultBackoff(), -3, 100 * ms},
		{DefaultBackoff(), 1000, 10 * s},
		{DefaultBackoff(), math.MaxInt, 10 * s},
		{Backoff{Base: s, Factor: 2, Cap: time.Minute}, 5, 32 * s},
		{Backoff{Base: s, Factor: 0.5, Cap: time.Minute}, 5, s}, // no shrinking
		{Backoff{Base: s, Factor: math.NaN(), Cap: time.Minute}, 5, s},
		{Backoff{Base: s, Factor: math.Inf(1), Cap: time.Minute}, 1, time.Minute},
		{Backoff{Base: time.Hour, Factor: 2, Cap: time.Minute}, 0, time.Minute}, // cap below base
		{Backoff{Base: s, Factor: 10, Cap: Never}, 1000, Never},
		{Backoff{Base: s, Factor: 10, Cap: Never}, 18, Never},
	}
	for _, tt := range tests {
		if got := tt.b.Limit(tt.attempt); got != tt.want {
			t.Errorf("%+v.Limit(%d) = %v, want %v", tt.b, tt.attempt, got, tt.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	for _, b := range []Backoff{
		DefaultBackoff(),
		{Base: time.Nanosecond, Factor: 3, Cap: time.Hour},
		{Base: s, Factor: 1, Cap: 5 * s},
		{Base: time.Hour, Factor: 1e6, Cap: Never},
	} {
		prev := time.Duration(0)
		for attempt := range 1001 {
			limit := b.Limit(attempt)
			// The cap-limited exponential, computed independently.
			exp := float64(b.Base) * math.Pow(b.Factor, float64(attempt))
			want := b.Cap
			if exp < float64(b.Cap) {
				want = min(time.Duration(exp), b.Cap)
			}
			if limit != want {
				t.Fatalf("%+v.Limit(%d) = %v, want min(Cap, Base·Factor^n) = %v", b, attempt, limit, want)
			}
			if limit < prev {
				t.Fatalf("%+v.Limit(%d) = %v, less than Limit(%d) = %v", b, attempt, limit, attempt-1, prev)
			}
			prev = limit
			if d := b.Delay(attempt, r.Float64); d < 0 || d > limit {
				t.Fatalf("%+v.Delay(%d) = %v, want in [0, %v]", b, attempt, d, limit)
			}
			if d := b.Delay(attempt, func() float64 { return 1 }); d != limit {
				t.Fatalf("%+v.Delay(%d, 1) = %v, want %v", b, attempt, d, limit)
			}
			if d := b.Delay(attempt, func() float64 { return 0 }); d != 0 {
				t.Fatalf("%+v.Delay(%d, 0) = %v, want 0", b, attempt, d)
			}
			if d := b.Delay(attempt, func() float64 { return math.Nextafter(1, 0) }); d < 0 || d > limit {
				t.Fatalf("%+v.Delay(%d, 1-ε) = %v, want in [0, %v]", b, attempt, d, limit)
			}
		}
	}
}

func TestBackoffDelayRnd(t *testing.T) {
	b := Backoff{Base: s, Factor: 2, Cap: time.Minute}
	for _, tc := range []struct {
		r    float64
		want time.Duration
	}{
		{0.5, 2 * s}, {0.25, s}, {-1, 0}, {math.NaN(), 0}, {2, 4 * s}, {math.Inf(1), 4 * s},
	} {
		if got := b.Delay(2, func() float64 { return tc.r }); got != tc.want {
			t.Errorf("Delay(2, %v) = %v, want %v", tc.r, got, tc.want)
		}
	}
	// A nil rnd uses math/rand/v2; the delays are spread over the range.
	var lo, hi int
	for range 1000 {
		switch d := b.Delay(2, nil); {
		case d < 0 || d > 4*s:
			t.Fatalf("Delay(2, nil) = %v, want in [0, 4s]", d)
		case d < s:
			lo++
		case d > 3*s:
			hi++
		}
	}
	if lo < 100 || hi < 100 {
		t.Errorf("Delay(2, nil): %d of 1000 below 1s and %d above 3s, want about 250 each (full jitter)", lo, hi)
	}
}
