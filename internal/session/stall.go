package session

import (
	"fmt"
	"time"

	"github.com/pulse-rpc/pulse/internal/sock"
	"github.com/pulse-rpc/pulse/wire"
)

// Progress of what the peer started (PROTOCOL.md §9.6). A frame or message
// the peer has begun holds this side's memory until it ends; a peer that
// stops in the middle, or dribbles a byte now and then so that its
// connection looks alive, would hold it for ever. With
// Config.MessageTimeout d:
//
//   - a frame must be whole within d of the read that brought its first
//     bytes (reads.frameAt);
//   - while messages are in reassembly, a frame of one of them carrying at
//     least minProgressFrame bytes, or ending one, must arrive within d of
//     the last such frame (reads.msgAt), not counting time the peer had
//     less than minCreditFrame of credit: the clock starts again at the
//     last grant (flowIn.grantAt).
//
// The reader keeps the two clocks, each a millisecond stamp (stampOf) in
// an atomic that the monitor's timer reads: frameAt is set by the read
// that brings bytes while none are pending (reads.got) and moved or
// cleared after each frame (frameDone); msgAt is set by the frames of
// partial messages (messageFrame). Neither costs a clock reading: both
// take the time of the last read. The monitor (stallLocked) judges them and, with a
// message timeout, looks at least every d, so a stall is found within d
// of its start plus the timer's delay.
//
// The rules never bound how long a whole message takes, only its
// progress; Pulse's sender sends the frames of its started message back
// to back (§9.4), so a healthy link, however slow, makes progress many
// times per message timeout.

// minProgressFrame is the least payload of a frame that counts as
// progress of the messages in reassembly, unless it ends one: the
// smallest frame Pulse's sender cuts a large message into (minRunFrame).
const minProgressFrame = minRunFrame

// MaxMessageTimeout is the longest message timeout: the stamps that keep
// the clocks wrap around after 2³² ms (49 days), and ages are read
// correctly up to half that.
const MaxMessageTimeout = 24 * time.Hour

// A stamp is a clock reading in milliseconds, modulo 2³², never 0 (0
// marks no clock running): four bytes per clock, where the size of the
// reader's state is counted (TestReadsSize).
func stampOf(ns int64) uint32 {
	if v := uint32(ns / int64(time.Millisecond)); v != 0 {
		return v
	}
	return 1
}

// stampAge returns how long before now (clock ns) the stamp st was taken.
func stampAge(now int64, st uint32) int64 {
	return int64(stampOf(now)-st) * int64(time.Millisecond)
}

// frameDone is called by the reader after each frame it reads: bytes still
// buffered begin the next frame, which started no later than the last read.
func (s *Session) frameDone() {
	rd := s.rd
	at := uint32(0)
	if s.fr.Buffered() > 0 {
		at = stampOf(rd.last.Load())
	}
	if rd.frameAt.Load() != at {
		rd.frameAt.Store(at)
	}
}

// messageFrame records, by the reader, a frame of n payload bytes of a
// message in reassembly; ended says it ended (or aborted) its message.
func (s *Session) messageFrame(n int, ended bool) {
	rd := s.rd
	switch {
	case len(s.partial) == 0:
		if rd.msgAt.Load() != 0 {
			rd.msgAt.Store(0)
		}
	case ended || n >= minProgressFrame || rd.msgAt.Load() == 0:
		rd.msgAt.Store(stampOf(rd.last.Load()))
	}
}

// stallLocked judges the peer's started frame and messages at now. It
// returns why the connection is to be closed ("" if not) and when to look
// again (0: no message timeout). Called with m.mu held.
func (m *monitor) stallLocked(now int64) (why string, next int64) {
	s := m.s
	d := int64(s.cfg.MessageTimeout)
	if d <= 0 {
		return "", 0
	}
	next = now + d // a stall that starts after this look is seen by the next
	rd := s.rd
	if f := rd.frameAt.Load(); f != 0 {
		if age := stampAge(now, f); age < d {
			next = min(next, now+d-age)
		} else if !m.peerBytesWaiting() {
			return fmt.Sprintf("a frame begun %v ago is not whole (message timeout %v)", time.Duration(age).Round(time.Millisecond), s.cfg.MessageTimeout), 0
		}
	}
	if a := rd.msgAt.Load(); a != 0 {
		age := stampAge(now, a)
		if g := s.in.grantAt.Load(); g != 0 {
			age = min(age, stampAge(now, g))
		}
		switch {
		case age < d:
			next = min(next, now+d-age)
		case s.peerCredit() < minCreditFrame:
			// This side holds the peer's window: not the peer's stall.
		case !m.peerBytesWaiting():
			return fmt.Sprintf("the messages in reassembly made no progress for %v (message timeout %v)", time.Duration(age).Round(time.Millisecond), s.cfg.MessageTimeout), 0
		}
	}
	return "", next
}

// peerBytesWaiting reports whether the kernel holds bytes from the peer
// that this process has not read: then a stall is this side's lag.
func (m *monitor) peerBytesWaiting() bool {
	waiting, ok := sock.PeerBytesWaiting(m.s.conn)
	return ok && waiting
}

// peerCredit returns the credit the peer has now: what this side granted
// less what it received.
func (s *Session) peerCredit() int {
	return int(int32(s.in.granted.Load() - s.in.received.Load()))
}

// closeStalled closes the connection of a peer whose frame or message
// stalled, telling it why.
func (s *Session) closeStalled(why string) {
	s.log.Debug("pulse: closing a connection whose peer stalled", "remote", s.conn.RemoteAddr(), "why", why)
	s.goAway(wire.GoAwayStalled, why, ReasonSilent, nil, 50*time.Millisecond)
}
