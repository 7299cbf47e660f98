package pulse

import (
	"context"
	"log/slog"
	"sync"

	"github.com/pulse-rpc/pulse/internal/session"
)

// Call represents an active call, as in net/rpc. Go returns it; when the
// call completes, Error is set and the Call is sent on Done.
type Call struct {
	ServiceMethod string     // "Service.Method"
	Args          any        // the arguments to the method
	Reply         any        // the reply from the method, a pointer
	Error         error      // after completion, the error status
	Done          chan *Call // receives the Call when it completes

	// rec is the session's record of the call, embedded so that a call
	// costs no allocation of its own; it tells the Call of its completion
	// through callDone. It holds only what the session needs after the
	// request is encoded (Reply), not a copy of the fields above.
	rec session.Call
	// retry, set by Client.Go, may take over a call that failed without
	// being sent, to send it again on another connection.
	retry func(*Call) bool
}

// callDone is how the session completes a Call (session.Completer), as a
// type of its own so that Call has no exported method for it.
type callDone Call

// Complete converts the session's error, once, and names the method in it.
func (c *callDone) Complete(err error) {
	call := (*Call)(c)
	err = publicErr(err)
	if ce, ok := err.(*CallError); ok {
		ce.Method = call.ServiceMethod
	}
	call.finish(err)
}

// finish completes the call with err and delivers it without ever
// blocking the caller (usually the connection's reader), like net/rpc.
func (call *Call) finish(err error) {
	call.Error = err
	if call.retry != nil && call.Error != nil && call.retry(call) {
		return
	}
	select {
	case call.Done <- call:
	default:
		slog.Warn("pulse: discarding Call reply due to insufficient Done chan capacity", "method", call.ServiceMethod)
	}
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

// callPool recycles the Calls of blocking calls (Client.Call, Peer.Call):
// once wait returns, nothing refers to the Call any more (it was taken out
// of the call table before it was sent on Done), so it and its channel
// can serve the next call.
var callPool = sync.Pool{New: func() any { return &Call{Done: make(chan *Call, 1)} }}

func getCall(method string, args, reply any) *Call {
	call := callPool.Get().(*Call)
	call.ServiceMethod, call.Args, call.Reply = method, args, reply
	return call
}

func putCall(call *Call) {
	*call = Call{Done: call.Done}
	callPool.Put(call)
}

// send sends call on s; watch as in session.Send.
func (call *Call) send(ctx context.Context, s *session.Session, watch bool) {
	call.rec = session.Call{Reply: call.Reply, Owner: (*callDone)(call)}
	s.Send(ctx, &call.rec, call.ServiceMethod, call.Args, watch)
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
		call.rec.Abandon(ctx.Err())
		<-call.Done
	}
	return call.Error
}
