package session

import (
	"net"
	"sync/atomic"
	"syscall"

	"github.com/pulse-rpc/pulse/internal/sock"
)

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
	last  atomic.Int64
	clock *Clock
	mon   *monitor
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
	// The clocks of what the peer started (stall.go), stamps, 0 for none:
	// frameAt, since when a frame is partly read (set by got and
	// frameDone); msgAt, when the messages in reassembly last progressed
	// (messageFrame). The reader writes them; the monitor reads them.
	frameAt atomic.Uint32
	msgAt   atomic.Uint32
	drained bool // the last read returned less than asked: the socket was empty then (reader only)
	direct  bool // raw may be read directly: no TLS over it
	// busy is set while the reader may be waiting in a read that has no
	// end but the next frame, with calls of the peer's running: the call
	// that ends them shortens that read (Session.readSoon), so that the
	// reader looks again whether to park.
	busy atomic.Bool
	// raw is the socket when the connection is a TCP or Unix socket on
	// Linux, with or without TLS over it (then it can park:
	// parkState.parkSocket), set before the session's reader starts.
	// Without TLS (direct), rsock reads it directly (internal/sock),
	// made when the connection's reads first bring bursts and dropped
	// when its reader parks (reader only).
	raw   syscall.RawConn
	rsock *sock.Reader
}

func (c liveConn) Read(p []byte) (n int, err error) {
	r := c.r
	if r.readsBursts() && r.direct {
		if r.rsock == nil {
			r.rsock = sock.NewReader(r.raw)
		}
		n, err = r.rsock.Read(c.Conn, p)
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
// A bursty connection reads with sock.Reader, which makes the system call
// directly. One whose reads bring one frame each, a single call at a
// time, keeps the runtime's path: entering a system call there wakes the
// runtime's monitor thread when the process was idle, and that wake-up,
// which happens before the reply comes back, makes the process's own
// wake-up for the reply quicker. Lone calls thus keep their latency and
// bursts save the runtime's system-call state (docs/benchmarks.md,
// "Measurements behind the design").
func (r *reads) readsBursts() bool {
	r.perRead += r.frames<<1 - r.perRead>>3
	r.frames = 0
	return r.perRead >= burstyReads
}

// got records a read of n bytes of the asked.
func (r *reads) got(n, asked int) {
	r.drained = n < asked
	if n > 0 {
		now := r.clock.Now()
		prev := r.last.Swap(now)
		if r.frameAt.Load() == 0 {
			r.frameAt.Store(stampOf(now)) // bytes of a frame: its start, unless a frame ends with them (frameDone)
		}
		if r.mon != nil {
			r.mon.observe(now, prev)
		}
	}
}
