package wire

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// MessageLenSize is the size of the total-length prefix that starts the
// payload of the first frame of a message sent in several frames (a CALL,
// NOTIFY or REPLY frame without FlagEnd). It lets the receiver refuse a
// message over its limit before gathering it. It is only an announcement:
// a receiver should bound the memory it allocates for announced totals
// (package pulse: up to its flow-control window) and otherwise grow a
// message's buffer as its bytes arrive.
const MessageLenSize = 4

// AppendMessageLen appends the total-length prefix of a multi-frame message.
func AppendMessageLen(dst []byte, total int) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(total))
}

// ParseMessageLen splits the total-length prefix off the payload of the
// first frame of a multi-frame message.
func ParseMessageLen(p []byte) (total uint32, rest []byte, err error) {
	if len(p) < MessageLenSize {
		return 0, nil, fmt.Errorf("%w: first frame of a multi-frame message has %d bytes, no length prefix", ErrMalformed, len(p))
	}
	return binary.BigEndian.Uint32(p), p[MessageLenSize:], nil
}

// MaxMethodLen is the longest method name a CALL or NOTIFY may carry.
const MaxMethodLen = 1024

// AppendCallHead appends the head of a CALL or NOTIFY message: the method
// name and the time the caller is willing to wait (0 for no deadline).
// The encoded arguments follow it directly.
//
//	uvarint  method length
//	bytes    method ("Service.Method")
//	uvarint  timeout in microseconds, 0 = none
func AppendCallHead(dst []byte, method string, timeout time.Duration) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(method)))
	dst = append(dst, method...)
	var us uint64
	if timeout > 0 {
		us = uint64(timeout / time.Microsecond)
		if us == 0 {
			us = 1
		}
	}
	return binary.AppendUvarint(dst, us)
}

// ParseCall splits a complete CALL or NOTIFY message into its method name,
// its timeout (0 for none) and its encoded arguments. The returned slices
// alias msg.
func ParseCall(msg []byte) (method []byte, timeout time.Duration, args []byte, err error) {
	n, k := binary.Uvarint(msg)
	if k <= 0 || n > MaxMethodLen || uint64(len(msg)-k) < n {
		return nil, 0, nil, fmt.Errorf("%w: bad method name in call", ErrMalformed)
	}
	method = msg[k : k+int(n)]
	msg = msg[k+int(n):]
	us, k := binary.Uvarint(msg)
	if k <= 0 || us > uint64(1<<63-1)/uint64(time.Microsecond) {
		return nil, 0, nil, fmt.Errorf("%w: bad timeout in call", ErrMalformed)
	}
	return method, time.Duration(us) * time.Microsecond, msg[k:], nil
}

// Status is the outcome carried by a REPLY.
type Status uint8

// Reply statuses. Every status other than StatusOK carries a UTF-8 error
// message instead of a reply body.
const (
	StatusOK             Status = 0 // the method ran and returned nil; the body is the reply
	StatusError          Status = 1 // the method ran and returned an error
	StatusUnknownService Status = 2 // no such service: nothing ran
	StatusUnknownMethod  Status = 3 // no such method: nothing ran
	StatusBadArgs        Status = 4 // the arguments could not be decoded: nothing ran
	StatusPanic          Status = 5 // the method panicked
	StatusBusy           Status = 6 // the peer refused the call (too many in flight): nothing ran
	StatusCanceled       Status = 7 // the call was cancelled or its deadline passed
	StatusTooLarge       Status = 8 // a message exceeded the maximum size: the method may have run
	StatusInternal       Status = 9 // the reply could not be encoded
	maxStatus            Status = StatusInternal
)

var statusNames = [...]string{
	StatusOK:             "OK",
	StatusError:          "ERROR",
	StatusUnknownService: "UNKNOWN_SERVICE",
	StatusUnknownMethod:  "UNKNOWN_METHOD",
	StatusBadArgs:        "BAD_ARGS",
	StatusPanic:          "PANIC",
	StatusBusy:           "BUSY",
	StatusCanceled:       "CANCELED",
	StatusTooLarge:       "TOO_LARGE",
	StatusInternal:       "INTERNAL",
}

func (s Status) String() string {
	if s <= maxStatus {
		return statusNames[s]
	}
	return fmt.Sprintf("STATUS_%d", uint8(s))
}

// AppendReplyHead appends the one status byte that starts a REPLY message.
// For StatusOK the encoded reply follows; otherwise the error message.
func AppendReplyHead(dst []byte, s Status) []byte { return append(dst, byte(s)) }

// ParseReply splits a complete REPLY message into its status and the rest,
// which is the reply body for StatusOK and an error message otherwise.
// Unknown statuses are returned as they are; callers treat them as errors.
func ParseReply(msg []byte) (Status, []byte, error) {
	if len(msg) < 1 {
		return 0, nil, fmt.Errorf("%w: empty reply", ErrMalformed)
	}
	return Status(msg[0]), msg[1:], nil
}

// PingSize is the payload size of PING and PONG frames.
const PingSize = 8

// AppendPing appends a PING or PONG frame carrying data.
func AppendPing(dst []byte, t FrameType, data uint64) []byte {
	dst = AppendHeader(dst, t, 0, 0, PingSize)
	return binary.BigEndian.AppendUint64(dst, data)
}

// ParsePing decodes the payload of a PING or PONG frame.
func ParsePing(p []byte) (uint64, error) {
	if len(p) != PingSize {
		return 0, fmt.Errorf("%w: ping payload of %d bytes, want %d", ErrMalformed, len(p), PingSize)
	}
	return binary.BigEndian.Uint64(p), nil
}

