package pulse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"net"
	"os"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/wire"
)

// session is one Pulse connection after its handshake. It is symmetric:
// either end may start calls and serve them. Call ids started by the
// dialer are odd, those started by the acceptor even.
//
// Goroutines: one reader (readLoop) for the life of the connection; a
// writer only while there is something to write (writeLoop), run inline by
// the goroutine that queued a small message when no writer is active, or
// started in the background for control frames and large messages so that
// the reader never blocks on a write; one goroutine per running handler,
// bounded by maxConcurrentCalls.
type session struct {
	conn     net.Conn
	fr       *wire.Reader
	codec    codec.Codec
	opts     *options
	handlers *registry
	log      *slog.Logger
	peer     *Peer
	onClose  func(*session)
	// onSuspect is told when the peer becomes suspect (silent for a while)
	// and when it recovers. Called from the monitor's timer.
	onSuspect func(*session, bool)
	// onGoAway is told when the peer sends GOAWAY, before the calls it
	// did not process fail (so that they can go to another connection).
	onGoAway func(*session, wire.GoAway)
	mon      *monitor

	// parent is the parent of every handler's context, made on first use
	// (handlerParent); it is cancelled, with the connection's error as
	// cause, when the session closes.
	parent atomic.Pointer[handlerCtx]

	// Settings fixed by the handshake.
	peerTimeout time.Duration // the silence deadline the peer enforces (its HELLO); the rest of the HELLO is not kept
	maxFrame    int           // largest frame payload this side sends
	peerMaxMsg  int           // largest message this side sends
	maxMsg      int           // largest message this side accepts

	running     atomic.Int32               // peer calls admitted and not finished: arriving, running, or being refused
	pingStrikes int32                      // owned by the reader
	lastRead    *atomic.Int64              // monotonic ns of the last read that returned bytes
	drainSt     atomic.Pointer[drainState] // set when this side starts draining (drain.go)
	flushed     atomic.Uint64
	park        parkState // the reader's; see park_linux.go

	// iov is the writev list, reused by whichever goroutine is the writer
	// (there is one at a time: mu's writing flag).
	iov net.Buffers

	// Owned by the reader goroutine.
	partial      map[uint32]*partialMsg
	lastPingRecv int64         // ns, for the ping rate limit
	pingTokens   float64       // pings the peer may send now (a token bucket)
	minPingGap   time.Duration // pings closer than this are excess; 0 for no limit

	mu         sync.Mutex    // protects following
	draining   chan struct{} // closed when this side starts draining; made on first use (drainingChan)
	nextID     uint32
	lastPeerID uint32                        // highest call id from the peer accepted here
	pending    map[uint32]*Call              // calls this side started
	inflight   map[uint32]context.CancelFunc // peer calls running here
	ctrl       *wbuf                         // queued control frames
	data       *wbuf                         // queued small data frames
	large      []*outMsg                     // queued messages sent in several frames
	idle       chan struct{}                 // closed when the writer goes idle
	queued     uint64                        // bytes ever appended to data
	handed     uint64                        // bytes of data given to a write: written, or possibly on their way
	err        *ConnError                    // the first cause of the close
	goAwayIn   *wire.GoAway                  // GOAWAY received from the peer
	pings      map[uint64]chan time.Duration // Ping calls waiting for their PONG
	// done is closed when the session is closed (after its pending calls
	// have failed), readerDone when the reader ends for good. Few wait
	// for them, so they are made on first use (doneChan, readerDoneChan):
	// an idle connection carries neither.
	done        chan struct{}
	readerDone  chan struct{}
	notifyQ     []pendingNotify // notifications waiting for their turn
	writing     bool            // a writeLoop is running
	closed      bool
	goAwayOut   bool // this side sent GOAWAY, naming lastPeerID
	writeClosed bool // this side half-closed the connection: nothing more is written
	notifying   bool // a goroutine runs notifyQ
	doneClosed  bool // done is closed, or would be if it had been made
	readerEnded bool // readerDone is closed, or would be if it had been made

	// Fixed at the start; beside the flags above, to save padding.
	dialer bool // this side dialed: it uses odd call ids
	// heldN replies of methods run on the reader wait in the queue for
	// the reader to flush them once its buffer is empty. Reader only.
	heldN uint8
}

// wbuf is a write buffer. The lanes take one from wbufPool when a frame is
// queued and the writer returns it once written, so an idle connection
// holds no write buffer.
type wbuf struct{ b []byte }

var wbufPool = sync.Pool{New: func() any { return &wbuf{b: make([]byte, 0, 4096)} }}

