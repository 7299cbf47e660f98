package bufpool

import (
	"runtime"
	"sync"
	"time"
)

// The cache keeps the large buffers put back most recently, up to
// cacheMax bytes, across garbage collections; the rest go to the
// sync.Pools, which drop what stays unused for two collections.
//
// sync.Pool alone does not keep them: at a MiB per call a small heap is
// collected every call or two, a buffer put back is sometimes dropped
// before the next call takes it, and the new one is zeroed and faulted in
// again. The buffers the cache holds count in the live heap, so the
// collector also runs less often for the same garbage
// (docs/benchmarks.md has the measurement).
//
// Buffers unused for a whole sweep period are dropped, so that a process
// that stops sending large messages gives the memory back: the cache
// sweeps at the first garbage collection after each period, and the
// runtime collects at least every two minutes.
const (
	cacheMax = 8 << 20
	// cacheMaxBuf is the largest buffer the cache keeps.
	cacheMaxBuf = 2 << 20
	sweepPeriod = 30 * time.Second
)

var cache struct {
	mu sync.Mutex // protects following
	// cur holds the buffers put back since the last sweep, old those
	// put back in the period before; a sweep drops old.
	cur, old  [Classes][]*[]byte
	bytes     int
	lastSweep time.Time
	armed     bool // a sentinel waits for the next collection (armSweep)
}

// cacheGet takes a buffer of class i from the cache, or returns nil.
func cacheGet(i int) *[]byte {
	c := &cache
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range [...]*[]*[]byte{&c.cur[i], &c.old[i]} {
		if n := len(*l); n > 0 {
			bp := (*l)[n-1]
			(*l)[n-1] = nil
			*l = (*l)[:n-1]
			c.bytes -= cap(*bp)
			return bp
		}
	}
	return nil
}

// cachePut keeps bp, of class i, if there is room, and reports whether it
// did.
func cachePut(i int, bp *[]byte) bool {
	c := &cache
	size := cap(*bp)
	if size > cacheMaxBuf {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes+size > cacheMax {
		return false
	}
	c.cur[i] = append(c.cur[i], bp)
	c.bytes += size
	if !c.armed {
		c.armed = true
		if c.lastSweep.IsZero() {
			c.lastSweep = time.Now()
		}
		armSweep()
	}
	return true
}

// armSweep has the next garbage collection call sweep.
func armSweep() {
	sentinel := &struct{ _ *int }{}
	runtime.AddCleanup(sentinel, func(struct{}) { sweep() }, struct{}{})
}

// sweep runs after a garbage collection: once per sweepPeriod it drops
// the buffers not taken for a whole period. It waits for the next
// collection while the cache holds anything.
func sweep() {
	c := &cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.lastSweep) >= sweepPeriod {
		c.lastSweep = now
		for i := range c.old {
			for _, bp := range c.old[i] {
				c.bytes -= cap(*bp)
			}
			c.old[i], c.cur[i] = c.cur[i], nil
		}
	}
	if c.bytes == 0 {
		c.armed = false
		return
	}
	armSweep()
}
