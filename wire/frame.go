// Package wire encodes and decodes Pulse frames.
//
// Every frame starts with a fixed 12-byte header, big-endian:
//
//	offset size field
//	0      1    version   (Version, currently 2)
//	1      1    type      (FrameType)
//	2      1    flags     (Flags)
//	3      1    reserved  (sent as 0, ignored on receipt)
//	4      4    id        call id, 0 for connection-level frames
//	8      4    length    payload length in bytes, not counting the header
//
// The payload of CALL, REPLY and NOTIFY frames is a message that may span
// several frames: the first frame carries the type, the following ones are
// CONTINUATION frames with the same id, and the last one has FlagEnd set.
// Since version 2 the payload of these data frames is flow-controlled:
// each side grants the other credit in its HELLO (InitialWindow) and
// WINDOW_UPDATE frames.
// PROTOCOL.md in this directory documents every frame byte by byte.
//
// Package wire imports nothing from the rest of Pulse.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Version is the protocol version this package speaks. It is the first byte
// of every frame.
const Version = 2

// HeaderSize is the size of the fixed frame header.
const HeaderSize = 12

// Frame size limits. A frame's payload is at most the receiver's negotiated
// maximum, which lies between MinMaxFrameSize and MaxMaxFrameSize.
const (
	MinMaxFrameSize     = 1 << 10 // 1 KiB
	DefaultMaxFrameSize = 16 << 10
	MaxMaxFrameSize     = 16 << 20
)

// FrameType is the kind of a frame.
type FrameType uint8

// Frame types.
const (
	TypeHello        FrameType = 1 // handshake and settings
	TypeCall         FrameType = 2 // first frame of a call that expects a reply
	TypeReply        FrameType = 3 // first frame of a reply
	TypeNotify       FrameType = 4 // first frame of a one-way call
	TypeContinuation FrameType = 5 // next chunk of a CALL, REPLY or NOTIFY message
	TypeCancel       FrameType = 6 // the caller abandoned call id
	TypePing         FrameType = 7 // heartbeat; the peer answers with PONG
	TypePong         FrameType = 8 // answer to PING, same payload
	TypeGoAway       FrameType = 9 // the sender will process no call above LastID
	// TypeWindowUpdate grants the peer more credit for data frames
	// (version 2, flow control).
	TypeWindowUpdate FrameType = 10
)

var frameNames = [...]string{
	TypeHello:        "HELLO",
	TypeCall:         "CALL",
	TypeReply:        "REPLY",
	TypeNotify:       "NOTIFY",
	TypeContinuation: "CONTINUATION",
	TypeCancel:       "CANCEL",
	TypePing:         "PING",
	TypePong:         "PONG",
	TypeGoAway:       "GOAWAY",
	TypeWindowUpdate: "WINDOW_UPDATE",
}

func (t FrameType) String() string {
	if int(t) < len(frameNames) && frameNames[t] != "" {
		return frameNames[t]
	}
	return "UNKNOWN_FRAME_TYPE_" + strconv.Itoa(int(t))
}

// Valid reports whether t is a frame type of this protocol version.
func (t FrameType) Valid() bool { return t >= TypeHello && t <= TypeWindowUpdate }

// IsControl reports whether frames of type t belong to the connection's
// control lane: they are small, never chunked, and are written ahead of
// queued data so that heartbeat round trips stay meaningful under load.
// They are never held back by flow control.
func (t FrameType) IsControl() bool {
	switch t {
	case TypeCancel, TypePing, TypePong, TypeGoAway, TypeWindowUpdate:
		return true
	}
	return false
}

// Flags modify a frame.
type Flags uint8

// Frame flags.
const (
	// FlagEnd marks the last frame of a CALL, REPLY or NOTIFY message.
	FlagEnd Flags = 0x1
	// FlagAbort on a CONTINUATION frame (which also carries FlagEnd) says
	// the sender abandoned the message: the receiver discards what it has
	// gathered for that id.
	FlagAbort Flags = 0x2
)

func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	s := ""
	add := func(n string) {
		if s != "" {
			s += "|"
		}
		s += n
	}
	if f&FlagEnd != 0 {
		add("END")
	}
	if f&FlagAbort != 0 {
		add("ABORT")
	}
	if rest := f &^ (FlagEnd | FlagAbort); rest != 0 {
		add("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	return s
}

// Header is a decoded frame header.
type Header struct {
	Type   FrameType
	Flags  Flags
	ID     uint32
	Length uint32
}

func (h Header) String() string {
	return fmt.Sprintf("%v flags=%v id=%d len=%d", h.Type, h.Flags, h.ID, h.Length)
}

// Errors returned by the decoders. They describe a peer that does not speak
// the protocol correctly; the connection cannot continue after any of them.
var (
	ErrVersion       = errors.New("wire: unsupported protocol version")
	ErrFrameType     = errors.New("wire: unknown frame type")
	ErrFrameTooLarge = errors.New("wire: frame larger than the negotiated maximum")
	ErrMalformed     = errors.New("wire: malformed frame")
)

// ParseHeader decodes the header at the start of b, which must hold at least
// HeaderSize bytes. It checks the version, the type and that the length does
// not exceed maxPayload, so a caller can allocate Length bytes safely.
func ParseHeader(b []byte, maxPayload uint32) (Header, error) {
	_ = b[HeaderSize-1]
	if b[0] != Version {
		return Header{}, fmt.Errorf("%w: got %d, want %d", ErrVersion, b[0], Version)
	}
	h := Header{
		Type:   FrameType(b[1]),
		Flags:  Flags(b[2]),
		ID:     binary.BigEndian.Uint32(b[4:8]),
		Length: binary.BigEndian.Uint32(b[8:12]),
	}
	if !h.Type.Valid() {
		return h, fmt.Errorf("%w %d", ErrFrameType, b[1])
	}
	if h.Length > maxPayload {
		return h, fmt.Errorf("%w: %v frame of %d bytes, limit %d", ErrFrameTooLarge, h.Type, h.Length, maxPayload)
	}
	return h, nil
}

// AppendHeader appends a frame header to dst.
func AppendHeader(dst []byte, t FrameType, f Flags, id uint32, length int) []byte {
	return append(dst, Version, byte(t), byte(f), 0,
		byte(id>>24), byte(id>>16), byte(id>>8), byte(id),
		byte(length>>24), byte(length>>16), byte(length>>8), byte(length))
}

// AppendFrame appends a complete frame with the given payload to dst.
func AppendFrame(dst []byte, t FrameType, f Flags, id uint32, payload []byte) []byte {
	dst = AppendHeader(dst, t, f, id, len(payload))
	return append(dst, payload...)
}

// PutLength writes length into the header that starts at hdr[0]. It lets an
// encoder append a header with a zero length, append the payload, and fill
// in the length afterwards without copying.
func PutLength(hdr []byte, length int) {
	binary.BigEndian.PutUint32(hdr[8:12], uint32(length))
}

// PutFlags overwrites the flags of the header that starts at hdr[0].
func PutFlags(hdr []byte, f Flags) { hdr[2] = byte(f) }
