package bufpool

import (
	"runtime"
	"testing"
	"time"
)

// TestLargeClass: the class chosen for n bytes is the smallest of at least
// n bytes, and a buffer put back lands in a class it fully covers.
func TestLargeClass(t *testing.T) {
	emptyLargeCache(t)
	prev := 0
	for n := 1; n <= 1<<maxLargeShift; n += 1 + n/37 {
		i, size := Class(n)
		if i < 0 || size < n {
			t.Fatalf("Class(%d) = %d, %d: too small", n, i, size)
		}
		if i < prev {
			t.Fatalf("Class(%d) = %d, below the class of a smaller size (%d)", n, i, prev)
		}
		prev = i
		if i > 0 {
			if _, below := Class(size * 4 / 5); below == size && size*4/5 >= n {
				t.Fatalf("Class(%d) = %d, but a smaller class fits", n, size)
			}
		}
	}
	if i, _ := Class(2<<maxLargeShift + 1); i != -1 {
		t.Errorf("Class(over the largest) = %d, want -1", i)
	}
	for _, n := range []int{1 << 15, 40000, 1<<20 + 17, 3<<20 + 5, 1 << maxLargeShift} {
		bp := GetLarge(n)
		if len(*bp) != 0 || cap(*bp) < n {
			t.Fatalf("GetLarge(%d): len %d cap %d", n, len(*bp), cap(*bp))
		}
		PutLarge(bp)
		again := GetLarge(n)
		if cap(*again) < n {
			t.Fatalf("GetLarge(%d) after PutLarge: cap %d", n, cap(*again))
		}
	}
	// A buffer of any capacity goes to a class it covers.
	for _, c := range []int{1 << 15, 1<<15 + 1, 45000, 1<<20 - 1, 5 << 20} {
		b := make([]byte, 0, c)
		PutLarge(&b)
		i, size := Class(c)
		if size > c {
			i-- // the class below
		}
		got := cacheGet(i)
		if got == nil {
			got, _ = largePools[i].Get().(*[]byte)
		}
		if got == nil {
			if c > cacheMaxBuf {
				continue // a sync.Pool may drop what it is given (it does at random under -race)
			}
			t.Fatalf("a buffer of cap %d is not in the cache, class %d", c, i)
		}
		if cap(*got) < classSize(i) {
			t.Fatalf("class %d (size %d) holds a buffer of cap %d", i, classSize(i), cap(*got))
		}
	}
}

func classSize(i int) int {
	k, j := i/4+MinLargeShift, i%4
	return (4 + j) << (k - 2)
}

// TestLargeCache: large buffers put back are kept across garbage
// collections, up to cacheMax bytes, and dropped once unused for a
// whole sweep period.
func TestLargeCache(t *testing.T) {
	emptyLargeCache(t)

	bp := GetLarge(1 << 20)
	*bp = append(*bp, "kept"...)
	PutLarge(bp)
	runtime.GC()
	runtime.GC()
	if again := GetLarge(1 << 20); again != bp {
		t.Fatal("a buffer put back did not survive two collections")
	} else {
		PutLarge(again)
	}

	// The cache holds at most cacheMax bytes; the rest go to the
	// pools.
	var bufs []*[]byte
	for range 2 * cacheMax / (1 << 20) {
		bufs = append(bufs, GetLarge(1<<20))
	}
	for _, b := range bufs {
		PutLarge(b)
	}
	cache.mu.Lock()
	held := cache.bytes
	cache.mu.Unlock()
	if held > cacheMax || held < cacheMax/2 {
		t.Fatalf("the cache holds %d bytes after %d MiB were put back; want at most %d and most of it", held, len(bufs), cacheMax)
	}
	// Larger buffers are not cached.
	big := GetLarge(4 << 20)
	PutLarge(big)
	cache.mu.Lock()
	if cache.bytes != held {
		t.Errorf("a 4 MiB buffer went to the cache")
	}
	cache.mu.Unlock()

	// Unused for a period: kept; for two: dropped. A buffer taken in
	// between is kept again.
	sweepNow := func() {
		cache.mu.Lock()
		cache.lastSweep = time.Now().Add(-sweepPeriod)
		cache.mu.Unlock()
		sweep()
	}
	sweepNow()
	taken := GetLarge(1 << 20)
	PutLarge(taken)
	sweepNow()
	cache.mu.Lock()
	held = cache.bytes
	cache.mu.Unlock()
	if held != cap(*taken) {
		t.Errorf("after two idle periods the cache holds %d bytes; want only the buffer used since (%d)", held, cap(*taken))
	}
	sweepNow()
	sweepNow()
	cache.mu.Lock()
	held, armed := cache.bytes, cache.armed
	cache.mu.Unlock()
	if held != 0 || armed {
		t.Errorf("idle cache holds %d bytes (armed %v), want none", held, armed)
	}
}

// emptyLargeCache empties the cache of large buffers, which earlier tests
// may have filled, now and when t ends.
func emptyLargeCache(t *testing.T) {
	empty := func() {
		c := &cache
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
