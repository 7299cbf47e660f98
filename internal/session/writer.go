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
// in progress, hundreds of them under load: growing it by append would
// make a new, larger buffer at each doubling, garbage as soon as it was
// written.
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
	id      uint32         // fixed when queued
	typ     wire.FrameType // fixed when queued
	body    []byte         // fixed when queued
	buf     *[]byte        // pooled buffer holding body; given back by the writer (or by a writer that drops it aborted)
	off     int            // bytes of body already handed to the writer; moved by the writer under Session.mu
	small   bool           // fits one frame: waits for credit for all of it, and goes whole (fixed)
	aborted bool           // abandoned by the caller; protected by Session.mu
	failed  bool           // the write of its last frame failed; protected by Session.mu
	sent    atomic.Bool    // its last frame was written
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
	// and leaves the rest to a writer goroutine (flushNowUnlock): the
	// reader's PONGs, the monitor's PINGs, and the replies of methods run
	// on the reader (serveOnReader).
	noWait
	// held: the frame waits in the queue for the reader to flush it
	// (noWait) once it has handled what it has buffered.
	held
)

// kickUnlock makes sure a writer will send what is queued, then unlocks
// s.mu. With inline set and only small frames queued, the calling
// goroutine becomes the writer: the write happens without a goroutine
// switch, and frames others queue meanwhile go out in the same loop.
func (s *Session) kickUnlock(inline bool) {
	if s.writing || s.closed || s.writeClosed || s.ctrl == nil && s.data == nil && s.creditBlockedLocked() {
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

// creditBlockedLocked reports whether the large queue has nothing the
// writer could send now: it is empty, or its first message waits for
// credit. Called with s.mu held.
func (s *Session) creditBlockedLocked() bool {
	if len(s.large) == 0 {
		return true
	}
	m := s.large[0]
	return !m.aborted && int(s.credit) < creditNeed(m)
}

// creditNeed is the credit from which the writer sends (more of) m: all
// of a small message, which goes whole; of a large one, at least one
// frame of minCreditFrame bytes or the rest, with the prefix of the
// first frame, so that a trickle of credit does not cut it into tiny
// frames.
func creditNeed(m *outMsg) int {
	if m.small {
		return len(m.body)
	}
	n := min(len(m.body)-m.off, minCreditFrame)
	if m.off == 0 {
		n += wire.MessageLenSize
	}
	return n
}

// writeLoop writes queued frames until the queues are empty, as the
// writer. Each round takes, under s.mu, all queued control frames, then
// all queued small frames, then a run of frames of the first large message
// (planLocked); writes them, in one system call where the transport allows
// it (writeRound); and accounts for what went out (accountRound).
func (s *Session) writeLoop(inline bool) {
	var r writeRound
	defer r.free()
	for {
		s.mu.Lock()
		switch s.planLocked(&r, inline) {
		case roundStop:
			s.stopWritingLocked()
			s.mu.Unlock()
			return
		case roundHandOff:
			// Large messages take many rounds: leave them to a background
			// writer so that the caller is not held.
			s.mu.Unlock()
			go s.writeLoop(false)
			return
		case roundYield:
			s.mu.Unlock()
			runtime.Gosched()
			continue
		}
		s.mu.Unlock()
		if err := s.writeRound(&r); err != nil {
			s.writeFailed(&r, err)
			return
		}
	}
}

// writeRound is one round of the writer: what planLocked took from the
// queues, and the writer's scratch, kept across rounds.
type writeRound struct {
	ctrlw, dataw *wbuf   // the lanes taken, given back after the write
	ctrl, data   []byte  // their bytes
	abort        []byte  // an abort frame for a message abandoned part way
	dataFirst    bool    // data starts with the rest of a half-written frame: it goes before ctrl
	m            *outMsg // the large message whose frames this round carries
	arr          [3][]byte
	yields       int         // times the writer yielded
	yieldedAt    int         // bytes queued in the data lane when it last yielded
	sc           *largeRound // scratch of the rounds of a large message
}

// free gives the scratch back when the writer stops.
func (r *writeRound) free() {
	if r.sc != nil {
		roundPool.Put(r.sc)
	}
}

// What planLocked tells the writer to do.
const (
	roundWrite   = iota // write the round
	roundStop           // nothing to write, or the session closed: stop
	roundHandOff        // an inline writer met a large message: hand it to a background writer
	roundYield          // let other goroutines queue frames first
)

// maxYields is how many times a writer yields before it writes, as long as
// frames keep arriving while it yields: callers woken by one burst of
// replies reach the queue over more than one turn of the scheduler.
const maxYields = 3

// mayYield reports whether the writer should yield (again) with queued
// bytes in the data lane: the first time, and again while the last yield
// brought more frames, up to maxYields.
func (r *writeRound) mayYield(queued int) bool {
	return r.yields == 0 || r.yields < maxYields && queued > r.yieldedAt
}

// planLocked takes the next round from the queues into r. Called with s.mu
// held, by the writer.
func (s *Session) planLocked(r *writeRound, inline bool) int {
	if s.closed {
		return roundStop
	}
	s.wakeRoomLocked()
	if inline && len(s.large) > 0 {
		return roundHandOff
	}
	if s.data != nil && len(s.data.b) < yieldBelow && r.mayYield(len(s.data.b)) && len(s.pending)+int(s.running.Load()) > 1 {
		// Other calls are in flight on this connection, so other
		// goroutines (callers woken by a burst of replies, handlers of a
		// burst of calls) may be about to queue frames: let them run
		// first, and write their frames together with this one in one
		// system call. A lone call (1x1) does not wait.
		r.yields++
		r.yieldedAt = len(s.data.b)
		return roundYield
	}
	r.ctrlw, r.dataw = s.ctrl, s.data
	r.dataFirst, s.dataFirst = s.dataFirst, false
	r.ctrl, r.data = nil, nil
	if r.ctrlw != nil {
		r.ctrl = r.ctrlw.b
	}
	if r.dataw != nil {
		r.data = r.dataw.b
	}
	r.abort, r.m = nil, nil
	s.planLargeLocked(r)
	if len(r.ctrl) == 0 && len(r.data) == 0 && r.abort == nil && r.m == nil {
		return roundStop
	}
	s.ctrl, s.data = nil, nil
	// Until the write returns, the peer may get any of these bytes: a call
	// among them counts as sent if the connection fails now.
	s.handed = s.queued
	return roundWrite
}

// planLargeLocked chooses the large part of the round: an abort frame for
// an abandoned message that was partly sent, or a run of frames of the
// first queued message (largeRound). Called with s.mu held.
func (s *Session) planLargeLocked(r *writeRound) {
	for len(s.large) > 0 && r.abort == nil && r.m == nil {
		first := s.large[0]
		if r.sc == nil {
			r.sc = roundPool.Get().(*largeRound)
			// One look under s.mu per writer run that sends a large
			// message; the looks between its rounds come after each
			// write, outside the lock.
			r.sc.budget = s.roundBudget()
		}
		if first.aborted {
			s.large = s.large[1:]
			s.largeBytes -= len(first.body) - first.off
			if first.small {
				s.smallWait--
			}
			if first.off > 0 {
				r.abort = wire.AppendHeader(r.sc.hdrs[:0], wire.TypeContinuation, wire.FlagEnd|wire.FlagAbort, first.id, 0)
			}
			bufpool.Put(first.buf)
			continue
		}
		// The round's control frames and small messages go in the same
		// write, ahead of the run: a cut run takes what is left of the
		// budget, so that the write still ends on a segment boundary,
		// unless they fill most of it.
		budget := r.sc.budget
		if p := len(r.ctrl) + len(r.data); budget > 0 && p < budget/2 {
			budget -= p
		}
		last := r.sc.next(first, s.maxFrame, budget, int(s.credit))
		if r.sc.n == 0 {
			break // the first message waits for credit, and those behind it
		}
		r.m = first
		s.credit -= int32(r.sc.used)
		s.largeBytes -= first.off - r.sc.start
		if last {
			s.large = s.large[1:] // its last frame is in this round
			if first.small {
				s.smallWait--
			}
		}
	}
	if len(s.large) == 0 {
		s.large = nil
	}
}

// writeRound writes the round planned in r, outside s.mu, and accounts for
// it. It returns the write's error.
func (s *Session) writeRound(r *writeRound) error {
	bufs := r.arr[:0]
	first, second := r.ctrl, r.data
	if r.dataFirst {
		first, second = r.data, r.ctrl
	}
	for _, b := range [...][]byte{first, second, r.abort} {
		if len(b) > 0 {
			bufs = append(bufs, b)
		}
	}
	var (
		n    int64
		err  error
		done *outMsg // r.m, when this round wrote its last frame
	)
	if r.m == nil {
		n, err = s.writeBuffers(bufs)
	} else {
		n, done, err = s.writeLarge(r.sc, r.m, bufs)
		if done == nil && err == nil {
			r.sc.budget = s.roundBudget() // the window may have moved
		}
	}
	clear(r.arr[:]) // do not keep the written buffers alive
	s.accountRound(r, n, done, err)
	return err
}

// accountRound records what a round wrote: the data lane's bytes that went
// out (for Call.sent), a large message whose last frame went out, and the
// lanes' buffers, which go back to the pool.
func (s *Session) accountRound(r *writeRound, n int64, done *outMsg, err error) {
	before := int64(len(r.ctrl)) // bytes written ahead of the data lane's
	if r.dataFirst {
		before = 0
	}
	wrote := min(max(n-before, 0), int64(len(r.data)))
	s.flushed.Add(uint64(wrote))
	putWbuf(r.ctrlw)
	putWbuf(r.dataw)
	r.ctrlw, r.dataw, r.ctrl, r.data, r.abort = nil, nil, nil, nil, nil
	if done != nil && err == nil {
		done.sent.Store(true)
		bufpool.Put(done.buf)
	}
}

// writeFailed ends the writer after a failed write: what went out is
// known, and the session closes.
func (s *Session) writeFailed(r *writeRound, err error) {
	s.mu.Lock()
	s.handed = s.flushed.Load()
	if m := r.m; m != nil && m.off == len(m.body) {
		m.failed = true
	}
	s.mu.Unlock()
	s.Fail(&ConnError{Reason: writeReason(err), Err: err})
	s.mu.Lock()
	s.stopWritingLocked()
	s.mu.Unlock()
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
			// syscall state (internal/sock); what the socket did not
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
	s.wakeRoomLocked()
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

// queueControl queues a control frame built by build and has it written
// as mode says (writeQueuedUnlock). Neither background nor noWait ever
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
	s.writeQueuedUnlock(mode)
}

// writeQueuedUnlock makes sure what is queued is written as mode says.
// Called with s.mu held; it unlocks it.
func (s *Session) writeQueuedUnlock(mode writeMode) {
	if mode == held {
		if s.data == nil || len(s.data.b) < heldBytes {
			s.mu.Unlock()
			return
		}
		mode = noWait // enough for one write: do not hold more
	}
	if mode == noWait {
		s.flushNowUnlock()
		return
	}
	s.kickUnlock(mode == inline)
}

// flushNowUnlock writes the queued control and small data frames from the
// calling goroutine without waiting for the socket (the reader must never
// wait on a write), when no writer runs and no large message is queued;
// otherwise, and with what the socket does not take at once, it leaves
// them to a writer goroutine, ahead of anything queued meanwhile. Called
// with s.mu held; it unlocks it.
func (s *Session) flushNowUnlock() {
	if s.park.socket() == nil || s.writing || s.closed || s.writeClosed || len(s.large) > 0 {
		s.kickUnlock(false)
		return
	}
	c, d := s.ctrl, s.data
	if c == nil && d == nil {
		s.mu.Unlock()
		return
	}
	s.writing = true
	s.ctrl, s.data = nil, nil
	dataFirst := s.dataFirst
	s.dataFirst = false
	s.handed = s.queued
	s.mu.Unlock()

	// Where each lane's bytes will lie in the one buffer written.
	ctrlLen, dataLen := 0, 0
	if c != nil {
		ctrlLen = len(c.b)
	}
	if d != nil {
		dataLen = len(d.b)
	}
	ctrlAt, dataAt := 0, ctrlLen
	if dataFirst {
		ctrlAt, dataAt = dataLen, 0
	}
	// One buffer: the control frames, then the data frames (the other
	// way round when the data lane starts with the rest of a frame).
	first, second := c, d
	if dataFirst {
		first, second = d, c
	}
	w := first
	switch {
	case first == nil:
		w = second
	case second != nil:
		if n := len(first.b) + len(second.b); n > cap(first.b) {
			growLane(first, n)
		}
		first.b = append(first.b, second.b...)
		putWbuf(second)
	}
	n := s.writeNow(w.b)
	s.flushed.Add(uint64(min(max(n-dataAt, 0), dataLen)))
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
			s.kickUnlock(false)
			return
		}
		s.mu.Unlock()
		return
	}
	// The rest goes first, each part in front of its lane (the data lane
	// counts what it carries, for Call.sent). A write that stopped inside
	// the data lane leaves half a frame there: that lane must go first
	// next time, ahead of control frames that other goroutines queued
	// meanwhile, or they would land inside the frame.
	dataRest := restOf(w.b, n, dataAt, dataLen)
	s.ctrl = prependLane(s.ctrl, restOf(w.b, n, ctrlAt, ctrlLen))
	s.data = prependLane(s.data, dataRest)
	s.dataFirst = len(dataRest) > 0 && (len(dataRest) < dataLen || dataFirst)
	putWbuf(w)
	s.writing = false
	s.kickUnlock(false)
}

// restOf returns the part of b[at:at+n] that a write of the first
// written bytes of b did not take.
func restOf(b []byte, written, at, n int) []byte {
	return b[min(max(written, at), at+n) : at+n]
}

// testHookNoWaitWritten, when set, runs in flushNowUnlock between the
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
