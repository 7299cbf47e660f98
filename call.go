package pulse

import (
	"context"
	"log/slog"
)

// Call represents an active call, as in net/rpc. Go returns it; when the
// call completes, Error is set and the Call is sent on Done.
type Call struct {
	ServiceMethod string     // "Service.Method"
	Args          any        // the arguments to the method
	Reply         any        // the reply from the method, a pointer
	Error         error      // after completion, the error status
	Done          chan *Call // receives the Call when it completes

	s    *session
	id   uint32
	seq  uint64  // end offset of the request in the data lane (small requests)
	out  *outMsg // the request, when it is sent in several frames
	stop func() bool
	// retry, set by Client.Go, may take over a call that failed without
	// being sent, to send it again on another connection.
	retry func(*Call) bool
}

// done delivers the completed call without ever blocking the caller
// (usually the connection's reader), like net/rpc.
func (call *Call) done() {
	if call.stop != nil {
		call.stop()
	}
	if call.retry != nil && call.Error != nil && call.retry(call) {
		return
	}
	select {
	case call.Done <- call:
	default:
		slog.Warn("pulse: discarding Call reply due to insufficient Done chan capacity", "method", call.ServiceMethod)
	}
}

// sent reports whether the whole request reached the connection, so that
// the peer may have run it. Called with s.mu held or after the session
// closed.
func (call *Call) sent() bool {
	if call.out != nil {
		return call.out.sent.Load()
	}
	return call.s.flushed.Load() >= call.seq
}

// newCall makes a Call with a Done channel, checking the channel as
// net/rpc does: an unbuffered channel would block the connection's reader.
func newCall(method string, args, reply any, done chan *Call) *Call {
	if done == nil {
		done = make(chan *Call, 1)
	} else if cap(done) == 0 {
		panic("pulse: done channel is unbuffered")
	}
	return &Call{ServiceMethod: method, Args: args, Reply: reply, Done: done}
}

// wait blocks until call completes or ctx ends. When ctx ends first the
// call is abandoned: it is removed from the call table, the peer is told
// to cancel it, and the context's error is returned at once.
func (call *Call) wait(ctx context.Context) error {
	if ctx.Done() == nil {
		<-call.Done
		return call.Error
	}
	select {
	case <-call.Done:
	case <-ctx.Done():
		call.s.abandon(call, ctx.Err())
		<-call.Done
	}
	return call.Error
}