// GoAwayCode says why a peer sent GOAWAY.
type GoAwayCode uint32

// GOAWAY codes.
const (
	GoAwayNormal         GoAwayCode = 0  // closing normally (Close, idle or age limits)
	GoAwayShutdown       GoAwayCode = 1  // the server is draining before shutting down
	GoAwayTooManyPings   GoAwayCode = 2  // the peer pinged faster than allowed
	GoAwayProtocolError  GoAwayCode = 3  // the peer broke the protocol
	GoAwayMaxAge         GoAwayCode = 4  // the connection reached its maximum age
	GoAwayIdle           GoAwayCode = 5  // the connection carried no calls for too long
	GoAwayPeerSilent     GoAwayCode = 6  // nothing was heard from the peer for too long
	GoAwayInternal       GoAwayCode = 7  // a failure on the sender's side
	GoAwayHandshake      GoAwayCode = 8  // the handshake failed (settings refused)
	GoAwayTooManyStreams GoAwayCode = 9  // too many concurrent messages in reassembly
	GoAwayFlowControl    GoAwayCode = 10 // the peer sent more data than its credit, or overflowed it
	GoAwaySlowConsumer   GoAwayCode = 11 // the peer does not read what the sender queues for it
	GoAwayStalled        GoAwayCode = 12 // a frame or message the peer started made no progress for too long
	maxGoAwayCode                   = GoAwayStalled
)

var goAwayNames = [...]string{
	GoAwayNormal:         "normal",
	GoAwayShutdown:       "server shutting down",
	GoAwayTooManyPings:   "too many pings",
	GoAwayProtocolError:  "protocol error",
	GoAwayMaxAge:         "max connection age",
	GoAwayIdle:           "idle timeout",
	GoAwayPeerSilent:     "peer silent",
	GoAwayInternal:       "internal error",
	GoAwayHandshake:      "handshake refused",
	GoAwayTooManyStreams: "too many concurrent messages",
	GoAwayFlowControl:    "flow control error",
	GoAwaySlowConsumer:   "slow consumer",
	GoAwayStalled:        "stalled message",
}

func (c GoAwayCode) String() string {
	if c <= maxGoAwayCode {
		return goAwayNames[c]
	}
	return fmt.Sprintf("goaway code %d", uint32(c))
}

// GoAway is the payload of a GOAWAY frame.
type GoAway struct {
	LastID  uint32     // highest call id from the receiver that the sender processes
	Code    GoAwayCode // why
	Message string     // human-readable detail, at most MaxGoAwayMessage bytes
}

// MaxGoAwayMessage bounds the detail text of a GOAWAY frame.
const MaxGoAwayMessage = 512

// AppendGoAway appends a complete GOAWAY frame to dst. A message longer than
// MaxGoAwayMessage is cut, at a rune boundary.
func AppendGoAway(dst []byte, g GoAway) []byte {
	msg := g.Message
	if len(msg) > MaxGoAwayMessage {
		// If the limit falls inside a rune, cut before that rune, which
		// starts at most utf8.UTFMax-1 bytes earlier. The bytes kept are
		// sent as they are, valid UTF-8 or not.
		cut := MaxGoAwayMessage
		for i := cut; i > MaxGoAwayMessage-utf8.UTFMax; i-- {
			if utf8.RuneStart(msg[i]) {
				cut = i
				break
			}
		}
		msg = msg[:cut]
	}
	dst = AppendHeader(dst, TypeGoAway, 0, 0, 8+len(msg))
	dst = binary.BigEndian.AppendUint32(dst, g.LastID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(g.Code))
	return append(dst, msg...)
}

// ParseGoAway decodes the payload of a GOAWAY frame.
func ParseGoAway(p []byte) (GoAway, error) {
	if len(p) < 8 || len(p) > 8+MaxGoAwayMessage {
		return GoAway{}, fmt.Errorf("%w: GOAWAY payload of %d bytes", ErrMalformed, len(p))
	}
	return GoAway{
		LastID:  binary.BigEndian.Uint32(p[0:4]),
		Code:    GoAwayCode(binary.BigEndian.Uint32(p[4:8])),
		Message: string(p[8:]),
	}, nil
}

// WindowUpdateSize is the payload size of a WINDOW_UPDATE frame.
const WindowUpdateSize = 4

// MaxWindow is the largest credit a receiver may have granted and not yet
// seen used, and so the largest increment of one WINDOW_UPDATE.
const MaxWindow = 1<<31 - 1

// AppendWindowUpdate appends a complete WINDOW_UPDATE frame granting inc
// more bytes of credit, 1 to MaxWindow.
func AppendWindowUpdate(dst []byte, inc uint32) []byte {
	dst = AppendHeader(dst, TypeWindowUpdate, 0, 0, WindowUpdateSize)
	return binary.BigEndian.AppendUint32(dst, inc)
}

// ParseWindowUpdate decodes the payload of a WINDOW_UPDATE frame: its
// increment, which is 1 to MaxWindow.
func ParseWindowUpdate(p []byte) (uint32, error) {
	if len(p) != WindowUpdateSize {
		return 0, fmt.Errorf("%w: WINDOW_UPDATE payload of %d bytes, want %d", ErrMalformed, len(p), WindowUpdateSize)
	}
	inc := binary.BigEndian.Uint32(p)
	if inc == 0 || inc > MaxWindow {
		return 0, fmt.Errorf("%w: WINDOW_UPDATE increment %d outside [1, %d]", ErrMalformed, inc, uint32(MaxWindow))
	}
	return inc, nil
}
