package session

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
func (s *Session) admit(id uint32) bool {
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
// refused or dropped. held is what its message still holds of flow
// control's bytes.
func (s *Session) handlerDone(held int) {
	s.letGo(held, true)
	if s.running.Add(-1) == 0 && s.park.rd != nil && s.park.rd.busy.Load() {
		s.readSoon()
	}
	s.mon.callActivity()
	s.signalSettled()
}

// signalSettled wakes a drain waiting for handlers and messages to finish.
func (s *Session) signalSettled() {
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

// Draining returns a channel that is closed when this side starts
// draining the session, making it on first use.
func (s *Session) Draining() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining == nil {
		s.draining = make(chan struct{})
	}
	return s.draining
}

// pendingCount returns the number of calls this side started and still
// waits for.
func (s *Session) pendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// StartDrain sends GOAWAY and marks the session draining, once. It reports
// whether this call started it.
func (s *Session) StartDrain(code wire.GoAwayCode, msg string) bool {
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
func (s *Session) drain(code wire.GoAwayCode, msg string, grace time.Duration) {
	if !s.StartDrain(code, msg) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.WaitSettled(ctx.Done())
	s.LingerClose(&ConnError{Reason: ReasonShutdown, Code: code, Message: msg}, time.Second)
}

// LingerClose ends a drained session without losing what it sent last.
// Closing a socket that still has unread bytes makes the kernel send a
// reset, and a reset can destroy the GOAWAY and the replies still waiting
// in the peer's receive buffer. So it flushes, half-closes (FIN), and
// keeps reading, discarding calls above the GOAWAY's LastID, until the
// peer closes its side or d passes; then it closes.
func (s *Session) LingerClose(ce *ConnError, d time.Duration) {
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
		case <-s.ReaderDone():
		case <-s.Done():
		case <-t.C:
		}
		t.Stop()
	}
	s.Fail(ce)
}

// WaitSettled waits until no handler runs and no admitted message is still
// arriving, the session closes, or stop fires. It reports whether the
// session settled.
func (s *Session) WaitSettled(stop <-chan struct{}) bool {
	var settled chan struct{} // nil, which never fires, when not draining
	if d := s.drainSt.Load(); d != nil {
		settled = d.settled
	}
	done := s.Done()
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

// handleGoAway records the peer's GOAWAY. Calls this side started above
// LastID were not processed by the peer: they fail as not sent, so that
// they can be retried elsewhere. New calls are refused on this session.
func (s *Session) handleGoAway(g wire.GoAway) {
	s.mu.Lock()
	s.goAwayIn = &g
	var unprocessed []*Call
	for id, call := range s.pending {
		if id > g.LastID {
			delete(s.pending, id)
			unprocessed = append(unprocessed, call)
		}
	}
	s.mu.Unlock()
	s.log.Debug("pulse: GOAWAY from peer", "remote", s.conn.RemoteAddr(), "code", g.Code, "last_id", g.LastID, "message", g.Message)
	if s.onGoAway != nil {
		s.onGoAway(s, g)
	}
	ce := &ConnError{Reason: ReasonGoAway, Code: g.Code, Message: g.Message}
	for _, call := range unprocessed {
		call.done(ce)
	}
}
