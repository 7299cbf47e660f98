package session

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// readBufPool holds the read buffers of connections that are receiving;
// an idle connection gives its buffer back (wire.Reader.SetBufferPool).
var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// ReadLoop runs the reader on the calling goroutine, which thereby takes
// the reader role, until the session closes or the reader parks (the
// parker then resumes reading on a worker when bytes arrive). ReaderDone
// tells when reading ended for good.
func (s *Session) ReadLoop() {
	liveSessions.Add(1)
	s.pool().live.Add(1)
	s.readFrames()
}

// readerEnd marks the end of reading for good.
func (s *Session) readerEnd() {
	if p := s.pool(); p.live.Add(-1) == 0 {
		p.stopIdle()
	}
	if liveSessions.Add(-1) == 0 {
		stopParker()
	}
	s.mu.Lock()
	closeLazyLocked(&s.readerDone, &s.readerEnded)
	s.mu.Unlock()
}

func (s *Session) readFrames() {
	s.baton.take()
	for {
		if s.heldN > 0 && s.fr.Buffered() == 0 {
			s.heldN = 0
			s.mu.Lock()
			s.flushNowUnlock()
		}
		if s.fr.Buffered() == 0 {
			if s.mayPark() && s.parkReader() {
				return // parkReader released the role
			}
			if s.park.parkSocket() == nil && s.quiet() {
				// A reader that cannot park waits here with nothing in
				// flight: until bytes arrive it holds no read buffer.
				// (A busy connection keeps its buffer, so that each
				// burst takes one read.)
				s.fr.Release()
			}
		}
		h, p, err := s.fr.ReadFrame()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The only read deadlines after the handshake are those
				// that shorten a wait to park sooner (readSoon): clear it
				// and go on. A frame half read stays buffered.
				s.conn.SetReadDeadline(time.Time{})
				continue
			}
			s.readFailed(err)
			s.endReading()
			return
		}
		s.frameDone()
		if h.Type <= wire.TypeContinuation {
			s.park.sawData = true
			if rd := s.park.rd; rd != nil {
				rd.frames++
			}
		}
		if err := s.handleFrame(h, p); err != nil {
			if err == errReaderMoved {
				return // another goroutine holds the role now
			}
			s.protocolError(err)
			s.endReading()
			return
		}
	}
}

// endReading ends the reader role for good.
func (s *Session) endReading() {
	s.releaseAll()
	s.baton.release()
	s.readerEnd()
}

// protocolError closes the session for a frame that broke the protocol.
func (s *Session) protocolError(err error) {
	s.log.Warn("pulse: protocol error from peer", "remote", s.conn.RemoteAddr(), "err", err)
	code := wire.GoAwayProtocolError
	if errors.As(err, new(tooManyStreamsError)) {
		code = wire.GoAwayTooManyStreams
	}
	if errors.As(err, new(flowError)) || errors.As(err, new(flowOverflowError)) {
		code = wire.GoAwayFlowControl
	}
	s.goAway(code, err.Error(), ReasonProtocol, err, time.Second)
}

// tooManyStreamsError is a peer sending more messages at once than allowed.
type tooManyStreamsError struct{ n int }

func (e tooManyStreamsError) Error() string {
	return fmt.Sprintf("more than %d messages arriving at once", e.n)
}

func (s *Session) readFailed(err error) {
	switch {
	case errors.Is(err, wire.ErrVersion), errors.Is(err, wire.ErrFrameType),
		errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrMalformed):
		s.log.Warn("pulse: protocol error from peer", "remote", s.conn.RemoteAddr(), "err", err)
		s.goAway(wire.GoAwayProtocolError, err.Error(), ReasonProtocol, err, time.Second)
	case errors.Is(err, io.EOF):
		s.mu.Lock()
		drained := s.writeClosed
		s.mu.Unlock()
		if drained {
			// The peer closed after this side drained and half-closed.
			s.Fail(&ConnError{Reason: ReasonShutdown, Message: "drained"})
			return
		}
		s.Fail(&ConnError{Reason: ReasonPeerClose, Err: err})
	case errors.Is(err, net.ErrClosed):
		s.Fail(&ConnError{Reason: ReasonShutdown, Err: err})
	default:
		s.Fail(&ConnError{Reason: ReasonIO, Err: err})
	}
}

