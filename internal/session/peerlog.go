package session

import (
	"sync/atomic"
	"time"
)

// Log lines a peer can cause are rate-limited per connection and reason:
// a line when the reason first occurs, then at most one per
// peerLogEvery, which says how many were left out meanwhile. A peer
// sending a million bad frames costs a few lines, not a million.

// logReason is why a peer caused a log line.
type logReason uint8

const (
	logDropNotify   logReason = iota // a notification refused (unknown method, bad arguments, busy)
	logDropTooLarge                  // a notification over the message size limit
	logDropBudget                    // a notification over the shared memory budget
	logTooManyPings                  // pings faster than permitted
	logSlowConsumer                  // a peer that does not read what this side sends
	nLogReasons
)

// peerLogEvery is the least time between two lines of one reason on one
// connection.
const peerLogEvery = 10 * time.Second

// peerLogs is the rate limiter's state of one connection, made on first
// use: a connection whose peer behaves carries none.
type peerLogs struct {
	last    [nLogReasons]atomic.Int64 // clock ns of the last line written, 0 for none
	skipped [nLogReasons]atomic.Int64 // lines left out since
}

// peerLogTurn reports whether a line of reason r, which the peer caused,
// may be written now: none of that reason was written on this connection
// less than peerLogEvery ago. If not, it counts the line left out; if so,
// it returns how many were left out since the last one. Callers build the
// line only when it is their turn, so that a line left out costs no
// allocation. Any goroutine.
func (s *Session) peerLogTurn(r logReason) (suppressed int64, ok bool) {
	l := s.logs.Load()
	if l == nil {
		l = new(peerLogs)
		if !s.logs.CompareAndSwap(nil, l) {
			l = s.logs.Load()
		}
	}
	now := s.now()
	last := l.last[r].Load()
	if last != 0 && now-last < int64(peerLogEvery) || !l.last[r].CompareAndSwap(last, now) {
		l.skipped[r].Add(1)
		return 0, false
	}
	return l.skipped[r].Swap(0), true
}

// peerLog writes a warning of reason r that the peer caused, with the
// peer's address and the count of lines of that reason left out, if it is
// r's turn (peerLogTurn).
func (s *Session) peerLog(r logReason, msg string, args ...any) {
	if n, ok := s.peerLogTurn(r); ok {
		s.log.Warn(msg, append(args, "remote", s.conn.RemoteAddr(), "suppressed", n)...)
	}
}
