package wire

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Magic starts every HELLO payload, so that a peer that is not Pulse at all
// (an HTTP client, a TLS client talking to a plain listener) is told apart
// from a Pulse peer of another version.
const Magic = "PLSE"

// MaxHelloSize bounds the payload of a HELLO frame. The handshake reads the
// first frame with this limit, before any setting is known.
const MaxHelloSize = 4096

// Role says which side of the handshake sent a HELLO.
type Role uint8

// Roles.
const (
	RoleDialer   Role = 0 // the side that opened the connection: it offers
	RoleAcceptor Role = 1 // the side that accepted it: it answers and grants
)

// Setting identifiers. Settings are (id, value) pairs; a receiver ignores
// ids it does not know, so new settings can be added without a new version.
const (
	SettingMaxFrameSize       uint16 = 1 // largest frame payload the sender accepts
	SettingMaxMessageSize     uint16 = 2 // largest reassembled message the sender accepts
	SettingInterval           uint16 = 3 // heartbeat interval, ms: proposed by the dialer, granted by the acceptor
	SettingTimeout            uint16 = 4 // silence deadline, ms, that the sender enforces on the peer
	SettingMaxConcurrentCalls uint16 = 5 // calls the sender runs at once per connection
	SettingMinPingInterval    uint16 = 6 // acceptor: the shortest interval between pings it tolerates, ms
	SettingInitialWindow      uint16 = 7 // credit for data-frame payload bytes the sender grants its peer at the start
)

// Hello is the payload of a HELLO frame. Durations travel as milliseconds.
type Hello struct {
	Role               Role
	MaxFrameSize       uint32
	MaxMessageSize     uint32
	Interval           time.Duration
	Timeout            time.Duration
	MaxConcurrentCalls uint32
	MinPingInterval    time.Duration
	// InitialWindow is the credit, in payload bytes of data frames
	// (CALL, REPLY, NOTIFY, CONTINUATION), that the sender of this HELLO
	// grants its peer before any WINDOW_UPDATE.
	InitialWindow uint32
	// Codecs lists codec names: the dialer's offer in order of preference,
	// or the acceptor's single choice.
	Codecs []string
}

func durMS(d time.Duration) uint32 {
	if d <= 0 {
		return 0 // a negative duration must not wrap to a huge uint32
	}
	ms := d / time.Millisecond
	if ms == 0 {
		ms = 1
	}
	if ms > 1<<32-1 {
		ms = 1<<32 - 1
	}
	return uint32(ms)
}

// AppendHello appends a complete HELLO frame to dst. It fails if the codec
// list does not fit the format (more than 255 names, or a name longer than
// 255 bytes) or the payload would exceed MaxHelloSize.
func AppendHello(dst []byte, h Hello) ([]byte, error) {
	if len(h.Codecs) > 255 {
		return dst, fmt.Errorf("wire: %d codecs offered, at most 255 fit in HELLO", len(h.Codecs))
	}
	start := len(dst)
	dst = AppendHeader(dst, TypeHello, FlagEnd, 0, 0)
	dst = append(dst, Magic...)
	dst = append(dst, byte(h.Role))
	type kv struct {
		id uint16
		v  uint32
	}
	settings := [...]kv{
		{SettingMaxFrameSize, h.MaxFrameSize},
		{SettingMaxMessageSize, h.MaxMessageSize},
		{SettingInterval, durMS(h.Interval)},
		{SettingTimeout, durMS(h.Timeout)},
		{SettingMaxConcurrentCalls, h.MaxConcurrentCalls},
		{SettingMinPingInterval, durMS(h.MinPingInterval)},
		{SettingInitialWindow, h.InitialWindow},
	}
	dst = append(dst, byte(len(settings)))
	for _, s := range settings {
		dst = binary.BigEndian.AppendUint16(dst, s.id)
		dst = binary.BigEndian.AppendUint32(dst, s.v)
	}
	dst = append(dst, byte(len(h.Codecs)))
	for _, c := range h.Codecs {
		if len(c) == 0 || len(c) > 255 {
			return dst[:start], fmt.Errorf("wire: codec name %q must be 1 to 255 bytes", c)
		}
		dst = append(dst, byte(len(c)))
		dst = append(dst, c...)
	}
	n := len(dst) - start - HeaderSize
	if n > MaxHelloSize {
		return dst[:start], fmt.Errorf("wire: HELLO payload of %d bytes exceeds %d", n, MaxHelloSize)
	}
	PutLength(dst[start:], n)
	return dst, nil
}

// ParseHello decodes the payload of a HELLO frame.
func ParseHello(p []byte) (Hello, error) {
	var h Hello
	if len(p) < len(Magic) || string(p[:len(Magic)]) != Magic {
		return h, fmt.Errorf("%w: HELLO without the %q magic: the peer does not speak Pulse", ErrMalformed, Magic)
	}
	p = p[len(Magic):]
	if len(p) < 2 {
		return h, fmt.Errorf("%w: short HELLO", ErrMalformed)
	}
	h.Role = Role(p[0])
	if h.Role != RoleDialer && h.Role != RoleAcceptor {
		return h, fmt.Errorf("%w: HELLO role %d", ErrMalformed, p[0])
	}
	n := int(p[1])
	p = p[2:]
	if len(p) < n*6 {
		return h, fmt.Errorf("%w: HELLO settings cut short", ErrMalformed)
	}
	ms := func(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
	for i := 0; i < n; i++ {
		id := binary.BigEndian.Uint16(p)
		v := binary.BigEndian.Uint32(p[2:])
		p = p[6:]
		switch id {
		case SettingMaxFrameSize:
			h.MaxFrameSize = v
		case SettingMaxMessageSize:
			h.MaxMessageSize = v
		case SettingInterval:
			h.Interval = ms(v)
		case SettingTimeout:
			h.Timeout = ms(v)
		case SettingMaxConcurrentCalls:
			h.MaxConcurrentCalls = v
		case SettingMinPingInterval:
			h.MinPingInterval = ms(v)
		case SettingInitialWindow:
			h.InitialWindow = v
		}
	}
	if len(p) < 1 {
		return h, fmt.Errorf("%w: HELLO without codec list", ErrMalformed)
	}
	n = int(p[0])
	p = p[1:]
	for i := 0; i < n; i++ {
		if len(p) < 1 || int(p[0]) == 0 || len(p) < 1+int(p[0]) {
			return h, fmt.Errorf("%w: HELLO codec list cut short", ErrMalformed)
		}
		h.Codecs = append(h.Codecs, string(p[1:1+int(p[0])]))
		p = p[1+int(p[0]):]
	}
	if len(p) != 0 {
		return h, fmt.Errorf("%w: %d stray bytes after HELLO", ErrMalformed, len(p))
	}
	return h, nil
}

// CheckWindow reports whether the InitialWindow of h lets its receiver
// ever send a whole message: it must be at least the MaxFrameSize of h,
// at least its MaxMessageSize plus the MessageLenSize prefix of a message
// in several frames (when MaxMessageSize is stated), and at most
// MaxWindow.
func CheckWindow(h Hello) error {
	need := uint64(h.MaxFrameSize)
	if h.MaxMessageSize > 0 {
		need = max(need, uint64(h.MaxMessageSize)+MessageLenSize)
	}
	if uint64(h.InitialWindow) < need || h.InitialWindow > MaxWindow {
		return fmt.Errorf("%w: initial window %d outside [%d, %d] (max frame size %d, max message size %d)",
			ErrMalformed, h.InitialWindow, need, uint32(MaxWindow), h.MaxFrameSize, h.MaxMessageSize)
	}
	return nil
}
