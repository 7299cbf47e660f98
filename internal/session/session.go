package session

import (
	"context"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/liveness"
	"github.com/pulse-rpc/pulse/wire"
)

// Session is one Pulse connection after its handshake. It is symmetric:
// either end may start calls and serve them. Call ids started by the
// dialer are odd, those started by the acceptor even.
//
// Goroutines: one reader at a time for the life of the connection (the
// reader role; see below); a writer only while there is something to
// write (writeLoop), run inline by the goroutine that queued a small
// message when no writer is active, or started in the background for
// control frames and large messages so that the reader never blocks on a
// write; handlers on the worker pool, at most MaxConcurrentCalls at once.
//
// Every field below says who owns it:
//   - fixed: set by Start before the reader starts, read-only after;
//   - reader: the goroutine that holds the reader role. The role starts
//     with the goroutine that calls ReadLoop and is handed, always
//     whole, to the parker (parkReader), from the parker to a worker
//     (readFrames on a worker) or back to the socket (heartbeatsParked),
//     and from a reader busy in a method to a worker (the on-reader
//     watchdog). Each hand-off is checked in race builds (baton);
//   - writer: the goroutine that holds mu's writing flag;
//   - atomic: any goroutine, through its atomic type;
//   - mu or parkMu: whoever holds that lock.
//
// Functions named ...Locked expect s.mu held and keep it; those named
// ...Unlock expect it held and release it (the writer's kick, which may
// make the caller the writer, cannot return with the lock).
type Session struct {
	// Fixed.
	conn      net.Conn
	codec     codec.Codec
	cfg       *Config
	handlers  *service.Registry
	log       *slog.Logger
	onClose   func(*Session)
	onSuspect func(*Session, bool)        // the peer became suspect (silent for a while) or recovered; from the monitor's timer
	onGoAway  func(*Session, wire.GoAway) // the peer sent GOAWAY, before the calls it did not process fail
	mon       *monitor                    // nil without heartbeats or detection
	// Owner is the root's value for this connection (its Peer), set by
	// the creator before the reader starts.
	Owner       any
	peerTimeout time.Duration // the silence deadline the peer enforces (its HELLO); the rest of the HELLO is not kept
	maxFrame    int           // largest frame payload this side sends
	peerMaxMsg  int           // largest message this side sends
	maxMsg      int           // largest message this side accepts
	minPingGap  time.Duration // pings from the peer closer than this are excess; 0 for no limit

	// Atomic.
	parent   atomic.Pointer[handlerCtx] // parent of the handlers' contexts, made on first use (handlerParent)
	running  atomic.Int32               // peer calls admitted and not finished: arriving, running, or being refused
	sendFull atomic.Bool                // the send queue reached its bound (queue.go); set and cleared under mu
	rd       *reads                     // the connection's reads: time of the last (rd.last), the started frame and message (stall.go)
	drainSt  atomic.Pointer[drainState] // set when this side starts draining (drain.go)
	flushed  atomic.Uint64              // bytes of the data lane written
	logs     atomic.Pointer[peerLogs]   // peer-caused log lines' rate limits, made on first use (peerlog.go)
	in       flowIn                     // flow control of what the peer sends (reader; its atomics: any goroutine)

	// Writer.
	iov net.Buffers // the writev list

	// Reader.
	fr           *wire.Reader
	baton        baton     // checks the reader role's hand-offs in race builds (baton_race.go)
	park         parkState // park.slot excepted: parkMu
	partial      map[uint32]*partialMsg
	lastPingRecv int64   // clock ns, for the ping rate limit
	pingTokens   float64 // pings the peer may send now (a token bucket)
	pingStrikes  int32
	reserved     int32 // bytes of partial messages' buffers made at their announced size (assemble.go)
	// heldN replies of methods run on the reader wait in the queue for
	// the reader to flush them once its buffer is empty.
	heldN uint8
	// dialer is fixed: this side dialed and uses odd call ids. Beside
	// heldN to save padding.
	dialer bool
	// dataFirst says that the data lane starts with the rest of a frame
	// that a write without waiting left half written: the next write
	// must send it before the control lane (writer.go). Under mu; here
	// for the padding.
	dataFirst bool

	mu         sync.Mutex    // protects following
	draining   chan struct{} // closed when this side starts draining; made on first use (Draining)
	nextID     uint32
	credit     int32                         // bytes of data-frame payload the peer lets this side send now (flow.go)
	smallWait  int32                         // messages of one frame in large, waiting for credit
	lastPeerID uint32                        // highest call id from the peer accepted here
	largeBytes int                           // bytes of the messages in large not yet handed to a write
	room       chan struct{}                 // closed when the send queue has room again, for those waiting (queue.go)
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
	// for them, so they are made on first use (Done, ReaderDone): an
	// idle connection carries neither.
	done       chan struct{}
	readerDone chan struct{}
	notifyQ    []pendingNotify // notifications waiting for their turn

	// Reader, here for the alignment of the fields around it: the peer's
	// ids below lastPeerID not arrived yet, nil for none (ids.go).
	gaps *idGaps

	writing     bool // a writer runs (the writer role)
	closed      bool
	goAwayOut   bool // this side sent GOAWAY, naming lastPeerID
	writeClosed bool // this side half-closed the connection: nothing more is written
	notifying   bool // a goroutine runs notifyQ
	slowClosing bool // the send queue overflowed: closing as a slow consumer
	doneClosed  bool // done is closed, or would be if it had been made
	readerEnded bool // readerDone is closed, or would be if it had been made
}

