package session

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse/internal/sock"
	"github.com/pulse-rpc/pulse/liveness"
	"github.com/pulse-rpc/pulse/wire"
)

// monitor keeps one connection alive and judges its peer: it sends PINGs
// when this side has written nothing for pingAfter, declares the peer dead
// per its detector, kills a write that makes no progress, and on a server
// enforces the idle and age limits. It runs on one timer, re-armed for the
// earliest thing due, so an idle connection costs one timer event per
// interval and no goroutine.
//
// Ownership: the fields marked fixed are set by newMonitor; the detector
// is safe for concurrent use (the reader observes, the timer checks); the
// atomics are written by the writer (lastWrite, writeStart), by the
// reader's PONG handling (srtt) and by handlers (lastActive), and read by
// the timer; everything else is the timer's, under mu.
type monitor struct {
	// Fixed.
	s             *Session
	interval      time.Duration // granted heartbeat interval, 0 if none
	pingAfter     time.Duration // write silence after which this side pings, 0 for never
	timeout       time.Duration // silence after which the peer is dead, 0 for never
	det           liveness.Detector
	stall         liveness.StallGuard
	suspect       time.Duration            // silence after which the connection is suspect
	acked         func() (sock.Acks, bool) // the peer's acknowledgements as TCP sees them, nil if unknown; fixed
	lastAcks      sock.Acks                // at the last look by either of the two below, protected by mu
	watchProgress uint64                   // acked().progress at the write watchdog's last look (ackedMoved), protected by mu
	lookProgress  uint64                   // acked().progress at lookKernel's last look, protected by mu
	loss          func() (sock.Loss, bool) // the packets TCP lost, nil if unknown; fixed
	oooSeen       uint64                   // loss().ooo at the last look, protected by mu
	oooAt         int64                    // ns, time of the last look at ooo, 0 while not looking; protected by mu
	heard         int64                    // ns, when a look last found the kernel hearing from the peer; protected by mu
	lastWrite     atomic.Int64             // ns, end of the last write
	writeStart    atomic.Int64             // ns, start of the write in progress, 0 if none
	srtt          atomic.Int64             // smoothed round-trip time, ns

	pathLoss *pathLoss // the phi detector's view of loss, nil with another detector; protected by mu

	// Server limits; fixed.
	idleLimit  time.Duration
	ageAt      int64 // ns, 0 for no age limit
	grace      time.Duration
	lastActive atomic.Int64 // ns, when the last call ended or started; kept only with idleLimit

	mu        sync.Mutex // protects following
	timer     *time.Timer
	scheduled int64 // ns, when the timer is due
	stopped   bool
	isSuspect bool
	closing   bool   // idle or age GOAWAY sent
	checks    uint32 // times the timer fired, for tests
	// unreadSince is when a check that would have convicted the peer
	// first found its bytes waiting unread in the kernel (0: it did not).
	unreadSince int64
}

// newMonitor sets up liveness for s once the handshake has fixed the
// interval and deadlines.
func newMonitor(s *Session, hb Heartbeat, interval time.Duration, limits Limits) *monitor {
	m := &monitor{s: s, interval: interval, stall: liveness.StallGuard{}}
	if interval > 0 && hb.Interval > 0 {
		m.pingAfter = interval
		if !s.dialer {
			// The dialer's pings normally keep both directions busy; the
			// acceptor waits a quarter interval more before it pings, so
			// that its PONG, not a PING of its own, answers the dialer's.
			m.pingAfter = interval + interval/4
		}
	}
	if hb.Timeout > 0 && !(s.dialer && hb.Interval < 0) {
		m.timeout = hb.Timeout
		m.det = liveness.Fixed{Timeout: hb.Timeout}
		if hb.Phi && interval > 0 {
			cfg := liveness.DefaultPhiConfig(interval, hb.Timeout)
			cfg.Threshold = hb.PhiThreshold
			if d, err := liveness.NewPhiAccrual(cfg); err == nil {
				m.det = d
				m.pathLoss = new(pathLoss)
			} else {
				s.log.Warn("pulse: phi detector refused its settings; using the fixed detector", "err", err)
			}
		}
		m.suspect = hb.Timeout / 2
		if interval > 0 {
			m.suspect = min(m.suspect, 2*interval)
		}
	}
	m.acked, m.loss = sock.Progress(s.conn, s.shard(sock.Shards))
	now := m.s.now()
	m.lastWrite.Store(now)
	m.lastActive.Store(now)
	if !s.dialer {
		m.idleLimit = limits.MaxConnIdle
		if limits.MaxConnAge > 0 {
			// Jitter spreads the reconnections of clients that connected
			// together; without it the age is exact (short-connection mode).
			var jitter time.Duration
			if j := limits.MaxConnAgeJitter; j > 0 {
				jitter = time.Duration((rand.Float64()*2 - 1) * j * float64(limits.MaxConnAge))
			}
			m.ageAt = now + int64(limits.MaxConnAge+jitter)
		}
		m.grace = limits.MaxConnAgeGrace
	}
	return m
}

