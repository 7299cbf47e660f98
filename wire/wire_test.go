package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
	"unsafe"
)

// ---------------------------------------------------------------------------
// Guards: the numbers below are on the wire. Changing any of them breaks
// every deployed peer, so a change must be deliberate (a new Version).

func TestHeaderLayout(t *testing.T) {
	if HeaderSize != 12 {
		t.Fatalf("HeaderSize = %d, want 12", HeaderSize)
	}
	if n := len(AppendHeader(nil, TypeCall, FlagEnd, 1, 0)); n != HeaderSize {
		t.Errorf("AppendHeader wrote %d bytes, want HeaderSize = %d", n, HeaderSize)
	}
	// Header is passed by value on every frame; keep it as small as the
	// header it describes (like golang.org/x/net/http2's frame size checks).
	if got, want := unsafe.Sizeof(Header{}), uintptr(12); got > want {
		t.Errorf("unsafe.Sizeof(Header{}) = %d, want <= %d", got, want)
	}
}

func TestWireConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"Version", Version, 2},
		{"MinMaxFrameSize", MinMaxFrameSize, 1024},
		{"DefaultMaxFrameSize", DefaultMaxFrameSize, 16384},
		{"MaxMaxFrameSize", MaxMaxFrameSize, 16 << 20},
		{"MaxHelloSize", MaxHelloSize, 4096},
		{"MaxMethodLen", MaxMethodLen, 1024},
		{"MaxGoAwayMessage", MaxGoAwayMessage, 512},
		{"PingSize", PingSize, 8},
		{"MessageLenSize", MessageLenSize, 4},
		{"WindowUpdateSize", WindowUpdateSize, 4},
		{"MaxWindow", MaxWindow, 1<<31 - 1},

		{"TypeHello", uint64(TypeHello), 1},
		{"TypeCall", uint64(TypeCall), 2},
		{"TypeReply", uint64(TypeReply), 3},
		{"TypeNotify", uint64(TypeNotify), 4},
		{"TypeContinuation", uint64(TypeContinuation), 5},
		{"TypeCancel", uint64(TypeCancel), 6},
		{"TypePing", uint64(TypePing), 7},
		{"TypePong", uint64(TypePong), 8},
		{"TypeGoAway", uint64(TypeGoAway), 9},
		{"TypeWindowUpdate", uint64(TypeWindowUpdate), 10},

		{"FlagEnd", uint64(FlagEnd), 0x1},
		{"FlagAbort", uint64(FlagAbort), 0x2},

		{"RoleDialer", uint64(RoleDialer), 0},
		{"RoleAcceptor", uint64(RoleAcceptor), 1},

		{"SettingMaxFrameSize", uint64(SettingMaxFrameSize), 1},
		{"SettingMaxMessageSize", uint64(SettingMaxMessageSize), 2},
		{"SettingInterval", uint64(SettingInterval), 3},
		{"SettingTimeout", uint64(SettingTimeout), 4},
		{"SettingMaxConcurrentCalls", uint64(SettingMaxConcurrentCalls), 5},
		{"SettingMinPingInterval", uint64(SettingMinPingInterval), 6},
		{"SettingInitialWindow", uint64(SettingInitialWindow), 7},

		{"StatusOK", uint64(StatusOK), 0},
		{"StatusError", uint64(StatusError), 1},
		{"StatusUnknownService", uint64(StatusUnknownService), 2},
		{"StatusUnknownMethod", uint64(StatusUnknownMethod), 3},
		{"StatusBadArgs", uint64(StatusBadArgs), 4},
		{"StatusPanic", uint64(StatusPanic), 5},
		{"StatusBusy", uint64(StatusBusy), 6},
		{"StatusCanceled", uint64(StatusCanceled), 7},
		{"StatusTooLarge", uint64(StatusTooLarge), 8},
		{"StatusInternal", uint64(StatusInternal), 9},

		{"GoAwayNormal", uint64(GoAwayNormal), 0},
		{"GoAwayShutdown", uint64(GoAwayShutdown), 1},
		{"GoAwayTooManyPings", uint64(GoAwayTooManyPings), 2},
		{"GoAwayProtocolError", uint64(GoAwayProtocolError), 3},
		{"GoAwayMaxAge", uint64(GoAwayMaxAge), 4},
		{"GoAwayIdle", uint64(GoAwayIdle), 5},
		{"GoAwayPeerSilent", uint64(GoAwayPeerSilent), 6},
		{"GoAwayInternal", uint64(GoAwayInternal), 7},
		{"GoAwayHandshake", uint64(GoAwayHandshake), 8},
		{"GoAwayTooManyStreams", uint64(GoAwayTooManyStreams), 9},
		{"GoAwayFlowControl", uint64(GoAwayFlowControl), 10},
		{"GoAwaySlowConsumer", uint64(GoAwaySlowConsumer), 11},
		{"GoAwayStalled", uint64(GoAwayStalled), 12},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d (wire value: do not change)", c.name, c.got, c.want)
		}
	}
	if Magic != "PLSE" {
		t.Errorf("Magic = %q, want %q", Magic, "PLSE")
	}
}

// TestLimitInvariants checks relations between limits that the protocol
// relies on.
func TestLimitInvariants(t *testing.T) {
	if !(MinMaxFrameSize <= DefaultMaxFrameSize && DefaultMaxFrameSize <= MaxMaxFrameSize) {
		t.Errorf("frame size limits out of order: %d, %d, %d", MinMaxFrameSize, DefaultMaxFrameSize, MaxMaxFrameSize)
	}
	// Control frames are never chunked, so each must fit the smallest
	// frame size a peer may announce, and the handshake limit (a GOAWAY
	// may answer a HELLO).
	for _, c := range []struct {
		name string
		size int
	}{
		{"GOAWAY", 8 + MaxGoAwayMessage},
		{"PING", PingSize},
		{"CANCEL", 0},
		{"WINDOW_UPDATE", WindowUpdateSize},
	} {
		if c.size > MinMaxFrameSize || c.size > MaxHelloSize {
			t.Errorf("largest %s payload (%d) exceeds MinMaxFrameSize or MaxHelloSize", c.name, c.size)
		}
	}
	// The frame length field is 32 bits; int(Length) must not overflow.
	if uint64(MaxMaxFrameSize) > math.MaxInt32 {
		t.Errorf("MaxMaxFrameSize %d does not fit an int32", MaxMaxFrameSize)
	}
	// A credit is at most MaxWindow and must fit an int32 (the
	// implementation keeps it in one); a window can always hold the
	// largest frame.
	if MaxWindow != math.MaxInt32 {
		t.Errorf("MaxWindow = %d, want %d (2^31-1)", MaxWindow, math.MaxInt32)
	}
	if MaxMaxFrameSize > MaxWindow {
		t.Errorf("MaxMaxFrameSize %d exceeds MaxWindow %d", MaxMaxFrameSize, MaxWindow)
	}
}

func TestFrameTypeClasses(t *testing.T) {
	for i := 0; i < 256; i++ {
		ft := FrameType(i)
		if want := i >= 1 && i <= 10; ft.Valid() != want {
			t.Errorf("%v.Valid() = %v, want %v", ft, ft.Valid(), want)
		}
		want := ft == TypeCancel || ft == TypePing || ft == TypePong || ft == TypeGoAway || ft == TypeWindowUpdate
		if ft.IsControl() != want {
			t.Errorf("%v.IsControl() = %v, want %v", ft, ft.IsControl(), want)
		}
	}
}

// ---------------------------------------------------------------------------
// Golden bytes: one frame of every kind, written out byte by byte. These are
// the same bytes PROTOCOL.md describes.

// dialerHello and acceptorHello are the settings of the golden handshake.
var (
	dialerHello = Hello{
		Role:           RoleDialer,
		MaxFrameSize:   16384,
		MaxMessageSize: 4 << 20,
		Interval:       15 * time.Second,
		Timeout:        45 * time.Second,
		InitialWindow:  8 << 20,
		Codecs:         []string{"raw", "json"},
	}
	acceptorHello = Hello{
		Role:               RoleAcceptor,
		MaxFrameSize:       16384,
		MaxMessageSize:     4 << 20,
		Interval:           15 * time.Second,
		Timeout:            45 * time.Second,
		MaxConcurrentCalls: 100,
		MinPingInterval:    5 * time.Second,
		InitialWindow:      8 << 20,
		Codecs:             []string{"json"},
	}
)

func mustHello(t *testing.T, h Hello) []byte {
	t.Helper()
	b, err := AppendHello(nil, h)
	if err != nil {
		t.Fatalf("AppendHello(%+v): %v", h, err)
	}
	return b
}

