package pulse

import (
	"sync"
	"syscall"

	"github.com/pulse-rpc/pulse/wire"
)

// A large message goes out in rounds: each round of the writer carries
// the control frames and small messages queued, then a run of frames of
// the message, at most maxWriteSize bytes of it.
//
// On a TCP or Unix socket the writer makes the system calls itself
// (writeRaw): one writev takes what the kernel accepts without waiting
// (TCP_NOTSENT_LOWAT keeps the unsent part small). When frames are queued
// while a run is half written, the writer finishes the frame under way
// and starts a new round, so that a PING waits for at most one frame of
// data plus what the kernel holds. Other connections (TLS) are written
// through their Write, which returns only when everything is written; a
// control frame then waits for the rest of the run.
//
// Runs of up to 1 MiB were tried: on loopback they were no faster than
// runs of 64 KiB written this way, and behind a throttled proxy
// (TestSlowLinkNoFalseDetection) they made the write watchdog declare a
// healthy slow link stalled, in about one run in ten.
const (
	// maxRoundFrames bounds the frames of one run.
	maxRoundFrames = 64
)

// largeRound is the scratch of the writer for the runs of large
// messages: it is taken from roundPool by a writer that has one to send,
// so that small messages and idle connections carry none of it.
type largeRound struct {
	rc    syscall.RawConn // the socket, for writeRaw; nil: written with Write
	start int             // the message's off before the run
	n     int             // frames in the run
	ends  [maxRoundFrames]int
	hdrs  [maxRoundFrames * (wire.HeaderSize + wire.MessageLenSize)]byte
	bufs  [3 + 2*maxRoundFrames][]byte
	at    [maxRoundFrames]int64 // where each frame ends in bufs, in bytes
	iov   iovecs
}

var roundPool = sync.Pool{New: func() any { return new(largeRound) }}

// next lays out the next run of m's frames, of at most maxFrame bytes of
// payload each, and moves m.off past them. It reports whether the run
// holds the message's last frame.
func (lr *largeRound) next(m *outMsg, maxFrame int) (last bool) {
	limit := maxWriteSize
	lr.start, lr.n = m.off, 0
	hb := lr.hdrs[:0]
	for bytes := 0; lr.n < maxRoundFrames && bytes < limit; {
		first := m.off == 0
		room := maxFrame
		if first {
			room -= wire.MessageLenSize
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
		bytes += n
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
// frame went out. When writeRaw stopped at the end of a frame for frames
// waiting, m.off goes back to there and m back to the head of the queue.
func (s *session) writeLarge(lr *largeRound, m *outMsg, prefix [][]byte) (int64, *outMsg, error) {
	bufs := append(lr.bufs[:0], prefix...)
	var at int64
	for _, b := range prefix {
		at += int64(len(b))
	}
	before := at
	hb := lr.hdrs[:]
	off := lr.start
	for i := range lr.n {
		hl := wire.HeaderSize
		if off == 0 {
			hl += wire.MessageLenSize
		}
		bufs = append(bufs, hb[:hl:hl], m.body[off:lr.ends[i]])
		hb = hb[hl:]
		at += int64(hl + lr.ends[i] - off)
		lr.at[i] = at
		off = lr.ends[i]
	}
	var (
		n   int64
		err error
	)
	if lr.rc == nil {
		n, err = s.writeBuffers(bufs)
	} else {
		n, err = s.writeRaw(lr, bufs, before, lr.at[:lr.n])
	}
	clear(lr.bufs[:]) // do not keep the written buffers alive
	if err != nil {
		return n, nil, err
	}
	k := 0 // frames written
	for k < lr.n && lr.at[k] <= n {
		k++
	}
	if k < lr.n {
		s.mu.Lock()
		if m.off == len(m.body) {
			// next took it off the queue with its last frame.
			s.large = append(s.large, nil)
			copy(s.large[1:], s.large)
			s.large[0] = m
		}
		m.off = lr.start
		if k > 0 {
			m.off = lr.ends[k-1]
		}
		s.mu.Unlock()
		return n, nil, nil
	}
	if m.off == len(m.body) {
		return n, m, nil
	}
	return n, nil, nil
}

// writeRaw writes bufs with one writev per round trip to the kernel
// (rawWritev), each taking what the socket accepts. Once the first
// prefix bytes are out, if frames are waiting in the queues, it stops at
// the next end of a frame (ends: offsets in bufs where frames end), or at
// once if no frame is started, so that they go next.
func (s *session) writeRaw(lr *largeRound, bufs [][]byte, prefix int64, ends []int64) (int64, error) {
	var total int64
	for _, b := range bufs {
		total += int64(len(b))
	}
	limit, cut := total, false
	var n int64
	mon := s.mon
	for n < limit {
		mon.writeBegins()
		k, err := rawWritev(lr.rc, bufs, &lr.iov)
		mon.writeEnds()
		n += k
		if err != nil {
			return n, err
		}
		bufs = skipBytes(bufs, k)
		if n < limit && n >= prefix && !cut && s.framesWaiting() {
			limit, cut = n, true // at the start of the run
			if n > prefix {
				for _, e := range ends {
					if e >= n {
						limit = e
						break
					}
				}
			}
			bufs = keepBytes(bufs, limit-n)
		}
	}
	return n, nil
}

// framesWaiting reports whether control frames or small messages are
// queued.
func (s *session) framesWaiting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctrl != nil && len(s.ctrl.b) > 0 || s.data != nil && len(s.data.b) > 0
}

// skipBytes drops the first n bytes of bufs.
func skipBytes(bufs [][]byte, n int64) [][]byte {
	for len(bufs) > 0 && n >= int64(len(bufs[0])) {
		n -= int64(len(bufs[0]))
		bufs[0] = nil
		bufs = bufs[1:]
	}
	if len(bufs) > 0 {
		bufs[0] = bufs[0][n:]
	}
	return bufs
}

// keepBytes keeps the first n bytes of bufs.
func keepBytes(bufs [][]byte, n int64) [][]byte {
	for i, b := range bufs {
		if n <= int64(len(b)) {
			bufs[i] = b[:n]
			clear(bufs[i+1:])
			return bufs[:i+1]
		}
		n -= int64(len(b))
	}
	return bufs
}