func putWbuf(w *wbuf) {
	if w == nil {
		return
	}
	if cap(w.b) > maxKeptWriteBuffer {
		// A lane that grew under load (growLane): its buffer goes back to
		// the size classes, which let it go within two collections if no
		// other lane needs it.
		b := w.b[:0]
		putLarge(&b)
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
	bp := getLarge(max(n, 2*cap(w.b)))
	old := w.b
	w.b = append((*bp)[:0], old...)
	if cap(old) >= 1<<minLargeShift {
		putLarge(&old)
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

// partialMsg is a message being reassembled from several frames.
type partialMsg struct {
	typ     wire.FrameType
	bp      *[]byte // pooled buffer holding buf
	buf     []byte
	total   int  // announced length of the message
	got     int  // bytes received so far
	tooBig  bool // exceeded maxMsg: the rest is discarded
	discard bool // nobody waits for it
	// into is the call whose reply slice buf is, when the body of this
	// REPLY goes straight there (replyInto); buf then holds the body only.
	into *Call
}

// yieldBelow is the size of the queued small frames under which a writer
// yields once to other goroutines before it writes, when other calls are in
// flight: more frames may join the same write.
const yieldBelow = 16 << 10

// release gives the message's buffer back to the pool.
func (pm *partialMsg) release() {
	if pm.bp != nil {
		*pm.bp = pm.buf[:0]
		putLarge(pm.bp)
		pm.bp, pm.buf = nil, nil
	}
}

var epoch = time.Now()

// nanotime is a monotonic clock reading in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }

// liveConn records the time of every read that returns bytes: any inbound
// byte, even the middle of a large frame, is a sign of life. It also feeds
// the detector with the gaps between reads.
type liveConn struct {
	net.Conn
	r *reads
}

// reads is the state liveConn updates. mon is set before the session's
// reader starts and not changed after.
type reads struct {
	last    atomic.Int64
	mon     *monitor
	drained bool // the last read returned less than asked: the socket was empty then (reader only)
	// frames counts the calls, replies, notifications and continuation
	// frames handled since the last read, and perRead is its moving
	// average over the connection's reads, in sixteenths of a frame, for
	// the choice of how to read (liveConn.Read; reader only).
	frames  int32
	perRead int32
	// prevData is the time of the last read of the previous burst that
	// held calls, replies or notifications, for the wait before parking
	// (lingerReader; Linux; reader only).
	prevData int64
	// busy is set while the reader may be waiting in a read that has no
	// end but the next frame, with calls of the peer's running: the call
	// that ends them shortens that read (session.readSoon), so that the
	// reader looks again whether to park.
	busy atomic.Bool
	// raw is the socket when the connection is a TCP or Unix socket on
	// Linux (then it can park: parkState.socket), set before the session's
	// reader starts; sock reads it
	// directly (rawsys_linux.go), made when the connection's reads first
	// bring bursts and dropped when its reader parks (reader only).
	raw  syscall.RawConn
	sock *sockReader
}

// parkState is what the reader keeps for parking (park_linux.go). Only
// the reader touches it, except slot.
type parkState struct {
	rd      *reads // the reader's state, which holds the socket; nil when the connection cannot park
	slot    int32  // in the parker's table while parked, else -1; protected by parkMu
	added   bool   // the socket is in the parker's epoll set
	sawData bool   // a call, reply or notification was read since the socket was last found drained
}

// socket returns the connection's socket, nil when the connection cannot
// park.
func (pk *parkState) socket() syscall.RawConn {
	if pk.rd == nil {
		return nil
	}
	return pk.rd.raw
}

func (c liveConn) Read(p []byte) (n int, err error) {
	r := c.r
	if r.readsBursts() && r.raw != nil {
		if r.sock == nil {
			r.sock = newSockReader(r.raw)
		}
		n, err = r.sock.read(c.Conn, p)
	} else {
		n, err = c.Conn.Read(p)
	}
	r.got(n, len(p))
	return n, err
}

// burstyReads is the average of frames per read, in sixteenths, from which
// a connection's reads go around the runtime's system-call path: 1.5.
// (An average of one frame per read settles between 16 and 23, one of two
// between 32 and 39.)
const burstyReads = 24

// readsBursts updates the connection's average of frames per read with
// the frames handled since the last read and reports whether its reads
// bring bursts: more than one frame each, on average over the last eight
// or so.
//
// A bursty connection reads with sockReader, which makes the system call
// directly (rawsys_linux.go). One whose reads bring one frame each, a
// single call at a time, keeps the runtime's path: entering a system call
// there wakes the runtime's monitor thread when the process was idle, and
// on the 2-core virtual machine where Pulse is measured that wake-up,
// which happens before the reply comes back, makes the process's own
// wake-up for the reply quicker. With every read made directly, 64B/1x1
// lost 28 % of its calls/s (p50 56 → 93 µs); with this choice it keeps
// them, and the bursty cells gain (docs/benchmarks.md).
func (r *reads) readsBursts() bool {
	r.perRead += r.frames<<1 - r.perRead>>3
	r.frames = 0
	return r.perRead >= burstyReads
}

// got records a read of n bytes of the asked.
func (r *reads) got(n, asked int) {
	r.drained = n < asked
	if n > 0 {
		now := nanotime()
		prev := r.last.Swap(now)
		if r.mon != nil {
			r.mon.observe(now, prev)
		}
	}
}

// readBufPool holds the read buffers of connections that are receiving;
// an idle connection gives its buffer back (wire.Reader.SetBufferPool).
var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

// getBufFor returns a buffer for a message whose body encodes v: a large
// pooled one when v is a byte slice that large (the raw codec and
// RawMessage encode it as it is), so that the encoding does not grow a
// small buffer into a new large one for every message.
func getBufFor(v any, extra int) *[]byte {
	if n := byteLen(v) + extra; n > maxKeptWriteBuffer {
		return getLarge(n)
	}
	return getBuf()
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

func putBuf(b *[]byte) {
	if cap(*b) > maxKeptWriteBuffer {
		putLarge(b)
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// Large buffers (messages sent or received in several frames) are pooled
// by size class: four classes per power of two, from 32 KiB to 112 MiB.
// Without them every large message allocated its buffers anew, and at a
// few MiB per call the garbage collector ran after every call or two
// (20 % of a server's CPU at 1 MiB). The most recent few MiB are kept in
// largeCache, the rest in sync.Pools; both let go of what stays unused, so
// an idle process keeps none.
const (
	minLargeShift = 15
	maxLargeShift = 26
)

var largePools [(maxLargeShift - minLargeShift + 1) * 4]sync.Pool

// largeClass returns the index of the smallest class of at least n bytes,
// and its size; -1 when n is over the largest class.
func largeClass(n int) (int, int) {
	if n <= 1<<minLargeShift {
		return 0, 1 << minLargeShift
	}
	k := bits.Len(uint(n-1)) - 1 // 2^k < n <= 2^(k+1)
	j := (n-1)>>(k-2) + 1 - 4    // ceil(n / 2^(k-2)) - 4, in 1..4
	if j == 4 {
		k, j = k+1, 0
	}
	if k > maxLargeShift {
		return -1, 0
	}
	return (k-minLargeShift)*4 + j, (4 + j) << (k - 2)
}

// getLarge returns an empty buffer with room for at least n bytes.
func getLarge(n int) *[]byte {
	i, size := largeClass(n)
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

// putLarge pools b in the largest class its capacity covers.
func putLarge(bp *[]byte) {
	c := cap(*bp)
	if c < 1<<minLargeShift {
		return
	}
	k := bits.Len(uint(c)) - 1
	if k > maxLargeShift {
		return
	}
	j := c>>(k-2) - 4
	*bp = (*bp)[:0]
	if i := (k-minLargeShift)*4 + j; !cachePut(i, bp) {
		largePools[i].Put(bp)
	}
}

// liveSessions counts the sessions whose reader runs, in this process.
// When it drops to zero the idle handler workers exit at once.
var liveSessions atomic.Int64

// newSession builds the session for a connection whose handshake is done.
// fr is the reader that read the handshake: it may hold frames already.
func newSession(conn net.Conn, fr *wire.Reader, c codec.Codec, dialer bool, o *options, handlers *registry, peerHello wire.Hello, rd *reads, onClose func(*session)) *session {
	s := &session{
		conn:        conn,
		fr:          fr,
		codec:       c,
		dialer:      dialer,
		opts:        o,
		handlers:    handlers,
		log:         o.logger,
		onClose:     onClose,
		peerTimeout: peerHello.Timeout,
		maxFrame:    int(peerHello.MaxFrameSize),
		maxMsg:      int(o.maxMessageSize),
		pending:     make(map[uint32]*Call),
		lastRead:    &rd.last,
	}
	s.initParking(conn, rd)
	s.peerMaxMsg = int(peerHello.MaxMessageSize)
	if s.peerMaxMsg <= 0 {
		s.peerMaxMsg = math.MaxInt32
	}
	s.nextID = 2
	if dialer {
		s.nextID = 1
	}
	s.peer = &Peer{s: s}
	s.lastRead.Store(nanotime())
	fr.SetMaxPayload(o.maxFrameSize)
	return s
}

// isPeerID reports whether id is one the peer may use to start a call.
func (s *session) isPeerID(id uint32) bool {
	return id != 0 && (id&1 == 0) == s.dialer
}

// ---- Starting calls ----

// send encodes call and queues it. On failure it completes the call with
// the error. notify marks a one-way call, which gets no reply. watch makes
// the call watch ctx itself and abandon on its end (for Go; Call's waiting
// goroutine watches ctx instead).
func (s *session) send(ctx context.Context, call *Call, notify, watch bool) {
	call.s = s
	if err := ctx.Err(); err != nil {
		call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusCanceled, Err: err}
		call.done()
		return
	}
	typ := wire.TypeCall
	if notify {
		typ = wire.TypeNotify
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusCanceled, Err: context.DeadlineExceeded}
			call.done()
			return
		}
	}
	bp := getBufFor(call.Args, wire.HeaderSize+len(call.ServiceMethod)+32)
	b := wire.AppendHeader((*bp)[:0], typ, wire.FlagEnd, 0, 0)
	b = wire.AppendCallHead(b, call.ServiceMethod, timeout)
	b, err := s.codec.Append(b, call.Args)
	*bp = b
	if err != nil {
		putBuf(bp)
		call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusBadArgs, Message: "cannot encode arguments: " + err.Error(), Err: err}
		call.done()
		return
	}
	if n := len(b) - wire.HeaderSize; n > s.peerMaxMsg {
		putBuf(bp)
		call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusTooLarge,
			Message: fmt.Sprintf("arguments of %d bytes exceed the peer's limit of %d", n, s.peerMaxMsg), Err: ErrMessageTooLarge}
		call.done()
		return
	}

	s.mu.Lock()
	if err := s.refuseLocked(); err != nil {
		s.mu.Unlock()
		putBuf(bp)
		call.Error = err
		call.done()
		return
	}
	id := s.nextID
	s.nextID += 2
	call.id = id
	if !notify {
		s.pending[id] = call
		if watch && ctx.Done() != nil {
			call.stop = context.AfterFunc(ctx, func() { s.abandon(call, ctx.Err()) })
		}
	}
	s.enqueueLocked(bp, id, typ, func(seq uint64, out *outMsg) { call.seq, call.out = seq, out })
	s.kickLocked(true)
}

// refuseLocked returns the error for a call that cannot start on this
// session: it is closed, or the peer sent GOAWAY.
func (s *session) refuseLocked() error {
	if s.closed {
		return s.err.withSent(false)
	}
	if s.goAwayIn != nil {
		return &ConnError{Reason: ReasonGoAway, Code: s.goAwayIn.Code, Message: s.goAwayIn.Message}
	}
	if s.nextID > math.MaxUint32-2 {
		return &ConnError{Reason: ReasonShutdown, Message: "call ids exhausted on this connection"}
	}
	return nil
}

// enqueueLocked queues the message in *bp (a frame header with FlagEnd
// followed by the whole message) under id. Small messages are copied to
// the data lane and bp is recycled; larger ones are queued for sending in
// frames and keep bp until written. mark receives the position of the
// message, for sent().
func (s *session) enqueueLocked(bp *[]byte, id uint32, typ wire.FrameType, mark func(seq uint64, out *outMsg)) {
	b := *bp
	if len(b)-wire.HeaderSize <= s.maxFrame {
		binary.BigEndian.PutUint32(b[4:8], id)
		wire.PutLength(b, len(b)-wire.HeaderSize)
		d := lane(&s.data)
		if n := len(d.b) + len(b); n > cap(d.b) {
			growLane(d, n)
		}
		d.b = append(d.b, b...)
		s.queued += uint64(len(b))
		putBuf(bp)
		if mark != nil {
			mark(s.queued, nil)
		}
		return
	}
	m := &outMsg{id: id, typ: typ, body: b[wire.HeaderSize:], buf: bp}
	s.large = append(s.large, m)
	if mark != nil {
		mark(0, m)
	}
}

// abandon gives up on call because its context ended with err. If the
// call is still pending, it completes it and tells the peer to cancel.
func (s *session) abandon(call *Call, err error) {
	s.mu.Lock()
	if s.pending[call.id] != call {
		s.mu.Unlock()
		return // completed by someone else
	}
	delete(s.pending, call.id)
	reached := true // the request goes to the peer, followed by CANCEL
	if !s.closed {
		switch {
		case call.out != nil && !call.out.sent.Load() && call.out.off < len(call.out.body):
			// Not fully handed to the writer: it stops sending the rest
			// (or all of it), and aborts what the peer gathered.
			call.out.aborted = true
			reached = false
		case call.out == nil && s.flushed.Load() < call.seq:
			// Still queued in the data lane: CANCEL goes behind it there.
			d := lane(&s.data)
			d.b = wire.AppendHeader(d.b, wire.TypeCancel, 0, call.id, 0)
			s.queued += wire.HeaderSize
		default:
			c := lane(&s.ctrl)
			c.b = wire.AppendHeader(c.b, wire.TypeCancel, 0, call.id, 0)
		}
		s.kickLocked(false)
	} else {
		s.mu.Unlock()
	}
	call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusCanceled, Err: err, reached: reached}
	call.done()
}

// ---- Writing ----

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
func (s *session) kickLocked(inline bool) {
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
func (s *session) writeLoop(inline bool) {
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
				putBuf(first.buf)
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
			putBuf(done.buf)
		}
		if err != nil {
			// The write is over: what went out is known.
			s.mu.Lock()
			s.handed = s.flushed.Load()
			if m != nil && m.off == len(m.body) {
				m.failed = true
			}
			s.mu.Unlock()
			s.fail(&ConnError{Reason: writeReason(err), Err: err})
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
func (s *session) writeBuffers(bufs [][]byte) (int64, error) {
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
func (s *session) stopWritingLocked() {
	s.writing = false
	if s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
}

func writeReason(err error) Reason {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonWriteStall
	}
	return ReasonIO
}

// queueControl queues a control frame built by build and has it written
// as mode says (writeQueuedLocked). Neither background nor noWait ever
// blocks on the connection, so the reader can use them; noWait writes a
// heartbeat of an idle connection without a writer goroutine.
func (s *session) queueControl(build func([]byte) []byte, mode writeMode) {
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
func (s *session) writeQueuedLocked(mode writeMode) {
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
func (s *session) flushNowLocked() {
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
var testHookNoWaitWritten atomic.Pointer[func(*session)]

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

// lazyChanLocked returns *ch, making it if it is nil, or a closed channel
// if it should be closed already. Called with s.mu held.
func (s *session) lazyChanLocked(ch *chan struct{}, closed bool) chan struct{} {
	if *ch == nil {
		if closed {
			return closedChan
		}
		*ch = make(chan struct{})
	}
	return *ch
}

// closeLazyLocked marks a channel of lazyChanLocked closed, closing it if
// it was made. Called with s.mu held.
func closeLazyLocked(ch *chan struct{}, closed *bool) {
	*closed = true
	if *ch != nil {
		close(*ch)
	}
}

// doneChan returns a channel that is closed when the session is closed.
func (s *session) doneChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lazyChanLocked(&s.done, s.doneClosed)
}

// readerDoneChan returns a channel that is closed when the reader ends for
// good.
func (s *session) readerDoneChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lazyChanLocked(&s.readerDone, s.readerEnded)
}

// flush waits until everything queued so far is written, the session
// closes, or d passes.
func (s *session) flush(d time.Duration) {
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

// handlerCtx is the parent of the contexts of this connection's handlers:
// it carries the Peer and ends when the connection closes.
type handlerCtx struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// handlerParent returns the parent context of handler contexts, made on
// first use: most connections (clients, idle ones) never serve a method
// that takes a context, and it costs a few hundred bytes each.
func (s *session) handlerParent() context.Context {
	if p := s.parent.Load(); p != nil {
		return p.ctx
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parent.Load()
	if p == nil {
		ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), peerKey{}, s.peer))
		p = &handlerCtx{ctx, cancel}
		if s.closed {
			// fail has looked already: cancel here.
			cancel(s.err)
		}
		s.parent.Store(p)
	}
	return p.ctx
}

// ---- Closing ----

// fail closes the session with ce as its cause, unless it is closed
// already. Every pending call fails with ce, marked with whether its
// request was sent; running handlers see their context cancelled.
func (s *session) fail(ce *ConnError) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if g := s.goAwayIn; g != nil && (ce.Reason == ReasonPeerClose || ce.Reason == ReasonIO) {
		if g.Code == wire.GoAwayNormal {
			// A clean close by the peer: GOAWAY, then the end of stream.
			ce = &ConnError{Reason: ReasonPeerClose, Message: "the peer closed the connection"}
		} else {
			// The peer said why before it closed: that is the first cause.
			ce = &ConnError{Reason: ReasonGoAway, Code: g.Code, Message: g.Message, Err: ce.Err}
		}
	}
	s.closed = true
	s.err = ce
	pending := s.pending
	s.pending = nil
	sent := make(map[uint32]bool, len(pending))
	for id, call := range pending {
		sent[id] = call.sent()
	}
	s.large = nil
	for _, ch := range s.pings {
		close(ch)
	}
	s.pings = nil
	s.mu.Unlock()
	if s.mon != nil {
		s.mon.stop()
	}

	s.unpark() // a parked reader sees the close and ends
	s.conn.Close()
	if p := s.parent.Load(); p != nil {
		// Made before closed was set; one made after cancels itself.
		p.cancel(ce)
	}
	if s.onClose != nil {
		// Before the calls fail, so that a retry finds this session gone.
		s.onClose(s)
	}
	for id, call := range pending {
		call.Error = ce.withSent(sent[id])
		call.done()
	}
	s.mu.Lock()
	closeLazyLocked(&s.done, &s.doneClosed)
	s.mu.Unlock()
	if ce.Reason == ReasonShutdown || (ce.Reason == ReasonGoAway && ce.Code == wire.GoAwayNormal) || ce.Reason == ReasonPeerClose {
		s.log.Debug("pulse: connection closed", "remote", s.conn.RemoteAddr(), "reason", ce.Reason)
	} else {
		s.log.Info("pulse: connection closed", "remote", s.conn.RemoteAddr(), "err", ce)
	}
}

// goAway sends GOAWAY with code and message, waits up to d for it to be
// written, and closes the session with reason.
func (s *session) goAway(code wire.GoAwayCode, msg string, reason Reason, err error, d time.Duration) {
	s.sendGoAway(code, msg)
	s.flush(d)
	s.fail(&ConnError{Reason: reason, Code: code, Message: msg, Err: err})
}

// sendGoAway queues GOAWAY, naming the highest call id the peer has
// started that this side has read.
func (s *session) sendGoAway(code wire.GoAwayCode, msg string) {
	s.mu.Lock()
	s.goAwayOut = true
	last := s.lastPeerID
	s.mu.Unlock()
	s.queueControl(func(b []byte) []byte {
		return wire.AppendGoAway(b, wire.GoAway{LastID: last, Code: code, Message: msg})
	}, background)
}

// close closes the session from this side.
func (s *session) close() {
	s.goAway(wire.GoAwayNormal, "", ReasonShutdown, nil, 100*time.Millisecond)
}

// ---- Reading ----

// readLoop reads frames until the connection fails. It runs on the
// goroutine that owns the connection and returns when the session closes,
// or when the reader parks (the parker then runs readFrames again on a new
// goroutine when bytes arrive).
func (s *session) readLoop() {
	liveSessions.Add(1)
	s.readFrames()
}

// readerEnd marks the end of reading for good.
func (s *session) readerEnd() {
	if liveSessions.Add(-1) == 0 {
		workers.stopIdle()
		stopParker()
	}
	s.mu.Lock()
	closeLazyLocked(&s.readerDone, &s.readerEnded)
	s.mu.Unlock()
}

// readFrames is the reader: it reads and handles frames until the
// connection fails or the reader parks.
func (s *session) readFrames() {
	for {
		if s.heldN > 0 && s.fr.Buffered() == 0 {
			s.heldN = 0
			s.mu.Lock()
			s.flushNowLocked()
		}
		if s.fr.Buffered() == 0 && s.mayPark() && s.parkReader() {
			return
		}
		h, p, err := s.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The only read deadlines after the handshake are those
				// that shorten a wait to park sooner (readSoon): clear it
				// and go on. A frame half read stays buffered.
				s.conn.SetReadDeadline(time.Time{})
				continue
			}
			s.readFailed(err)
			s.readerEnd()
			return
		}
		if h.Type <= wire.TypeContinuation {
			s.park.sawData = true
			if rd := s.park.rd; rd != nil {
				rd.frames++
			}
		}
		if err := s.handleFrame(h, p); err != nil {
			if err == errReaderMoved {
				return // another goroutine reads now
			}
			s.log.Warn("pulse: protocol error from peer", "remote", s.conn.RemoteAddr(), "err", err)
			code := wire.GoAwayProtocolError
			if errors.As(err, new(tooManyStreamsError)) {
				code = wire.GoAwayTooManyStreams
			}
			s.goAway(code, err.Error(), ReasonProtocol, err, time.Second)
			s.readerEnd()
			return
		}
	}
}