// start arms the timer.
func (m *monitor) start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.s.now()
	next := m.nextLocked(now)
	if next == 0 {
		return
	}
	m.scheduled = next
	m.timer = time.AfterFunc(time.Duration(next-m.s.now()), m.check)
}

// answered is called when this side has answered a PING. On the side that
// does not ping (the acceptor, while the dialer pings), the PONG is the
// write that lets the peer hear from it, and the timer, due at the old
// ping deadline, would fire only to find that out, once per interval on
// every idle connection. The timer is moved to what is due now instead:
// moving a timer costs less than one firing (which starts a goroutine).
// m may be nil (no heartbeats).
func (m *monitor) answered() {
	if m == nil {
		return
	}
	m.mu.Lock()
	if !m.stopped && m.timer != nil {
		now := m.s.now()
		// The PONG is this side's write, as check takes its own PING to
		// be: where it waits for a background writer (TLS, pipes) the
		// write would otherwise count only once it is done.
		m.lastWrite.Store(now)
		if next := m.nextLocked(now); next > m.scheduled {
			m.scheduled = next
			m.timer.Reset(time.Duration(next - now))
		}
	}
	m.mu.Unlock()
}

// stop disarms the timer for good.
func (m *monitor) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
	if m.timer != nil {
		m.timer.Stop()
	}
}

// observe is called by the reader for every read that returned bytes.
// Arrivals after a gap of at least half an interval (1ms without one)
// feed the detector. This gap and suspectLate are derived from the
// settings, not kept: every connection with heartbeats allocates a
// monitor, and TestMonitorSize keeps it within 256 bytes.
func (m *monitor) observe(now, prev int64) {
	if m.det != nil {
		if gap := time.Duration(now - prev); gap >= max(m.interval/2, time.Millisecond) {
			m.det.Observe(time.Duration(now), gap)
		}
	}
}

// suspectLate is how much later than the suspect time the timer may look
// at a silence, so that a healthy peer's heartbeat usually arrives first
// and the timer fires less often; early enough for several looks at the
// kernel (lookKernel) before the Timeout.
func (m *monitor) suspectLate() time.Duration {
	late := (m.timeout - m.suspect) / 4
	if m.interval > 0 {
		late = min(late, m.interval)
	}
	return late
}

// ackedMoved reports whether the peer acknowledged data since *seen,
// the progress at the caller's last look, which it moves on; it records
// what it saw in m.lastAcks. The write watchdog and lookKernel each keep
// their own *seen: when both look in the same check, the first must not
// use up the news of the second. Called with m.mu held.
func (m *monitor) ackedMoved(seen *uint64) bool {
	if m.acked == nil {
		return false
	}
	a, ok := m.acked()
	if !ok {
		return false
	}
	moved := a.Progress != *seen
	*seen = a.Progress
	m.lastAcks = a
	return moved
}

// bulkInFlight is how many unacknowledged packets make a bulk transfer
// for lookKernel: far more than heartbeats and small calls keep in flight.
const bulkInFlight = 16

