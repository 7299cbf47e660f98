package session

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/bufpool"
	"github.com/pulse-rpc/pulse/wire"
)

// wbuf is a write buffer. The lanes take one from wbufPool when a frame is
// queued and the writer returns it once written, so an idle connection
// holds no write buffer.
type wbuf struct{ b []byte }

var wbufPool = sync.Pool{New: func() any { return &wbuf{b: make([]byte, 0, 4096)} }}

func putWbuf(w *wbuf) {
	if w == nil {
		return
	}
	if cap(w.b) > bufpool.MaxKept {
		// A lane that grew under load (growLane): its buffer goes back to
		// the size classes, which let it go within two collections if no
		// other lane needs it.
		b := w.b[:0]
		bufpool.PutLarge(&b)
		return
	}
	w.b = w.b[:0]
	wbufPool.Put(w)
}

// growLane gives w room for n bytes, in a buffer from the pooled size
// classes. A lane collects the replies (or calls) queued while a write is
// in progress, hundreds of them under load: growing it by append made a
// new, larger buffer at each doubling, garbage as soon as it was written
// (4 KiB replies at 256 calls in flight: a quarter of the server's CPU in
// growslice and the collections it caused).
func growLane(w *wbuf, n int) {
	bp := bufpool.GetLarge(max(n, 2*cap(w.b)))
	old := w.b
	w.b = append((*bp)[:0], old...)
	if cap(old) >= 1<<bufpool.MinLargeShift {
		bufpool.PutLarge(&old)
	}
}

// lane returns *l, taking a buffer from the pool if it is nil.
func lane(l **wbuf) *wbuf {
	if *l == nil {
		*l = wbufPool.Get().(*wbuf)
	}
	return *l
}

// outMsg is a message too large for one frame. The writer sends it one
// frame at a time, so that control frames and small messages go between.
type outMsg struct {
	id      uint32
	typ     wire.FrameType
	body    []byte
	buf     *[]byte // pooled buffer holding body
	off     int     // bytes of body already handed to the writer
	aborted bool    // abandoned by the caller; protected by session.mu
	failed  bool    // the write of its last frame failed; protected by session.mu
	sent    atomic.Bool
}

// yieldBelow is the size of the queued small frames under which a writer
// yields once to other goroutines before it writes, when other calls are in
// flight: more frames may join the same write.
const yieldBelow = 16 << 10

// getBufFor returns a buffer for a message whose body encodes v: a large
// pooled one when v is a byte slice that large (the raw codec and
// RawMessage encode it as it is), so that the encoding does not grow a
// small buffer into a new large one for every message.
func getBufFor(v any, extra int) *[]byte {
	if n := byteLen(v) + extra; n > bufpool.MaxKept {
		return bufpool.GetLarge(n)
	}
	return bufpool.Get()
}

// byteLen returns the length of v when it is a byte slice, else 0.
func byteLen(v any) int {
	switch b := v.(type) {
	case []byte:
		return len(b)
	case codec.RawMessage:
		return len(b)
	}
	if p := rawSlice(v); p != nil {
		return len(*p)
	}
	return 0
}

// writeMode says who writes a queued frame.
type writeMode uint8

const (
	// background: a writer goroutine. The reader uses it: it must never
	// wait on a write.
	background writeMode = iota
	// inline: the calling goroutine, waiting for the socket if it must.
	inline
	// noWait: the calling goroutine writes what the socket takes at once
	// and leaves the rest to a writer goroutine (flushNowLocked): the
	// reader's PONGs, the monitor's PINGs, and the replies of methods run
	// on the reader (serveOnReader).
	noWait
	// held: the frame waits in the queue for the reader to flush it
	// (noWait) once it has handled what it has buffered.
	held
)

// kickLocked makes sure a writer will send what is queued, then unlocks
// s.mu. With inline set and only small frames queued, the calling
// goroutine becomes the writer: the write happens without a goroutine
// switch, and frames others queue meanwhile go out in the same loop.
func (s *Session) kickLocked(inline bool) {
	if s.writing || s.closed || s.writeClosed {
		s.mu.Unlock()
		return
	}
	s.writing = true
	if inline && len(s.large) == 0 {
		s.mu.Unlock()
		s.writeLoop(true)
		return
	}
	s.mu.Unlock()
	go s.writeLoop(false)
}

