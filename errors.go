package pulse

import (
	"context"
	"errors"
	"fmt"

	"github.com/pulse-rpc/pulse/internal/session"
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
	// ErrSlowConsumer is the failure of a notification refused because the
	// peer's send queue is full (WithSlowConsumer, Broadcast).
	ErrSlowConsumer = session.ErrSlowConsumer
	// ErrPeerSilent means nothing was heard from the peer within the
	// liveness bound, so the connection was declared dead.
	ErrPeerSilent = errors.New("pulse: peer silent")
	// ErrGoAway means the peer told this side to stop using the connection.
	ErrGoAway = errors.New("pulse: peer sent GOAWAY")
	// ErrProtocol means a peer broke the wire protocol.
	ErrProtocol = errors.New("pulse: protocol error")
	// ErrHandshake means the connection never got past the handshake.
	ErrHandshake = errors.New("pulse: handshake failed")
	// ErrTLSMismatch means one side of a connection speaks TLS and the
	// other does not: a client with WithTLS at a plaintext port, or one
	// without it at a TLS port. The *ConnError (ErrHandshake too) says
	// which. Either side's error wraps it.
	ErrTLSMismatch = session.ErrTLSPeer

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
	// Status says what failed.
	Status Status
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
		return e.Status == StatusUnknownService
	case ErrUnknownMethod:
		return e.Status == StatusUnknownMethod
	case ErrBadArgs:
		return e.Status == StatusBadArgs
	case ErrHandlerPanic:
		return e.Status == StatusPanic
	case ErrBusy:
		return e.Status == StatusBusy
	case ErrMessageTooLarge:
		return e.Status == StatusTooLarge
	case ErrBadReply:
		return e.Status == StatusInternal && !e.Remote
	case context.DeadlineExceeded:
		return e.Status == StatusCanceled && e.Timeout()
	case context.Canceled:
		return e.Status == StatusCanceled && errors.Is(e.Err, context.Canceled)
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
	case StatusUnknownService, StatusUnknownMethod, StatusBadArgs, StatusBusy:
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

func (r Reason) String() string { return session.Reason(r).String() }

// ConnError is a failure of the whole connection. Every call pending on a
// connection when it closes fails with a *ConnError that carries the same
// first cause; Sent tells, per call, whether the request had been written.
type ConnError struct {
	Reason Reason
	// Code and Message are the GOAWAY code and detail when the peer sent
	// one (Reason == ReasonGoAway), or the code this side sent.
	Code    CloseCode
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
	return session.ConnErrorText(e.Reason.String(), e.Reason == ReasonGoAway, wire.GoAwayCode(e.Code), e.Message, e.Err, e.Sent)
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

// Status says how a call failed, or that it succeeded (StatusOK). The
// values are those of the wire protocol (wire/PROTOCOL.md).
type Status uint8

// Call statuses.
const (
	StatusOK             Status = iota // the method ran and returned nil
	StatusError                        // the method ran and returned an error (a ServerError)
	StatusUnknownService               // no such service: nothing ran
	StatusUnknownMethod                // no such method: nothing ran
	StatusBadArgs                      // the arguments could not be decoded: nothing ran
	StatusPanic                        // the method panicked
	StatusBusy                         // the peer refused the call (too many in flight): nothing ran
	StatusCanceled                     // the call was cancelled or its deadline passed
	StatusTooLarge                     // a message exceeded the maximum size
	StatusInternal                     // a reply could not be encoded or decoded
)

func (s Status) String() string { return wire.Status(s).String() }

// CloseCode says why a side told its peer to stop using a connection
// (the code of a GOAWAY frame, wire/PROTOCOL.md).
type CloseCode uint32

// Close codes.
const (
	CloseNormal         CloseCode = iota // closing normally (Close, idle or age limits)
	CloseShutdown                        // the server is draining before shutting down
	CloseTooManyPings                    // the peer pinged faster than allowed
	CloseProtocolError                   // the peer broke the protocol
	CloseMaxAge                          // the connection reached its maximum age
	CloseIdle                            // the connection carried no calls for too long
	ClosePeerSilent                      // nothing was heard from the peer for too long
	CloseInternal                        // a failure on the sender's side
	CloseHandshake                       // the handshake failed (settings refused)
	CloseTooManyStreams                  // too many messages arriving at once
	CloseFlowControl                     // the peer sent more than the credit it was granted
	CloseSlowConsumer                    // the peer did not read what was queued for it
	CloseStalled                         // a frame or message the peer started made no progress within the message timeout
)

func (c CloseCode) String() string { return wire.GoAwayCode(c).String() }

// publicErr converts an error from the session layer into Pulse's public
// error types; other errors, and nil, pass unchanged. It runs once per
// failure, on the cold path (grpc-go's toRPCErr).
func publicErr(err error) error {
	switch e := err.(type) {
	case nil:
		return nil
	case *session.CallError:
		cause := e.Err
		switch cause {
		case session.ErrMessageTooLarge:
			cause = ErrMessageTooLarge
		case session.ErrBadReply:
			cause = ErrBadReply
		}
		return &CallError{Method: e.Method, Status: Status(e.Status), Message: e.Message, Remote: e.Remote, Err: cause, reached: e.Reached}
	case *session.ConnError:
		return publicConnErr(e)
	case session.ServerError:
		return ServerError(e)
	}
	return err
}

// publicConnErr converts a connection error of the session layer.
func publicConnErr(e *session.ConnError) *ConnError {
	if e == nil {
		return nil
	}
	return &ConnError{Reason: Reason(e.Reason), Code: CloseCode(e.Code), Message: e.Message, Sent: e.Sent, Err: e.Err}
}
