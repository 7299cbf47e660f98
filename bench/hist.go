package main

import (
	"math"
	"math/bits"
	"time"
)

// A log-linear latency histogram: values below histSub nanoseconds have a
// bucket each; above, every power of two is split into histSub equal
// buckets, so a bucket is at most 1/histSub (3.1 %) of its values wide.
// Recording is a few instructions and never allocates; each load
// goroutine has its own and they are merged at the end.
const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histMaxBits = 42 // values up to 2^42 ns (73 minutes); larger ones land in the last bucket
	histBuckets = (histMaxBits - histSubBits + 1) * histSub
)

type hist struct {
	counts [histBuckets]uint64
	n      uint64
	sum    uint64
	min    uint64
	max    uint64
}

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1 // v>>e is in [histSub, 2*histSub)
	i := (e+1)*histSub + int(v>>uint(e)) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histLow returns the smallest value of bucket i and the bucket's width.
func histLow(i int) (low, width uint64) {
	if i < histSub {
		return uint64(i), 1
	}
	e := i/histSub - 1
	m := uint64(i%histSub + histSub)
	return m << uint(e), 1 << uint(e)
}

func (h *hist) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[histIndex(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

func (h *hist) merge(o *hist) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// quantile returns the value below which a fraction q of the recorded
// values fall: the middle of the bucket holding the value of rank
// ceil(q*n), clamped to the exact minimum and maximum (and exactly those
// for the first and last rank).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	if rank >= h.n {
		return time.Duration(h.max) // the largest value is known exactly
	}
	if rank == 1 {
		return time.Duration(h.min)
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			low, w := histLow(i)
			v := low + (w-1)/2
			v = min(max(v, h.min), h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

func (h *hist) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}