// writeLoop writes queued frames until the queues are empty. Each round
// writes, in one system call where the transport allows it, all queued
// control frames, then all queued small frames, then a run of frames of
// the first large message (largewrite.go).
func (s *Session) writeLoop(inline bool) {
	var (
		arr     [3][]byte
		yielded bool
		sc      *largeRound // scratch of the rounds with frames of a large message
	)
	defer func() {
		if sc != nil {
			roundPool.Put(sc)
		}
	}()
	for {
		s.mu.Lock()
		if s.closed {
			s.stopWritingLocked()
			s.mu.Unlock()
			return
		}
		if inline && len(s.large) > 0 {
			// Large messages take many rounds: leave them to a background
			// writer so that the caller is not held.
			s.mu.Unlock()
			go s.writeLoop(false)
			return
		}
		if !yielded && s.data != nil && len(s.data.b) < yieldBelow && len(s.pending)+int(s.running.Load()) > 1 {
			// Other calls are in flight on this connection, so other
			// goroutines (callers woken by a burst of replies, handlers
			// of a burst of calls) may be about to queue frames: let
			// them run first, once, and write their frames together
			// with this one in one system call. A lone call (1x1) does
			// not wait.
			yielded = true
			s.mu.Unlock()
			runtime.Gosched()
			continue
		}
		ctrlw, dataw := s.ctrl, s.data
		var ctrl, data []byte
		if ctrlw != nil {
			ctrl = ctrlw.b
		}
		if dataw != nil {
			data = dataw.b
		}
		// The large part of the round: an abort frame for an abandoned
		// message that was partly sent, or frames of the first message
		// (largeRound).
		var (
			large []byte  // an abort frame
			m     *outMsg // the message whose frames this round carries
		)
		for len(s.large) > 0 && large == nil && m == nil {
			first := s.large[0]
			if sc == nil {
				sc = roundPool.Get().(*largeRound)
				// One look under s.mu per writer run that sends a large
				// message; the looks between its rounds come after each
				// write, outside the lock.
				sc.budget = s.roundBudget()
			}
			if first.aborted {
				s.large = s.large[1:]
				if first.off > 0 {
					large = wire.AppendHeader(sc.hdrs[:0], wire.TypeContinuation, wire.FlagEnd|wire.FlagAbort, first.id, 0)
				}
				bufpool.Put(first.buf)
				continue
			}
			m = first
			// The round's control frames and small messages go in the
			// same write, ahead of the run: a cut run takes what is left
			// of the budget, so that the write still ends on a segment
			// boundary, unless they fill most of it.
			budget := sc.budget
			if p := len(ctrl) + len(data); budget > 0 && p < budget/2 {
				budget -= p
			}
			if sc.next(m, s.maxFrame, budget) {
				s.large = s.large[1:] // its last frame is in this round
			}
		}
		if len(s.large) == 0 {
			s.large = nil
		}
		if len(ctrl) == 0 && len(data) == 0 && large == nil && m == nil {
			s.stopWritingLocked()
			s.mu.Unlock()
			return
		}
		s.ctrl, s.data = nil, nil
		// Until the write returns, the peer may get any of these bytes:
		// a call among them counts as sent if the connection fails now.
		s.handed = s.queued
		s.mu.Unlock()

		bufs := arr[:0]
		for _, b := range [...][]byte{ctrl, data, large} {
			if len(b) > 0 {
				bufs = append(bufs, b)
			}
		}
		var (
			n    int64
			err  error
			done *outMsg // m, when this round wrote its last frame
		)
		if m == nil {
			n, err = s.writeBuffers(bufs)
		} else {
			n, done, err = s.writeLarge(sc, m, bufs)
			if done == nil && err == nil {
				sc.budget = s.roundBudget() // the window may have moved
			}
		}
		clear(arr[:]) // do not keep the written buffers alive
		wrote := min(max(n-int64(len(ctrl)), 0), int64(len(data)))
		s.flushed.Add(uint64(wrote))
		if done != nil && err == nil {
			done.sent.Store(true)
		}
		putWbuf(ctrlw)
		putWbuf(dataw)
		if done != nil && err == nil {
			bufpool.Put(done.buf)
		}
		if err != nil {
			// The write is over: what went out is known.
			s.mu.Lock()
			s.handed = s.flushed.Load()
			if m != nil && m.off == len(m.body) {
				m.failed = true
			}
			s.mu.Unlock()
			s.Fail(&ConnError{Reason: writeReason(err), Err: err})
			s.mu.Lock()
			s.stopWritingLocked()
			s.mu.Unlock()
			return
		}
	}
}

