package session

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pulse-rpc/pulse/internal/sock"
	"github.com/pulse-rpc/pulse/wire"
)

// Parking idle readers (Linux).
//
// Every connection has a reader, and a reader blocked in Read holds a
// goroutine and its stack (4 KiB once it has grown, which it does at the
// first call it handles): on a gateway with tens of thousands of idle
// clients, more than all the rest of the connection's state. So a reader
// that finds its connection idle gives its goroutine up: it hands the
// socket to the parker, one goroutine per process waiting in an epoll set
// of its own for any of the parked sockets to become readable, and
// returns. When bytes arrive (a heartbeat, a call, the end of stream), the
// parker starts a fresh reader goroutine for that connection.
//
// The socket is registered level-triggered and one-shot: bytes that
// arrived between the reader's last read and the registration wake the
// parker at once, so nothing is missed, and each registration wakes it at
// most once. The parker's table maps an event to its session through a
// slot and a generation, so that a late event for a connection that has
// been closed (and whose descriptor may have been reused) wakes nobody.
//
// A reader parks only where it would block on an idle connection: its
// buffer is empty, the last read drained the socket and no call is in
// flight either way. When the burst of frames it just read held a call,
// reply or notification, more may follow soon, and parking between them
// would cost a busy connection a park and a resume per burst: the reader
// first waits a little for them (parkLinger), and parks only if none
// came. The Go runtime's own poller keeps the socket too, so that the
// resumed reader reads it as usual. Anything that is not a TCP or Unix
// socket, or TLS over one, keeps its reader.
//
// A TLS connection parks on its socket too, but a readable socket is not
// all that can be waiting: crypto/tls may hold records it read already.
// So before it parks, the reader reads the TLS connection once with a
// deadline that has passed (tlsNowReader): records it holds come back at
// once, and a read that times out with nothing means that nothing but the
// socket can bring more (a timeout does not break a tls.Conn). That read
// does not look at the socket (the runtime refuses a read past its
// deadline before the system call), which is why, as for any connection,
// the reader parks only after a read that found the socket drained. Its bytes
// are never read or written around crypto/tls: no direct system calls,
// no heartbeats answered by the parker, no calls run on the reader.

// How long a reader whose connection just carried a call, reply or
// notification waits for more before it parks. Without a bound, every
// connection that made a call would hold its reader goroutine until its
// next frame, a heartbeat an interval later, and a burst of dials (a
// gateway's clients reconnecting, each making a call or two) would hold
// one goroutine stack per connection at once, memory the runtime keeps
// after the burst and that dwarfs the rest of an idle connection
// (docs/benchmarks.md). A connection whose calls come further
// apart than the wait pays a park and a resume per call, so the wait
// follows the connection's own pace: twice the gap between its last two
// bursts, within [parkLinger, parkLingerMax]; parkLinger after its first.
const (
	parkLinger    = 10 * time.Millisecond
	parkLingerMax = 100 * time.Millisecond
)

// initParking records how to reach conn's socket, when conn can park: a
// TCP or Unix socket, also under TLS.
func (s *Session) initParking(conn net.Conn, rd *reads) {
	raw := sock.Parkable(conn)
	rd.direct = raw != nil
	if tc, ok := conn.(*tls.Conn); ok && raw == nil {
		raw = sock.Parkable(tc.NetConn())
	}
	if raw != nil {
		rd.raw = raw
		s.park.rd, s.park.slot = rd, -1
	}
}

// parkerBehindRounds is how many rounds in a row must each bring the
// parker as many sockets as it takes at once (64) before it hands the
// sockets that woke to workers instead of answering their heartbeats
// itself: a backlog of 256 sockets or more, a few milliseconds of work,
// that one goroutine is not clearing. Below it the parker answers every
// heartbeat itself, bursts included: handing a burst to workers costs
// each socket a goroutine and a second park, more than answering it here
// while the parker keeps up (docs/benchmarks.md).
const parkerBehindRounds = 4

// parker waits for parked sockets to become readable.
//
// Its epoll set is itself watched by the Go runtime's poller (epoll sets
// nest): the parker is an ordinary goroutine that sleeps until the set has
// events, not a thread blocked in epoll_wait, so that bytes arriving on a
// parked socket wake one thread of this process, the runtime's, which sees
// both the socket and the set in one wake.
type parker struct {
	poll  *sock.Poller // the epoll set; armed under parkMu
	slots []parkSlot
	free  []int32
	used  int
}

type parkSlot struct {
	s   *Session
	gen uint32
}