// appendMessageFrame appends one frame whose payload is built by body, the
// way a connection writes a CALL, NOTIFY, REPLY or CONTINUATION: header with
// a zero length, payload, then PutLength.
func appendMessageFrame(dst []byte, ft FrameType, f Flags, id uint32, body func([]byte) []byte) []byte {
	start := len(dst)
	dst = AppendHeader(dst, ft, f, id, 0)
	dst = body(dst)
	PutLength(dst[start:], len(dst)-start-HeaderSize)
	return dst
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{
			name: "HELLO dialer",
			got:  mustHello(t, dialerHello),
			want: []byte{
				0x02, 0x01, 0x01, 0x00, // version 2, HELLO, END, reserved
				0x00, 0x00, 0x00, 0x00, // id 0
				0x00, 0x00, 0x00, 0x3a, // length 58 = 4+1+1+7*6+1+(1+3)+(1+4)
				'P', 'L', 'S', 'E', // magic
				0x00,                               // role: dialer
				0x07,                               // 7 settings
				0x00, 0x01, 0x00, 0x00, 0x40, 0x00, // MaxFrameSize 16384
				0x00, 0x02, 0x00, 0x40, 0x00, 0x00, // MaxMessageSize 4 MiB
				0x00, 0x03, 0x00, 0x00, 0x3a, 0x98, // Interval 15000 ms
				0x00, 0x04, 0x00, 0x00, 0xaf, 0xc8, // Timeout 45000 ms
				0x00, 0x05, 0x00, 0x00, 0x00, 0x00, // MaxConcurrentCalls 0
				0x00, 0x06, 0x00, 0x00, 0x00, 0x00, // MinPingInterval 0
				0x00, 0x07, 0x00, 0x80, 0x00, 0x00, // InitialWindow 8 MiB
				0x02,                // 2 codecs
				0x03, 'r', 'a', 'w', // "raw"
				0x04, 'j', 's', 'o', 'n', // "json"
			},
		},
		{
			name: "HELLO acceptor",
			got:  mustHello(t, acceptorHello),
			want: []byte{
				0x02, 0x01, 0x01, 0x00,
				0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x36, // length 54 = 4+1+1+7*6+1+(1+4)
				'P', 'L', 'S', 'E',
				0x01, // role: acceptor
				0x07,
				0x00, 0x01, 0x00, 0x00, 0x40, 0x00, // MaxFrameSize 16384
				0x00, 0x02, 0x00, 0x40, 0x00, 0x00, // MaxMessageSize 4 MiB
				0x00, 0x03, 0x00, 0x00, 0x3a, 0x98, // Interval 15000 ms
				0x00, 0x04, 0x00, 0x00, 0xaf, 0xc8, // Timeout 45000 ms
				0x00, 0x05, 0x00, 0x00, 0x00, 0x64, // MaxConcurrentCalls 100
				0x00, 0x06, 0x00, 0x00, 0x13, 0x88, // MinPingInterval 5000 ms
				0x00, 0x07, 0x00, 0x80, 0x00, 0x00, // InitialWindow 8 MiB
				0x01,                     // 1 codec
				0x04, 'j', 's', 'o', 'n', // "json"
			},
		},
		{
			name: "CALL",
			got: appendMessageFrame(nil, TypeCall, FlagEnd, 1, func(b []byte) []byte {
				b = AppendCallHead(b, "Arith.Add", 2*time.Second)
				return append(b, `{"A":2,"B":3}`...)
			}),
			want: []byte{
				0x02, 0x02, 0x01, 0x00, // version 2, CALL, END, reserved
				0x00, 0x00, 0x00, 0x01, // id 1
				0x00, 0x00, 0x00, 0x1a, // length 26
				0x09, 'A', 'r', 'i', 't', 'h', '.', 'A', 'd', 'd', // method
				0x80, 0x89, 0x7a, // timeout 2000000 µs (uvarint)
				'{', '"', 'A', '"', ':', '2', ',', '"', 'B', '"', ':', '3', '}', // args
			},
		},
		{
			name: "NOTIFY",
			got: appendMessageFrame(nil, TypeNotify, FlagEnd, 3, func(b []byte) []byte {
				b = AppendCallHead(b, "Log.Write", 0)
				return append(b, "hi"...)
			}),
			want: []byte{
				0x02, 0x04, 0x01, 0x00, // NOTIFY, END
				0x00, 0x00, 0x00, 0x03, // id 3
				0x00, 0x00, 0x00, 0x0d, // length 13
				0x09, 'L', 'o', 'g', '.', 'W', 'r', 'i', 't', 'e',
				0x00, // no timeout
				'h', 'i',
			},
		},
		{
			name: "REPLY OK",
			got: appendMessageFrame(nil, TypeReply, FlagEnd, 1, func(b []byte) []byte {
				return append(AppendReplyHead(b, StatusOK), '5')
			}),
			want: []byte{
				0x02, 0x03, 0x01, 0x00, // REPLY, END
				0x00, 0x00, 0x00, 0x01,
				0x00, 0x00, 0x00, 0x02,
				0x00, // StatusOK
				'5',  // body
			},
		},
		{
			name: "REPLY error",
			got: appendMessageFrame(nil, TypeReply, FlagEnd, 2, func(b []byte) []byte {
				return append(AppendReplyHead(b, StatusUnknownMethod), "no Arith.Mul"...)
			}),
			want: []byte{
				0x02, 0x03, 0x01, 0x00, // REPLY, END
				0x00, 0x00, 0x00, 0x02,
				0x00, 0x00, 0x00, 0x0d,
				0x03, // StatusUnknownMethod
				'n', 'o', ' ', 'A', 'r', 'i', 't', 'h', '.', 'M', 'u', 'l',
			},
		},
		{
			name: "CALL split over CONTINUATION",
			got: func() []byte {
				msg := AppendCallHead(nil, "KV.Put", 0)
				msg = append(msg, "abcdef"...)
				first := AppendMessageLen(nil, len(msg))
				first = append(first, msg[:4]...)
				b := AppendFrame(nil, TypeCall, 0, 5, first)
				return AppendFrame(b, TypeContinuation, FlagEnd, 5, msg[4:])
			}(),
			want: []byte{
				0x02, 0x02, 0x00, 0x00, // CALL, no flags: more follows
				0x00, 0x00, 0x00, 0x05,
				0x00, 0x00, 0x00, 0x08,
				0x00, 0x00, 0x00, 0x0e, // the whole message is 14 bytes
				0x06, 'K', 'V', '.',
				0x02, 0x05, 0x01, 0x00, // CONTINUATION, END
				0x00, 0x00, 0x00, 0x05,
				0x00, 0x00, 0x00, 0x0a,
				'P', 'u', 't', 0x00, 'a', 'b', 'c', 'd', 'e', 'f',
			},
		},
		{
			name: "CONTINUATION abort",
			got:  AppendFrame(nil, TypeContinuation, FlagAbort|FlagEnd, 5, nil),
			want: []byte{
				0x02, 0x05, 0x03, 0x00, // CONTINUATION, END|ABORT
				0x00, 0x00, 0x00, 0x05,
				0x00, 0x00, 0x00, 0x00,
			},
		},
		{
			name: "CANCEL",
			got:  AppendFrame(nil, TypeCancel, 0, 7, nil),
			want: []byte{
				0x02, 0x06, 0x00, 0x00, // CANCEL
				0x00, 0x00, 0x00, 0x07,
				0x00, 0x00, 0x00, 0x00,
			},
		},
		{
			name: "PING",
			got:  AppendPing(nil, TypePing, 0x0102030405060708),
			want: []byte{
				0x02, 0x07, 0x00, 0x00, // PING
				0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x08,
				0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
			},
		},
		{
			name: "PONG",
			got:  AppendPing(nil, TypePong, 0x0102030405060708),
			want: []byte{
				0x02, 0x08, 0x00, 0x00, // PONG
				0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x08,
				0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
			},
		},
		{
			name: "GOAWAY",
			got:  AppendGoAway(nil, GoAway{LastID: 7, Code: GoAwayShutdown, Message: "bye"}),
			want: []byte{
				0x02, 0x09, 0x00, 0x00, // GOAWAY
				0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x0b, // length 11
				0x00, 0x00, 0x00, 0x07, // LastID 7
				0x00, 0x00, 0x00, 0x01, // GoAwayShutdown
				'b', 'y', 'e',
			},
		},
		{
			name: "GOAWAY flow control",
			got:  AppendGoAway(nil, GoAway{LastID: 4, Code: GoAwayFlowControl}),
			want: []byte{
				0x02, 0x09, 0x00, 0x00, // GOAWAY
				0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x08, // length 8: no message
				0x00, 0x00, 0x00, 0x04, // LastID 4
				0x00, 0x00, 0x00, 0x0a, // GoAwayFlowControl
			},
		},
		{
			name: "WINDOW_UPDATE",
			got:  AppendWindowUpdate(nil, 65536),
			want: []byte{
				0x02, 0x0a, 0x00, 0x00, // version 2, WINDOW_UPDATE, flags 0, reserved
				0x00, 0x00, 0x00, 0x00, // id 0
				0x00, 0x00, 0x00, 0x04, // length 4
				0x00, 0x01, 0x00, 0x00, // increment 65536
			},
		},
		{
			name: "WINDOW_UPDATE max",
			got:  AppendWindowUpdate(nil, MaxWindow),
			want: []byte{
				0x02, 0x0a, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x04,
				0x7f, 0xff, 0xff, 0xff, // increment 2^31-1
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) {
				t.Errorf("encoded\n% x\nwant\n% x", tt.got, tt.want)
			}
			// The golden bytes must also read back as well-formed frames
			// that consume the whole slice.
			r := NewReader(bytes.NewReader(tt.want), 64)
			r.SetMaxPayload(MaxHelloSize)
			n := 0
			for {
				h, p, err := r.ReadFrame()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("ReadFrame: %v", err)
				}
				if int(h.Length) != len(p) {
					t.Fatalf("%v: payload of %d bytes", h, len(p))
				}
				n += HeaderSize + len(p)
			}
			if n != len(tt.want) {
				t.Errorf("frames cover %d of %d bytes", n, len(tt.want))
			}
		})
	}
}