// writeBuffers writes bufs in pieces of at most maxWriteSize bytes, each in
// one system call where the transport allows it (writev). The pieces let
// the write watchdog measure progress: a piece that does not go out within
// the timeout is a stalled write, however slow the link, as long as it
// carries maxWriteSize bytes per timeout.
func (s *Session) writeBuffers(bufs [][]byte) (int64, error) {
	var total int64
	mon := s.mon
	for len(bufs) > 0 {
		// Take up to maxWriteSize bytes into s.iov.
		iov := s.iov[:0]
		n := 0
		for len(bufs) > 0 && n < maxWriteSize {
			b := bufs[0]
			if room := maxWriteSize - n; len(b) > room {
				iov = append(iov, b[:room])
				bufs[0] = b[room:]
				n += room
				break
			}
			iov = append(iov, b)
			n += len(b)
			bufs = bufs[1:]
		}
		mon.writeBegins()
		var (
			w   int64
			err error
		)
		rest := iov
		if k := s.writevNow(iov); k > 0 {
			// Most writes go out whole here, without the runtime's
			// syscall state (rawsys_linux.go); what the socket did not
			// take goes through the connection, which waits for room.
			w = int64(k)
			for len(rest) > 0 && k >= len(rest[0]) {
				k -= len(rest[0])
				rest = rest[1:]
			}
			if len(rest) > 0 {
				rest[0] = rest[0][k:]
			}
		}
		switch len(rest) {
		case 0:
		case 1:
			var k int
			k, err = s.conn.Write(rest[0])
			w += int64(k)
		default:
			s.iov = rest
			var k int64
			k, err = s.iov.WriteTo(s.conn) // writev; consumes s.iov
			w += k
		}
		s.iov = iov[:0]
		clear(iov[:cap(iov)])
		mon.writeEnds()
		total += w
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// stopWritingLocked marks the writer idle and wakes anyone waiting in
// flush.
func (s *Session) stopWritingLocked() {
	s.writing = false
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// queueControl queues a control frame built by build and has it written
// as mode says (writeQueuedLocked). Neither background nor noWait ever
// blocks on the connection, so the reader can use them; noWait writes a
// heartbeat of an idle connection without a writer goroutine.
func (s *Session) queueControl(build func([]byte) []byte, mode writeMode) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	c := lane(&s.ctrl)
	c.b = build(c.b)
	s.writeQueuedLocked(mode)
}

// writeQueuedLocked makes sure what is queued is written as mode says.
// Called with s.mu held; it unlocks it.
func (s *Session) writeQueuedLocked(mode writeMode) {
	if mode == held {
		s.mu.Unlock()
		return
	}
	if mode == noWait {
		s.flushNowLocked()
		return
	}
	s.kickLocked(mode == inline)
}

// flushNowLocked writes the queued control and small data frames from the
// calling goroutine without waiting for the socket (the reader must never
// wait on a write), when no writer runs and no large message is queued;
// otherwise, and with what the socket does not take at once, it leaves
// them to a writer goroutine, ahead of anything queued meanwhile. Called
// with s.mu held; it unlocks it.
func (s *Session) flushNowLocked() {
	if s.park.socket() == nil || s.writing || s.closed || s.writeClosed || len(s.large) > 0 {
		s.kickLocked(false)
		return
	}
	c, d := s.ctrl, s.data
	if c == nil && d == nil {
		s.mu.Unlock()
		return
	}
	s.writing = true
	s.ctrl, s.data = nil, nil
	s.handed = s.queued
	s.mu.Unlock()

	// One buffer: the control frames, then the data frames.
	w, ctrlLen, dataLen := c, 0, 0
	switch {
	case c == nil:
		w, dataLen = d, len(d.b)
	case d != nil:
		ctrlLen, dataLen = len(c.b), len(d.b)
		if n := len(c.b) + len(d.b); n > cap(c.b) {
			growLane(c, n)
		}
		c.b = append(c.b, d.b...)
		putWbuf(d)
	default:
		ctrlLen = len(c.b)
	}
	n := s.writeNow(w.b)
	s.flushed.Add(uint64(min(max(n-ctrlLen, 0), dataLen)))
	if h := testHookNoWaitWritten.Load(); h != nil {
		(*h)(s)
	}
	s.mu.Lock()
	if n == len(w.b) {
		putWbuf(w)
		s.stopWritingLocked()
		if s.ctrl != nil || s.data != nil || len(s.large) > 0 {
			// Queued while this goroutine was the writer: others left
			// them to it.
			s.kickLocked(false)
			return
		}
		s.mu.Unlock()
		return
	}
	// The rest goes first, each part in front of its lane (the data lane
	// counts what it carries, for Call.sent).
	if n < ctrlLen {
		s.ctrl = prependLane(s.ctrl, w.b[n:ctrlLen])
		s.data = prependLane(s.data, w.b[ctrlLen:])
	} else {
		s.data = prependLane(s.data, w.b[n:])
	}
	putWbuf(w)
	s.writing = false
	s.kickLocked(false)
}

// testHookNoWaitWritten, when set, runs in flushNowLocked between the
// write and the lock that follows it.
var testHookNoWaitWritten atomic.Pointer[func(*Session)]

// prependLane returns lane q with b in front of what it holds.
func prependLane(q *wbuf, b []byte) *wbuf {
	if len(b) == 0 {
		return q
	}
	var w *wbuf
	w = lane(&w)
	n := len(b)
	if q != nil {
		n += len(q.b)
	}
	if n > cap(w.b) {
		growLane(w, n)
	}
	w.b = append(w.b, b...)
	if q != nil {
		w.b = append(w.b, q.b...)
		putWbuf(q)
	}
	return w
}

// flush waits until everything queued so far is written, the session
// closes, or d passes.
func (s *Session) flush(d time.Duration) {
	s.mu.Lock()
	if !s.writing || s.closed {
		s.mu.Unlock()
		return
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	done := s.lazyChanLocked(&s.done, s.doneClosed)
	s.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-done:
	case <-t.C:
	}
}
