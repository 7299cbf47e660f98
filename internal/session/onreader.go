package session

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/pulse-rpc/pulse/internal/service"
)

// Running calls on the reader.
//
// A call could always run on a worker: the reader hands it over and goes
// back to reading. For the short methods most services have, that
// hand-over is most of what the call costs: waking the worker wakes a
// second thread, and the two trade the connection's state between their
// caches. So the reader runs the call itself, as an event loop would, if
// the call is alone or its method is short (it took under burstMax
// lately: running longer methods one after another would keep workers on
// other cores idle while calls wait), whether or not other calls of the
// peer's run on workers meanwhile: under a steady load some always do, and
// requiring none would send every call to a worker for good once one had
// gone there. When more calls are buffered behind it, its reply is queued
// and held (up to heldMax replies and heldBytes queued), and the reader
// writes the held replies in one system call once it has handled what it
// read (readFrames); a lone call's reply is written at once. No write
// waits for the socket (flushNowUnlock). A burst of small calls thus
// costs one read, one write and no goroutine switch.
//
// A reader busy in a method cannot read, and must not stay so for long:
// heartbeats from the peer would go unanswered, CANCEL frames unread, and
// a method that calls back to the peer over the same connection would wait
// for a reply that nobody reads. A watchdog hands the reader's job to a
// worker when a method has run for onReaderMax: that worker reads on (and
// the calls behind go to workers while the slow one runs), the held
// replies are written, and the goroutine that ran the method, once it
// returns, is no longer the reader. The method then runs on workers for
// its next offReaderCalls calls, from the moment the watchdog moves the
// reader (so that the calls of a slow method that arrive meanwhile do
// not each take a reader for onReaderMax). So a slow method costs what it always
// did, plus now and then about two onReaderMax of delay for the frames
// behind it; a fast one (the usual case) costs no goroutine switch.
//
// Calls run on the reader only where the reply can be written without
// waiting, sockets that can park (Linux, TCP and Unix; not TLS).

const (
	// onReaderMax is how long a method may hold the reader.
	onReaderMax = time.Millisecond
	// onReaderIdleTicks is how many empty watchdog rounds the watchdog
	// waits before it exits, so that one is not started for every call.
	onReaderIdleTicks = 100
	// offReaderCalls is how many calls of a method that held a reader
	// for onReaderMax run on workers before it is tried on a reader
	// again.
	offReaderCalls = 1000
	// burstMax is how long a method may take and still run on the reader
	// with calls waiting behind it: about what handing it to a worker
	// costs. A longer method would make the calls behind it wait, where
	// workers on other cores could run them in parallel; it runs on
	// workers for its next offReaderCalls calls that arrive with others.
	burstMax = 20 * time.Microsecond
	// slowStep and slowScore: see timedOnReader.
	slowStep  = 4
	slowScore = 16
	// heldMax and heldBytes bound the replies of methods run on the
	// reader that wait for the reader to flush them together: how many
	// (heldN is a uint8), and how many bytes may be queued (the size of a
	// read buffer: one write per read of small calls).
	heldMax   = 255
	heldBytes = readBufferSize
)

// errReaderMoved tells the reader loop that it is no longer the reader.
var errReaderMoved = errors.New("pulse: the reader moved to another goroutine")

// onReaderShard tracks the sessions whose reader runs a method. Sessions
// are spread over shards so that busy connections do not share one lock.
type onReaderShard struct {
	mu       sync.Mutex
	runs     []onReaderRun
	watching bool     // a watchdog goroutine runs for this shard
	_        [24]byte // one cache line per shard (64 bytes)
}

type onReaderRun struct {
	s     *Session
	mt    *service.Method
	start int64 // procNanotime
	moved bool  // the watchdog gave the reader's job to a worker
}

var onReaderShards [8]onReaderShard

func (s *Session) onReaderShard() *onReaderShard {
	return &onReaderShards[s.shard(len(onReaderShards))]
}

// shard spreads sessions over n shards of a table, by address: sessions
// are allocated one size class apart.
func (s *Session) shard(n int) int {
	return int(uintptr(unsafe.Pointer(s)) / unsafe.Sizeof(Session{}) % uintptr(n))
}

