package pulse

import (
	"context"
	"errors"
	"fmt"

	"github.com/pulse-rpc/pulse/wire"
)

// Sentinel errors. Match them with errors.Is: the errors Pulse returns are
// of the types below, each of which reports the sentinels it stands for.
var (
	// ErrServerClosed is returned by Serve and ListenAndServe after Close
	// or Shutdown.
	ErrServerClosed = errors.New("pulse: server closed")
	// ErrShutdown means this side closed the client or connection.
	ErrShutdown = errors.New("pulse: connection is shut down")
	// ErrPeerSilent means nothing was heard from the peer within the
	// liveness bound, so the connection was declared dead.
	ErrPeerSilent = errors.New("pulse: peer silent")
	// ErrGoAway means the peer told this side to stop using the connection.
	ErrGoAway = errors.New("pulse: peer sent GOAWAY")
	// ErrProtocol means a peer broke the wire protocol.
	ErrProtocol = errors.New("pulse: protocol error")
	// ErrHandshake means the connection never got past the handshake.
	ErrHandshake = errors.New("pulse: handshake failed")

	// ErrUnknownService, ErrUnknownMethod, ErrBadArgs, ErrHandlerPanic,
	// ErrBusy and ErrMessageTooLarge are per-call failures (*CallError).
	ErrUnknownService  = errors.New("pulse: unknown service")
	ErrUnknownMethod   = errors.New("pulse: unknown method")
	ErrBadArgs         = errors.New("pulse: cannot decode arguments")
	ErrHandlerPanic    = errors.New("pulse: handler panicked")
	ErrBusy            = errors.New("pulse: too many calls in flight")
	ErrMessageTooLarge = errors.New("pulse: message too large")
	ErrBadReply        = errors.New("pulse: cannot decode reply")
)

// ServerError is an error returned by the remote method itself: the call
// reached the method, which ran and returned a non-nil error. Its text is
// the method's error text. As in net/rpc, it is a string type; it is the
// same whichever end of the connection served the call.
type ServerError string

func (e ServerError) Error() string { return string(e) }

// CallError is a failure of one call that leaves the connection usable: the
// method does not exist, the arguments could not be decoded, the handler
// panicked, the peer was too busy, the message was too large, or the call's
// context ended. Whether the method ran is in Executed.
type CallError struct {
	Method string
	// Status is the wire status of the failure.
	Status wire.Status
	// Message is the detail, from the peer or from this side.
	Message string
	// Remote says that the peer reported the failure.
	Remote bool
	// Err is the cause on this side, such as context.DeadlineExceeded.
	Err error

	// reached records, for a failure seen on this side (Remote false),
	// that the request was or will be delivered to the peer, so that the
	// method may have run: a call abandoned after it was queued whole, or
	// a reply that could not be taken.
	reached bool
}

func (e *CallError) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("pulse: call %s: %s", e.Method, msg)
}

func (e *CallError) Unwrap() error { return e.Err }

// Is reports the sentinel that matches the call's status.
func (e *CallError) Is(target error) bool {
	switch target {
	case ErrUnknownService:
		return e.Status == wire.StatusUnknownService
	case ErrUnknownMethod:
		return e.Status == wire.StatusUnknownMethod
	case ErrBadArgs:
		return e.Status == wire.StatusBadArgs
	case ErrHandlerPanic:
		return e.Status == wire.StatusPanic
	case ErrBusy:
		return e.Status == wire.StatusBusy
	case ErrMessageTooLarge:
		return e.Status == wire.StatusTooLarge
	case ErrBadReply:
		return e.Status == wire.StatusInternal && !e.Remote
	case context.DeadlineExceeded:
		return e.Status == wire.StatusCanceled && e.Timeout()
	case context.Canceled:
		return e.Status == wire.StatusCanceled && errors.Is(e.Err, context.Canceled)
	}
	return false
}