// lookKernel looks, once nothing has been read for the suspect time, for
// signs of life that the kernel sees and the reader does not:
//
//   - data from the peer received out of order: after a lost segment TCP
//     holds back everything that follows until the retransmission arrives,
//     which behind a deep queue takes as long as the queue, so the reader
//     sees silence while the peer sends;
//   - the peer acknowledging a bulk transfer of this side's: behind a deep
//     queue, the peer's own small writes (its heartbeats) can be held back
//     for seconds by its TCP, which waits for acknowledgements that are
//     queued behind this side's data, while its kernel keeps acknowledging
//     that data (the fault suite's slow-link trap). This lasts as long as
//     the queue, also after this side's last write has returned.
//
// heard is set to now when either count moved since the previous look,
// lookGap before (the timer looks at that pace while the peer is silent,
// from the first look at the suspect time). Acknowledgements count only
// while a write is blocked or a bulk of data (bulkInFlight packets) is in
// flight: a TCP-terminating proxy in front of a dead peer acknowledges
// small writes (heartbeats) forever, at once, and must not hide the death;
// it stops acknowledging a bulk transfer once its buffers fill, as does
// the kernel of a frozen peer process. Called with m.mu held.
func (m *monitor) lookKernel(now, lastRead int64) {
	if m.loss == nil && m.acked == nil {
		return
	}
	if now-lastRead < int64(m.suspect) {
		m.oooAt = 0
		return
	}
	if m.oooAt != 0 && now-m.oooAt < int64(m.lookGap()) {
		return
	}
	moved := m.ackedMoved(&m.lookProgress) && (m.writeStart.Load() != 0 || m.lastAcks.Unacked >= bulkInFlight)
	if m.loss != nil {
		if l, ok := m.loss(); ok {
			moved = moved || l.OOO != m.oooSeen
			m.oooSeen = l.OOO
		}
	}
	if m.oooAt != 0 && moved {
		m.heard = now
	}
	m.oooAt = now
}

// lookGap is the least time between two looks of lookKernel: half an
// interval, or without one (a peer that sends no heartbeats) a quarter of
// the suspect time, and never less than 10ms.
func (m *monitor) lookGap() time.Duration {
	return max(m.interval/2, m.suspect/4, 10*time.Millisecond)
}

// callActivity records that a call started or ended, for the idle limit;
// without one (or without heartbeats: m nil) the clock is not read.
func (m *monitor) callActivity() {
	if m != nil && m.idleLimit > 0 {
		m.lastActive.Store(m.s.now())
	}
}

// writeBegins and writeEnds bracket a write system call, for the write
// watchdog; m may be nil (no heartbeats).
func (m *monitor) writeBegins() {
	if m != nil {
		m.writeStart.Store(m.s.now())
	}
}

func (m *monitor) writeEnds() {
	if m != nil {
		m.writeStart.Store(0)
		m.lastWrite.Store(m.s.now())
	}
}

// lastSign returns when the peer last showed life: lastRead, or a later
// look that found the kernel hearing from it. Called with m.mu held.
func (m *monitor) lastSign(lastRead int64) int64 {
	if m.heard != 0 && m.heard > lastRead {
		return m.heard
	}
	return lastRead
}

// stallAfterLocked is how long a write may go without progress before it
// is declared stuck: the Timeout, or two round trips when that is longer
// (the larger of the PONGs' and TCP's smoothed round trips; TCP's, read at
// the last look, follows a growing queue more closely). An acknowledgement
// takes a round trip to come back, and behind a deep queue (seconds of
// data in a slow link's buffer) a round trip can be longer than the
// Timeout while the link delivers steadily; TCP's own retransmission timer
// waits longer still. A dead peer is not found later for it: that is the
// detector's work, from the silence of reads. Called with m.mu held.
func (m *monitor) stallAfterLocked() time.Duration {
	return max(m.timeout, 2*time.Duration(m.srtt.Load()), 2*m.lastAcks.RTT)
}