// serveOnReader runs the call on the reader goroutine if it may: the reply
// can be written without waiting, mt has not held a reader too long
// lately (nor been long lately, with calls waiting behind it), and no
// method of this session still runs on a goroutine that was the reader. It reports whether it ran the call, and
// whether the reader's job moved to another goroutine meanwhile. Called
// by the reader.
func (s *Session) serveOnReader(ctx context.Context, cancel context.CancelFunc, id uint32, msgBytes int, svc *service.Service, mt *service.Method, argv reflect.Value) (served, readerMoved bool) {
	if s.park.socket() == nil || s.sendFull.Load() {
		return false, false
	}
	burst := s.fr.Buffered() != 0
	sh := s.onReaderShard()
	sh.mu.Lock()
	for i := range sh.runs {
		if sh.runs[i].s == s {
			sh.mu.Unlock()
			return false, false
		}
	}
	// Looked at under the lock, after the runs: finish marks mt under it
	// before it removes the run of a call that held the reader.
	if mt.Sched.OffReader.Load() > 0 {
		mt.Sched.OffReader.Add(-1)
		sh.mu.Unlock()
		return false, false
	}
	if burst && mt.Sched.OffBurst.Load() > 0 {
		mt.Sched.OffBurst.Add(-1)
		sh.mu.Unlock()
		return false, false
	}
	// With more calls buffered, the reply waits for the reader to flush
	// it with theirs (readFrames), up to heldMax replies; otherwise it is
	// written at once with those held. (Decided before the watchdog can
	// see this run and hand the reading, and heldN, to another
	// goroutine.)
	mode := noWait
	if burst && s.heldN < heldMax {
		mode = held
		s.heldN++
	} else {
		s.heldN = 0
	}
	start := procNanotime()
	sh.runs = append(sh.runs, onReaderRun{s: s, mt: mt, start: start})
	if !sh.watching {
		sh.watching = true
		go sh.watch()
	}
	sh.mu.Unlock()
	returned := false
	defer func() {
		if !returned {
			// The method ended this goroutine (runtime.Goexit): someone
			// else must read, and write what was held.
			if !sh.finish(s, nil, 0) {
				s.baton.pass() // this goroutine ended in the method: the role goes on
				s.pool().run(handlerTask{s: s, read: true})
			}
			s.mu.Lock()
			s.kickUnlock(false)
		}
	}()
	s.serve(ctx, cancel, false, id, msgBytes, svc, mt, argv, mode)
	returned = true
	readerMoved = sh.finish(s, mt, procNanotime()-start)
	if readerMoved && mode == held {
		// The reader that took over may have flushed before this reply
		// was queued.
		s.mu.Lock()
		s.kickUnlock(false)
	}
	return true, readerMoved
}

// timedOnReader takes how long (ns) a call of mt took on a reader. (A
// call that held the reader for onReaderMax was already sent off the
// reader by the watchdog, when it moved the reader.) Wall time is noisy: the thread can lose its core in the middle of any call.
// So one long call is not enough to call a method long: each long call
// adds slowStep to a score and each short one takes one off, and the
// method runs on workers when called in bursts for its next
// offReaderCalls calls once the score reaches slowScore. A method that
// is always long gets there in four calls; a short one whose calls are
// long one time in ten never does.
func timedOnReader(mt *service.Method, d int64) {
	if d > int64(burstMax) {
		if mt.Sched.SlowScore.Add(slowStep) >= slowScore {
			mt.Sched.SlowScore.Store(0)
			mt.Sched.OffBurst.Store(offReaderCalls)
		}
	} else if mt.Sched.SlowScore.Load() > 0 {
		mt.Sched.SlowScore.Add(-1)
	}
}

// finish removes s's run and reports whether its reader moved meanwhile.
// Given mt, whose call ran d ns, it first tells mt (timedOnReader), so
// that the session's next call, which waits for the run to go, sees it.
func (sh *onReaderShard) finish(s *Session, mt *service.Method, d int64) (readerMoved bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for i := range sh.runs {
		if r := &sh.runs[i]; r.s == s {
			readerMoved = r.moved
			if mt != nil {
				timedOnReader(mt, d)
			}
			last := len(sh.runs) - 1
			sh.runs[i] = sh.runs[last]
			sh.runs[last] = onReaderRun{}
			sh.runs = sh.runs[:last]
			break
		}
	}
	return readerMoved
}

// watch moves the reader's job off the methods that hold it too long. It
// exits after onReaderIdleTicks rounds with no method on a reader, or at
// once when no session is left.
func (sh *onReaderShard) watch() {
	var move []*Session
	for idle := 0; ; {
		time.Sleep(onReaderMax)
		sh.mu.Lock()
		if len(sh.runs) == 0 {
			if idle++; idle >= onReaderIdleTicks || liveSessions.Load() == 0 {
				sh.watching = false
				sh.mu.Unlock()
				return
			}
		} else {
			idle = 0
		}
		now := procNanotime()
		for i := range sh.runs {
			if r := &sh.runs[i]; !r.moved && now-r.start >= int64(onReaderMax) {
				r.moved = true
				r.mt.Sched.OffReader.Store(offReaderCalls)
				move = append(move, r.s)
			}
		}
		sh.mu.Unlock()
		for i, s := range move {
			s.baton.pass() // the reader is busy in a method: its role goes on
			s.pool().run(handlerTask{s: s, read: true})
			s.mu.Lock()
			s.kickUnlock(false) // replies held for the reader that moved
			move[i] = nil
		}
		move = move[:0]
	}
}