// tooManyStreamsError is a peer sending more messages at once than allowed.
type tooManyStreamsError struct{ n int }

func (e tooManyStreamsError) Error() string {
	return fmt.Sprintf("more than %d messages arriving at once", e.n)
}

func (s *session) readFailed(err error) {
	switch {
	case errors.Is(err, wire.ErrVersion), errors.Is(err, wire.ErrFrameType),
		errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrMalformed):
		s.log.Warn("pulse: protocol error from peer", "remote", s.conn.RemoteAddr(), "err", err)
		s.goAway(wire.GoAwayProtocolError, err.Error(), ReasonProtocol, err, time.Second)
	case errors.Is(err, io.EOF):
		s.mu.Lock()
		drained := s.writeClosed
		s.mu.Unlock()
		if drained {
			// The peer closed after this side drained and half-closed.
			s.fail(&ConnError{Reason: ReasonShutdown, Message: "drained"})
			return
		}
		s.fail(&ConnError{Reason: ReasonPeerClose, Err: err})
	case errors.Is(err, net.ErrClosed):
		s.fail(&ConnError{Reason: ReasonShutdown, Err: err})
	default:
		s.fail(&ConnError{Reason: ReasonIO, Err: err})
	}
}

// handleFrame acts on one frame. p aliases the read buffer and is valid
// only during the call. An error is a protocol violation.
func (s *session) handleFrame(h wire.Header, p []byte) error {
	switch h.Type {
	case wire.TypeCall, wire.TypeNotify, wire.TypeReply:
		if h.Type == wire.TypeReply {
			if h.ID == 0 || s.isPeerID(h.ID) {
				return fmt.Errorf("REPLY with id %d, which this side never used", h.ID)
			}
		} else if !s.isPeerID(h.ID) {
			return fmt.Errorf("%v with id %d, which belongs to this side", h.Type, h.ID)
		}
		if _, dup := s.partial[h.ID]; dup {
			return fmt.Errorf("%v id %d while a message with that id is still arriving", h.Type, h.ID)
		}
		admitted := h.Type == wire.TypeReply || s.admit(h.ID)
		if h.Flags&wire.FlagEnd != 0 {
			if !admitted {
				return nil
			}
			if len(p) > s.maxMsg {
				s.tooLarge(h.Type, h.ID)
			} else if s.dispatch(h.Type, h.ID, p, false) {
				return errReaderMoved
			}
			return nil
		}
		if len(s.partial) >= s.opts.maxConcurrentCalls+maxPartialMessages {
			return tooManyStreamsError{len(s.partial)}
		}
		total, rest, err := wire.ParseMessageLen(p)
		if err != nil {
			return err
		}
		if len(rest) > int(total) {
			return fmt.Errorf("%v id %d: first frame carries %d bytes of a %d-byte message", h.Type, h.ID, len(rest), total)
		}
		pm := &partialMsg{typ: h.Type, total: int(total), discard: !admitted}
		if int(total) > s.maxMsg {
			pm.tooBig = true // discarded as it arrives
		} else if h.Type == wire.TypeReply && s.replyInto(pm, h.ID, rest) {
			// The body goes straight into the caller's reply slice.
		} else if admitted && h.Type != wire.TypeReply && s.codec.Name() == codec.RawName {
			// The argument of a method on the raw codec is the message
			// itself (adoptRaw): a buffer of the message's size, which
			// the argument keeps, rather than one from the pool that
			// would be copied out of.
			pm.buf = append(make([]byte, 0, total), rest...)
		} else if admitted {
			pm.bp = getLarge(int(total))
			pm.buf = append((*pm.bp)[:0], rest...)
		}
		pm.got = len(rest)
		if s.partial == nil {
			s.partial = make(map[uint32]*partialMsg)
		}
		s.partial[h.ID] = pm
	case wire.TypeContinuation:
		pm := s.partial[h.ID]
		if pm == nil {
			return fmt.Errorf("CONTINUATION for id %d, which has no message arriving", h.ID)
		}
		if h.Flags&wire.FlagAbort != 0 {
			delete(s.partial, h.ID)
			pm.release()
			if pm.typ != wire.TypeReply && !pm.discard {
				s.handlerDone() // the call was counted when admitted
			}
			return nil
		}
		pm.got += len(p)
		if pm.got > pm.total {
			return fmt.Errorf("message id %d: %d bytes received, %d announced", h.ID, pm.got, pm.total)
		}
		switch {
		case pm.into != nil:
			s.appendInto(pm, h.ID, p)
		case !pm.tooBig && !pm.discard:
			pm.buf = append(pm.buf, p...)
		}
		if h.Flags&wire.FlagEnd != 0 {
			if pm.got != pm.total {
				return fmt.Errorf("message id %d ended after %d bytes, %d announced", h.ID, pm.got, pm.total)
			}
			delete(s.partial, h.ID)
			switch {
			case pm.discard:
			case pm.tooBig:
				s.tooLarge(pm.typ, h.ID)
			case pm.into != nil:
				s.finishInto(pm, h.ID)
			default:
				// The message is decoded before dispatch returns (codecs
				// keep nothing of it), so its buffer can serve again.
				moved := s.dispatch(pm.typ, h.ID, pm.buf, pm.bp == nil)
				pm.release()
				if moved {
					return errReaderMoved
				}
			}
		}
	case wire.TypeCancel:
		if !s.isPeerID(h.ID) {
			return fmt.Errorf("CANCEL with id %d, which belongs to this side", h.ID)
		}
		s.mu.Lock()
		cancel := s.inflight[h.ID]
		s.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case wire.TypePing:
		data, err := wire.ParsePing(p)
		if err != nil {
			return err
		}
		if s.minPingGap > 0 && !s.allowPing() {
			// Over the rate: not answered. A peer that keeps it up is told
			// to go away.
			if s.pingStrikes++; s.pingStrikes > maxPingStrikes {
				msg := fmt.Sprintf("pings closer together than %v; the permitted rate is one ping per %v", s.minPingGap, s.minPingGap)
				s.log.Warn("pulse: too many pings", "remote", s.conn.RemoteAddr(), "permitted", s.minPingGap)
				go s.goAway(wire.GoAwayTooManyPings, msg, ReasonProtocol, nil, time.Second)
			}
			return nil
		}
		s.pingStrikes = 0
		s.queueControl(func(b []byte) []byte { return wire.AppendPing(b, wire.TypePong, data) }, noWait)
		s.mon.answered()
	case wire.TypePong:
		data, err := wire.ParsePing(p)
		if err != nil {
			return err
		}
		s.handlePong(data)
	case wire.TypeGoAway:
		g, err := wire.ParseGoAway(p)
		if err != nil {
			return err
		}
		s.handleGoAway(g)
	case wire.TypeHello:
		return errors.New("HELLO after the handshake")
	}
	return nil
}