// rtt records a round-trip sample from a PONG.
func (m *monitor) rtt(sample time.Duration) {
	if sample <= 0 {
		return
	}
	srtt := int64(sample)
	if old := m.srtt.Load(); old != 0 {
		srtt = old + (srtt-old)/8
	}
	m.srtt.Store(srtt)
	if _, ok := m.det.(*liveness.PhiAccrual); ok {
		m.mu.Lock()
		m.setPauseLocked()
		m.mu.Unlock()
	}
}

// setPauseLocked gives the phi detector the silence a lost packet adds. A
// lost packet silences the peer for a retransmission timeout: at least
// the minimum, plus a round trip. On a path that has been losing packets
// the retransmission can be lost too, and TCP waits twice as long again
// before the next: the pause then covers both. Called with m.mu held.
func (m *monitor) setPauseLocked() {
	p, ok := m.det.(*liveness.PhiAccrual)
	if !ok {
		return
	}
	pause := liveness.RetransmitPause + time.Duration(m.srtt.Load())
	if m.pathLoss != nil && m.pathLoss.lossy {
		pause += 2 * liveness.RetransmitPause
	}
	p.SetPause(pause)
}

// pathLoss is what lookForLoss found. Only a phi detector uses it, so it
// is not part of every connection's monitor.
type pathLoss struct {
	seen  uint64 // ooo plus retransmissions at the last look
	look  int64  // ns, when loss was last looked at, 0 for never
	at    int64  // ns, when a look last found new losses, 0 for never
	lossy bool   // the path lost packets within lossMemory
}

// lossMemory is how long a path that lost packets is treated as lossy
// after its last loss.
const lossMemory = time.Minute

// lookForLoss looks, for the phi detector, at whether the path has been
// losing packets: packets received out of order (the peer's, behind one
// that was lost) or retransmitted by this side. It looks at most every
// four intervals (and a second), and only while the peer is heard from
// (its bytes were read less than a minimum retransmission timeout ago), so
// that the retransmissions of this side's heartbeats to a peer that has
// just died do not count as loss on a live path. Called with m.mu held.
func (m *monitor) lookForLoss(now, lastRead int64) {
	pl := m.pathLoss
	if m.loss == nil || pl == nil || pl.look != 0 && now-pl.look < int64(max(4*m.interval, time.Second)) ||
		now-lastRead >= int64(liveness.RetransmitPause) {
		return
	}
	l, ok := m.loss()
	if !ok {
		return
	}
	pl.look = now
	// The first look counts the losses since the connection began.
	if n := l.OOO + l.Retrans; n != pl.seen {
		pl.seen = n
		pl.at = now
	}
	if lossy := pl.at != 0 && now-pl.at < int64(lossMemory); lossy != pl.lossy {
		pl.lossy = lossy
		m.setPauseLocked()
	}
}

// nextLocked returns when the timer should next fire (ns), or 0 for never.
func (m *monitor) nextLocked(now int64) int64 {
	next := int64(0)
	at := func(t int64) {
		if t > 0 && (next == 0 || t < next) {
			next = t
		}
	}
	if m.pingAfter > 0 {
		at(m.lastWrite.Load() + int64(m.pingAfter))
	}
	if m.det != nil {
		v := m.det.Check(time.Duration(now), time.Duration(m.lastSign(m.s.rd.last.Load())))
		if v.NextCheck != liveness.Never {
			at(int64(v.NextCheck))
		}
		if !m.isSuspect {
			at(m.s.rd.last.Load() + int64(m.suspect+m.suspectLate()))
		} else {
			// Look again soon to see the peer recover; without a
			// heartbeat interval (a client that sends none), at a
			// fraction of the suspect time, not every millisecond. The
			// gap is counted from the last look at the kernel
			// (lookKernel), not from this check: a check that came
			// between for something else (a PING due, the write
			// watchdog) is too soon after that look to look again,
			// and counting from it would leave up to twice the gap
			// between looks, one look fewer before the Timeout.
			gap := int64(m.lookGap()) + int64(time.Millisecond)
			if m.oooAt != 0 {
				at(m.oooAt + gap)
			} else {
				at(now + gap)
			}
		}
	}
	if ws := m.writeStart.Load(); ws != 0 && m.timeout > 0 {
		at(ws + int64(m.stallAfterLocked()))
	}
	if m.idleLimit > 0 && !m.closing {
		at(m.lastActive.Load() + int64(m.idleLimit))
	}
	if m.ageAt > 0 && !m.closing {
		at(m.ageAt)
	}
	if _, n := m.stallLocked(now); n != 0 {
		at(n)
	}
	if next != 0 && next <= now {
		next = now + int64(time.Millisecond)
	}
	return next
}