// TestGoldenDecode decodes the golden payloads back into their values.
func TestGoldenDecode(t *testing.T) {
	b := mustHello(t, acceptorHello)
	h, err := ParseHeader(b, MaxHelloSize)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Header{Type: TypeHello, Flags: FlagEnd, ID: 0, Length: 54}); h != want {
		t.Errorf("header %v, want %v", h, want)
	}
	hello, err := ParseHello(b[HeaderSize:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(hello, acceptorHello) {
		t.Errorf("ParseHello = %+v, want %+v", hello, acceptorHello)
	}

	method, timeout, args, err := ParseCall([]byte{0x09, 'A', 'r', 'i', 't', 'h', '.', 'A', 'd', 'd', 0x80, 0x89, 0x7a, '{', '}'})
	if err != nil || string(method) != "Arith.Add" || timeout != 2*time.Second || string(args) != "{}" {
		t.Errorf("ParseCall = %q, %v, %q, %v", method, timeout, args, err)
	}

	g, err := ParseGoAway([]byte{0, 0, 0, 7, 0, 0, 0, 1, 'b', 'y', 'e'})
	if want := (GoAway{LastID: 7, Code: GoAwayShutdown, Message: "bye"}); err != nil || g != want {
		t.Errorf("ParseGoAway = %+v, %v; want %+v", g, err, want)
	}

	v, err := ParsePing([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	if err != nil || v != 0x0102030405060708 {
		t.Errorf("ParsePing = %#x, %v", v, err)
	}

	inc, err := ParseWindowUpdate([]byte{0x00, 0x01, 0x00, 0x00})
	if err != nil || inc != 65536 {
		t.Errorf("ParseWindowUpdate = %d, %v; want 65536", inc, err)
	}
	hd, err := ParseHeader([]byte{0x02, 0x0a, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 4}, MinMaxFrameSize)
	if want := (Header{Type: TypeWindowUpdate, Length: 4}); err != nil || hd != want {
		t.Errorf("WINDOW_UPDATE header %v, %v; want %v", hd, err, want)
	}

	// The golden HELLOs grant windows their own limits allow.
	for _, h := range []Hello{dialerHello, acceptorHello} {
		if err := CheckWindow(h); err != nil {
			t.Errorf("CheckWindow(%+v): %v", h, err)
		}
	}
}

// ---------------------------------------------------------------------------
// Headers

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Type: TypeHello, Flags: FlagEnd},
		{Type: TypeCall, Flags: FlagEnd, ID: 1, Length: 26},
		{Type: TypeCall, ID: 1<<32 - 1, Length: MaxMaxFrameSize},
		{Type: TypeReply, Flags: FlagEnd, ID: 2, Length: 1},
		{Type: TypeNotify, ID: 0x01020304, Length: 0x0a0b0c0d},
		{Type: TypeContinuation, Flags: FlagEnd | FlagAbort, ID: 99},
		{Type: TypeCancel, ID: 7},
		{Type: TypePing, Length: PingSize},
		{Type: TypePong, Length: PingSize},
		{Type: TypeGoAway, Length: 8},
		{Type: TypeCall, Flags: 0xff, ID: 3}, // unknown flag bits survive
		{Type: TypeCall, ID: 3, Length: 1<<32 - 1},
	} {
		b := AppendHeader([]byte("prefix"), h.Type, h.Flags, h.ID, int(h.Length))
		if len(b) != len("prefix")+HeaderSize || string(b[:6]) != "prefix" {
			t.Fatalf("AppendHeader did not append to dst: % x", b)
		}
		got, err := ParseHeader(b[6:], 1<<32-1)
		if err != nil || got != h {
			t.Errorf("ParseHeader(AppendHeader(%v)) = %v, %v", h, got, err)
		}
	}
}

func TestParseHeaderIgnoresReserved(t *testing.T) {
	b := AppendHeader(nil, TypeCall, FlagEnd, 1, 10)
	b[3] = 0xff
	h, err := ParseHeader(b, 10)
	if want := (Header{Type: TypeCall, Flags: FlagEnd, ID: 1, Length: 10}); err != nil || h != want {
		t.Errorf("ParseHeader with reserved 0xff = %v, %v; want %v", h, err, want)
	}
}

func TestParseHeaderLongerSlice(t *testing.T) {
	// ParseHeader reads only the first HeaderSize bytes.
	b := AppendFrame(nil, TypePing, 0, 0, make([]byte, 8))
	h, err := ParseHeader(b, 8)
	if err != nil || h.Length != 8 || h.Type != TypePing {
		t.Errorf("ParseHeader = %v, %v", h, err)
	}
}

func TestPutLengthAndFlags(t *testing.T) {
	b := AppendHeader([]byte{0xee}, TypeCall, 0, 5, 0)
	b = append(b, "payload"...)
	PutLength(b[1:], len(b)-1-HeaderSize)
	PutFlags(b[1:], FlagEnd|FlagAbort)
	want := []byte{0xee, 0x02, 0x02, 0x03, 0x00, 0, 0, 0, 5, 0, 0, 0, 7, 'p', 'a', 'y', 'l', 'o', 'a', 'd'}
	if !bytes.Equal(b, want) {
		t.Errorf("got % x\nwant % x", b, want)
	}
}

func TestAppendFrame(t *testing.T) {
	b := AppendFrame([]byte{0xaa}, TypeReply, FlagEnd, 0x01020304, []byte{0, 'x'})
	want := []byte{0xaa, 0x02, 0x03, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 2, 0, 'x'}
	if !bytes.Equal(b, want) {
		t.Errorf("got % x\nwant % x", b, want)
	}
}

func hdr(version byte, ft FrameType, length uint32) []byte {
	b := AppendHeader(nil, ft, 0, 1, int(length))
	b[0] = version
	return b
}

func TestParseHeaderErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
		max  uint32
		err  error
	}{
		{"version 0", hdr(0, TypeCall, 0), 100, ErrVersion},
		{"version 1", hdr(1, TypeCall, 0), 100, ErrVersion},
		{"version 1 HELLO", hdr(1, TypeHello, 52), MaxHelloSize, ErrVersion},
		{"version 3", hdr(3, TypeCall, 0), 100, ErrVersion},
		{"version 0xff", hdr(0xff, TypeCall, 0), 100, ErrVersion},
		{"HTTP request", []byte("GET / HTTP/1.1\r\n"), 100, ErrVersion},
		{"TLS client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x00}, 100, ErrVersion},
		{"type 0", hdr(Version, 0, 0), 100, ErrFrameType},
		{"type 11", hdr(Version, 11, 0), 100, ErrFrameType},
		{"type 255", hdr(Version, 255, 0), 100, ErrFrameType},
		{"too large by one", hdr(Version, TypeCall, 101), 100, ErrFrameTooLarge},
		{"too large max uint32", hdr(Version, TypeCall, 1<<32-1), MaxMaxFrameSize, ErrFrameTooLarge},
		{"too large zero max", hdr(Version, TypePing, 8), 0, ErrFrameTooLarge},
		{"bad version wins over bad type", hdr(3, 77, 0), 100, ErrVersion},
		{"bad type wins over size", hdr(Version, 77, 1000), 100, ErrFrameType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseHeader(tt.b, tt.max)
			if !errors.Is(err, tt.err) {
				t.Errorf("ParseHeader(% x, %d) = %v, want %v", tt.b[:HeaderSize], tt.max, err, tt.err)
			}
		})
	}
	// Exactly at the limit is fine.
	if _, err := ParseHeader(hdr(Version, TypeCall, 100), 100); err != nil {
		t.Errorf("length == max: %v", err)
	}
	// Type 10, unknown in version 1, is WINDOW_UPDATE in version 2.
	if h, err := ParseHeader(hdr(Version, 10, WindowUpdateSize), 100); err != nil || h.Type != TypeWindowUpdate {
		t.Errorf("type 10: %v, %v", h, err)
	}
}

// headerOnlyReader hands out exactly one frame header and fails the test if
// anything reads further: the body of a frame that is refused must not be
// read, let alone allocated.
type headerOnlyReader struct {
	t    *testing.T
	hdr  []byte
	done bool
}

func (r *headerOnlyReader) Read(p []byte) (int, error) {
	if r.done {
		r.t.Errorf("read past the header (%d-byte read) of a refused frame", len(p))
		return 0, io.ErrUnexpectedEOF
	}
	r.done = true
	return copy(p, r.hdr), nil
}