// tooLarge answers a message that exceeded this side's limit.
func (s *session) tooLarge(typ wire.FrameType, id uint32) {
	msg := fmt.Sprintf("message exceeds the limit of %d bytes", s.maxMsg)
	if typ != wire.TypeReply {
		defer s.handlerDone() // the call was counted when admitted
	}
	switch typ {
	case wire.TypeCall:
		s.replyError(id, wire.StatusTooLarge, msg, background)
	case wire.TypeReply:
		if call := s.takePending(id); call != nil {
			call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusTooLarge, Message: "reply " + msg, Err: ErrMessageTooLarge, reached: true}
			call.done()
		}
	case wire.TypeNotify:
		s.log.Warn("pulse: dropped notification: "+msg, "remote", s.conn.RemoteAddr())
	}
}

func (s *session) takePending(id uint32) *Call {
	s.mu.Lock()
	call := s.pending[id]
	if call != nil {
		delete(s.pending, id)
	}
	s.mu.Unlock()
	return call
}

// dispatch acts on a complete message. msg is valid only during the call,
// unless owned: nothing else uses its memory (a message of several frames,
// in a buffer of its own), and a raw argument may then keep it. It reports
// whether the reader's job moved to another goroutine while it ran a
// method (serveOnReader): the caller, no longer the reader, must return.
func (s *session) dispatch(typ wire.FrameType, id uint32, msg []byte, owned bool) (readerMoved bool) {
	if typ == wire.TypeReply {
		s.handleReply(id, msg)
		return false
	}
	return s.handleCall(typ == wire.TypeNotify, id, msg, owned)
}