// check runs on the timer: it decides what is due (judgeLocked, under
// m.mu) and then acts on it (act, without the lock), and re-arms.
func (m *monitor) check() {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	m.checks++
	now := m.s.now()
	v := m.judgeLocked(now)
	if v.dead == "" && !v.stalled && v.stalledPeer == "" {
		next := m.nextLocked(now)
		if v.recheck && m.scheduled > now {
			next = min(next, m.scheduled)
		}
		if next != 0 {
			m.scheduled = next
			m.timer.Reset(time.Duration(next - now))
		}
	}
	m.mu.Unlock()
	m.act(now, v)
}

// verdict is what one check found due.
type verdict struct {
	dead           string        // why the peer is dead; "" if it is not
	stalled        bool          // a write made no progress for stallAfter
	stallAfter     time.Duration //
	recheck        bool          // look again at m.scheduled: this process lagged, or the peer's bytes wait unread
	ping           bool          // send a PING
	goAway         wire.GoAwayCode
	goAwayMsg      string // a GOAWAY for the idle or age limit, when not ""
	stalledPeer    string // why a frame or message of the peer's stalled (stall.go), when not ""
	suspect        bool
	suspectChanged bool
}

// judgeLocked decides what is due at now: the write watchdog, the
// detector, a heartbeat, the idle and age limits. Called with m.mu held.
func (m *monitor) judgeLocked(now int64) verdict {
	var v verdict
	late := m.stall.Late(time.Duration(m.scheduled), time.Duration(now))
	lastRead := m.s.rd.last.Load()
	v.stalled, v.stallAfter = m.watchWriteLocked(now, late)
	v.suspect = m.isSuspect
	if m.det != nil {
		var unread bool
		v.dead, unread = m.judgePeerLocked(now, lastRead, late)
		v.recheck = unread
		v.suspect = now-lastRead >= int64(m.suspect)
	}
	v.recheck = v.recheck || late
	if m.pingAfter > 0 && now-m.lastWrite.Load() >= int64(m.pingAfter) {
		v.ping = true
		m.lastWrite.Store(now) // the PING is the write; do not send two
	}
	v.goAway, v.goAwayMsg = m.limitsLocked(now)
	v.stalledPeer, _ = m.stallLocked(now)
	v.suspectChanged = v.suspect != m.isSuspect
	m.isSuspect = v.suspect
	return v
}

// watchWriteLocked is the write watchdog: a write blocked for the Timeout
// with no acknowledgement from the peer meanwhile is stalled. Called with
// m.mu held.
func (m *monitor) watchWriteLocked(now int64, late bool) (stalled bool, stallAfter time.Duration) {
	ws := m.writeStart.Load()
	if ws == 0 || m.timeout <= 0 || now-ws < int64(m.timeout) {
		return false, 0
	}
	switch {
	case late:
		m.scheduled = int64(m.stall.Recheck(time.Duration(now)))
	case m.ackedMoved(&m.watchProgress):
		// The write is blocked but the peer keeps acknowledging: a slow
		// link (the receiver may open its window in large steps), not a
		// stalled one. Judge from now on.
		m.writeStart.CompareAndSwap(ws, now)
	default:
		stallAfter = m.stallAfterLocked()
		stalled = now-ws >= int64(stallAfter) // else nextLocked looks again then
	}
	return stalled, stallAfter
}