func TestReaderRefusesBeforeBody(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  []byte
		err  error
	}{
		{"too large", hdr(Version, TypeCall, MaxHelloSize+1), ErrFrameTooLarge},
		{"too large huge", hdr(Version, TypeReply, 1<<32-1), ErrFrameTooLarge},
		{"bad version", hdr(9, TypeCall, 100), ErrVersion},
		{"unknown type", hdr(Version, 42, 100), ErrFrameType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(&headerOnlyReader{t: t, hdr: tt.hdr}, 4096)
			_, p, err := r.ReadFrame()
			if !errors.Is(err, tt.err) || p != nil {
				t.Errorf("ReadFrame = %d bytes, %v; want %v", len(p), err, tt.err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// CALL / NOTIFY heads

func TestCallRoundTrip(t *testing.T) {
	long := strings.Repeat("m", MaxMethodLen)
	for _, tt := range []struct {
		method  string
		timeout time.Duration
		want    time.Duration // decoded timeout
		args    string
	}{
		{"Arith.Add", 2 * time.Second, 2 * time.Second, `{"A":2,"B":3}`},
		{"Arith.Add", 0, 0, ""},
		{"", 0, 0, ""},
		{"S.M", -time.Second, 0, "x"},       // negative: no deadline
		{"S.M", math.MinInt64, 0, "x"},      // very negative
		{"S.M", 1, time.Microsecond, "x"},   // 1 ns rounds up, not to "none"
		{"S.M", 999, time.Microsecond, "x"}, // sub-microsecond
		{"S.M", time.Microsecond, time.Microsecond, ""},
		{"S.M", 1500 * time.Nanosecond, time.Microsecond, ""}, // truncated to µs
		{"S.M", 127 * time.Microsecond, 127 * time.Microsecond, ""},
		{"S.M", 128 * time.Microsecond, 128 * time.Microsecond, ""},
		{"S.M", time.Hour, time.Hour, "\x00\x01"},
		{"S.M", math.MaxInt64, math.MaxInt64 / time.Microsecond * time.Microsecond, ""},
		{"Ünï.cødé", time.Millisecond, time.Millisecond, "ü"},
		{long, time.Second, time.Second, "args"},
	} {
		msg := AppendCallHead([]byte("junk")[:0], tt.method, tt.timeout)
		msg = append(msg, tt.args...)
		method, timeout, args, err := ParseCall(msg)
		if err != nil {
			t.Errorf("ParseCall(%q, %v): %v", tt.method, tt.timeout, err)
			continue
		}
		if string(method) != tt.method || timeout != tt.want || string(args) != tt.args {
			t.Errorf("round trip of (%.20q, %v, %q) = (%.20q, %v, %q), want timeout %v",
				tt.method, tt.timeout, tt.args, method, timeout, args, tt.want)
		}
	}
}

func TestAppendCallHeadAppends(t *testing.T) {
	b := AppendCallHead([]byte{0xab}, "A.B", 0)
	if want := []byte{0xab, 3, 'A', '.', 'B', 0}; !bytes.Equal(b, want) {
		t.Errorf("got % x, want % x", b, want)
	}
}

func TestParseCallAliases(t *testing.T) {
	msg := append(AppendCallHead(nil, "A.B", 0), "args"...)
	method, _, args, err := ParseCall(msg)
	if err != nil {
		t.Fatal(err)
	}
	if &method[0] != &msg[1] || &args[0] != &msg[len(msg)-4] {
		t.Errorf("ParseCall copied instead of aliasing msg")
	}
}

func uvarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseCallErrors(t *testing.T) {
	maxUS := uint64(math.MaxInt64) / uint64(time.Microsecond)
	for _, tt := range []struct {
		name string
		msg  []byte
	}{
		{"empty", nil},
		{"method length varint cut", []byte{0x80}},
		{"method length varint overflow", bytes.Repeat([]byte{0xff}, 11)},
		{"method length over limit", cat(uvarint(MaxMethodLen+1), bytes.Repeat([]byte{'m'}, MaxMethodLen+1), []byte{0})},
		{"method length 2^63", cat(uvarint(1<<63), []byte("x"))},
		{"method length max uint64", cat(uvarint(math.MaxUint64), []byte("x"))},
		{"method cut short", []byte{5, 'A', '.', 'B'}},
		{"no timeout", []byte{3, 'A', '.', 'B'}},
		{"timeout varint cut", []byte{3, 'A', '.', 'B', 0x80}},
		{"timeout varint overflow", cat([]byte{3, 'A', '.', 'B'}, bytes.Repeat([]byte{0xff}, 10), []byte{0x01})},
		{"timeout overflows Duration", cat([]byte{3, 'A', '.', 'B'}, uvarint(maxUS+1))},
		{"timeout max uint64", cat([]byte{3, 'A', '.', 'B'}, uvarint(math.MaxUint64))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			method, timeout, args, err := ParseCall(tt.msg)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseCall(% x) = %q, %v, %q, %v; want ErrMalformed", tt.msg, method, timeout, args, err)
			}
		})
	}
	// The largest representable timeout is accepted.
	if _, d, _, err := ParseCall(cat([]byte{0}, uvarint(maxUS))); err != nil || d != time.Duration(maxUS)*time.Microsecond {
		t.Errorf("largest timeout: %v, %v", d, err)
	}
	// Non-minimal varints are accepted (encoding/binary.Uvarint semantics).
	if m, d, a, err := ParseCall([]byte{0x83, 0x00, 'A', '.', 'B', 0x80, 0x00}); err != nil || string(m) != "A.B" || d != 0 || len(a) != 0 {
		t.Errorf("non-minimal varints: %q %v %q %v", m, d, a, err)
	}
}

// ---------------------------------------------------------------------------
// REPLY

func TestReplyRoundTrip(t *testing.T) {
	for s := 0; s < 256; s++ {
		for _, body := range []string{"", "5", "error message: ünïcode", "\x00\xff"} {
			msg := append(AppendReplyHead(nil, Status(s)), body...)
			got, rest, err := ParseReply(msg)
			if err != nil || got != Status(s) || string(rest) != body {
				t.Fatalf("ParseReply(%v, %q) = %v, %q, %v", Status(s), body, got, rest, err)
			}
		}
	}
	if _, _, err := ParseReply(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseReply(empty) = %v, want ErrMalformed", err)
	}
	if _, _, err := ParseReply([]byte{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ParseReply([]byte{}) = %v, want ErrMalformed", err)
	}
}

// ---------------------------------------------------------------------------
// GOAWAY

func TestGoAwayRoundTrip(t *testing.T) {
	for _, g := range []GoAway{
		{},
		{LastID: 1, Code: GoAwayNormal},
		{LastID: 7, Code: GoAwayShutdown, Message: "bye"},
		{LastID: 1<<32 - 1, Code: GoAwayProtocolError, Message: "wire: malformed frame"},
		{LastID: 2, Code: 1<<32 - 1, Message: "unknown code"},
		{Code: GoAwayInternal, Message: strings.Repeat("x", MaxGoAwayMessage)},
		{Code: GoAwayInternal, Message: strings.Repeat("€", MaxGoAwayMessage/3)},
		{Code: GoAwayInternal, Message: "\xff\xfe not UTF-8, short: sent as is"},
	} {
		b := AppendGoAway([]byte{0x55}, g)
		if b[0] != 0x55 {
			t.Fatalf("AppendGoAway overwrote dst")
		}
		h, err := ParseHeader(b[1:], MinMaxFrameSize)
		if err != nil || h.Type != TypeGoAway || h.ID != 0 || h.Flags != 0 || int(h.Length) != len(b)-1-HeaderSize {
			t.Fatalf("GOAWAY header %v, %v", h, err)
		}
		got, err := ParseGoAway(b[1+HeaderSize:])
		if err != nil || got != g {
			t.Errorf("round trip of %+v = %+v, %v", g, got, err)
		}
	}
}

func TestGoAwayTruncation(t *testing.T) {
	a := func(n int) string { return strings.Repeat("a", n) }
	for _, tt := range []struct {
		name string
		msg  string
		want string
	}{
		{"ascii over", a(600), a(512)},
		{"ascii one over", a(513), a(512)},
		{"exact", a(512), a(512)},
		{"2-byte rune across the cut", a(511) + "é" + a(10), a(511)},
		{"3-byte rune across the cut, 1 byte in", a(511) + "€", a(511)},
		{"3-byte rune across the cut, 2 bytes in", a(510) + "€b", a(510)},
		{"4-byte rune across the cut, 3 bytes in", a(509) + "😀", a(509)},
		{"4-byte rune across the cut, 1 byte in", a(511) + "😀", a(511)},
		{"4-byte rune ends at the cut", a(508) + "😀" + "b", a(508) + "😀"},
		{"all multi-byte", strings.Repeat("€", 200), strings.Repeat("€", 170)},
		// A message that is not valid UTF-8 is cut at the limit, backing
		// up only over a rune cut in two, not dropped altogether.
		{"invalid byte first", "\xff" + a(600), "\xff" + a(511)},
		{"invalid byte near the cut", a(300) + "\xc3" + a(300), a(300) + "\xc3" + a(211)},
		{"all continuation bytes", strings.Repeat("\x80", 600), strings.Repeat("\x80", 512)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendGoAway(nil, GoAway{LastID: 3, Code: GoAwayInternal, Message: tt.msg})
			g, err := ParseGoAway(b[HeaderSize:])
			if err != nil {
				t.Fatal(err)
			}
			if g.Message != tt.want {
				t.Errorf("message of %d bytes cut to %d bytes %.30q..., want %d bytes", len(tt.msg), len(g.Message), g.Message, len(tt.want))
			}
			if len(g.Message) > MaxGoAwayMessage || !strings.HasPrefix(tt.msg, g.Message) {
				t.Errorf("cut message is not a prefix of at most %d bytes", MaxGoAwayMessage)
			}
			if utf8.ValidString(tt.msg) && !utf8.ValidString(g.Message) {
				t.Errorf("valid UTF-8 cut inside a rune")
			}
			if g.LastID != 3 || g.Code != GoAwayInternal {
				t.Errorf("got %+v", g)
			}
		})
	}
}

func TestParseGoAwayErrors(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8 + MaxGoAwayMessage + 1, 4096} {
		if _, err := ParseGoAway(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseGoAway(%d bytes) = %v, want ErrMalformed", n, err)
		}
	}
	for _, n := range []int{8, 9, 8 + MaxGoAwayMessage} {
		if _, err := ParseGoAway(make([]byte, n)); err != nil {
			t.Errorf("ParseGoAway(%d bytes) = %v", n, err)
		}
	}
}

// ---------------------------------------------------------------------------
// PING / PONG

func TestPingRoundTrip(t *testing.T) {
	for _, ft := range []FrameType{TypePing, TypePong} {
		for _, v := range []uint64{0, 1, 0x0102030405060708, math.MaxUint64} {
			b := AppendPing([]byte{0x42}, ft, v)
			if b[0] != 0x42 || len(b) != 1+HeaderSize+PingSize {
				t.Fatalf("AppendPing wrote % x", b)
			}
			h, err := ParseHeader(b[1:], PingSize)
			if want := (Header{Type: ft, Length: PingSize}); err != nil || h != want {
				t.Errorf("header %v, %v; want %v", h, err, want)
			}
			got, err := ParsePing(b[1+HeaderSize:])
			if err != nil || got != v {
				t.Errorf("ParsePing = %#x, %v; want %#x", got, err, v)
			}
		}
	}
	for _, n := range []int{0, 1, 7, 9, 16} {
		if _, err := ParsePing(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParsePing(%d bytes) = %v, want ErrMalformed", n, err)
		}
	}
}

// ---------------------------------------------------------------------------
// WINDOW_UPDATE

func TestWindowUpdateRoundTrip(t *testing.T) {
	for _, inc := range []uint32{1, 2, 4096, 65536, 8 << 20, MaxWindow - 1, MaxWindow} {
		b := AppendWindowUpdate([]byte{0x42}, inc)
		if b[0] != 0x42 || len(b) != 1+HeaderSize+WindowUpdateSize {
			t.Fatalf("AppendWindowUpdate(%d) wrote % x", inc, b)
		}
		h, err := ParseHeader(b[1:], MinMaxFrameSize)
		if want := (Header{Type: TypeWindowUpdate, Length: WindowUpdateSize}); err != nil || h != want {
			t.Errorf("header %v, %v; want %v", h, err, want)
		}
		if !h.Type.IsControl() {
			t.Errorf("WINDOW_UPDATE is not a control frame")
		}
		if got := binary.BigEndian.Uint32(b[1+HeaderSize:]); got != inc {
			t.Errorf("increment written as %d, want %d", got, inc)
		}
		got, err := ParseWindowUpdate(b[1+HeaderSize:])
		if err != nil || got != inc {
			t.Errorf("ParseWindowUpdate = %d, %v; want %d", got, err, inc)
		}
	}
}

func TestParseWindowUpdateErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"length 3", []byte{0x00, 0x01, 0x00}},
		{"length 5", []byte{0x00, 0x01, 0x00, 0x00, 0x00}},
		{"length 8", []byte{0, 0, 0, 0, 0, 1, 0, 0}},
		{"increment 0", []byte{0x00, 0x00, 0x00, 0x00}},
		{"increment 2^31", []byte{0x80, 0x00, 0x00, 0x00}},
		{"increment 2^31+1", []byte{0x80, 0x00, 0x00, 0x01}},
		{"increment 2^32-1", []byte{0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			inc, err := ParseWindowUpdate(tt.p)
			if !errors.Is(err, ErrMalformed) || inc != 0 {
				t.Errorf("ParseWindowUpdate(% x) = %d, %v; want 0, ErrMalformed", tt.p, inc, err)
			}
		})
	}
	// The bounds themselves are fine.
	for _, p := range [][]byte{{0, 0, 0, 1}, {0x7f, 0xff, 0xff, 0xff}} {
		if _, err := ParseWindowUpdate(p); err != nil {
			t.Errorf("ParseWindowUpdate(% x) = %v", p, err)
		}
	}
}