// Timeout reports whether the call failed because its deadline passed. It
// makes *CallError satisfy net.Error.
func (e *CallError) Timeout() bool {
	return errors.Is(e.Err, context.DeadlineExceeded)
}

// Temporary is part of net.Error; it reports Timeout().
func (e *CallError) Temporary() bool { return e.Timeout() }

// Executed reports whether the method may have run: false for unknown
// methods, undecodable arguments and refusals, true otherwise.
func (e *CallError) Executed() bool {
	switch e.Status {
	case wire.StatusUnknownService, wire.StatusUnknownMethod, wire.StatusBadArgs, wire.StatusBusy:
		return false
	}
	return e.Remote || e.reached
}

// Reason says why a connection closed.
type Reason uint8

// Reasons a connection closes.
const (
	ReasonUnknown    Reason = iota
	ReasonShutdown          // Close was called on this side
	ReasonPeerClose         // the peer closed the connection (EOF or reset)
	ReasonGoAway            // the peer sent GOAWAY; see ConnError.Code
	ReasonSilent            // nothing heard from the peer within the liveness bound
	ReasonWriteStall        // a write made no progress within the liveness bound
	ReasonProtocol          // a protocol violation (by the peer, or refused by it)
	ReasonHandshake         // the handshake failed
	ReasonIO                // a read or write error
)

var reasonNames = [...]string{
	ReasonUnknown:    "unknown",
	ReasonShutdown:   "closed by this side",
	ReasonPeerClose:  "closed by peer",
	ReasonGoAway:     "GOAWAY from peer",
	ReasonSilent:     "peer silent",
	ReasonWriteStall: "write stalled",
	ReasonProtocol:   "protocol error",
	ReasonHandshake:  "handshake failed",
	ReasonIO:         "I/O error",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// ConnError is a failure of the whole connection. Every call pending on a
// connection when it closes fails with a *ConnError that carries the same
// first cause; Sent tells, per call, whether the request had been written.
type ConnError struct {
	Reason Reason
	// Code and Message are the GOAWAY code and detail when the peer sent
	// one (Reason == ReasonGoAway), or the code this side sent.
	Code    wire.GoAwayCode
	Message string
	// Sent is false when the request was never written to the connection:
	// the peer cannot have run it and it is safe to retry. True means the
	// request was written and the connection was lost before the reply:
	// the method may have run.
	Sent bool
	// Err is the underlying cause (an I/O error, a decode error), if any.
	Err error
}

func (e *ConnError) Error() string {
	s := "pulse: connection closed: " + e.Reason.String()
	if e.Reason == ReasonGoAway || e.Code != wire.GoAwayNormal {
		s += " (" + e.Code.String()
		if e.Message != "" {
			s += ": " + e.Message
		}
		s += ")"
	} else if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Sent {
		s += "; the request was sent and may have run"
	}
	return s
}

func (e *ConnError) Unwrap() error { return e.Err }

// Is matches the sentinel for the reason.
func (e *ConnError) Is(target error) bool {
	switch target {
	case ErrShutdown:
		return e.Reason == ReasonShutdown
	case ErrPeerSilent:
		return e.Reason == ReasonSilent
	case ErrGoAway:
		return e.Reason == ReasonGoAway
	case ErrProtocol:
		return e.Reason == ReasonProtocol
	case ErrHandshake:
		return e.Reason == ReasonHandshake
	}
	return false
}

// Timeout reports whether the connection died of silence or a stalled
// write, making *ConnError satisfy net.Error.
func (e *ConnError) Timeout() bool {
	return e.Reason == ReasonSilent || e.Reason == ReasonWriteStall
}

// Temporary is part of net.Error; a new connection may succeed, so it is
// true for every reason but ReasonShutdown and ReasonHandshake.
func (e *ConnError) Temporary() bool {
	return e.Reason != ReasonShutdown && e.Reason != ReasonHandshake
}

// withSent returns a copy of e with Sent set.
func (e *ConnError) withSent(sent bool) *ConnError {
	c := *e
	c.Sent = sent
	return &c
}
