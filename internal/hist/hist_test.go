package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// The buckets tile [0, maxNS] without gaps, each at most 1/32 of
	// its values wide.
	var next int64
	for i := range buckets {
		lo, hi := bucketRange(i)
		if lo != next || hi < lo {
			t.Fatalf("bucket %d = [%d, %d], want it to start at %d", i, lo, hi, next)
		}
		if w := hi - lo + 1; i >= sub && w*sub > lo {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its values", i, lo, hi, sub)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucketOf(%d), bucketOf(%d) = %d, %d, want %d", lo, hi, bucketOf(lo), bucketOf(hi), i)
		}
		next = hi + 1
	}
	if next-1 != maxNS {
		t.Fatalf("the top bucket ends at %d, want %d", next-1, maxNS)
	}
	if got := bucketOf(int64(time.Hour)); got != buckets-1 {
		t.Errorf("bucketOf(1h) = %d, want the top bucket %d", got, buckets-1)
	}
	if got := bucketOf(-1); got != 0 {
		t.Errorf("bucketOf(-1) = %d, want 0", got)
	}
}

// histExactQuantile is the value of rank ceil(q·n) in sorted, as Quantile
// defines it.
func histExactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func TestHistogramQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	us := float64(time.Microsecond)
	logUniform := func(lo, hi time.Duration) func() time.Duration {
		return func() time.Duration {
			return time.Duration(math.Exp(math.Log(float64(lo)) + r.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
		}
	}
	tests := []struct {
		name string
		n    int
		gen  func() time.Duration
	}{
		{"uniform 1µs-1ms", 100000, func() time.Duration { return time.Duration((1 + r.Float64()*999) * us) }},
		{"exponential mean 100µs", 100000, func() time.Duration { return 20*time.Microsecond + time.Duration(r.ExpFloat64()*100*us) }},
		{"lognormal median 200µs", 100000, func() time.Duration { return time.Duration(200 * us * math.Exp(r.NormFloat64())) }},
		{"bimodal 50µs and 10ms", 50000, func() time.Duration {
			if r.IntN(10) == 0 {
				return time.Duration((10000 + r.NormFloat64()*500) * us)
			}
			return time.Duration((50 + r.NormFloat64()*5) * us)
		}},
		{"log-uniform 1µs-60s", 100000, logUniform(time.Microsecond, 60*time.Second)},
		{"nanoseconds 0-100", 1000, func() time.Duration { return time.Duration(r.IntN(101)) }},
		{"constant 42µs", 1000, func() time.Duration { return 42 * time.Microsecond }},
		{"one value", 1, func() time.Duration { return 1234567 }},
		{"two values", 2, logUniform(time.Microsecond, time.Second)},
	}
	qs := []float64{0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			vals := make([]time.Duration, tt.n)
			var sum time.Duration
			for i := range vals {
				vals[i] = tt.gen()
				sum += vals[i]
				h.Record(vals[i])
			}
			slices.Sort(vals)
			if h.Count() != uint64(tt.n) || h.Min() != vals[0] || h.Max() != vals[len(vals)-1] || h.Mean() != sum/time.Duration(tt.n) {
				t.Errorf("Count, Min, Max, Mean = %d, %v, %v, %v; want %d, %v, %v, %v",
					h.Count(), h.Min(), h.Max(), h.Mean(), tt.n, vals[0], vals[len(vals)-1], sum/time.Duration(tt.n))
			}
			for _, q := range qs {
				want := histExactQuantile(vals, q)
				got := h.Quantile(q)
				lo, hi := bucketRange(bucketOf(int64(want)))
				if diff := (got - want).Abs(); diff > time.Duration(hi-lo) {
					t.Errorf("Quantile(%v) = %v, want %v within its bucket's width %dns", q, got, want, hi-lo)
				}
				if want >= sub && math.Abs(float64(got-want))/float64(want) > 1.0/sub {
					t.Errorf("Quantile(%v) = %v, want %v within %.1f%%", q, got, want, 100.0/sub)
				}
			}
			if got := h.Quantile(1); got != vals[len(vals)-1] {
				t.Errorf("Quantile(1) = %v, want the max %v", got, vals[len(vals)-1])
			}
			if got := h.Quantile(0); got != vals[0] {
				t.Errorf("Quantile(0) = %v, want the min %v", got, vals[0])
			}
		})
	}
}

func TestHistogramMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var whole Histogram
	parts := make([]Histogram, 8)
	for i := range 20000 {
		d := time.Duration(r.Int64N(int64(50 * time.Millisecond)))
		whole.Record(d)
		parts[i%len(parts)].Record(d)
	}
	var merged Histogram
	merged.Merge(new(Histogram)) // an empty one changes nothing
	for i := range parts {
		merged.Merge(&parts[i])
	}
	if merged != whole {
		t.Fatalf("merged parts differ from the whole: count %d/%d min %v/%v max %v/%v mean %v/%v",
			merged.Count(), whole.Count(), merged.Min(), whole.Min(), merged.Max(), whole.Max(), merged.Mean(), whole.Mean())
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Count() != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 || h.Quantile(0.5) != 0 || h.Rows(10) != nil {
		t.Errorf("an empty histogram reports values")
	}
	h.Record(-time.Second)
	if h.Min() != 0 || h.Quantile(1) != 0 {
		t.Errorf("a negative duration: min %v, max quantile %v; want 0", h.Min(), h.Quantile(1))
	}
	// Beyond the range: counted in the top bucket, Max exact, quantiles
	// never above Max.
	h.Record(100 * time.Second)
	h.Record(100 * time.Second)
	if h.Max() != 100*time.Second || h.Count() != 3 {
		t.Errorf("max %v, count %d; want 100s, 3", h.Max(), h.Count())
	}
	if q := h.Quantile(0.9); q > h.Max() || q < maxNS/2 {
		t.Errorf("Quantile(0.9) = %v, want in the top bucket and at most Max", q)
	}
}

func TestHistogramRows(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, tt := range []struct {
		name   string
		lo, hi time.Duration
	}{
		{"narrow", 40 * time.Microsecond, 60 * time.Microsecond},
		{"loopback", 20 * time.Microsecond, 15 * time.Millisecond},
		{"wide", time.Microsecond, 60 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for range 10000 {
				f := r.Float64()
				h.Record(time.Duration(math.Exp(math.Log(float64(tt.lo)) + f*(math.Log(float64(tt.hi))-math.Log(float64(tt.lo))))))
			}
			rows := h.Rows(20)
			if len(rows) == 0 || len(rows) > 20 {
				t.Fatalf("%d rows, want 1 to 20", len(rows))
			}
			var total uint64
			for i, row := range rows {
				total += row.Count
				if i > 0 && row.Le <= rows[i-1].Le {
					t.Errorf("row %d: bound %v not above %v", i, row.Le, rows[i-1].Le)
				}
			}
			if total != h.Count() {
				t.Errorf("rows hold %d values, want %d", total, h.Count())
			}
			if lastLe := rows[len(rows)-1].Le; lastLe < h.Max() || rows[0].Le < h.Min() {
				t.Errorf("rows %v..%v do not cover [%v, %v]", rows[0].Le, rows[len(rows)-1].Le, h.Min(), h.Max())
			}
			if rows[0].Count == 0 || rows[len(rows)-1].Count == 0 {
				t.Errorf("first or last row empty: %v", rows)
			}
		})
	}
	// Values on round bounds land in their row.
	var h Histogram
	for range 3 {
		h.Record(100 * time.Microsecond)
	}
	h.Record(200 * time.Microsecond)
	rows := h.Rows(20)
	want := []Row{{100 * time.Microsecond, 3}, {120 * time.Microsecond, 0}, {150 * time.Microsecond, 0}, {200 * time.Microsecond, 1}}
	if !slices.Equal(rows, want) {
		t.Errorf("rows = %v, want %v", rows, want)
	}

	// A Max just above a bound, in a bucket whose middle is below it, still
	// gets a row of its own: the rows reach Max.
	h = Histogram{}
	for range 5 {
		h.Record(time.Millisecond)
	}
	h.Record(1209034 * time.Nanosecond)
	rows = h.Rows(20)
	want = []Row{{time.Millisecond, 5}, {1200 * time.Microsecond, 0}, {1500 * time.Microsecond, 1}}
	if !slices.Equal(rows, want) {
		t.Errorf("rows = %v, want %v", rows, want)
	}
	// Min and Max in one bucket: one row, reaching Max.
	h = Histogram{}
	h.Record(1199 * time.Microsecond)
	h.Record(1201 * time.Microsecond)
	rows = h.Rows(20)
	if len(rows) != 1 || rows[0].Count != 2 || rows[0].Le < h.Max() {
		t.Errorf("rows = %v, want one row of 2 reaching %v", rows, h.Max())
	}
}
