package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/pulse-rpc/pulse/internal/bufpool"
	"github.com/pulse-rpc/pulse/wire"
)

// Call is one call this side started, as the session's call table holds
// it: only what the session needs after the request is encoded. The
// root's Call embeds it by value and is told of its completion through
// Owner, so that a call costs no allocation of its own here, and keeps the
// method's name, arguments and error itself.
type Call struct {
	Reply any // decoded into when the reply arrives
	Owner Completer

	s    *Session
	id   uint32
	seq  uint64  // end offset of the request in the data lane (small requests)
	out  *outMsg // the request, when it is sent in several frames
	stop func() bool
}

// Completer is told that a Call completed, with its failure: nil, a
// *CallError (whose Method the owner fills in), a *ConnError or a
// ServerError. Complete runs on whichever goroutine completed the call
// (often the connection's reader) and must not block.
type Completer interface{ Complete(err error) }

// done completes the call with err.
func (call *Call) done(err error) {
	if call.stop != nil {
		call.stop()
	}
	if call.Owner != nil {
		call.Owner.Complete(err)
	}
}

// fail completes the call with err and returns err.
func (call *Call) fail(err error) error {
	call.done(err)
	return err
}

// Reset clears what a send left in call, so that it can be sent again on
// another session.
func (call *Call) Reset() {
	call.s, call.id, call.seq, call.out, call.stop = nil, 0, 0, nil, nil
}

// Abandon gives up on the call because its context ended with err (see
// Session.abandon).
func (call *Call) Abandon(err error) { call.s.abandon(call, err) }

// sent reports whether the whole request may have reached the peer, so
// that the peer may have run it: it was written, or it was given whole to
// a write that has not returned yet (whose bytes may be out already).
// Called with s.mu held.
func (call *Call) sent() bool {
	if m := call.out; m != nil {
		return m.sent.Load() || m.off == len(m.body) && !m.failed
	}
	return call.s.handed >= call.seq
}

// Send encodes a call of method with args and queues it on s as call; on
// failure it completes the call with the error. watch makes the call
// watch ctx itself and abandon on its end (for Go; a caller that waits
// watches ctx instead and calls Abandon).
func (s *Session) Send(ctx context.Context, call *Call, method string, args any, watch bool) {
	s.send(ctx, call, method, args, sendCall, watch)
}

// Notify sends a one-way call and returns once it is queued. Its error
// reports only failures on this side (encoding, a closed connection, a
// full send queue under SlowDrop or SlowClose, ctx's end while it waits
// for room under SlowWait).
func (s *Session) Notify(ctx context.Context, method string, args any) error {
	return s.send(ctx, new(Call), method, args, sendNotify, false)
}

// Push is Notify that never waits for room: with the send queue full it
// fails with ErrSlowConsumer, and under SlowClose closes the connection
// too (Broadcast).
func (s *Session) Push(ctx context.Context, method string, args any) error {
	return s.send(ctx, new(Call), method, args, sendPush, false)
}

// What send sends.
const (
	sendCall   = iota // a call, which waits for room within its context
	sendNotify        // a notification, which does what Config.Slow says
	sendPush          // a notification that never waits
)

// send encodes a call of method with args and queues it as call. On
// failure it completes the call with the error, which it also returns.
// notify marks a one-way call, which gets no reply. watch makes the call
// watch ctx itself and abandon on its end (for Go; Call's waiting
// goroutine watches ctx instead).
func (s *Session) send(ctx context.Context, call *Call, method string, args any, kind int, watch bool) error {
	notify := kind != sendCall
	call.s = s
	if err := ctx.Err(); err != nil {
		return call.fail(&CallError{Method: method, Status: wire.StatusCanceled, Err: err})
	}
	typ := wire.TypeCall
	if notify {
		typ = wire.TypeNotify
	}
	var timeout time.Duration
	if dl, ok := ctx.Deadline(); ok {
		if timeout = time.Until(dl); timeout <= 0 {
			return call.fail(&CallError{Method: method, Status: wire.StatusCanceled, Err: context.DeadlineExceeded})
		}
	}
	bp := getBufFor(args, wire.HeaderSize+len(method)+32)
	b := wire.AppendHeader((*bp)[:0], typ, wire.FlagEnd, 0, 0)
	b = wire.AppendCallHead(b, method, timeout)
	b, err := s.codec.Append(b, args)
	*bp = b
	if err != nil {
		bufpool.Put(bp)
		return call.fail(&CallError{Method: method, Status: wire.StatusBadArgs, Message: "cannot encode arguments: " + err.Error(), Err: err})
	}
	if n := len(b) - wire.HeaderSize; n > s.peerMaxMsg {
		bufpool.Put(bp)
		return call.fail(&CallError{Method: method, Status: wire.StatusTooLarge,
			Message: fmt.Sprintf("arguments of %d bytes exceed the peer's limit of %d", n, s.peerMaxMsg), Err: ErrMessageTooLarge})
	}

	s.mu.Lock()
	if err := s.roomLocked(ctx, len(b)-wire.HeaderSize, kind); err != nil {
		s.mu.Unlock()
		bufpool.Put(bp)
		if !errors.As(err, new(*ConnError)) && err != ErrSlowConsumer {
			err = &CallError{Method: method, Status: wire.StatusCanceled, Err: err}
		}
		return call.fail(err)
	}
	id := s.nextID
	s.nextID += 2
	call.id = id
	if !notify {
		s.pending[id] = call
		if watch && ctx.Done() != nil {
			call.stop = context.AfterFunc(ctx, func() { s.abandon(call, ctx.Err()) })
		}
	}
	s.enqueueLocked(bp, id, typ, func(seq uint64, out *outMsg) { call.seq, call.out = seq, out })
	// A call's goroutine may write its request itself, the fastest way
	// out; a push that must not wait for a peer (Broadcast, a server's
	// notifications) leaves it to a writer goroutine.
	s.kickUnlock(kind == sendCall || kind == sendNotify && s.cfg.Slow == SlowWait)
	return nil
}