func (s *session) handleReply(id uint32, msg []byte) {
	call := s.takePending(id)
	if call == nil {
		return // abandoned by its caller
	}
	status, body, err := wire.ParseReply(msg)
	switch {
	case err != nil:
		call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusInternal, Message: err.Error(), Err: ErrBadReply, reached: true}
	case status == wire.StatusOK:
		if call.Reply != nil {
			if err := s.codec.Unmarshal(body, call.Reply); err != nil {
				call.Error = &CallError{Method: call.ServiceMethod, Status: wire.StatusInternal,
					Message: "cannot decode reply into " + fmt.Sprintf("%T", call.Reply) + ": " + err.Error(), Err: ErrBadReply, reached: true}
			}
		}
	case status == wire.StatusError:
		call.Error = ServerError(body)
	default:
		call.Error = &CallError{Method: call.ServiceMethod, Status: status, Message: string(body), Remote: true}
	}
	call.done()
}

// handleCall runs a CALL or NOTIFY from the peer. Lookup and argument
// decoding happen here on the reader, so the read buffer need not be
// copied; the method runs on the reader (serveOnReader) or on a worker.
// It reports whether the reader's job moved to another goroutine
// meanwhile.
func (s *session) handleCall(notify bool, id uint32, msg []byte, owned bool) (readerMoved bool) {
	method, timeout, args, err := wire.ParseCall(msg)
	if err != nil {
		s.refuse(notify, id, wire.StatusBadArgs, err.Error(), method)
		return false
	}
	svc, mt, kind := s.handlers.lookup(method)
	switch kind {
	case kindUnknownService:
		s.refuse(notify, id, wire.StatusUnknownService, fmt.Sprintf("unknown service in %q", method), method)
		return false
	case kindUnknownMethod:
		s.refuse(notify, id, wire.StatusUnknownMethod, fmt.Sprintf("service %s has no method in %q", svc.name, method), method)
		return false
	}
	argp, argv := mt.newArgs()
	if owned && adoptRaw(s.codec, args, argp) {
		// The argument is the message's own buffer: no copy.
	} else if err := s.codec.Unmarshal(args, argp); err != nil {
		s.refuse(notify, id, wire.StatusBadArgs, fmt.Sprintf("cannot decode arguments of %s.%s into %v: %v", svc.name, mt.method.Name, mt.argType, err), method)
		return false
	}
	if int(s.running.Load()) > s.opts.maxConcurrentCalls {
		s.refuse(notify, id, wire.StatusBusy, fmt.Sprintf("%d calls already running on this connection", s.opts.maxConcurrentCalls), method)
		return false
	}
	// A method that takes a context gets one that carries the caller's
	// deadline and ends when the caller cancels (CANCEL, via inflight) or
	// the connection dies. A method without one cannot see cancellation,
	// so it costs no context, no timer and no inflight entry.
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if mt.withCtx {
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(s.handlerParent(), timeout)
		} else {
			ctx, cancel = context.WithCancel(s.handlerParent())
		}
		if !notify {
			s.mu.Lock()
			if s.inflight == nil {
				s.inflight = make(map[uint32]context.CancelFunc)
			}
			s.inflight[id] = cancel
			s.mu.Unlock()
		}
	}
	s.mon.callActivity()
	if notify {
		s.queueNotification(pendingNotify{ctx, cancel, id, svc, mt, argv})
		return false
	}
	if served, moved := s.serveOnReader(ctx, cancel, id, svc, mt, argv); served {
		return moved
	}
	workers.run(handlerTask{s: s, n: pendingNotify{ctx, cancel, id, svc, mt, argv}})
	return false
}