var (
	// parkedBeats counts the heartbeat frames the parker handled itself
	// (heartbeatsParked), for tests.
	parkedBeats atomic.Int64

	parkMu     sync.Mutex // protects theParker and its table
	theParker  *parker
	parkFailed atomic.Bool // epoll is not available: never park
)

// parkerLocked returns the running parker, starting one if needed, or nil
// when epoll is not available. Called with parkMu held.
func parkerLocked() *parker {
	if theParker != nil || parkFailed.Load() {
		return theParker
	}
	poll, err := sock.NewPoller()
	if err != nil {
		parkFailed.Store(true)
		return nil
	}
	p := &parker{poll: poll}
	theParker = p
	go p.run()
	return p
}

func (p *parker) run() {
	onWake := func() bool {
		parkMu.Lock()
		defer parkMu.Unlock()
		if p.used == 0 && liveSessions.Load() == 0 {
			p.stopLocked()
			return true
		}
		return false
	}
	onReady := func(slot int32, gen uint32, fullRounds int) {
		parkMu.Lock()
		s := p.takeLocked(slot, gen)
		parkMu.Unlock()
		if s != nil && (fullRounds >= parkerBehindRounds || !s.heartbeatsParked()) {
			s.pool().run(handlerTask{s: s, read: true})
		}
	}
	if p.poll.Run(onWake, onReady) {
		return
	}
	// epoll failed, which it cannot with a valid set. Wake every parked
	// reader and park no more, rather than strand them.
	parkMu.Lock()
	parkFailed.Store(true)
	p.stopLocked()
	var resume []*Session
	for i := range p.slots {
		if s := p.slots[i].s; s != nil {
			resume = append(resume, s)
			p.releaseLocked(int32(i))
		}
	}
	parkMu.Unlock()
	for _, s := range resume {
		go s.readFrames()
	}
}

// stopLocked retires the parker: no socket parks with it any more.
// Called with parkMu held.
func (p *parker) stopLocked() {
	if theParker == p {
		theParker = nil
	}
}

// stopParker asks the parker to stop if nothing needs it any more; called
// when the last session's reader ends.
func stopParker() {
	parkMu.Lock()
	defer parkMu.Unlock()
	if p := theParker; p != nil {
		p.poll.Wake()
	}
}

// addLocked puts s in a free slot and returns the slot and its generation.
// Called with parkMu held.
func (p *parker) addLocked(s *Session) (int32, uint32) {
	var i int32
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		i = int32(len(p.slots))
		p.slots = append(p.slots, parkSlot{})
	}
	p.slots[i].s = s
	p.slots[i].gen++
	p.used++
	s.park.slot = i
	return i, p.slots[i].gen
}

// takeLocked empties slot i and returns its session, if the slot still
// holds the registration of generation gen. Called with parkMu held.
func (p *parker) takeLocked(i int32, gen uint32) *Session {
	if i < 0 || int(i) >= len(p.slots) || p.slots[i].s == nil || p.slots[i].gen != gen {
		return nil
	}
	s := p.slots[i].s
	p.releaseLocked(i)
	return s
}

func (p *parker) releaseLocked(i int32) {
	p.slots[i].s.park.slot = -1
	p.slots[i].s = nil
	p.free = append(p.free, i)
	p.used--
}

// mayPark reports whether the reader, about to read with nothing buffered,
// should park instead. Called by the reader.
func (s *Session) mayPark() bool {
	pk := &s.park
	if pk.parkSocket() == nil || !pk.rd.drained || parkFailed.Load() {
		return false
	}
	sawData := pk.sawData
	pk.sawData = false
	if !s.quiet() {
		// Set busy, then look again: handlerDone lowers running before
		// it looks at busy, so either this reader sees the last call end
		// or that call's end sees busy and shortens the read that follows.
		pk.rd.busy.Store(true)
		if !s.quiet() {
			return false // wait in a read that the last call to end shortens
		}
	}
	if pk.rd.busy.Load() {
		pk.rd.busy.Store(false) // left from a wait that data ended
	}
	if sawData {
		// The burst just read carried calls or replies: more may follow
		// soon. Wait a little for them before parking.
		if n, err := s.fr.ReadOnce((*lingerReader)(s)); n > 0 || err != nil {
			return false // frames (or the error) for ReadFrame
		}
		return pk.rd.drained && s.quiet()
	}
	if pk.tls() {
		// Records that crypto/tls read already are not on the socket.
		if n, err := s.fr.ReadOnce((*tlsNowReader)(s)); n > 0 || err != nil {
			return false
		}
	}
	return true
}