// judgePeerLocked asks the detector about the peer's silence, with what
// the kernel knows (lookKernel, lookForLoss). It returns why the peer is
// dead ("" if it is not), and whether its bytes wait unread, so that the
// check looks again shortly instead. Called with m.mu held.
func (m *monitor) judgePeerLocked(now, lastRead int64, late bool) (dead string, unread bool) {
	if _, ok := m.det.(*liveness.PhiAccrual); ok {
		m.lookForLoss(now, lastRead)
	}
	m.lookKernel(now, lastRead)
	v := m.det.Check(time.Duration(now), time.Duration(m.lastSign(lastRead)))
	switch {
	case !v.Dead:
		m.unreadSince = 0
		return "", false
	case late:
		// This process itself was stalled: what the peer sent meanwhile
		// may sit unread. Look again shortly.
		m.scheduled = int64(m.stall.Recheck(time.Duration(now)))
		return "", false
	}
	unread, waited := m.peerBytesUnreadLocked(now)
	switch {
	case unread:
		// The peer spoke; this process has not read it yet (its readers
		// are behind, as on a machine asked for more CPU than it has).
		// Look again shortly.
		m.scheduled = int64(m.stall.Recheck(time.Duration(now)))
		return "", true
	case waited > 0:
		return fmt.Sprintf("%s; bytes from the peer have waited unread for %v: this process is not reading its connections", v.Reason, waited.Round(time.Millisecond)), false
	}
	return v.Reason, false
}

// limitsLocked returns the GOAWAY a server sends for its age or idle
// limit, once, when one is reached. Called with m.mu held.
func (m *monitor) limitsLocked(now int64) (wire.GoAwayCode, string) {
	if m.closing {
		return 0, ""
	}
	s := m.s
	switch {
	case m.ageAt > 0 && now >= m.ageAt:
		m.closing = true
		return wire.GoAwayMaxAge, "connection reached its maximum age"
	case m.idleLimit > 0 && s.running.Load() == 0 && s.pendingCount() == 0 && now-m.lastActive.Load() >= int64(m.idleLimit):
		m.closing = true
		return wire.GoAwayIdle, fmt.Sprintf("no calls for %v", m.idleLimit)
	}
	return 0, ""
}

// act does what judgeLocked found due, without m.mu.
func (m *monitor) act(now int64, v verdict) {
	s := m.s
	switch {
	case v.stalled:
		s.Fail(&ConnError{Reason: ReasonWriteStall, Message: fmt.Sprintf("a write made no progress for %v", v.stallAfter)})
		return
	case v.dead != "":
		s.log.Info("pulse: peer declared dead", "remote", s.conn.RemoteAddr(), "why", v.dead)
		// Tell a peer that is only silent, not gone, why it is cut off;
		// do not wait long for a path that may be dead.
		s.goAway(wire.GoAwayPeerSilent, v.dead, ReasonSilent, nil, 50*time.Millisecond)
		return
	case v.stalledPeer != "":
		s.closeStalled(v.stalledPeer)
		return
	}
	if v.ping {
		s.queueControl(func(b []byte) []byte { return wire.AppendPing(b, wire.TypePing, uint64(now)) }, noWait)
	}
	if v.suspectChanged && s.onSuspect != nil {
		s.onSuspect(s, v.suspect)
	}
	if v.goAwayMsg != "" {
		go s.drain(v.goAway, v.goAwayMsg, m.grace)
	}
}

// peerBytesUnreadLocked is asked when the detector would convict the
// peer: it reports whether bytes from the peer wait in the kernel, read by
// nobody yet. Those are signs of life that only this side's lag hides, so
// the peer is given time for them to be read, up to one more Timeout: a
// process that reads nothing for that long is not keeping up, and its
// calls must fail within a bound all the same. waited is how long the
// bytes have waited when that time is up, else 0. Called with m.mu held.
func (m *monitor) peerBytesUnreadLocked(now int64) (unread bool, waited time.Duration) {
	if waiting, ok := sock.PeerBytesWaiting(m.s.conn); !ok || !waiting {
		m.unreadSince = 0
		return false, 0
	}
	if m.unreadSince == 0 {
		m.unreadSince = now
	}
	if d := time.Duration(now - m.unreadSince); d >= m.timeout {
		return false, d
	}
	return true, 0
}