// liveSessions counts the sessions whose reader runs, in this process.
// When it drops to zero the parker and the on-reader watchdogs stop.
var liveSessions atomic.Int64

// newSession builds the session for a connection whose handshake is done.
// fr is the reader that read the handshake: it may hold frames already.
func newSession(conn net.Conn, fr *wire.Reader, c codec.Codec, dialer bool, cfg *Config, handlers *service.Registry, peerHello wire.Hello, rd *reads) *Session {
	s := &Session{
		conn:        conn,
		fr:          fr,
		codec:       c,
		dialer:      dialer,
		cfg:         cfg,
		handlers:    handlers,
		log:         cfg.Logger,
		peerTimeout: peerHello.Timeout,
		maxFrame:    int(peerHello.MaxFrameSize),
		maxMsg:      int(cfg.MaxMessageSize),
		pending:     make(map[uint32]*Call),
		rd:          rd,
	}
	s.initParking(conn, rd)
	s.peerMaxMsg = int(peerHello.MaxMessageSize)
	if s.peerMaxMsg <= 0 {
		s.peerMaxMsg = math.MaxInt32
	}
	s.credit = int32(peerHello.InitialWindow) // at most wire.MaxWindow (checkPeerHello)
	s.in.granted.Store(cfg.Window)
	s.nextID = 2
	if dialer {
		s.nextID = 1
	}
	s.rd.last.Store(s.now())
	fr.SetMaxPayload(cfg.MaxFrameSize)
	s.frameDone() // the handshake's reads are not a frame of the session's
	return s
}

// isPeerID reports whether id is one the peer may use to start a call.
func (s *Session) isPeerID(id uint32) bool {
	return id != 0 && (id&1 == 0) == s.dialer
}

// lazyChanLocked returns *ch, making it if it is nil, or a closed channel
// if it should be closed already. Called with s.mu held.
func (s *Session) lazyChanLocked(ch *chan struct{}, closed bool) chan struct{} {
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

// Done returns a channel that is closed when the session is closed.
func (s *Session) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lazyChanLocked(&s.done, s.doneClosed)
}