// tlsNowReader reads a TLS session without waiting: records crypto/tls
// holds come back at once; with none, the read times out at once and
// returns 0 and no error, and the TLS connection stays usable.
type tlsNowReader Session

func (r *tlsNowReader) Read(p []byte) (int, error) {
	return (*Session)(r).readBy(aLongTimeAgo, p)
}

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

// quiet reports whether no call is in flight either way on s.
func (s *Session) quiet() bool {
	return s.running.Load() == 0 && len(s.partial) == 0 && s.pendingCount() == 0
}

// readSoon makes the reader's wait for the next frame end within
// parkLinger, so that the reader of a connection whose calls all ended
// looks again whether to park: it was waiting with calls running, and
// would otherwise hold its goroutine until the peer's next frame, a
// heartbeat up to an interval later. Called when the last running call
// ends.
func (s *Session) readSoon() {
	if s.park.rd.busy.CompareAndSwap(true, false) {
		s.conn.SetReadDeadline(time.Now().Add(parkLinger))
	}
}

// lingerReader reads a session's socket after a burst of data, waiting at
// most parkLinger to parkLingerMax for bytes (see parkLinger): a read
// that finds none by then returns 0 and no error.
type lingerReader Session

func (r *lingerReader) Read(p []byte) (int, error) {
	s := (*Session)(r)
	rd := s.park.rd
	last := rd.last.Load() // the read that ended the burst
	wait := parkLinger
	if rd.prevData != 0 {
		wait = min(max(2*time.Duration(last-rd.prevData), parkLinger), parkLingerMax)
	}
	rd.prevData = last
	return s.readBy(time.Now().Add(wait), p)
}

// readBy reads the connection, through liveConn, with a read deadline of
// t that it clears after: a read that finds nothing by then returns 0 and
// no error.
func (s *Session) readBy(t time.Time, p []byte) (int, error) {
	s.conn.SetReadDeadline(t)
	n, err := liveConn{Conn: s.conn, r: s.park.rd}.Read(p)
	s.conn.SetReadDeadline(time.Time{})
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return n, err
}

// parkReader hands the socket to the parker and reports whether it did.
// When it did, the caller must return at once: a new reader may already
// be running. Called by the reader.
func (s *Session) parkReader() bool {
	pk := &s.park
	s.fr.Release()    // nothing is buffered: a parked connection holds no read buffer
	pk.rd.rsock = nil // nor its reader's state
	parkMu.Lock()
	p := parkerLocked()
	if p == nil {
		parkMu.Unlock()
		return false
	}
	slot, gen := p.addLocked(s)
	// A close that began before this point has looked for a parked reader
	// to resume (unpark, under parkMu) and found none: do not park, or
	// the socket would leave the epoll set with the close and nobody would
	// read it again. fail sets closed before it calls unpark.
	s.mu.Lock()
	closing := s.closed
	s.mu.Unlock()
	if closing {
		p.takeLocked(slot, gen)
		parkMu.Unlock()
		return false
	}
	// Before arming, and under parkMu, which the parker takes before it
	// starts the next reader: that reader may run at once, and must read
	// before it may park again. The socket stays in the set, disarmed,
	// between parks (added).
	added := pk.added
	pk.added = true
	pk.rd.drained = false
	s.baton.release()
	// Armed under parkMu too: the poller's arm request is shared.
	if err := p.poll.Arm(pk.parkSocket(), slot, gen, added); err != nil {
		// Not armed (the connection is closing, or epoll refused): take
		// the slot back, before the lock lets a close (unpark) see it,
		// and read as usual.
		s.baton.take()
		p.takeLocked(slot, gen)
		pk.added = false
		parkMu.Unlock()
		return false
	}
	parkMu.Unlock()
	return true
}

// unpark resumes a parked reader so that it sees the connection close.
// Called before the connection is closed.
func (s *Session) unpark() {
	if s.park.parkSocket() == nil {
		return
	}
	parkMu.Lock()
	var resumed bool
	if p, i := theParker, s.park.slot; p != nil && i >= 0 && int(i) < len(p.slots) && p.slots[i].s == s {
		p.releaseLocked(i)
		resumed = true
	}
	parkMu.Unlock()
	if resumed {
		go s.readFrames()
	}
}