func TestCheckWindow(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		name string
		h    Hello
		ok   bool
	}{
		{"default: 8 MiB for 4 MiB messages", Hello{MaxFrameSize: 16384, MaxMessageSize: 4 * mib, InitialWindow: 8 * mib}, true},
		{"exactly message+4", Hello{MaxFrameSize: 16384, MaxMessageSize: 4 * mib, InitialWindow: 4*mib + 4}, true},
		{"message+3", Hello{MaxFrameSize: 16384, MaxMessageSize: 4 * mib, InitialWindow: 4*mib + 3}, false},
		{"exactly the message, no room for the prefix", Hello{MaxFrameSize: 16384, MaxMessageSize: 4 * mib, InitialWindow: 4 * mib}, false},
		{"frame size dominates", Hello{MaxFrameSize: 16384, MaxMessageSize: 100, InitialWindow: 16384}, true},
		{"below frame size", Hello{MaxFrameSize: 16384, MaxMessageSize: 100, InitialWindow: 16383}, false},
		{"no message limit: frame size only", Hello{MaxFrameSize: 16384, InitialWindow: 16384}, true},
		{"no message limit, below frame size", Hello{MaxFrameSize: 16384, InitialWindow: 16383}, false},
		{"zero window (setting absent)", Hello{MaxFrameSize: 16384, MaxMessageSize: 4 * mib}, false},
		{"all zero", Hello{}, true}, // nothing to hold; the frame size check refuses such a HELLO
		{"MaxWindow", Hello{MaxFrameSize: MaxMaxFrameSize, MaxMessageSize: MaxWindow - 4, InitialWindow: MaxWindow}, true},
		{"over MaxWindow", Hello{MaxFrameSize: 16384, MaxMessageSize: 4 * mib, InitialWindow: MaxWindow + 1}, false},
		{"max uint32", Hello{MaxFrameSize: 16384, InitialWindow: 1<<32 - 1}, false},
		{"message too large for any window", Hello{MaxFrameSize: 16384, MaxMessageSize: MaxWindow - 3, InitialWindow: MaxWindow}, false},
		{"max uint32 message: no overflow", Hello{MaxFrameSize: 16384, MaxMessageSize: 1<<32 - 1, InitialWindow: 1<<32 - 1}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckWindow(tt.h)
			if tt.ok && err != nil {
				t.Errorf("CheckWindow(%+v) = %v, want nil", tt.h, err)
			}
			if !tt.ok && !errors.Is(err, ErrMalformed) {
				t.Errorf("CheckWindow(%+v) = %v, want ErrMalformed", tt.h, err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// HELLO

func TestHelloRoundTrip(t *testing.T) {
	var many []string
	for i := 0; i < 255; i++ {
		many = append(many, fmt.Sprintf("c%d", i))
	}
	for _, h := range []Hello{
		dialerHello,
		acceptorHello,
		{},
		{Role: RoleAcceptor},
		{
			Role:               RoleDialer,
			MaxFrameSize:       1<<32 - 1,
			MaxMessageSize:     1<<32 - 1,
			Interval:           (1<<32 - 1) * time.Millisecond,
			Timeout:            (1<<32 - 1) * time.Millisecond,
			MaxConcurrentCalls: 1<<32 - 1,
			MinPingInterval:    (1<<32 - 1) * time.Millisecond,
			InitialWindow:      1<<32 - 1, // out of range, but the encoding carries it
			Codecs:             []string{strings.Repeat("n", 255)},
		},
		{Role: RoleAcceptor, MaxFrameSize: MinMaxFrameSize, InitialWindow: MinMaxFrameSize},
		{InitialWindow: MaxWindow, Codecs: []string{"json"}},
		{Codecs: []string{"json"}},
		{Codecs: many},
		{Codecs: []string{"ünï", "a b", "\x00"}},
	} {
		b, err := AppendHello([]byte{0x77}, h)
		if err != nil {
			t.Fatalf("AppendHello(%+v): %v", h, err)
		}
		if b[0] != 0x77 {
			t.Fatalf("AppendHello overwrote dst")
		}
		hd, err := ParseHeader(b[1:], MaxHelloSize)
		if err != nil || hd.Type != TypeHello || hd.Flags != FlagEnd || hd.ID != 0 || int(hd.Length) != len(b)-1-HeaderSize {
			t.Fatalf("HELLO header %v, %v", hd, err)
		}
		got, err := ParseHello(b[1+HeaderSize:])
		if err != nil {
			t.Fatalf("ParseHello: %v", err)
		}
		if !reflect.DeepEqual(got, h) {
			t.Errorf("round trip of\n%+v\n=\n%+v", h, got)
		}
	}
}

func TestHelloDurations(t *testing.T) {
	for _, tt := range []struct {
		in, want time.Duration
	}{
		{0, 0},
		{1, time.Millisecond}, // sub-millisecond rounds up, not to 0
		{999 * time.Microsecond, time.Millisecond}, // likewise
		{time.Millisecond, time.Millisecond},
		{1500 * time.Microsecond, time.Millisecond}, // truncated
		{15 * time.Second, 15 * time.Second},
		{(1 << 32) * time.Millisecond, (1<<32 - 1) * time.Millisecond}, // clamped
		{math.MaxInt64, (1<<32 - 1) * time.Millisecond},
		{-1, 0}, // negative: 0, not a wrapped uint32
		{-time.Second, 0},
		{math.MinInt64, 0},
	} {
		b, err := AppendHello(nil, Hello{Interval: tt.in, Timeout: tt.in, MinPingInterval: tt.in})
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHello(b[HeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		if h.Interval != tt.want || h.Timeout != tt.want || h.MinPingInterval != tt.want {
			t.Errorf("duration %v encoded as %v/%v/%v, want %v", tt.in, h.Interval, h.Timeout, h.MinPingInterval, tt.want)
		}
	}
}

func setting(id uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16(nil, id), v)
}

func TestParseHelloUnknownSettings(t *testing.T) {
	// Built by hand: settings a future version might send, in any order,
	// with ids this version does not know.
	p := cat(
		[]byte("PLSE"),
		[]byte{byte(RoleAcceptor), 7},
		setting(0x7777, 0xdeadbeef), // unknown
		setting(SettingMaxFrameSize, 4096),
		setting(0, 1),                        // unknown (0 is not a setting)
		setting(SettingInitialWindow, 1<<20), // before a lower id: order does not matter
		setting(0xffff, 2),                   // unknown
		setting(8, 3),                        // unknown (the next id after InitialWindow)
		setting(SettingTimeout, 30000),
		[]byte{1, 4, 'j', 's', 'o', 'n'},
	)
	h, err := ParseHello(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Hello{Role: RoleAcceptor, MaxFrameSize: 4096, Timeout: 30 * time.Second, InitialWindow: 1 << 20, Codecs: []string{"json"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got %+v, want %+v", h, want)
	}

	// No settings at all: every field stays zero.
	h, err = ParseHello(cat([]byte("PLSE"), []byte{0, 0, 1, 3, 'r', 'a', 'w'}))
	if want := (Hello{Codecs: []string{"raw"}}); err != nil || !reflect.DeepEqual(h, want) {
		t.Errorf("no settings: %+v, %v", h, err)
	}

	// A repeated setting: the last one counts.
	h, err = ParseHello(cat([]byte("PLSE"), []byte{0, 2}, setting(SettingMaxFrameSize, 1), setting(SettingMaxFrameSize, 2), []byte{0}))
	if err != nil || h.MaxFrameSize != 2 {
		t.Errorf("repeated setting: %+v, %v", h, err)
	}
}

func TestAppendHelloErrors(t *testing.T) {
	var tooMany []string
	for i := 0; i < 256; i++ {
		tooMany = append(tooMany, "c")
	}
	var tooBig []string
	for i := 0; i < 16; i++ {
		tooBig = append(tooBig, strings.Repeat(string(rune('a'+i)), 255))
	}
	for _, tt := range []struct {
		name   string
		codecs []string
	}{
		{"256 codecs", tooMany},
		{"empty name", []string{"json", ""}},
		{"256-byte name", []string{strings.Repeat("n", 256)}},
		{"payload over MaxHelloSize", tooBig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			b, err := AppendHello(dst, Hello{Codecs: tt.codecs})
			if err == nil {
				t.Fatalf("AppendHello succeeded with a %d-byte frame", len(b)-len(dst))
			}
			if string(b) != "keep" {
				t.Errorf("on error, AppendHello returned % x, want dst unchanged", b)
			}
		})
	}
	// The largest HELLO that fits.
	var fit []string
	room := MaxHelloSize - (4 + 1 + 1 + 7*6 + 1)
	for room >= 256 {
		fit = append(fit, strings.Repeat("f", 255))
		room -= 256
	}
	fit = append(fit, strings.Repeat("g", room-1))
	b, err := AppendHello(nil, Hello{Codecs: fit})
	if err != nil || len(b) != HeaderSize+MaxHelloSize {
		t.Errorf("HELLO of exactly MaxHelloSize: %d bytes, %v", len(b)-HeaderSize, err)
	}
}

func TestParseHelloErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"short magic", []byte("PLS")},
		{"wrong magic", cat([]byte("HTTP"), []byte{0, 0, 0})},
		{"lower-case magic", cat([]byte("plse"), []byte{0, 0, 0})},
		{"magic only", []byte("PLSE")},
		{"no setting count", []byte("PLSE\x00")},
		{"role 2", []byte("PLSE\x02\x00\x00")},
		{"role 255", []byte("PLSE\xff\x00\x00")},
		{"settings cut short", cat([]byte("PLSE\x00\x02"), setting(1, 1), []byte{0, 2, 0})},
		{"settings count larger than data", cat([]byte("PLSE\x00\xff"), setting(1, 1))},
		{"no codec list", cat([]byte("PLSE\x00\x01"), setting(1, 1))},
		{"codec count without codecs", []byte("PLSE\x00\x00\x01")},
		{"codec name cut short", []byte("PLSE\x00\x00\x01\x04jso")},
		{"second codec missing", []byte("PLSE\x00\x00\x02\x04json")},
		{"empty codec name", []byte("PLSE\x00\x00\x01\x00")},
		{"stray byte", []byte("PLSE\x00\x00\x00\x00")},
		{"stray bytes after codecs", []byte("PLSE\x01\x00\x01\x04jsonXYZ")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHello(tt.p)
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseHello(%q) = %+v, %v; want ErrMalformed", tt.p, h, err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Reader

type frame struct {
	h Header
	p []byte
}

func encodeFrames(frames []frame) []byte {
	var b []byte
	for _, f := range frames {
		b = AppendFrame(b, f.h.Type, f.h.Flags, f.h.ID, f.p)
	}
	return b
}

func testFrames(n int, big int) []frame {
	var fs []frame
	for i := 0; i < n; i++ {
		size := i % 40
		if big > 0 && i%7 == 3 {
			size = big
		}
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(i + j)
		}
		fs = append(fs, frame{Header{Type: FrameType(1 + i%9), Flags: Flags(i % 4), ID: uint32(i), Length: uint32(size)}, p})
	}
	return fs
}

// readAll reads frames until an error and returns copies of them.
func readAll(t *testing.T, r *Reader) ([]frame, error) {
	t.Helper()
	var fs []frame
	for {
		h, p, err := r.ReadFrame()
		if err != nil {
			return fs, err
		}
		if int(h.Length) != len(p) {
			t.Fatalf("%v with a payload of %d bytes", h, len(p))
		}
		fs = append(fs, frame{h, bytes.Clone(p)})
	}
}

func checkFrames(t *testing.T, got, want []frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d frames, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].h != want[i].h || !bytes.Equal(got[i].p, want[i].p) {
			t.Fatalf("frame %d = %v % x, want %v % x", i, got[i].h, got[i].p, want[i].h, want[i].p)
		}
	}
}

// countingReader counts Read calls.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

func TestReaderManyFramesOneRead(t *testing.T) {
	want := testFrames(100, 0)
	stream := encodeFrames(want)
	cr := &countingReader{r: bytes.NewReader(stream)}
	r := NewReader(cr, len(stream))
	for i, w := range want {
		h, p, err := r.ReadFrame()
		if err != nil || h != w.h || !bytes.Equal(p, w.p) {
			t.Fatalf("frame %d = %v, %v", i, h, err)
		}
		if cr.reads != 1 {
			t.Fatalf("after frame %d: %d reads, want 1", i, cr.reads)
		}
		if want := len(stream) - len(encodeFrames(want[:i+1])); r.Buffered() != want {
			t.Fatalf("after frame %d: Buffered() = %d, want %d", i, r.Buffered(), want)
		}
	}
	if _, _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("at end: %v, want io.EOF", err)
	}
}

func TestReaderSplitReads(t *testing.T) {
	want := testFrames(60, 300) // some frames larger than the buffer
	stream := encodeFrames(want)
	for _, tt := range []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"OneByteReader", iotest.OneByteReader},
		{"HalfReader", iotest.HalfReader},
		{"DataErrReader", iotest.DataErrReader},
		{"DataErrReader(OneByteReader)", func(r io.Reader) io.Reader { return iotest.DataErrReader(iotest.OneByteReader(r)) }},
		{"plain", func(r io.Reader) io.Reader { return r }},
	} {
		for _, bufSize := range []int{0, 24, 25, 64, 4096} {
			t.Run(fmt.Sprintf("%s/buf%d", tt.name, bufSize), func(t *testing.T) {
				r := NewReader(tt.wrap(bytes.NewReader(stream)), bufSize)
				got, err := readAll(t, r)
				if err != io.EOF {
					t.Errorf("final error %v, want io.EOF", err)
				}
				checkFrames(t, got, want)
			})
		}
	}
}