// handleFrame acts on one frame, by the reader, through the method for its
// type. p aliases the read buffer and is valid only during the call. An
// error is a protocol violation.
func (s *Session) handleFrame(h wire.Header, p []byte) error {
	s.baton.check()
	switch h.Type {
	case wire.TypeCall, wire.TypeReply, wire.TypeNotify:
		return s.processMessage(h, p)
	case wire.TypeContinuation:
		return s.processContinuation(h, p)
	case wire.TypeCancel:
		return s.processCancel(h, p)
	case wire.TypePing:
		return s.processPing(h, p)
	case wire.TypePong:
		return s.processPong(h, p)
	case wire.TypeGoAway:
		return s.processGoAway(h, p)
	case wire.TypeWindowUpdate:
		return s.processWindowUpdate(h, p)
	case wire.TypeHello:
		return errors.New("HELLO after the handshake")
	}
	// wire.Reader refuses unknown types: this is one the session does not
	// handle yet.
	return fmt.Errorf("%w: unexpected %v", wire.ErrFrameType, h.Type)
}

// processCancel cancels the context of the peer's call h.ID, if it runs.
func (s *Session) processCancel(h wire.Header, _ []byte) error {
	if !s.isPeerID(h.ID) {
		return fmt.Errorf("CANCEL with id %d, which belongs to this side", h.ID)
	}
	s.mu.Lock()
	cancel := s.inflight[h.ID]
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return nil
}

// processPing answers a PING with a PONG at once, without waiting for the
// socket, unless the peer pings faster than this side allows: then it is
// not answered, and a peer that keeps it up is told to go away.
func (s *Session) processPing(_ wire.Header, p []byte) error {
	data, err := wire.ParsePing(p)
	if err != nil {
		return err
	}
	if s.minPingGap > 0 && !s.allowPing() {
		// One goroutine per connection, at the strike that ends it: the
		// pings that follow while it closes only count.
		if s.pingStrikes < math.MaxInt32 {
			s.pingStrikes++
		}
		if s.pingStrikes == maxPingStrikes+1 {
			msg := fmt.Sprintf("pings closer together than %v; the permitted rate is one ping per %v", s.minPingGap, s.minPingGap)
			s.peerLog(logTooManyPings, "pulse: too many pings", "permitted", s.minPingGap) // once per connection
			go s.goAway(wire.GoAwayTooManyPings, msg, ReasonProtocol, nil, time.Second)
		}
		return nil
	}
	s.pingStrikes = 0
	s.queueControl(func(b []byte) []byte { return wire.AppendPing(b, wire.TypePong, data) }, noWait)
	s.mon.answered()
	return nil
}

func (s *Session) processPong(_ wire.Header, p []byte) error {
	data, err := wire.ParsePing(p)
	if err != nil {
		return err
	}
	s.handlePong(data)
	return nil
}

func (s *Session) processGoAway(_ wire.Header, p []byte) error {
	g, err := wire.ParseGoAway(p)
	if err != nil {
		return err
	}
	s.handleGoAway(g)
	return nil
}

// tooLarge answers a message that exceeded this side's limit.
func (s *Session) tooLarge(typ wire.FrameType, id uint32) {
	s.refuseMessage(typ, id, wire.StatusTooLarge, fmt.Sprintf("message exceeds the limit of %d bytes", s.maxMsg), ErrMessageTooLarge, logDropTooLarge)
}

// overBudget answers a message refused because the shared budget had no
// room for it.
func (s *Session) overBudget(typ wire.FrameType, id uint32) {
	b := s.cfg.Budget
	b.refused.Add(1)
	msg := fmt.Sprintf("the receiver's memory budget for messages (%d bytes, shared by its connections) is full", b.limit)
	s.refuseMessage(typ, id, wire.StatusBusy, msg, nil, logDropBudget)
}

// refuseMessage answers a whole message that is not acted on, whose bytes
// were let go already: a CALL gets status, the call waiting for a REPLY
// fails with it (and err), a NOTIFY is dropped with a rate-limited log
// line.
func (s *Session) refuseMessage(typ wire.FrameType, id uint32, status wire.Status, msg string, err error, r logReason) {
	switch typ {
	case wire.TypeCall:
		defer s.handlerDone(0) // the call was counted when admitted
		s.replyError(id, status, msg, background)
	case wire.TypeReply:
		if call := s.takePending(id); call != nil {
			call.done(&CallError{Status: status, Message: "reply: " + msg, Err: err, Reached: true})
		}
	case wire.TypeNotify:
		defer s.handlerDone(0)
		if n, ok := s.peerLogTurn(r); ok {
			s.log.Warn("pulse: dropped notification: "+msg, "remote", s.conn.RemoteAddr(), "suppressed", n)
		}
	}
}
