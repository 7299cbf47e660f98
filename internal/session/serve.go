package session

import (
	"context"
	"fmt"
	"reflect"
	"runtime"

	"github.com/pulse-rpc/pulse/internal/bufpool"
	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/wire"
)

func (s *Session) handleReply(id uint32, msg []byte) {
	call := s.takePending(id)
	if call == nil {
		return // abandoned by its caller
	}
	call.done(s.replyErr(call, msg))
}

// replyErr decodes the REPLY msg of call into its Reply and returns the
// call's failure, nil if it succeeded.
func (s *Session) replyErr(call *Call, msg []byte) error {
	status, body, err := wire.ParseReply(msg)
	switch {
	case err != nil:
		return &CallError{Status: wire.StatusInternal, Message: err.Error(), Err: ErrBadReply, Reached: true}
	case status == wire.StatusOK:
		if call.Reply != nil {
			if err := s.codec.Unmarshal(body, call.Reply); err != nil {
				return &CallError{Status: wire.StatusInternal,
					Message: "cannot decode reply into " + fmt.Sprintf("%T", call.Reply) + ": " + err.Error(), Err: ErrBadReply, Reached: true}
			}
		}
		return nil
	case status == wire.StatusError:
		return ServerError(body)
	}
	return &CallError{Status: status, Message: string(body), Remote: true}
}

// handleCall runs a CALL or NOTIFY from the peer. Lookup and argument
// decoding happen here on the reader, so the read buffer need not be
// copied; the method runs on the reader (serveOnReader) or on a worker.
// It reports whether the reader's job moved to another goroutine
// meanwhile: the caller, no longer the reader, must return.
//
// msg is valid only during the call, unless owned: nothing else uses its
// memory (a message of several frames, in a buffer of its own), and a raw
// argument may then keep it. held is the payload bytes of msg's frames,
// let go when the call ends.
func (s *Session) handleCall(notify bool, id uint32, msg []byte, owned bool, held int) (readerMoved bool) {
	method, timeout, args, err := wire.ParseCall(msg)
	if err != nil {
		s.refuse(notify, held, id, wire.StatusBadArgs, err.Error(), method)
		return false
	}
	svc, mt, kind := s.handlers.Lookup(method)
	switch kind {
	case service.UnknownService:
		s.refuse(notify, held, id, wire.StatusUnknownService, fmt.Sprintf("unknown service in %q", method), method)
		return false
	case service.UnknownMethod:
		s.refuse(notify, held, id, wire.StatusUnknownMethod, fmt.Sprintf("service %s has no method in %q", svc.Name, method), method)
		return false
	}
	argp, argv := mt.NewArgs()
	if owned && adoptRaw(s.codec, args, argp) {
		// The argument is the message's own buffer: no copy.
	} else if err := s.codec.Unmarshal(args, argp); err != nil {
		s.refuse(notify, held, id, wire.StatusBadArgs, fmt.Sprintf("cannot decode arguments of %s.%s into %v: %v", svc.Name, mt.Name(), mt.ArgType, err), method)
		return false
	}
	if int(s.running.Load()) > s.cfg.MaxConcurrentCalls {
		s.refuse(notify, held, id, wire.StatusBusy, fmt.Sprintf("%d calls already running on this connection", s.cfg.MaxConcurrentCalls), method)
		return false
	}
	if !s.cfg.Gate.acquire(s.running.Load()) { // released in serve
		s.refuse(notify, held, id, wire.StatusBusy, s.cfg.Gate.busy, method)
		return false
	}
	// A method that takes a context gets one that carries the caller's
	// deadline and ends when the caller cancels (CANCEL, via inflight) or
	// the connection dies. A method without one cannot see cancellation,
	// so it costs no context, no timer and no inflight entry.
	var (
		ctx    context.Context
		cancel context.CancelFunc
	)
	if mt.WithCtx {
		if timeout > 0 {
			ctx, cancel = context.WithTimeout(s.handlerParent(), timeout)
		} else {
			ctx, cancel = context.WithCancel(s.handlerParent())
		}
		if !notify {
			s.mu.Lock()
			if s.inflight == nil {
				s.inflight = make(map[uint32]context.CancelFunc)
			}
			s.inflight[id] = cancel
			s.mu.Unlock()
		}
	}
	s.mon.callActivity()
	if notify {
		s.queueNotification(pendingNotify{ctx, cancel, id, held, svc, mt, argv})
		return false
	}
	if served, moved := s.serveOnReader(ctx, cancel, id, held, svc, mt, argv); served {
		return moved
	}
	s.pool().run(handlerTask{s: s, n: pendingNotify{ctx, cancel, id, held, svc, mt, argv}})
	return false
}

// refuse answers a call that will not run. A refused notification is
// logged, since nobody waits for an answer.
func (s *Session) refuse(notify bool, held int, id uint32, status wire.Status, msg string, method []byte) {
	defer s.handlerDone(held) // the call was counted when admitted
	if notify {
		if n, ok := s.peerLogTurn(logDropNotify); ok {
			s.log.Warn("pulse: dropped notification", "method", string(method), "status", status, "err", msg,
				"remote", s.conn.RemoteAddr(), "suppressed", n)
		}
		return
	}
	s.replyError(id, status, msg, background)
}