func TestReaderEOF(t *testing.T) {
	one := AppendFrame(nil, TypeCall, FlagEnd, 1, []byte("payload"))
	two := append(bytes.Clone(one), AppendFrame(nil, TypeCancel, 0, 1, nil)...)
	for _, tt := range []struct {
		name   string
		stream []byte
		frames int
		err    error
	}{
		{"empty stream", nil, 0, io.EOF},
		{"at a boundary", one, 1, io.EOF},
		{"at a boundary after empty payload", two, 2, io.EOF},
		{"mid-header, first frame", one[:1], 0, io.ErrUnexpectedEOF},
		{"mid-header, last header byte missing", one[:HeaderSize-1], 0, io.ErrUnexpectedEOF},
		{"mid-header, second frame", two[:len(one)+5], 1, io.ErrUnexpectedEOF},
		{"header only", one[:HeaderSize], 0, io.ErrUnexpectedEOF},
		{"mid-body", one[:HeaderSize+3], 0, io.ErrUnexpectedEOF},
		{"last body byte missing", one[:len(one)-1], 0, io.ErrUnexpectedEOF},
	} {
		for _, wrap := range []func(io.Reader) io.Reader{
			func(r io.Reader) io.Reader { return r },
			iotest.OneByteReader,
			iotest.DataErrReader,
		} {
			r := NewReader(wrap(bytes.NewReader(tt.stream)), 16)
			got, err := readAll(t, r)
			if err != tt.err || len(got) != tt.frames {
				t.Errorf("%s: %d frames, %v; want %d frames, %v", tt.name, len(got), err, tt.frames, tt.err)
			}
		}
	}
}

