package pulse

import (
	"context"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// admit decides whether a call the peer starts with id is processed. After
// this side sent GOAWAY, calls above the LastID it named are dropped
// unanswered: the GOAWAY told the peer they were not processed, and the
// peer retries them on another connection. The decision is taken on the
// first frame of a message, so that LastID covers messages still arriving,
// and an admitted call is counted in s.running at once, under the same
// lock as LastID, so that a drain waits for every call up to LastID.
func (s *session) admit(id uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.goAwayOut && id > s.lastPeerID {
		return false
	}
	s.lastPeerID = max(s.lastPeerID, id)
	s.running.Add(1)
	return true
}

// handlerDone ends one admitted call: its handler returned, or it was
// refused or dropped.
func (s *session) handlerDone() {
	if s.running.Add(-1) == 0 && s.park.rd != nil && s.park.rd.busy.Load() {
		s.readSoon()
	}
	s.mon.callActivity()
	s.signalSettled()
}

// signalSettled wakes a drain waiting for handlers and messages to finish.
func (s *session) signalSettled() {
	if d := s.drainSt.Load(); d != nil {
		select {
		case d.settled <- struct{}{}:
		default:
		}
	}
}

// drainState is made when the session starts draining: most connections
// never drain, and an idle connection should carry no channel it does not
// need.
type drainState struct {
	settled chan struct{} // signalled when a handler ends or a message completes
}

// drainingChan returns the channel that is closed when this side starts
// draining, making it on first use.
func (s *session) drainingChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining == nil {
		s.draining = make(chan struct{})
	}
	return s.draining
}

// pendingCount returns the number of calls this side started and still
// waits for.
func (s *session) pendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// startDrain sends GOAWAY and marks the session draining, once. It reports
// whether this call started it.
func (s *session) startDrain(code wire.GoAwayCode, msg string) bool {
	s.mu.Lock()
	if s.closed || s.goAwayOut {
		s.mu.Unlock()
		return false
	}
	s.mu.Unlock()
	s.sendGoAway(code, msg)
	s.mu.Lock()
	if s.drainSt.Load() != nil {
		s.mu.Unlock()
		return false // started meanwhile by another caller
	}
	if s.draining == nil {
		s.draining = make(chan struct{})
	}
	close(s.draining)
	s.drainSt.Store(&drainState{settled: make(chan struct{}, 1)})
	s.mu.Unlock()
	return true
}

// drain closes the session gracefully: GOAWAY, then let the handlers
// running and the calls still arriving (up to the GOAWAY's LastID) finish
// and their replies go out, then close. After grace it closes anyway.
func (s *session) drain(code wire.GoAwayCode, msg string, grace time.Duration) {
	if !s.startDrain(code, msg) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.waitSettled(ctx.Done())
	s.lingerClose(&ConnError{Reason: ReasonShutdown, Code: code, Message: msg}, time.Second)
}

// lingerClose ends a drained session without losing what it sent last.
// Closing a socket that still has unread bytes makes the kernel send a
// reset, and a reset can destroy the GOAWAY and the replies still waiting
// in the peer's receive buffer. So it flushes, half-closes (FIN), and
// keeps reading, discarding calls above the GOAWAY's LastID, until the
// peer closes its side or d passes; then it closes.
func (s *session) lingerClose(ce *ConnError, d time.Duration) {
	s.flush(d)
	cw, ok := s.conn.(interface{ CloseWrite() error })
	if ok {
		s.mu.Lock()
		s.writeClosed = true
		writing := s.writing
		s.mu.Unlock()
		if writing {
			ok = false // a writer is stuck: do not wait for it
		}
	}
	if ok && cw.CloseWrite() == nil {
		t := time.NewTimer(d)
		select {
		case <-s.readerDoneChan():
		case <-s.doneChan():
		case <-t.C:
		}
		t.Stop()
	}
	s.fail(ce)
}

// waitSettled waits until no handler runs and no admitted message is still
// arriving, the session closes, or stop fires. It reports whether the
// session settled.
func (s *session) waitSettled(stop <-chan struct{}) bool {
	var settled chan struct{} // nil, which never fires, when not draining
	if d := s.drainSt.Load(); d != nil {
		settled = d.settled
	}
	done := s.doneChan()
	for s.running.Load() > 0 {
		select {
		case <-settled:
		case <-done:
			return false
		case <-stop:
			return false
		}
	}
	return true
}

// Draining returns a channel that is closed when the connection of the
// call being served with ctx starts draining (the server is shutting down,
// or the connection reached its age or idle limit): the handler should
// finish soon. It returns nil when ctx is not from a Pulse handler.
func Draining(ctx interface{ Value(any) any }) <-chan struct{} {
	p, _ := ctx.Value(peerKey{}).(*Peer)
	if p == nil {
		return nil
	}
	return p.s.drainingChan()
}
