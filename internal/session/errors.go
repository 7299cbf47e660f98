package session

import (
	"errors"
	"fmt"
	"net"

	"github.com/pulse-rpc/pulse/wire"
)

// The session's failure values. The root package converts each, once and
// on the cold path, into the public error types (its errors.go), as
// grpc-go's toRPCErr does: these carry wire codes, the public ones Pulse's
// own Status and CloseCode.

// Reason says why a connection closed. The root's Reason has the same
// values.
type Reason uint8

// Reasons a connection closes.
const (
	ReasonUnknown    Reason = iota
	ReasonShutdown          // closed by this side
	ReasonPeerClose         // the peer closed the connection (EOF or reset)
	ReasonGoAway            // the peer sent GOAWAY
	ReasonSilent            // nothing heard from the peer within the liveness bound
	ReasonWriteStall        // a write made no progress within the liveness bound
	ReasonProtocol          // a protocol violation (by the peer, or refused by it)
	ReasonHandshake         // the handshake failed
	ReasonIO                // a read or write error
)

// ReasonNames are the reasons' texts, shared with the root's Reason.
var ReasonNames = [...]string{
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
	if int(r) < len(ReasonNames) {
		return ReasonNames[r]
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// Sentinels a *CallError made on this side may carry in Err.
var (
	ErrMessageTooLarge = errors.New("pulse: message too large")
	ErrBadReply        = errors.New("pulse: cannot decode reply")
)

// ServerError is the error text a remote method returned.
type ServerError string

func (e ServerError) Error() string { return string(e) }

// CallError is a failure of one call that leaves the connection usable.
type CallError struct {
	Method  string
	Status  wire.Status
	Message string // the detail, from the peer or from this side
	Remote  bool   // the peer reported the failure
	Err     error  // the cause on this side, such as context.DeadlineExceeded
	// Reached records, for a failure seen on this side, that the request
	// was or will be delivered to the peer, so that the method may have
	// run.
	Reached bool
}

func (e *CallError) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("pulse: call %s: %s", e.Method, msg)
}

func (e *CallError) Unwrap() error { return e.Err }

// ConnError is a failure of the whole connection.
type ConnError struct {
	Reason  Reason
	Code    wire.GoAwayCode // the GOAWAY code received or sent
	Message string
	Sent    bool // the request was written: it may have run
	Err     error
}

func (e *ConnError) Error() string {
	return ConnErrorText(e.Reason.String(), e.Reason == ReasonGoAway, e.Code, e.Message, e.Err, e.Sent)
}

func (e *ConnError) Unwrap() error { return e.Err }

// ConnErrorText is the text of a connection error, here and in the root.
func ConnErrorText(reason string, goAway bool, code wire.GoAwayCode, msg string, err error, sent bool) string {
	s := "pulse: connection closed: " + reason
	if goAway || code != wire.GoAwayNormal {
		s += " (" + code.String()
		if msg != "" {
			s += ": " + msg
		}
		s += ")"
	} else if msg != "" {
		s += ": " + msg
	}
	if err != nil {
		s += ": " + err.Error()
	}
	if sent {
		s += "; the request was sent and may have run"
	}
	return s
}

// WithSent returns a copy of e with Sent set.
func (e *ConnError) WithSent(sent bool) *ConnError {
	c := *e
	c.Sent = sent
	return &c
}

// writeReason is the reason for a connection whose write failed with err.
func writeReason(err error) Reason {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonWriteStall
	}
	return ReasonIO
}