func TestReaderPropagatesErrors(t *testing.T) {
	boom := errors.New("boom")
	one := AppendFrame(nil, TypeCall, FlagEnd, 1, []byte("payload"))
	for _, stream := range [][]byte{nil, one[:5], one[:HeaderSize+2]} {
		r := NewReader(io.MultiReader(bytes.NewReader(stream), iotest.ErrReader(boom)), 64)
		if _, _, err := r.ReadFrame(); err != boom {
			t.Errorf("after %d bytes: %v, want %v", len(stream), err, boom)
		}
	}
}

// TestReaderResumesAfterError: an error in the middle of a frame (a read
// deadline, say) loses nothing; the next ReadFrame picks up where it was.
func TestReaderResumesAfterError(t *testing.T) {
	frames := []frame{
		{Header{Type: TypeCall, Flags: FlagEnd, ID: 1, Length: 100}, bytes.Repeat([]byte{1}, 100)},
		{Header{Type: TypePing, Length: 8}, []byte("12345678")},
	}
	stream := encodeFrames(frames)
	r := NewReader(iotest.TimeoutReader(iotest.OneByteReader(bytes.NewReader(stream))), 32)
	// TimeoutReader fails the second read; OneByteReader makes it land
	// in the middle of the first header.
	var got []frame
	timeouts := 0
	for {
		h, p, err := r.ReadFrame()
		if err == iotest.ErrTimeout {
			timeouts++
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, frame{h, bytes.Clone(p)})
	}
	if timeouts != 1 {
		t.Errorf("%d timeouts, want 1", timeouts)
	}
	checkFrames(t, got, frames)
}

func TestReaderGrowsAndShrinks(t *testing.T) {
	const bufSize = 64
	big := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes, > bufSize
	small := []byte("tiny")
	stream := cat(
		AppendFrame(nil, TypeCall, 0, 1, small),
		AppendFrame(nil, TypeCall, FlagEnd, 3, big),
		AppendFrame(nil, TypeReply, FlagEnd, 1, small),
		AppendFrame(nil, TypeReply, FlagEnd, 3, big),
	)
	r := NewReader(bytes.NewReader(stream), bufSize)
	r.SetMaxPayload(DefaultMaxFrameSize)

	expect := func(id uint32, want []byte) {
		t.Helper()
		h, p, err := r.ReadFrame()
		if err != nil || h.ID != id || !bytes.Equal(p, want) {
			t.Fatalf("ReadFrame = %v, %d bytes, %v; want id %d with %d bytes", h, len(p), err, id, len(want))
		}
		if r.buf != nil && len(r.buf) != bufSize {
			t.Fatalf("after frame id %d (%d bytes): buffer of %d bytes, want %d or none", id, len(p), len(r.buf), bufSize)
		}
	}
	expect(1, small)
	expect(3, big)
	expect(1, small)
	if len(r.buf) != bufSize {
		t.Errorf("buffer of %d bytes after a small frame, want %d", len(r.buf), bufSize)
	}
	expect(3, big)
	if _, _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("at end: %v", err)
	}
	// The whole stream at once into a tiny buffer: every frame still
	// arrives, and the buffer never stays large.
	r = NewReader(iotest.HalfReader(bytes.NewReader(stream)), 0)
	r.SetMaxPayload(DefaultMaxFrameSize)
	got, err := readAll(t, r)
	if err != io.EOF || len(got) != 4 {
		t.Fatalf("%d frames, %v", len(got), err)
	}
	if r.buf != nil && len(r.buf) != 2*HeaderSize {
		t.Errorf("buffer of %d bytes at the end, want %d or none", len(r.buf), 2*HeaderSize)
	}
}

func TestReaderMaxPayload(t *testing.T) {
	stream := AppendFrame(nil, TypeCall, FlagEnd, 1, make([]byte, MaxHelloSize+1))
	// Until the handshake sets it, the limit is MaxHelloSize.
	r := NewReader(bytes.NewReader(stream), 64)
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("default limit: %v, want ErrFrameTooLarge", err)
	}
	r = NewReader(bytes.NewReader(stream), 64)
	r.SetMaxPayload(MaxHelloSize + 1)
	if h, p, err := r.ReadFrame(); err != nil || len(p) != MaxHelloSize+1 || h.ID != 1 {
		t.Fatalf("raised limit: %v, %d bytes, %v", h, len(p), err)
	}
	r = NewReader(bytes.NewReader(AppendPing(nil, TypePing, 1)), 64)
	r.SetMaxPayload(PingSize - 1)
	if _, _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("lowered limit: %v, want ErrFrameTooLarge", err)
	}
}

func TestReaderRelease(t *testing.T) {
	stream := encodeFrames(testFrames(3, 0))
	r := NewReader(bytes.NewReader(stream), 4096)
	r.Release() // nothing buffered yet: harmless
	if _, _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() == 0 {
		t.Fatal("expected the other frames to be buffered")
	}
	r.Release() // unread bytes: must keep them
	if r.buf == nil || r.Buffered() == 0 {
		t.Fatal("Release dropped unread bytes")
	}
	if _, _, err := r.ReadFrame(); err != nil {
		t.Fatal(err)
	}
	h, p, err := r.ReadFrame()
	if err != nil || h.ID != 2 {
		t.Fatalf("third frame: %v, %v", h, err)
	}
	saved := bytes.Clone(p)
	if r.Buffered() != 0 {
		t.Fatalf("Buffered() = %d at the end of the stream", r.Buffered())
	}
	r.Release()
	if r.buf != nil {
		t.Errorf("Release kept a %d-byte buffer with nothing unread", len(r.buf))
	}
	if !bytes.Equal(p, saved) {
		t.Errorf("Release changed the last payload")
	}
	if _, _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("after Release at EOF: %v", err)
	}

	// A released Reader allocates a buffer of the usual size again.
	pr, pw := io.Pipe()
	r = NewReader(pr, 128)
	go func() {
		pw.Write(AppendPing(nil, TypePing, 1))
		pw.Write(AppendPing(nil, TypePong, 2))
		pw.Close()
	}()
	for i, ft := range []FrameType{TypePing, TypePong} {
		h, p, err := r.ReadFrame()
		if err != nil || h.Type != ft {
			t.Fatalf("frame %d: %v, %v", i, h, err)
		}
		if v, _ := ParsePing(p); v != uint64(i+1) {
			t.Errorf("frame %d: ping data %d", i, v)
		}
		r.Release()
		if r.buf != nil {
			t.Errorf("buffer kept after Release")
		}
	}
	if _, _, err := r.ReadFrame(); err != io.EOF {
		t.Errorf("end: %v", err)
	}
	if len(r.buf) != 128 {
		t.Errorf("new buffer of %d bytes, want 128", len(r.buf))
	}
}

// ---------------------------------------------------------------------------
// String methods

func TestStrings(t *testing.T) {
	for _, tt := range []struct {
		v    fmt.Stringer
		want string
	}{
		{TypeHello, "HELLO"},
		{TypeCall, "CALL"},
		{TypeReply, "REPLY"},
		{TypeNotify, "NOTIFY"},
		{TypeContinuation, "CONTINUATION"},
		{TypeCancel, "CANCEL"},
		{TypePing, "PING"},
		{TypePong, "PONG"},
		{TypeGoAway, "GOAWAY"},
		{TypeWindowUpdate, "WINDOW_UPDATE"},
		{FrameType(0), "UNKNOWN_FRAME_TYPE_0"},
		{FrameType(11), "UNKNOWN_FRAME_TYPE_11"},
		{FrameType(255), "UNKNOWN_FRAME_TYPE_255"},

		{Flags(0), "0"},
		{FlagEnd, "END"},
		{FlagAbort, "ABORT"},
		{FlagEnd | FlagAbort, "END|ABORT"},
		{Flags(0x4), "0x4"},
		{FlagEnd | 0x80, "END|0x80"},
		{Flags(0xff), "END|ABORT|0xfc"},

		{StatusOK, "OK"},
		{StatusError, "ERROR"},
		{StatusUnknownService, "UNKNOWN_SERVICE"},
		{StatusUnknownMethod, "UNKNOWN_METHOD"},
		{StatusBadArgs, "BAD_ARGS"},
		{StatusPanic, "PANIC"},
		{StatusBusy, "BUSY"},
		{StatusCanceled, "CANCELED"},
		{StatusTooLarge, "TOO_LARGE"},
		{StatusInternal, "INTERNAL"},
		{Status(10), "STATUS_10"},
		{Status(255), "STATUS_255"},

		{GoAwayNormal, "normal"},
		{GoAwayShutdown, "server shutting down"},
		{GoAwayTooManyPings, "too many pings"},
		{GoAwayProtocolError, "protocol error"},
		{GoAwayMaxAge, "max connection age"},
		{GoAwayIdle, "idle timeout"},
		{GoAwayPeerSilent, "peer silent"},
		{GoAwayInternal, "internal error"},
		{GoAwayHandshake, "handshake refused"},
		{GoAwayTooManyStreams, "too many concurrent messages"},
		{GoAwayFlowControl, "flow control error"},
		{GoAwaySlowConsumer, "slow consumer"},
		{GoAwayStalled, "stalled message"},
		{GoAwayCode(100), "goaway code 100"},
		{GoAwayCode(1<<32 - 1), "goaway code 4294967295"},

		{Header{Type: TypeCall, Flags: FlagEnd, ID: 3, Length: 26}, "CALL flags=END id=3 len=26"},
		{Header{Type: 42}, "UNKNOWN_FRAME_TYPE_42 flags=0 id=0 len=0"},
		{Header{Type: TypeWindowUpdate, Length: 4}, "WINDOW_UPDATE flags=0 id=0 len=4"},
	} {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%T(%#v).String() = %q, want %q", tt.v, tt.v, got, tt.want)
		}
	}
	// Every value of the 8-bit enums has a non-empty name.
	for i := 0; i < 256; i++ {
		if FrameType(i).String() == "" || Status(i).String() == "" || Flags(i).String() == "" || GoAwayCode(i).String() == "" {
			t.Errorf("empty String() for %d", i)
		}
	}
}