// A large raw reply goes straight into the caller's reply slice when it
// has room, as the raw codec's Unmarshal would refill it, instead of into
// a pooled buffer first and then into the slice: one copy of the body
// fewer. The caller's slice is written only under s.mu and only while the
// call is pending, so that once abandon or fail has taken the call (and
// its caller may use the slice again), nothing more is written to it.

// replyInto starts the REPLY id, whose first frame carries rest, in the
// reply slice of its call, if the codec is raw, the status OK, and the
// caller's *[]byte or *RawMessage has room for the whole body. It reports
// whether it did.
func (s *session) replyInto(pm *partialMsg, id uint32, rest []byte) bool {
	if s.codec.Name() != codec.RawName || len(rest) < 1 || wire.Status(rest[0]) != wire.StatusOK {
		return false
	}
	n := pm.total - 1
	s.mu.Lock()
	defer s.mu.Unlock()
	call := s.pending[id]
	if call == nil {
		return false
	}
	dst := rawSlice(call.Reply)
	if dst == nil || cap(*dst) < n {
		return false
	}
	pm.into = call
	pm.buf = append((*dst)[:0], rest[1:]...)
	return true
}

// appendInto appends p to the body of a REPLY going into its call's
// slice, while the call is pending; once it is not, the rest is dropped.
func (s *session) appendInto(pm *partialMsg, id uint32, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[id] != pm.into {
		pm.into, pm.buf, pm.discard = nil, nil, true
		return
	}
	pm.buf = append(pm.buf, p...) // within the slice's capacity: checked in replyInto
}

