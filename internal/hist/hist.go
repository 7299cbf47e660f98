// Package hist is the latency histogram of the pulse command's bench, the
// benchmark module and the load checker: log-linear buckets, recording
// without allocation, exact merges.
package hist

import (
	"math"
	"math/bits"
	"sort"
	"time"
)

// Histogram is a log-linear latency histogram in the manner of
// HdrHistogram: values in nanoseconds fall into buckets that are exact
// below 32 ns and, above, split each power of two into 32 linear
// sub-buckets, so that a bucket is at most 1/32 (3.1%) of its values wide.
// It covers 0 to 2^36-1 ns (68.7 s) in 1024 counters (8 KiB); larger
// values are counted in the top bucket (Max stays exact). Count, Min, Max
// and Mean are exact; Quantile is within one bucket of the exact value.
//
// A Histogram is not safe for concurrent use: each goroutine records into
// its own and they are merged at the end.
type Histogram struct {
	counts   [buckets]uint64
	n        uint64
	sum      uint64 // nanoseconds
	min, max int64  // nanoseconds, valid when n > 0
}

const (
	subBits = 5
	sub     = 1 << subBits // linear sub-buckets per power of two
	maxBits = 36           // values up to 1<<maxBits - 1 ns
	buckets = (maxBits - subBits + 1) << subBits
	maxNS   = 1<<maxBits - 1
)

// bucketOf returns the index of the bucket holding v nanoseconds.
func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v > maxNS {
		v = maxNS
	}
	u := uint64(v)
	if u < sub {
		return int(u)
	}
	shift := bits.Len64(u) - 1 - subBits
	return (shift+1)<<subBits + int((u>>shift)&(sub-1))
}

// bucketRange returns the smallest and largest values (inclusive) that
// fall into bucket i.
func bucketRange(i int) (lo, hi int64) {
	e := i >> subBits
	if e == 0 {
		return int64(i), int64(i)
	}
	shift := e - 1
	lo = int64(sub+i&(sub-1)) << shift
	return lo, lo + 1<<shift - 1
}

// Record adds one value; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.n++
	h.sum += uint64(v)
}

// Merge adds the values recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.n == 0 || o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest value recorded (0 when empty).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest value recorded (0 when empty).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean of the values recorded (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of the values recorded: the
// value of rank ceil(q·Count) in sorted order, to within the width of its
// bucket (the middle of the bucket is returned, kept within [Min, Max]),
// and exact for the first and last ranks (Min and Max).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	switch {
	case rank <= 1:
		return time.Duration(h.min) // the smallest value is known exactly
	case rank >= h.n:
		return time.Duration(h.max) // and so is the largest
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// Row is one row of a histogram as displayed: the values in
// (previous row's Le, Le].
type Row struct {
	Le    time.Duration
	Count uint64
}

// niceSeries are the bounds per decade that Rows may use, finest first.
var niceSeries = [][]float64{
	{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8},
	{1, 1.5, 2, 3, 5, 7},
	{1, 2, 5},
	{1},
}

// niceBounds returns the bounds of series from 10 ns to 1000 s.
func niceBounds(series []float64) []int64 {
	var b []int64
	for p := 1e1; p < 1e12; p *= 10 {
		for _, m := range series {
			b = append(b, int64(math.Round(m*p)))
		}
	}
	return b
}

// Rows groups the buckets into at most maxRows rows on a logarithmic scale
// with round bounds (…, 100µs, 150µs, 200µs, 300µs, …), the finest series
// that fits, from the row holding Min to the row holding Max. Each bucket
// goes to the row of its middle value, so a row's count is exact to within
// one bucket width (3%) of its bound; the buckets holding Min and Max go
// to the rows of Min and Max, so that the rows cover both: the last row's
// bound is never below Max.
func (h *Histogram) Rows(maxRows int) []Row {
	if h.n == 0 {
		return nil
	}
	var bounds []int64
	first, last := 0, 0
	for _, s := range niceSeries {
		bounds = niceBounds(s)
		first, last = rowOf(bounds, h.min), rowOf(bounds, h.max)
		if last-first+1 <= maxRows {
			break
		}
	}
	rows := make([]Row, last-first+1)
	for i := range rows {
		if first+i < len(bounds) {
			rows[i].Le = time.Duration(bounds[first+i])
		} else {
			rows[i].Le = time.Duration(h.max)
		}
	}
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		lo, hi := bucketRange(i)
		mid := lo + (hi-lo)/2
		if lo <= h.min {
			mid = h.min
		}
		if hi >= h.max {
			mid = h.max
		}
		r := min(max(rowOf(bounds, mid)-first, 0), len(rows)-1)
		rows[r].Count += c
	}
	// When Min and Max share a bucket, it goes to the row of Max, and the
	// row of Min before it is empty.
	for len(rows) > 1 && rows[0].Count == 0 {
		rows = rows[1:]
	}
	return rows
}

// rowOf returns the index of the first bound ≥ v (len(bounds) if none).
func rowOf(bounds []int64, v int64) int {
	return sort.Search(len(bounds), func(i int) bool { return bounds[i] >= v })
}
