// Package bufpool holds Pulse's process-wide buffers: small encode
// buffers in a sync.Pool, and large buffers (messages sent or received in
// several frames) by size class, the most recently used few MiB kept in a
// cache that survives garbage collections. Every buffer given back is
// reused or let go; an idle process keeps none.
package bufpool

import (
	"math/bits"
	"sync"
)

// MaxKept is the largest buffer that Put keeps in the small pool; larger
// ones go to the size classes.
const MaxKept = 256 << 10

var small = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Get returns an empty buffer from the small pool.
func Get() *[]byte { return small.Get().(*[]byte) }

// Put gives b back: to the small pool, or to its size class when it has
// grown past MaxKept.
func Put(b *[]byte) {
	if cap(*b) > MaxKept {
		PutLarge(b)
		return
	}
	*b = (*b)[:0]
	small.Put(b)
}

// Large buffers are pooled by size class: four classes per power of two,
// from 32 KiB to 112 MiB. Without them every large message allocated its
// buffers anew, and at a few MiB per call the garbage collector ran after
// every call or two. The most recent few MiB are kept in the cache
// (cache.go), the rest in sync.Pools; both let go of what stays unused.
const (
	// MinLargeShift is the log2 of the smallest class.
	MinLargeShift = 15
	maxLargeShift = 26
)

// Classes is the number of large size classes.
const Classes = (maxLargeShift - MinLargeShift + 1) * 4

var largePools [Classes]sync.Pool

// Class returns the index of the smallest class of at least n bytes, and
// its size; -1 when n is over the largest class.
func Class(n int) (int, int) {
	if n <= 1<<MinLargeShift {
		return 0, 1 << MinLargeShift
	}
	k := bits.Len(uint(n-1)) - 1 // 2^k < n <= 2^(k+1)
	j := (n-1)>>(k-2) + 1 - 4    // ceil(n / 2^(k-2)) - 4, in 1..4
	if j == 4 {
		k, j = k+1, 0
	}
	if k > maxLargeShift {
		return -1, 0
	}
	return (k-MinLargeShift)*4 + j, (4 + j) << (k - 2)
}

// GetLarge returns an empty buffer with room for at least n bytes.
func GetLarge(n int) *[]byte {
	i, size := Class(n)
	if i < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if bp := cacheGet(i); bp != nil {
		return bp
	}
	if bp, ok := largePools[i].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, size)
	return &b
}

// PutLarge pools b in the largest class its capacity covers; a buffer
// under the smallest class or over the largest is let go.
func PutLarge(bp *[]byte) {
	c := cap(*bp)
	if c < 1<<MinLargeShift {
		return
	}
	k := bits.Len(uint(c)) - 1
	if k > maxLargeShift {
		return
	}
	j := c>>(k-2) - 4
	*bp = (*bp)[:0]
	if i := (k-MinLargeShift)*4 + j; !cachePut(i, bp) {
		largePools[i].Put(bp)
	}
}