// refuseLocked returns the error for a call that cannot start on this
// session: it is closed, or the peer sent GOAWAY.
func (s *Session) refuseLocked() error {
	if s.closed {
		return s.err.WithSent(false)
	}
	if s.goAwayIn != nil {
		return &ConnError{Reason: ReasonGoAway, Code: s.goAwayIn.Code, Message: s.goAwayIn.Message}
	}
	if s.nextID > math.MaxUint32-2 {
		return &ConnError{Reason: ReasonShutdown, Message: "call ids exhausted on this connection"}
	}
	return nil
}

// enqueueLocked queues the message in *bp (a frame header with FlagEnd
// followed by the whole message) under id. A small message for which the
// peer has given credit is copied to the data lane, taking its credit, and
// bp is recycled; a larger one, or one that must wait for credit, is
// queued as an outMsg and keeps bp until written. Small messages keep
// their order: once one waits, those after it wait behind it. mark
// receives the position of the message, for sent().
func (s *Session) enqueueLocked(bp *[]byte, id uint32, typ wire.FrameType, mark func(seq uint64, out *outMsg)) {
	b := *bp
	n := len(b) - wire.HeaderSize
	small := n <= s.maxFrame
	// A small message goes ahead of the large ones queued, but of no more
	// than maxOvertaken of them, so that the peer waits for few of this
	// side's ids at a time (ids.go); a reply carries the peer's id.
	if small && s.smallWait == 0 && int(s.credit) >= n && (len(s.large) < maxOvertaken || typ == wire.TypeReply) {
		s.credit -= int32(n)
		binary.BigEndian.PutUint32(b[4:8], id)
		wire.PutLength(b, len(b)-wire.HeaderSize)
		d := lane(&s.data)
		if n := len(d.b) + len(b); n > cap(d.b) {
			growLane(d, n)
		}
		d.b = append(d.b, b...)
		s.queued += uint64(len(b))
		s.markFullLocked()
		bufpool.Put(bp)
		if mark != nil {
			mark(s.queued, nil)
		}
		return
	}
	m := &outMsg{id: id, typ: typ, body: b[wire.HeaderSize:], buf: bp, small: small}
	s.largeBytes += len(m.body)
	s.markFullLocked()
	if small {
		s.smallWait++
	}
	s.large = append(s.large, m)
	if mark != nil {
		mark(0, m)
	}
}

// abandon gives up on call because its context ended with err. If the
// call is still pending, it completes it and tells the peer to cancel.
func (s *Session) abandon(call *Call, err error) {
	s.mu.Lock()
	if s.pending[call.id] != call {
		s.mu.Unlock()
		return // completed by someone else
	}
	delete(s.pending, call.id)
	reached := true // the request goes to the peer, followed by CANCEL
	if !s.closed {
		switch {
		case call.out != nil && !call.out.sent.Load() && call.out.off < len(call.out.body):
			// Not fully handed to the writer: it stops sending the rest
			// (or all of it), and aborts what the peer gathered.
			call.out.aborted = true
			reached = false
		case call.out == nil && s.flushed.Load() < call.seq:
			// Still queued in the data lane: CANCEL goes behind it there.
			d := lane(&s.data)
			d.b = wire.AppendHeader(d.b, wire.TypeCancel, 0, call.id, 0)
			s.queued += wire.HeaderSize
		default:
			c := lane(&s.ctrl)
			c.b = wire.AppendHeader(c.b, wire.TypeCancel, 0, call.id, 0)
		}
		s.kickUnlock(false)
	} else {
		s.mu.Unlock()
	}
	call.done(&CallError{Status: wire.StatusCanceled, Err: err, Reached: reached})
}

func (s *Session) takePending(id uint32) *Call {
	s.mu.Lock()
	call := s.pending[id]
	if call != nil {
		delete(s.pending, id)
	}
	s.mu.Unlock()
	return call
}
