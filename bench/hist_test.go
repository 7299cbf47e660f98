package main

import (
	"math"
	"testing"
	"time"
)

func TestHistIndexContinuous(t *testing.T) {
	// Every bucket's low bound maps back to the bucket, and the buckets
	// tile the values without gaps.
	for i := 0; i < histBuckets-1; i++ {
		low, w := histLow(i)
		if got := histIndex(low); got != i {
			t.Fatalf("histIndex(%d) = %d, want %d", low, got, i)
		}
		if got := histIndex(low + w - 1); got != i {
			t.Fatalf("histIndex(%d) (top of bucket %d) = %d", low+w-1, i, got)
		}
		if next, _ := histLow(i + 1); next != low+w {
			t.Fatalf("bucket %d ends at %d, bucket %d starts at %d", i, low+w, i+1, next)
		}
		if i >= histSub && float64(w)/float64(low) > 1.0/histSub+1e-12 {
			t.Fatalf("bucket %d is %d wide at %d: more than 1/%d", i, w, low, histSub)
		}
	}
	if got := histIndex(math.MaxUint64); got != histBuckets-1 {
		t.Errorf("histIndex(max) = %d, want the last bucket", got)
	}
}

func TestHistQuantilesUniform(t *testing.T) {
	var h hist
	// 1 µs .. 100 ms in 100 ns steps: a million values, uniform.
	for v := 1000; v <= 100_000_000; v += 100 {
		h.record(time.Duration(v))
	}
	for _, c := range []struct {
		q    float64
		want float64
	}{
		{0.5, 50e6}, {0.9, 90e6}, {0.99, 99e6}, {0.999, 99.9e6}, {0, 1000}, {1, 100e6},
	} {
		got := float64(h.quantile(c.q))
		if rel := math.Abs(got-c.want) / c.want; rel > 1.0/histSub {
			t.Errorf("quantile(%v) = %v, want %v within %.1f%%", c.q, got, c.want, 100.0/histSub)
		}
	}
	if h.min != 1000 || h.max != 100_000_000 {
		t.Errorf("min, max = %d, %d", h.min, h.max)
	}
	if got, want := float64(h.mean()), 50_000_500.0; math.Abs(got-want) > 1 {
		t.Errorf("mean = %v, want %v", got, want)
	}
}

func TestHistQuantilesKnown(t *testing.T) {
	// 990 calls of 10 µs, 9 of 1 ms, 1 of 50 ms: p50 = 10 µs, p99 = 10 µs
	// (rank 990), p99.9 = 1 ms (rank 999), max 50 ms.
	var a, b hist
	for range 990 {
		a.record(10 * time.Microsecond)
	}
	for range 9 {
		b.record(time.Millisecond)
	}
	b.record(50 * time.Millisecond)
	var h hist
	h.merge(&a)
	h.merge(&b)
	h.merge(&hist{}) // merging an empty histogram changes nothing
	if h.n != 1000 {
		t.Fatalf("n = %d", h.n)
	}
	within := func(got time.Duration, want time.Duration) bool {
		return math.Abs(float64(got-want)) <= float64(want)/histSub
	}
	if p := h.quantile(0.5); !within(p, 10*time.Microsecond) {
		t.Errorf("p50 = %v", p)
	}
	if p := h.quantile(0.99); !within(p, 10*time.Microsecond) {
		t.Errorf("p99 = %v", p)
	}
	if p := h.quantile(0.999); !within(p, time.Millisecond) {
		t.Errorf("p99.9 = %v", p)
	}
	if p := h.quantile(1); p != 50*time.Millisecond {
		t.Errorf("p100 = %v, want the exact maximum", p)
	}
	if h.min != uint64(10*time.Microsecond) {
		t.Errorf("min = %v", time.Duration(h.min))
	}
	// Small values are exact.
	var s hist
	for _, v := range []time.Duration{3, 1, 2} {
		s.record(v)
	}
	if s.quantile(0.5) != 2 || s.quantile(0) != 1 || s.quantile(1) != 3 {
		t.Errorf("small values: p0 %v p50 %v p100 %v", s.quantile(0), s.quantile(0.5), s.quantile(1))
	}
	var empty hist
	if empty.quantile(0.99) != 0 || empty.mean() != 0 {
		t.Error("empty histogram should report zeros")
	}
}

func TestHistRecordDoesNotAllocate(t *testing.T) {
	h := new(hist)
	if n := testing.AllocsPerRun(1000, func() { h.record(1234 * time.Nanosecond) }); n != 0 {
		t.Errorf("record allocates %v times per call", n)
	}
}