// serve runs one method and sends its reply.
// held is the payload bytes of the call's message, let go once the method
// returns.
func (s *Session) serve(ctx context.Context, cancel context.CancelFunc, notify bool, id uint32, held int, svc *service.Service, mt *service.Method, argv reflect.Value, mode writeMode) {
	defer s.handlerDone(held)
	defer s.cfg.Gate.release() // acquired in handleCall
	replyv := mt.NewReply()
	err, panicked := s.invoke(ctx, svc, mt, argv, replyv)
	if cancel != nil {
		cancel()
		if !notify {
			s.mu.Lock()
			delete(s.inflight, id)
			s.mu.Unlock()
		}
	}
	if notify {
		if err != nil {
			s.log.Debug("pulse: notification handler failed", "method", svc.Name+"."+mt.Name(), "err", err)
		}
		return
	}
	switch {
	case panicked:
		s.replyError(id, wire.StatusPanic, err.Error(), mode)
	case err != nil:
		s.replyError(id, wire.StatusError, err.Error(), mode)
	default:
		s.replyOK(id, replyv.Interface(), svc, mt, mode)
	}
}

// invoke calls the method, turning a panic into an error: the stack is
// logged and the caller gets the panic value.
func (s *Session) invoke(ctx context.Context, svc *service.Service, mt *service.Method, argv, replyv reflect.Value) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			name := svc.Name + "." + mt.Name()
			s.log.Error("pulse: panic serving "+name, "remote", s.conn.RemoteAddr(), "panic", r, "stack", string(buf))
			err, panicked = fmt.Errorf("panic in %s: %v", name, r), true
		}
	}()
	return mt.Call(ctx, svc, argv, replyv), false
}

// replyOK sends the reply of a method of svc that returned no error. The
// method's name is only built for an error message (it cost an allocation
// per call).
func (s *Session) replyOK(id uint32, reply any, svc *service.Service, mt *service.Method, mode writeMode) {
	bp := getBufFor(reply, wire.HeaderSize+32)
	b := wire.AppendHeader((*bp)[:0], wire.TypeReply, wire.FlagEnd, id, 0)
	b = wire.AppendReplyHead(b, wire.StatusOK)
	b, err := s.codec.Append(b, reply)
	*bp = b
	if err != nil {
		bufpool.Put(bp)
		s.replyError(id, wire.StatusInternal, fmt.Sprintf("cannot encode reply of %s.%s: %v", svc.Name, mt.Name(), err), mode)
		return
	}
	if n := len(b) - wire.HeaderSize; n > s.peerMaxMsg {
		bufpool.Put(bp)
		s.replyError(id, wire.StatusTooLarge, fmt.Sprintf("reply of %s.%s is %d bytes, over the caller's limit of %d", svc.Name, mt.Name(), n, s.peerMaxMsg), mode)
		return
	}
	s.queueMessage(bp, id, wire.TypeReply, mode)
}

// replyError sends a REPLY with an error status, written as mode says.
func (s *Session) replyError(id uint32, status wire.Status, msg string, mode writeMode) {
	bp := bufpool.Get()
	b := wire.AppendHeader((*bp)[:0], wire.TypeReply, wire.FlagEnd, id, 0)
	b = wire.AppendReplyHead(b, status)
	if max := s.peerMaxMsg - 1; len(msg) > max {
		msg = msg[:max]
	}
	*bp = append(b, msg...)
	s.queueMessage(bp, id, wire.TypeReply, mode)
}

// queueMessage queues a reply. A handler's goroutine (inline) waits for
// room in the send queue first, holding its call's message, so that a
// peer that does not read its replies gets no more credit; the reader,
// which cannot wait, queues at once, and a peer that lets that pile up is
// closed as a slow consumer (overflowLocked).
func (s *Session) queueMessage(bp *[]byte, id uint32, typ wire.FrameType, mode writeMode) {
	s.mu.Lock()
	if mode == inline && s.fullLocked(len(*bp)-wire.HeaderSize) {
		s.waitRoomLocked(context.Background(), len(*bp)-wire.HeaderSize)
	}
	if s.closed {
		s.mu.Unlock()
		bufpool.Put(bp)
		return
	}
	s.enqueueLocked(bp, id, typ, nil)
	if mode != inline {
		s.overflowLocked()
	}
	s.writeQueuedUnlock(mode)
}

// pendingNotify is a notification waiting to run.
type pendingNotify struct {
	ctx    context.Context
	cancel context.CancelFunc
	id     uint32
	held   int // payload bytes of its message, let go when it ends
	svc    *service.Service
	mt     *service.Method
	argv   reflect.Value
}

// queueNotification runs a notification after those before it. The
// notifications of one connection run one at a time, in the order the peer
// sent them, so that pushes (chat lines, updates) arrive in order; calls
// run concurrently. The goroutine that runs them exists only while some
// are queued. The queue is bounded by the concurrent-call limit: every
// queued notification counts as admitted (s.running).
func (s *Session) queueNotification(n pendingNotify) {
	s.mu.Lock()
	s.notifyQ = append(s.notifyQ, n)
	if s.notifying {
		s.mu.Unlock()
		return
	}
	s.notifying = true
	s.mu.Unlock()
	s.pool().run(handlerTask{s: s, notifications: true})
}

func (s *Session) runNotifications() {
	for {
		s.mu.Lock()
		if len(s.notifyQ) == 0 {
			s.notifying = false
			s.notifyQ = nil
			s.mu.Unlock()
			return
		}
		n := s.notifyQ[0]
		s.notifyQ[0] = pendingNotify{}
		s.notifyQ = s.notifyQ[1:]
		s.mu.Unlock()
		s.serve(n.ctx, n.cancel, true, n.id, n.held, n.svc, n.mt, n.argv, inline)
	}
}