// finishInto completes the call of a REPLY that went into its slice.
func (s *session) finishInto(pm *partialMsg, id uint32) {
	call := pm.into
	s.mu.Lock()
	if s.pending[id] != call {
		s.mu.Unlock()
		return // abandoned by its caller
	}
	delete(s.pending, id)
	s.mu.Unlock()
	*rawSlice(call.Reply) = pm.buf
	call.done()
}

// adoptRaw makes data itself the decoded argument, when c is the raw codec
// and the argument a []byte or a RawMessage, and reports whether it did.
// The caller gives data up.
func adoptRaw(c codec.Codec, data []byte, argp any) bool {
	if c.Name() != codec.RawName {
		return false
	}
	p := rawSlice(argp)
	if p == nil {
		return false
	}
	*p = data[:len(data):len(data)]
	return true
}

// rawSlice returns v as a *[]byte when it is a non-nil *[]byte or
// *codec.RawMessage (what the raw codec decodes into), else nil.
func rawSlice(v any) *[]byte {
	var p *[]byte
	switch r := v.(type) {
	case *[]byte:
		p = r
	case *codec.RawMessage:
		p = (*[]byte)(r)
	}
	return p
}

// refuse answers a call that will not run. A refused notification is
// logged, since nobody waits for an answer.
func (s *session) refuse(notify bool, id uint32, status wire.Status, msg string, method []byte) {
	defer s.handlerDone() // the call was counted when admitted
	if notify {
		s.log.Warn("pulse: dropped notification", "remote", s.conn.RemoteAddr(), "method", string(method), "status", status, "err", msg)
		return
	}
	s.replyError(id, status, msg, background)
}

// serve runs one method and sends its reply.
func (s *session) serve(ctx context.Context, cancel context.CancelFunc, notify bool, id uint32, svc *service, mt *methodType, argv reflect.Value, mode writeMode) {
	defer s.handlerDone()
	replyv := mt.newReply()
	err, panicked := s.invoke(ctx, svc, mt, argv, replyv)
	if cancel != nil {
		cancel()
		if !notify {
			s.mu.Lock()
			delete(s.inflight, id)
			s.mu.Unlock()
		}
	}
	if notify {
		if err != nil {
			s.log.Debug("pulse: notification handler failed", "method", svc.name+"."+mt.method.Name, "err", err)
		}
		return
	}
	switch {
	case panicked:
		s.replyError(id, wire.StatusPanic, err.Error(), mode)
	case err != nil:
		s.replyError(id, wire.StatusError, err.Error(), mode)
	default:
		s.replyOK(id, replyv.Interface(), svc, mt, mode)
	}
}

// invoke calls the method, turning a panic into an error: the stack is
// logged and the caller gets the panic value.
func (s *session) invoke(ctx context.Context, svc *service, mt *methodType, argv, replyv reflect.Value) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			name := svc.name + "." + mt.method.Name
			s.log.Error("pulse: panic serving "+name, "remote", s.conn.RemoteAddr(), "panic", r, "stack", string(buf))
			err, panicked = fmt.Errorf("panic in %s: %v", name, r), true
		}
	}()
	return mt.call(ctx, svc, argv, replyv), false
}

// replyOK sends the reply of a method of svc that returned no error. The
// method's name is only built for an error message (it cost an allocation
// per call).
func (s *session) replyOK(id uint32, reply any, svc *service, mt *methodType, mode writeMode) {
	bp := getBufFor(reply, wire.HeaderSize+32)
	b := wire.AppendHeader((*bp)[:0], wire.TypeReply, wire.FlagEnd, id, 0)
	b = wire.AppendReplyHead(b, wire.StatusOK)
	b, err := s.codec.Append(b, reply)
	*bp = b
	if err != nil {
		putBuf(bp)
		s.replyError(id, wire.StatusInternal, fmt.Sprintf("cannot encode reply of %s.%s: %v", svc.name, mt.method.Name, err), mode)
		return
	}
	if n := len(b) - wire.HeaderSize; n > s.peerMaxMsg {
		putBuf(bp)
		s.replyError(id, wire.StatusTooLarge, fmt.Sprintf("reply of %s.%s is %d bytes, over the caller's limit of %d", svc.name, mt.method.Name, n, s.peerMaxMsg), mode)
		return
	}
	s.queueMessage(bp, id, wire.TypeReply, mode)
}

// replyError sends a REPLY with an error status, written as mode says.
func (s *session) replyError(id uint32, status wire.Status, msg string, mode writeMode) {
	bp := getBuf()
	b := wire.AppendHeader((*bp)[:0], wire.TypeReply, wire.FlagEnd, id, 0)
	b = wire.AppendReplyHead(b, status)
	if max := s.peerMaxMsg - 1; len(msg) > max {
		msg = msg[:max]
	}
	*bp = append(b, msg...)
	s.queueMessage(bp, id, wire.TypeReply, mode)
}

func (s *session) queueMessage(bp *[]byte, id uint32, typ wire.FrameType, mode writeMode) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		putBuf(bp)
		return
	}
	s.enqueueLocked(bp, id, typ, nil)
	s.writeQueuedLocked(mode)
}