func TestMessageLen(t *testing.T) {
	b := AppendMessageLen(nil, 1<<20)
	total, rest, err := ParseMessageLen(append(b, 'x'))
	if err != nil || total != 1<<20 || string(rest) != "x" {
		t.Fatalf("ParseMessageLen() = %d, %q, %v; want %d, \"x\", nil", total, rest, err, 1<<20)
	}
	if _, _, err := ParseMessageLen([]byte{0, 0, 1}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ParseMessageLen(3 bytes) error = %v, want ErrMalformed", err)
	}
}

// TestReaderBufferPool reads the same stream of frames of many sizes with
// and without a buffer pool, through readers that return a few bytes at a
// time: the frames must be identical, and the pooled reader must hold no
// pooled buffer once it is released with nothing unread.
func TestReaderBufferPool(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i, n := range []int{0, 1, 8, 100, 499, 500, 501, 1000, 4000, 5000, 20, 0, 9000, 3} {
		p := bytes.Repeat([]byte{byte(i)}, n)
		want = append(want, p)
		stream = AppendFrame(stream, TypeCall, FlagEnd, uint32(2*i+1), p)
	}
	const size = 4096
	pool := &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"onebyte":  iotest.OneByteReader,
		"halfread": iotest.HalfReader,
	} {
		t.Run(name, func(t *testing.T) {
			fr := NewReader(wrap(bytes.NewReader(stream)), size)
			fr.SetBufferPool(pool)
			fr.SetMaxPayload(1 << 20)
			for i, w := range want {
				h, p, err := fr.ReadFrame()
				if err != nil || h.ID != uint32(2*i+1) || !bytes.Equal(p, w) {
					t.Fatalf("frame %d: ReadFrame() = %v, %d bytes, %v; want id %d, %d bytes", i, h, len(p), err, 2*i+1, len(w))
				}
			}
			if _, _, err := fr.ReadFrame(); err != io.EOF {
				t.Fatalf("ReadFrame() at the end = %v, want io.EOF", err)
			}
			if fr.buf != nil && len(fr.buf) > size {
				t.Errorf("the reader holds a %d-byte buffer at the end of the stream, want at most its usual %d", len(fr.buf), size)
			}
			fr.Release()
			if fr.buf != nil && !fr.isSmall() {
				t.Errorf("the reader holds a %d-byte buffer once released, want none or its inline one", len(fr.buf))
			}
		})
	}
}

// TestReaderStreamBuffer reads a 1 MiB message in 16 KiB frames, then a
// heartbeat, through a pooled reader: while the message continues, the
// reader keeps a StreamBufSize buffer even when it runs empty and reads
// in large pieces; after the message's last frame it lets go of that
// buffer once it has nothing unread, and of any once released.
func TestReaderStreamBuffer(t *testing.T) {
	const frame = 16 << 10
	msg := make([]byte, 1<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	// frames splits a message into frames of at most frame bytes, the
	// first one starting with the total length.
	frames := func(stream []byte, id uint32, msg []byte) []byte {
		for off := 0; off < len(msg); {
			typ, flags, n, p := TypeContinuation, Flags(0), min(frame, len(msg)-off), []byte(nil)
			if off == 0 {
				typ, n = TypeCall, min(frame-MessageLenSize, len(msg))
				p = AppendMessageLen(nil, len(msg))
			}
			if off+n == len(msg) {
				flags = FlagEnd
			}
			stream = AppendFrame(stream, typ, flags, id, append(p, msg[off:off+n]...))
			off += n
		}
		return stream
	}
	small := msg[:4*frame] // below StreamBufSize: the usual buffer
	stream := frames(nil, 3, small)
	stream = frames(stream, 1, msg)
	stream = AppendFrame(stream, TypePing, 0, 0, make([]byte, 8))
	pool := &sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"halfread": iotest.HalfReader,
		"onebyte":  iotest.OneByteReader,
	} {
		t.Run(name, func(t *testing.T) {
			cr := &countingReader{r: wrap(bytes.NewReader(stream))}
			fr := NewReader(cr, 32<<10)
			fr.SetBufferPool(pool)
			fr.SetMaxPayload(frame)
			for i := 0; ; i++ {
				h, _, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("small message, frame %d: %v", i, err)
				}
				if h.Flags&FlagEnd != 0 {
					break
				}
				if len(fr.buf) == StreamBufSize {
					t.Fatalf("small message, frame %d: reading into a StreamBufSize buffer for a %d-byte message", i, len(small))
				}
			}
			var got []byte
			for i := 0; len(got) < len(msg); i++ {
				h, p, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if i == 0 {
					p = p[MessageLenSize:]
				}
				got = append(got, p...)
				last := h.Flags&FlagEnd != 0
				if last != (len(got) == len(msg)) {
					t.Fatalf("frame %d: %v after %d bytes", i, h, len(got))
				}
				if i > 0 && !last {
					if len(fr.buf) != StreamBufSize {
						t.Fatalf("frame %d: reading into a %d-byte buffer in the middle of a message, want %d", i, len(fr.buf), StreamBufSize)
					}
					fr.Release() // the message continues: nothing is let go
					if len(fr.buf) != StreamBufSize {
						t.Fatalf("frame %d: Release dropped the buffer in the middle of a message", i)
					}
				}
			}
			if !bytes.Equal(got, msg) {
				t.Fatal("message changed on the way")
			}
			if name == "whole" {
				// The 64 KiB message takes a few reads of the usual
				// 32 KiB buffer, the 1 MiB one about 1 MiB /
				// StreamBufSize more; through the usual buffer alone it
				// would take over 32.
				if max := 16; cr.reads > max {
					t.Errorf("%d reads for %d bytes, want at most %d", cr.reads, len(stream), max)
				}
			}
			if h, _, err := fr.ReadFrame(); err != nil || h.Type != TypePing {
				t.Fatalf("after the message: %v, %v; want the PING", h, err)
			}
			if _, _, err := fr.ReadFrame(); err != io.EOF {
				t.Fatalf("at the end: %v, want io.EOF", err)
			}
			if len(fr.buf) > 32<<10 {
				t.Errorf("the reader holds a %d-byte buffer after the message, want at most its usual one", len(fr.buf))
			}
			fr.Release()
			if fr.buf != nil && !fr.isSmall() {
				t.Errorf("the reader holds a %d-byte buffer once released, want none or its inline one", len(fr.buf))
			}
		})
	}
}

// TestReaderReadOnce: ReadOnce makes exactly one read from the reader it
// is given; BufferedFrame reports a frame only once all of it is
// buffered; ReadFrame returns the frames ReadOnce read, then the error it
// met.
func TestReaderReadOnce(t *testing.T) {
	ping := AppendPing(nil, TypePing, 7)
	call := AppendFrame(nil, TypeCall, FlagEnd, 1, bytes.Repeat([]byte("c"), 100))
	stream := append(append([]byte(nil), ping...), call...)
	pool := &sync.Pool{New: func() any { b := make([]byte, 4096); return &b }}
	for _, pooled := range []bool{false, true} {
		fr := NewReader(bytes.NewReader(nil), 4096) // the stream is never read here
		if pooled {
			fr.SetBufferPool(pool)
		}
		// The first read brings the PING and half of the CALL.
		cut := len(ping) + len(call)/2
		src := &countingReader{r: bytes.NewReader(stream[:cut])}
		if n, err := fr.ReadOnce(src); n != cut || err != nil || src.reads != 1 {
			t.Fatalf("ReadOnce() = %d, %v after %d reads; want %d, nil after 1", n, err, src.reads, cut)
		}
		if h, ok := fr.BufferedFrame(); !ok || h.Type != TypePing {
			t.Fatalf("BufferedFrame() = %v, %v; want the PING", h, ok)
		}
		if h, _, err := fr.ReadFrame(); err != nil || h.Type != TypePing {
			t.Fatalf("ReadFrame() = %v, %v; want the PING", h, err)
		}
		if h, ok := fr.BufferedFrame(); ok {
			t.Fatalf("BufferedFrame() = %v with half of the CALL buffered", h)
		}
		// The second read brings the rest and meets the end of the stream.
		src = &countingReader{r: iotest.DataErrReader(bytes.NewReader(stream[cut:]))}
		if n, err := fr.ReadOnce(src); n != len(stream)-cut || err != io.EOF {
			t.Fatalf("ReadOnce() = %d, %v; want %d, io.EOF", n, err, len(stream)-cut)
		}
		if h, ok := fr.BufferedFrame(); !ok || h.Type != TypeCall {
			t.Fatalf("BufferedFrame() = %v, %v; want the CALL", h, ok)
		}
		if h, p, err := fr.ReadFrame(); err != nil || h.Type != TypeCall || len(p) != 100 {
			t.Fatalf("ReadFrame() = %v, %d bytes, %v; want the CALL", h, len(p), err)
		}
		if _, _, err := fr.ReadFrame(); err != io.EOF {
			t.Fatalf("ReadFrame() after the CALL = %v, want the io.EOF ReadOnce met", err)
		}
	}
}
