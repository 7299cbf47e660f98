package pulse

import (
	"runtime"
	"testing"
)

// TestLargeClass: the class chosen for n bytes is the smallest of at least
// n bytes, and a buffer put back lands in a class it fully covers.
func TestLargeClass(t *testing.T) {
	emptyLargeCache(t)
	prev := 0
	for n := 1; n <= 1<<maxLargeShift; n += 1 + n/37 {
		i, size := largeClass(n)
		if i < 0 || size < n {
			t.Fatalf("largeClass(%d) = %d, %d: too small", n, i, size)
		}
		if i < prev {
			t.Fatalf("largeClass(%d) = %d, below the class of a smaller size (%d)", n, i, prev)
		}
		prev = i
		if i > 0 {
			if _, below := largeClass(size * 4 / 5); below == size && size*4/5 >= n {
				t.Fatalf("largeClass(%d) = %d, but a smaller class fits", n, size)
			}
		}
	}
	if i, _ := largeClass(2<<maxLargeShift + 1); i != -1 {
		t.Errorf("largeClass(over the largest) = %d, want -1", i)
	}
	for _, n := range []int{1 << 15, 40000, 1<<20 + 17, 3<<20 + 5, 1 << maxLargeShift} {
		bp := getLarge(n)
		if len(*bp) != 0 || cap(*bp) < n {
			t.Fatalf("getLarge(%d): len %d cap %d", n, len(*bp), cap(*bp))
		}
		putLarge(bp)
		again := getLarge(n)
		if cap(*again) < n {
			t.Fatalf("getLarge(%d) after putLarge: cap %d", n, cap(*again))
		}
	}
	// A buffer of any capacity goes to a class it covers.
	for _, c := range []int{1 << 15, 1<<15 + 1, 45000, 1<<20 - 1, 5 << 20} {
		b := make([]byte, 0, c)
		putLarge(&b)
		i, size := largeClass(c)
		if size > c {
			i-- // the class below
		}
		got := cacheGet(i)
		if got == nil {
			got, _ = largePools[i].Get().(*[]byte)
		}
		if got == nil {
			if c > largeCacheMaxBuf {
				continue // a sync.Pool may drop what it is given (it does at random under -race)
			}
			t.Fatalf("a buffer of cap %d is not in the cache, class %d", c, i)
		}
		if cap(*got) < largeClassSize(i) {
			t.Fatalf("class %d (size %d) holds a buffer of cap %d", i, largeClassSize(i), cap(*got))
		}
	}
}

func largeClassSize(i int) int {
	k, j := i/4+minLargeShift, i%4
	return (4 + j) << (k - 2)
}

// TestLargeCache: large buffers put back are kept across garbage
// collections, up to largeCacheMax bytes, and dropped once unused for a
// whole sweep period.
func TestLargeCache(t *testing.T) {
	emptyLargeCache(t)

	bp := getLarge(1 << 20)
	*bp = append(*bp, "kept"...)
	putLarge(bp)
	runtime.GC()
	runtime.GC()
	if again := getLarge(1 << 20); again != bp {
		t.Fatal("a buffer put back did not survive two collections")
	} else {
		putLarge(again)
	}

	// The cache holds at most largeCacheMax bytes; the rest go to the
	// pools.
	var bufs []*[]byte
	for range 2 * largeCacheMax / (1 << 20) {
		bufs = append(bufs, getLarge(1<<20))
	}
	for _, b := range bufs {
		putLarge(b)
	}
	largeCache.mu.Lock()
	held := largeCache.bytes
	largeCache.mu.Unlock()
	if held > largeCacheMax || held < largeCacheMax/2 {
		t.Fatalf("the cache holds %d bytes after %d MiB were put back; want at most %d and most of it", held, len(bufs), largeCacheMax)
	}
	// Larger buffers are not cached.
	big := getLarge(4 << 20)
	putLarge(big)
	largeCache.mu.Lock()
	if largeCache.bytes != held {
		t.Errorf("a 4 MiB buffer went to the cache")
	}
	largeCache.mu.Unlock()

	// Unused for a period: kept; for two: dropped. A buffer taken in
	// between is kept again.
	sweep := func() {
		largeCache.mu.Lock()
		largeCache.lastSweep = nanotime() - int64(largeSweep)
		largeCache.mu.Unlock()
		sweepLarge()
	}
	sweep()
	taken := getLarge(1 << 20)
	putLarge(taken)
	sweep()
	largeCache.mu.Lock()
	held = largeCache.bytes
	largeCache.mu.Unlock()
	if held != cap(*taken) {
		t.Errorf("after two idle periods the cache holds %d bytes; want only the buffer used since (%d)", held, cap(*taken))
	}
	sweep()
	sweep()
	largeCache.mu.Lock()
	held, armed := largeCache.bytes, largeCache.armed
	largeCache.mu.Unlock()
	if held != 0 || armed {
		t.Errorf("idle cache holds %d bytes (armed %v), want none", held, armed)
	}
}

// emptyLargeCache empties the cache of large buffers, which earlier tests
// may have filled, now and when t ends.
func emptyLargeCache(t *testing.T) {
	empty := func() {
		c := &largeCache
		c.mu.Lock()
		for i := range c.cur {
			c.cur[i], c.old[i] = nil, nil
		}
		c.bytes = 0
		c.mu.Unlock()
	}
	empty()
	t.Cleanup(empty)
}