// ReaderDone returns a channel that is closed when the reader ends for
// good.
func (s *Session) ReaderDone() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lazyChanLocked(&s.readerDone, s.readerEnded)
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
func (s *Session) handlerParent() context.Context {
	if p := s.parent.Load(); p != nil {
		return p.ctx
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parent.Load()
	if p == nil {
		base := context.Background()
		if f := s.cfg.BaseContext; f != nil {
			base = f(s)
		}
		ctx, cancel := context.WithCancelCause(base)
		p = &handlerCtx{ctx, cancel}
		if s.closed {
			// fail has looked already: cancel here.
			cancel(s.cause(s.err))
		}
		s.parent.Store(p)
	}
	return p.ctx
}

// Fail closes the session with ce as its cause, unless it is closed
// already. Every pending call fails with ce, marked with whether its
// request was sent; running handlers see their context cancelled.
func (s *Session) Fail(ce *ConnError) {
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
		p.cancel(s.cause(ce))
	}
	if s.onClose != nil {
		// Before the calls fail, so that a retry finds this session gone.
		s.onClose(s)
	}
	for id, call := range pending {
		call.done(ce.WithSent(sent[id]))
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
func (s *Session) goAway(code wire.GoAwayCode, msg string, reason Reason, err error, d time.Duration) {
	s.sendGoAway(code, msg)
	s.flush(d)
	s.Fail(&ConnError{Reason: reason, Code: code, Message: msg, Err: err})
}

// sendGoAway queues GOAWAY, naming the highest call id the peer has
// started that this side has read.
func (s *Session) sendGoAway(code wire.GoAwayCode, msg string) {
	s.mu.Lock()
	s.goAwayOut = true
	last := s.lastPeerID
	s.mu.Unlock()
	s.queueControl(func(b []byte) []byte {
		return wire.AppendGoAway(b, wire.GoAway{LastID: last, Code: code, Message: msg})
	}, background)
}

// Close closes the session from this side.
func (s *Session) Close() {
	s.goAway(wire.GoAwayNormal, "", ReasonShutdown, nil, 100*time.Millisecond)
}

// closeErr returns why the session closed.
func (s *Session) closeErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		return nil
	}
	return s.err.WithSent(true)
}

// cause is the cause handler contexts are cancelled with when the session
// closes with ce.
func (s *Session) cause(ce *ConnError) error {
	if f := s.cfg.PublicErr; f != nil {
		return f(ce)
	}
	return ce
}

// now reads the session's clock (Config.Clock; Start sees that it is set).
func (s *Session) now() int64 { return s.cfg.Clock.Now() }

// pool returns the worker pool that runs the session's handlers.
func (s *Session) pool() *WorkerPool {
	if p := s.cfg.Workers; p != nil {
		return p
	}
	return &workers
}

// closedChan is a closed channel, for a lazily made channel asked for
// after it would have been closed.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// procEpoch and procNanotime time the process-wide machinery (the worker
// pool, the on-reader watchdog), which no one session's clock serves.
var procEpoch = time.Now()

func procNanotime() int64 { return int64(time.Since(procEpoch)) }

// Stats is a snapshot of one connection's health. The root's ConnStats
// has the same fields in the same order and is converted from it.
type Stats struct {
	RemoteAddr, Codec    string
	RTT                  time.Duration
	Phi                  float64
	SinceRead            time.Duration
	Interval             time.Duration
	Timeout, PeerTimeout time.Duration
	Pending, Running     int
	Credit, Queued       int
	Suspect, Draining    bool
	Closed               bool
}

// Stats returns a snapshot of the connection's health.
func (s *Session) Stats() Stats {
	st := Stats{
		RemoteAddr:  s.conn.RemoteAddr().String(),
		Codec:       s.codec.Name(),
		SinceRead:   time.Duration(s.now() - s.rd.last.Load()),
		PeerTimeout: s.peerTimeout,
		Running:     int(s.running.Load()),
	}
	s.mu.Lock()
	st.Pending = len(s.pending)
	st.Credit = int(s.credit)
	st.Queued = s.outstandingLocked()
	st.Draining = s.goAwayOut
	st.Closed = s.closed
	s.mu.Unlock()
	if m := s.mon; m != nil {
		st.RTT = time.Duration(m.srtt.Load())
		st.Interval = m.interval
		st.Timeout = m.timeout
		m.mu.Lock()
		st.Suspect = m.isSuspect
		lastSign := m.lastSign(s.rd.last.Load())
		m.mu.Unlock()
		if p, ok := m.det.(*liveness.PhiAccrual); ok {
			// Judged as the detector judges it: from the last sign of
			// life, which may be the kernel's (see monitor.lookKernel).
			st.Phi = p.Phi(time.Duration(s.now()), time.Duration(lastSign))
		}
	}
	return st
}

// Err returns why the session closed, nil while it is open.
func (s *Session) Err() *ConnError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Codec returns the negotiated codec.
func (s *Session) Codec() codec.Codec { return s.codec }

// RemoteAddr and LocalAddr are the connection's addresses.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// LocalAddr is the connection's local address.
func (s *Session) LocalAddr() net.Addr { return s.conn.LocalAddr() }
