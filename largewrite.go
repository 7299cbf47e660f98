package pulse

import (
	"sync"

	"github.com/pulse-rpc/pulse/wire"
)

// A large message goes out in rounds: each round of the writer carries
// the control frames and small messages queued, then a run of frames of
// the message, at most maxWriteSize bytes of it, in one writev where the
// transport allows it. A control frame so waits behind at most one run
// plus what the kernel holds (TCP_NOTSENT_LOWAT keeps that small).
//
// The writer once made its own non-blocking writev calls on TCP sockets,
// taking what the kernel accepted and stopping at the end of a frame when
// a control frame was queued: 1 MiB echoes on loopback were 24 % faster.
// But behind a TCP proxy with a slow downstream, whose receive window
// stays closed for longer than Timeout at a time, it made the write
// watchdog kill a healthy connection in 2 to 4 % of the runs of
// TestSlowLinkNoFalseDetection, against none in 60 with Go's Write.
const (
	// maxRoundFrames bounds the frames of one run (64 KiB of frames of
	// 1 KiB, the smallest frame size).
	maxRoundFrames = 64
)

// minRunFrame is the smallest payload a run ends with when it is cut to
// fill its byte budget: below it, the run ends one frame earlier.
const minRunFrame = 1 << 10

// largeRound is the scratch of the writer for the runs of large
// messages: it is taken from roundPool by a writer that has one to send,
// so that small messages and idle connections carry none of it.
type largeRound struct {
	start  int // the message's off before the run
	n      int // frames in the run
	budget int // bytes of a round, headers included (runBudget)
	ends   [maxRoundFrames]int
	hdrs   [maxRoundFrames * (wire.HeaderSize + wire.MessageLenSize)]byte
	bufs   [3 + 2*maxRoundFrames][]byte
}

var roundPool = sync.Pool{New: func() any { return new(largeRound) }}

// runBudget returns the bytes of one round of a large message, headers
// included, for a connection whose TCP segments carry mss bytes (0 when
// unknown): the most whole segments that fit maxWriteSize, so that every
// round leaves the kernel as full segments. A round of 64 KiB of payload
// and its headers went out on loopback (65,483-byte segments) as three
// packets, two of them of about 50 bytes; cut to one segment, it is one.
func runBudget(mss int) int {
	if mss < 512 || mss > maxWriteSize {
		return maxWriteSize
	}
	return maxWriteSize / mss * mss
}

// next lays out the next run of m's frames, of at most maxFrame bytes of
// payload each and of at most budget bytes with their headers, and moves
// m.off past them. It reports whether the run holds the message's last
// frame. The run's last frame is cut short to fill the budget, so frames
// of a large message need not all be maxFrame long.
func (lr *largeRound) next(m *outMsg, maxFrame, budget int) (last bool) {
	lr.start, lr.n = m.off, 0
	hb := lr.hdrs[:0]
	for left := budget; lr.n < maxRoundFrames; {
		first := m.off == 0
		hl, room := wire.HeaderSize, maxFrame
		if first {
			hl += wire.MessageLenSize
			room -= wire.MessageLenSize
		}
		if left-hl < room {
			switch {
			case left-hl >= minRunFrame:
				room = left - hl
			case lr.n > 0:
				return false
			}
			// else the run's only frame, whole whatever the budget
		}
		n := min(room, len(m.body)-m.off)
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
func (s *session) writeLarge(lr *largeRound, m *outMsg, prefix [][]byte) (int64, *outMsg, error) {
	bufs := append(lr.bufs[:0], prefix...)
	hb := lr.hdrs[:]
	off := lr.start
	for i := range lr.n {
		hl := wire.HeaderSize
		if off == 0 {
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