// handleGoAway records the peer's GOAWAY. Calls this side started above
// LastID were not processed by the peer: they fail as not sent, so that
// they can be retried elsewhere. New calls are refused on this session.
func (s *session) handleGoAway(g wire.GoAway) {
	s.mu.Lock()
	s.goAwayIn = &g
	var unprocessed []*Call
	for id, call := range s.pending {
		if id > g.LastID {
			delete(s.pending, id)
			unprocessed = append(unprocessed, call)
		}
	}
	s.mu.Unlock()
	s.log.Debug("pulse: GOAWAY from peer", "remote", s.conn.RemoteAddr(), "code", g.Code, "last_id", g.LastID, "message", g.Message)
	if s.onGoAway != nil {
		s.onGoAway(s, g)
	}
	ce := &ConnError{Reason: ReasonGoAway, Code: g.Code, Message: g.Message}
	for _, call := range unprocessed {
		call.Error = ce
		call.done()
	}
}

// pendingNotify is a notification waiting to run.
type pendingNotify struct {
	ctx    context.Context
	cancel context.CancelFunc
	id     uint32
	svc    *service
	mt     *methodType
	argv   reflect.Value
}

// queueNotification runs a notification after those before it. The
// notifications of one connection run one at a time, in the order the peer
// sent them, so that pushes (chat lines, updates) arrive in order; calls
// run concurrently. The goroutine that runs them exists only while some
// are queued. The queue is bounded by the concurrent-call limit: every
// queued notification counts as admitted (s.running).
func (s *session) queueNotification(n pendingNotify) {
	s.mu.Lock()
	s.notifyQ = append(s.notifyQ, n)
	if s.notifying {
		s.mu.Unlock()
		return
	}
	s.notifying = true
	s.mu.Unlock()
	workers.run(handlerTask{s: s, notifications: true})
}

func (s *session) runNotifications() {
	for {
		s.mu.Lock()
		if len(s.notifyQ) == 0 {
			s.notifying = false
			s.notifyQ = nil
			s.mu.Unlock()
			return
		}
		n := s.notifyQ[0]
		s.notifyQ[0] = pendingNotify{}
		s.notifyQ = s.notifyQ[1:]
		s.mu.Unlock()
		s.serve(n.ctx, n.cancel, true, n.id, n.svc, n.mt, n.argv, inline)
	}
}

// allowPing takes a token for a ping from the peer. Tokens come at one per
// minPingGap; the bucket holds as many as the pings a healthy peer can have
// sent within this side's deadline, since TCP may hold pings back (a lost
// segment, a deep queue, its backoff) and deliver them in one burst, and a
// peer silent for longer than the deadline would have been reaped anyway.
// A flood empties the bucket within that many pings. Reader only.
func (s *session) allowPing() bool {
	now := nanotime()
	burst := 4.0
	if s.mon != nil && s.mon.timeout > 0 {
		burst = max(burst, float64(s.mon.timeout)/float64(s.minPingGap)+2)
	}
	if s.lastPingRecv == 0 {
		s.pingTokens = burst
	} else {
		s.pingTokens = min(burst, s.pingTokens+float64(now-s.lastPingRecv)/float64(s.minPingGap))
	}
	s.lastPingRecv = now
	if s.pingTokens < 1 {
		return false
	}
	s.pingTokens--
	return true
}

// ---- Handler workers ----

// workers runs the handlers of every session in the process. A handler
// needs a few KiB of stack (reflect.Value.Call alone takes more than the
// 2 KiB a new goroutine starts with), and a goroutine per call grew its
// stack, copying it, on every call: more than a third of a busy server's
// CPU time. A worker goroutine keeps its stack from one call to the next.
// Workers are started on demand, run one call at a time, and exit after
// workerIdleTimeout without work, or at once when no session is left, so
// that an idle process (and an idle connection) holds none.
var workers workerPool

const (
	// workerIdleTimeout is how long an idle worker waits for a call.
	workerIdleTimeout = time.Second
	// maxIdleWorkers bounds the workers kept waiting.
	maxIdleWorkers = 1024
)

// handlerTask is a call to run on a worker: one call (n), or the
// notification queue of s.
type handlerTask struct {
	s             *session
	n             pendingNotify
	notifications bool
	read          bool // resume the parked reader of s (park_linux.go)
}

func (t *handlerTask) run() {
	if t.read {
		// On a worker, whose stack has grown already: a new goroutine
		// would grow its stack for every heartbeat of an idle connection.
		t.s.readFrames()
		return
	}
	if t.notifications {
		t.s.runNotifications()
		return
	}
	n := &t.n
	t.s.serve(n.ctx, n.cancel, false, n.id, n.svc, n.mt, n.argv, inline)
}

type worker struct {
	task   chan handlerTask // a task, or the zero task to exit
	idleAt int64            // nanotime when it became idle
}

type workerPool struct {
	mu    sync.Mutex
	idle  []*worker // the most recently idle last
	timer *time.Timer
	armed bool
}

// run runs t on an idle worker, or on a new one.
func (p *workerPool) run(t handlerTask) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.task <- t
		return
	}
	p.mu.Unlock()
	go p.work(&worker{task: make(chan handlerTask, 1)}, t)
}

func (p *workerPool) work(w *worker, t handlerTask) {
	for {
		t.run()
		t = handlerTask{} // let go of the call's values while idle
		if !p.park(w) {
			return
		}
		if t = <-w.task; t.s == nil {
			return
		}
	}
}

// park puts w on the idle list, unless enough are idle or no session is
// left, and reports whether it did.
func (p *workerPool) park(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= maxIdleWorkers || liveSessions.Load() == 0 {
		return false
	}
	w.idleAt = nanotime()
	p.idle = append(p.idle, w)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(workerIdleTimeout, p.reap)
		} else {
			p.timer.Reset(workerIdleTimeout)
		}
	}
	return true
}

// reap ends the workers idle for workerIdleTimeout, and re-arms the timer
// while others remain idle.
func (p *workerPool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := nanotime()
	n := 0
	for n < len(p.idle) && now-p.idle[n].idleAt >= int64(workerIdleTimeout) {
		p.idle[n].task <- handlerTask{}
		n++
	}
	p.dropLocked(n)
	if len(p.idle) == 0 {
		p.armed = false
		return
	}
	p.timer.Reset(time.Duration(p.idle[0].idleAt + int64(workerIdleTimeout) - now))
}

// stopIdle ends every idle worker.
func (p *workerPool) stopIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.idle {
		w.task <- handlerTask{}
	}
	p.dropLocked(len(p.idle))
}

// dropLocked removes the n oldest idle workers from the list.
func (p *workerPool) dropLocked(n int) {
	if n == 0 {
		return
	}
	k := copy(p.idle, p.idle[n:])
	clear(p.idle[k:])
	p.idle = p.idle[:k]
}
