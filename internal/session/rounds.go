package session

import (
	"sync"

	"github.com/pulse-rpc/pulse/wire"
)

// A large message goes out in rounds: each round of the writer carries
// the control frames and small messages queued, then a run of frames of
// the message, at most maxWriteSize bytes of its payload (or, cut to
// whole TCP segments, of the round with its headers). A control frame
// so waits behind at most one run plus what the kernel holds
// (TCP_NOTSENT_LOWAT keeps that small). writeBuffers writes a round in
// pieces of maxWriteSize bytes, one writev each: four 16 KiB frames and
// their headers are 65,584 bytes, a write of 65,536 and one of 48.
//
// The rounds of a large message go through the connection's Write (which
// waits for room), not through non-blocking writes that stop at the end
// of a frame: behind a TCP proxy whose receive window stays closed for
// longer than Timeout at a time, writes that take only what the kernel
// accepts at once show the write watchdog no progress, and it kills a
// healthy connection (faults' TestSlowLinkNoFalseDetection).
//
// A round cut to whole TCP segments (TCP_MAXSEG) leaves as full segments
// instead of a full one and two small ones, and every packet costs the
// receiving side its whole TCP path, so large messages go out faster. But
// behind a throttled proxy whose receive window stays under one segment,
// full-segment writes move only on TCP's backed-off window probes, and
// the write watchdog again sees no progress. So a round is cut to
// segments only while the peer's receive window (tcp_info's snd_wnd, read
// after each round) holds cutWindow bytes, several rounds: a path that can
// take whole segments at once. Otherwise, and before the first look, a
// round carries up to maxWriteSize bytes of payload in whole frames. The
// measurements behind both choices are in docs/benchmarks.md.
const (
	// maxRoundFrames bounds the frames of one run (64 KiB of frames of
	// 1 KiB, the smallest frame size).
	maxRoundFrames = 64
	// cutWindow is the peer's receive window from which rounds are cut to
	// whole segments.
	cutWindow = 4 * maxWriteSize
	// minRunFrame is the smallest payload a cut run ends with: below it,
	// the run ends one frame earlier.
	minRunFrame = 1 << 10
	// minCreditFrame is the smallest frame a run sends for want of
	// credit (creditNeed).
	minCreditFrame = 4 << 10
)

// largeRound is the scratch of the writer for the runs of large
// messages: it is taken from roundPool by a writer that has one to send,
// so that small messages and idle connections carry none of it.
type largeRound struct {
	start  int  // the message's off before the run
	n      int  // frames in the run
	used   int  // credit the run takes: its payload bytes
	single bool // the run is a small message's only frame, without a length prefix
	budget int  // bytes of a cut round, headers included (runBudget); 0: a payload round
	ends   [maxRoundFrames]int
	hdrs   [maxRoundFrames * (wire.HeaderSize + wire.MessageLenSize)]byte
	bufs   [3 + 2*maxRoundFrames][]byte
}

var roundPool = sync.Pool{New: func() any { return new(largeRound) }}

// runBudget returns the bytes of one cut round, headers included, for a
// connection whose TCP segments carry mss bytes and whose peer's receive
// window is wnd bytes: the most whole segments that fit maxWriteSize. It
// returns 0 (a payload round, not cut) when either is unknown (0), the
// segment is out of range or the window is under cutWindow.
func runBudget(mss, wnd int) int {
	if mss < 512 || mss > maxWriteSize || wnd < cutWindow {
		return 0
	}
	return maxWriteSize / mss * mss
}

// next lays out the next run of m's frames, of at most maxFrame bytes of
// payload each and credit bytes of payload in all, and moves m.off past
// them. It reports whether the run holds the message's last frame; lr.n
// is 0 when credit is too short for any (creditNeed). With budget 0 a run
// carries whole frames up to maxWriteSize bytes of payload; otherwise it
// carries at most budget bytes with its headers, its last frame cut short
// to fill them, so frames of a large message need not all be maxFrame
// long. A small message goes whole in one frame, as the data lane would
// have sent it.
func (lr *largeRound) next(m *outMsg, maxFrame, budget, credit int) (last bool) {
	lr.start, lr.n, lr.used, lr.single = m.off, 0, 0, false
	if credit < creditNeed(m) {
		return false
	}
	if m.small {
		wire.AppendHeader(lr.hdrs[:0], m.typ, wire.FlagEnd, m.id, len(m.body))
		m.off = len(m.body)
		lr.ends[0], lr.n, lr.used, lr.single = m.off, 1, len(m.body), true
		return true
	}
	hb := lr.hdrs[:0]
	for payload, left := 0, budget; lr.n < maxRoundFrames; {
		if budget == 0 && payload >= maxWriteSize {
			return false
		}
		first := m.off == 0
		hl, room := wire.HeaderSize, maxFrame
		if first {
			hl += wire.MessageLenSize
			room -= wire.MessageLenSize
		}
		if budget > 0 && left-hl < room {
			switch {
			case left-hl >= minRunFrame:
				room = left - hl
			case lr.n > 0:
				return false
			}
			// else the run's only frame, whole whatever the budget
		}
		c := credit - lr.used - (hl - wire.HeaderSize)
		if c < min(len(m.body)-m.off, minCreditFrame) {
			return false // the run ends where credit does
		}
		n := min(room, len(m.body)-m.off, c)
		typ, flags := m.typ, wire.Flags(0)
		if !first {
			typ = wire.TypeContinuation
		}
		if m.off+n == len(m.body) {
			flags = wire.FlagEnd
		}
		if first {
			hb = wire.AppendHeader(hb, typ, flags, m.id, wire.MessageLenSize+n)
			hb = wire.AppendMessageLen(hb, len(m.body))
		} else {
			hb = wire.AppendHeader(hb, typ, flags, m.id, n)
		}
		m.off += n
		lr.used += hl - wire.HeaderSize + n
		payload += n
		left -= hl + n
		lr.ends[lr.n] = m.off
		lr.n++
		if flags == wire.FlagEnd {
			return true
		}
	}
	return false
}

// writeLarge writes prefix (control frames and small messages) and the
// run laid out for m. It returns the bytes written and m when its last
// frame went out.
func (s *Session) writeLarge(lr *largeRound, m *outMsg, prefix [][]byte) (int64, *outMsg, error) {
	bufs := append(lr.bufs[:0], prefix...)
	hb := lr.hdrs[:]
	off := lr.start
	for i := range lr.n {
		hl := wire.HeaderSize
		if off == 0 && !lr.single {
			hl += wire.MessageLenSize
		}
		bufs = append(bufs, hb[:hl:hl], m.body[off:lr.ends[i]])
		hb = hb[hl:]
		off = lr.ends[i]
	}
	n, err := s.writeBuffers(bufs)
	clear(lr.bufs[:]) // do not keep the written buffers alive
	if err != nil || m.off != len(m.body) {
		return n, nil, err
	}
	return n, m, nil
}