// heartbeatsParked is run by the parker for a parked socket that became
// readable, while the parker keeps up (see parkerBehindRounds). It reads
// what arrived without waiting; when that is only heartbeats (PING,
// PONG), it answers and records them here and parks the socket again, so
// that an idle connection's heartbeat costs no hand-over to a worker
// goroutine. It reports whether it did. Otherwise what it read stays
// buffered for the worker that the parker starts, which reads on as
// usual. A parker that has fallen behind hands every socket to a worker,
// so that heartbeats spread over the cores when there are more than one
// goroutine can answer.
func (s *Session) heartbeatsParked() bool {
	if s.park.tls() {
		return false // read through crypto/tls, by a worker
	}
	s.baton.take()
	if s.answerParkedBeats() {
		return true // parked again: parkReader released the role
	}
	s.baton.release() // to the worker the parker starts
	return false
}

// answerParkedBeats is heartbeatsParked's work, by the reader role.
func (s *Session) answerParkedBeats() bool {
	if _, err := s.fr.ReadOnce((*nowaitReader)(s)); err != nil {
		return false
	}
	for s.fr.Buffered() > 0 {
		h, ok := s.fr.BufferedFrame()
		if !ok || (h.Type != wire.TypePing && h.Type != wire.TypePong) || h.Length != wire.PingSize {
			return false
		}
		h, p, _ := s.fr.ReadFrame() // buffered: no read, no error
		s.handleFrame(h, p)         // a well-formed PING or PONG: no error
		parkedBeats.Add(1)
	}
	// mayPark does not wait here: a parked socket's reader found no data
	// since it last looked (sawData), and heartbeats do not count as data.
	return s.mayPark() && s.parkReader()
}

// nowaitReader reads a parked session's socket without waiting for it: a
// read that finds nothing returns 0 and no error.
type nowaitReader Session

func (r *nowaitReader) Read(p []byte) (int, error) {
	s := (*Session)(r)
	n, err := sock.ReadNow(s.park.socket(), s.shard(sock.Shards), p)
	s.park.rd.got(n, len(p))
	return n, err
}

// roundBudget returns the bytes of the writer's next round of a large
// message (runBudget) from the connection's tcp_info: its segment size
// and its peer's receive window; 0 (a round not cut to segments) when the
// connection is not TCP or the kernel does not say. One system call, once
// per round of a large message.
func (s *Session) roundBudget() int {
	raw := s.park.socket()
	if raw == nil {
		return 0
	}
	mss, wnd, ok := sock.SegmentAndWindow(raw, s.shard(sock.Shards))
	if !ok {
		return 0
	}
	return runBudget(mss, wnd)
}

// writeNow writes b to the socket without waiting and returns how much of
// it the socket took (0 when it took nothing or the write failed: the
// writer then tries again and sees the error). Only for sessions that can
// park (s.park.socket() not nil), by the writer.
func (s *Session) writeNow(b []byte) int {
	n := sock.WriteNow(s.park.socket(), s.shard(sock.Shards), b)
	if n > 0 && s.mon != nil {
		s.mon.lastWrite.Store(s.now())
	}
	return n
}

// writevNow writes the buffers of iov (at most sock.MaxWritev of them) to
// the socket without waiting and returns how many bytes it took: 0 when
// it took nothing, the write failed or the connection cannot park (the
// caller then writes through the connection, which waits and reports the
// error). By the writer.
func (s *Session) writevNow(iov [][]byte) int {
	raw := s.park.socket()
	if raw == nil {
		return 0
	}
	return sock.WritevNow(raw, iov)
}

// parkState is what the reader keeps for parking (park.go). Only
// the reader touches it, except slot.
type parkState struct {
	rd      *reads // the reader's state, which holds the socket; nil when the connection cannot park
	slot    int32  // in the parker's table while parked, else -1; protected by parkMu
	added   bool   // the socket is in the parker's epoll set
	sawData bool   // a call, reply or notification was read since the socket was last found drained
}

// socket returns the connection's socket when its bytes may be read and
// written directly (a TCP or Unix socket without TLS), else nil.
func (pk *parkState) socket() syscall.RawConn {
	if pk.rd == nil || !pk.rd.direct {
		return nil
	}
	return pk.rd.raw
}

// tls reports whether the socket the reader parks on carries TLS (it is
// not read directly): its bytes go through crypto/tls only.
func (pk *parkState) tls() bool {
	return pk.rd != nil && !pk.rd.direct
}

// parkSocket returns the socket the reader parks on, nil when the
// connection cannot park.
func (pk *parkState) parkSocket() syscall.RawConn {
	if pk.rd == nil {
		return nil
	}
	return pk.rd.raw
}
