package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// Fuzz targets, one for every decoder. Each has seeds here and a seed
// corpus in testdata/fuzz/<FuzzName>/. Run one briefly with
//
//	go test -run='^$' -fuzz='^FuzzReadFrame$' -fuzztime=10s ./wire/
//
// Without -fuzz, `go test` runs every seed as a regular test.

// fuzzMaxPayload is the payload limit FuzzReadFrame uses: small, so that
// the fuzzer reaches ErrFrameTooLarge easily.
const fuzzMaxPayload = 64

// seedFrames returns valid frames of every type, for seeding.
func seedFrames(tb testing.TB) [][]byte {
	hello, err := AppendHello(nil, Hello{Role: RoleAcceptor, MaxFrameSize: 1024, Interval: time.Second, InitialWindow: 1 << 20, Codecs: []string{"json"}})
	if err != nil {
		tb.Fatal(err)
	}
	call := AppendHeader(nil, TypeCall, FlagEnd, 1, 0)
	call = append(AppendCallHead(call, "A.B", time.Second), `{}`...)
	PutLength(call, len(call)-HeaderSize)
	return [][]byte{
		hello,
		call,
		AppendFrame(nil, TypeReply, FlagEnd, 1, []byte{0, '5'}),
		AppendFrame(nil, TypeNotify, 0, 3, []byte{3, 'A', '.'}),
		AppendFrame(nil, TypeContinuation, FlagEnd, 3, []byte{'B', 0}),
		AppendFrame(nil, TypeContinuation, FlagEnd|FlagAbort, 5, nil),
		AppendFrame(nil, TypeCancel, 0, 1, nil),
		AppendPing(nil, TypePing, 42),
		AppendPing(nil, TypePong, 42),
		AppendGoAway(nil, GoAway{LastID: 1, Code: GoAwayNormal, Message: "bye"}),
		AppendWindowUpdate(nil, 65536),
	}
}

func FuzzReadFrame(f *testing.F) {
	frames := seedFrames(f)
	all := bytes.Join(frames, nil)
	f.Add(all, uint16(0), false)
	f.Add(all, uint16(30), true)
	f.Add(all[:len(all)-3], uint16(64), false)                                    // EOF mid-body
	f.Add(all[:HeaderSize-1], uint16(24), false)                                  // EOF mid-header
	f.Add(AppendHeader(nil, TypeCall, 0, 1, fuzzMaxPayload+1), uint16(24), false) // too large
	f.Add(AppendHeader(nil, 0x0b, 0, 0, 0), uint16(24), true)                     // unknown type
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(100), false)        // not Pulse
	f.Add([]byte{}, uint16(0), false)

	f.Fuzz(func(t *testing.T, data []byte, bufSize uint16, oneByte bool) {
		var src io.Reader = bytes.NewReader(data)
		if oneByte {
			src = iotest.OneByteReader(src)
		}
		r := NewReader(src, int(bufSize)%1024)
		r.SetMaxPayload(fuzzMaxPayload)
		off := 0 // bytes of data returned as frames so far
		for {
			h, p, err := r.ReadFrame()
			if len(r.buf) > max(r.size, HeaderSize+fuzzMaxPayload) {
				t.Fatalf("buffer grew to %d bytes (size %d, max payload %d)", len(r.buf), r.size, fuzzMaxPayload)
			}
			rest := data[off:]
			if err != nil {
				switch {
				case err == io.EOF:
					if len(rest) != 0 {
						t.Fatalf("io.EOF with %d bytes left", len(rest))
					}
				case err == io.ErrUnexpectedEOF:
					if len(rest) == 0 {
						t.Fatal("io.ErrUnexpectedEOF at a frame boundary")
					}
					if len(rest) >= HeaderSize && len(rest) >= HeaderSize+int(binary.BigEndian.Uint32(rest[8:12])) {
						t.Fatalf("io.ErrUnexpectedEOF with a whole frame of %d bytes left", len(rest))
					}
				case errors.Is(err, ErrVersion), errors.Is(err, ErrFrameType), errors.Is(err, ErrFrameTooLarge):
					if len(rest) < HeaderSize {
						t.Fatalf("%v with only %d bytes left", err, len(rest))
					}
					if _, perr := ParseHeader(rest, fuzzMaxPayload); perr == nil || perr.Error() != err.Error() {
						t.Fatalf("ReadFrame: %v; ParseHeader of the same bytes: %v", err, perr)
					}
				default:
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if h.Length > fuzzMaxPayload {
				t.Fatalf("frame %v exceeds the limit of %d", h, fuzzMaxPayload)
			}
			if int(h.Length) != len(p) {
				t.Fatalf("frame %v with a payload of %d bytes", h, len(p))
			}
			// The frame is exactly the next bytes of the stream.
			n := HeaderSize + len(p)
			if n > len(rest) {
				t.Fatalf("frame of %d bytes with %d bytes left", n, len(rest))
			}
			enc := AppendFrame(nil, h.Type, h.Flags, h.ID, p)
			enc[3] = rest[3] // reserved: ignored on receipt
			if !bytes.Equal(enc, rest[:n]) {
				t.Fatalf("frame %v re-encodes as\n% x\nstream has\n% x", h, enc, rest[:n])
			}
			off += n
			if r.Buffered() > len(data)-off {
				t.Fatalf("Buffered() = %d with %d bytes left in the stream", r.Buffered(), len(data)-off)
			}
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	for _, b := range seedFrames(f) {
		f.Add(b[:HeaderSize], uint32(MaxHelloSize))
	}
	f.Add(hdr(1, TypeCall, 0), uint32(100)) // version 1: refused
	f.Add(hdr(Version, 11, 0), uint32(100))
	f.Add(hdr(Version, 0, 0), uint32(100))
	f.Add(hdr(Version, TypeCall, 101), uint32(100))
	f.Add(make([]byte, HeaderSize), uint32(0))

	f.Fuzz(func(t *testing.T, b []byte, maxPayload uint32) {
		if len(b) < HeaderSize {
			return // ParseHeader requires a whole header
		}
		h, err := ParseHeader(b, maxPayload)
		switch {
		case b[0] != Version:
			if !errors.Is(err, ErrVersion) {
				t.Fatalf("version %d: %v", b[0], err)
			}
		case !FrameType(b[1]).Valid():
			if !errors.Is(err, ErrFrameType) {
				t.Fatalf("type %d: %v", b[1], err)
			}
		case binary.BigEndian.Uint32(b[8:]) > maxPayload:
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("length %d over %d: %v", binary.BigEndian.Uint32(b[8:]), maxPayload, err)
			}
		default:
			if err != nil {
				t.Fatalf("valid header % x: %v", b[:HeaderSize], err)
			}
			enc := AppendHeader(nil, h.Type, h.Flags, h.ID, int(h.Length))
			enc[3] = b[3]
			if !bytes.Equal(enc, b[:HeaderSize]) {
				t.Fatalf("%v re-encodes as % x, was % x", h, enc, b[:HeaderSize])
			}
		}
	})
}

func FuzzParseCall(f *testing.F) {
	f.Add(append(AppendCallHead(nil, "Arith.Add", 2*time.Second), `{"A":2,"B":3}`...))
	f.Add(AppendCallHead(nil, "", 0))
	f.Add(AppendCallHead(nil, "S.M", 1))
	f.Add(AppendCallHead(nil, "S.M", 1<<63-1))
	f.Add([]byte{0x80})                                                             // method length cut short
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // overflow
	f.Add([]byte{5, 'A', '.', 'B'})                                                 // method cut short
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})          // timeout too large

	f.Fuzz(func(t *testing.T, msg []byte) {
		method, timeout, args, err := ParseCall(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(method) > MaxMethodLen {
			t.Fatalf("method of %d bytes", len(method))
		}
		if timeout < 0 || timeout%time.Microsecond != 0 {
			t.Fatalf("timeout %v", timeout)
		}
		if !bytes.HasSuffix(msg, args) || len(method)+len(args) >= len(msg) {
			t.Fatalf("method %q and args %q do not fit msg % x", method, args, msg)
		}
		// Re-encoding gives the same values (the bytes may differ: the
		// encoder writes the shortest uvarints).
		enc := append(AppendCallHead(nil, string(method), timeout), args...)
		m2, t2, a2, err := ParseCall(enc)
		if err != nil || !bytes.Equal(m2, method) || t2 != timeout || !bytes.Equal(a2, args) {
			t.Fatalf("round trip: (%q, %v, %q) became (%q, %v, %q), %v", method, timeout, args, m2, t2, a2, err)
		}
		if len(enc) > len(msg) {
			t.Fatalf("re-encoding is longer (%d bytes) than the input (%d)", len(enc), len(msg))
		}
	})
}

func FuzzParseReply(f *testing.F) {
	f.Add([]byte{0, '5'})
	f.Add([]byte{byte(StatusError), 'b', 'o', 'o', 'm'})
	f.Add([]byte{byte(StatusInternal)})
	f.Add([]byte{200, 0xff})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, msg []byte) {
		s, body, err := ParseReply(msg)
		if len(msg) == 0 {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("empty reply: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseReply(% x): %v", msg, err)
		}
		if enc := append(AppendReplyHead(nil, s), body...); !bytes.Equal(enc, msg) {
			t.Fatalf("re-encodes as % x, was % x", enc, msg)
		}
		if s.String() == "" {
			t.Fatalf("status %d has no name", s)
		}
	})
}

func FuzzParseGoAway(f *testing.F) {
	for _, g := range []GoAway{
		{LastID: 1, Code: GoAwayNormal},
		{LastID: 7, Code: GoAwayShutdown, Message: "bye"},
		{LastID: 1<<32 - 1, Code: 1<<32 - 1, Message: "€uro"},
	} {
		f.Add(AppendGoAway(nil, g)[HeaderSize:])
	}
	f.Add(make([]byte, 7))
	f.Add(make([]byte, 8+MaxGoAwayMessage+1))

	f.Fuzz(func(t *testing.T, p []byte) {
		g, err := ParseGoAway(p)
		if len(p) < 8 || len(p) > 8+MaxGoAwayMessage {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("GOAWAY payload of %d bytes: %v", len(p), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseGoAway(% x): %v", p, err)
		}
		enc := AppendGoAway(nil, g)
		h, err := ParseHeader(enc, MinMaxFrameSize)
		if err != nil || h.Type != TypeGoAway || h.ID != 0 || int(h.Length) != len(enc)-HeaderSize {
			t.Fatalf("re-encoded header %v, %v", h, err)
		}
		if !bytes.Equal(enc[HeaderSize:], p) {
			t.Fatalf("re-encodes as % x, was % x", enc[HeaderSize:], p)
		}
		if g.Code.String() == "" {
			t.Fatalf("code %d has no name", g.Code)
		}
	})
}

// helloSize returns the payload size AppendHello produces for h.
func helloSize(h Hello) int {
	n := len(Magic) + 1 + 1 + 7*6 + 1
	for _, c := range h.Codecs {
		n += 1 + len(c)
	}
	return n
}

func FuzzParseHello(f *testing.F) {
	for _, h := range []Hello{
		{Role: RoleDialer, MaxFrameSize: 16384, MaxMessageSize: 4 << 20, Interval: 15 * time.Second, Timeout: 45 * time.Second, InitialWindow: 8 << 20, Codecs: []string{"raw", "json"}},
		{Role: RoleAcceptor, MaxFrameSize: 16384, MaxConcurrentCalls: 100, MinPingInterval: 5 * time.Second, InitialWindow: 16384, Codecs: []string{"json"}},
		{MaxFrameSize: 16384, MaxMessageSize: 4 << 20, InitialWindow: 4<<20 + 3}, // window one byte short
		{InitialWindow: MaxWindow + 1},
		{},
	} {
		b, err := AppendHello(nil, h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[HeaderSize:])
	}
	f.Add([]byte("PLSE\x01\x02\x77\x77\xde\xad\xbe\xef\x00\x01\x00\x00\x10\x00\x01\x04json")) // unknown setting
	f.Add([]byte("PLSE\x00\x00\x00"))
	f.Add([]byte("PLSE\x02\x00\x00"))       // bad role
	f.Add([]byte("PLSE\x00\x01\x00\x01"))   // settings cut short
	f.Add([]byte("PLSE\x00\x00\x01\x00"))   // empty codec name
	f.Add([]byte("PLSE\x00\x00\x00extra"))  // stray bytes
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n")) // not Pulse

	f.Fuzz(func(t *testing.T, p []byte) {
		h, err := ParseHello(p)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if h.Role != RoleDialer && h.Role != RoleAcceptor {
			t.Fatalf("role %d", h.Role)
		}
		for _, c := range h.Codecs {
			if len(c) == 0 || len(c) > 255 {
				t.Fatalf("codec name of %d bytes", len(c))
			}
		}
		enc, err := AppendHello(nil, h)
		if err != nil {
			// Only possible when the re-encoded payload, which always
			// carries all seven settings, is over the limit.
			if helloSize(h) <= MaxHelloSize {
				t.Fatalf("AppendHello(%+v): %v", h, err)
			}
			return
		}
		hd, err := ParseHeader(enc, MaxHelloSize)
		if err != nil || hd.Type != TypeHello || hd.Flags != FlagEnd || hd.ID != 0 || int(hd.Length) != len(enc)-HeaderSize {
			t.Fatalf("re-encoded header %v, %v", hd, err)
		}
		h2, err := ParseHello(enc[HeaderSize:])
		if err != nil {
			t.Fatalf("ParseHello(AppendHello(%+v)): %v", h, err)
		}
		if !reflect.DeepEqual(h, h2) {
			t.Fatalf("round trip:\n%+v\nbecame\n%+v", h, h2)
		}
		checkWindowRule(t, h)
	})
}

// checkWindowRule checks CheckWindow against the rule of PROTOCOL.md,
// computed another way: InitialWindow lies in
// [max(MaxFrameSize, MaxMessageSize+4), 2^31-1], the MaxMessageSize term
// only when MaxMessageSize is not 0.
func checkWindowRule(t *testing.T, h Hello) {
	t.Helper()
	w := int64(h.InitialWindow)
	ok := w >= int64(h.MaxFrameSize) && w <= 1<<31-1 &&
		(h.MaxMessageSize == 0 || w >= int64(h.MaxMessageSize)+4)
	err := CheckWindow(h)
	if ok != (err == nil) || err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("CheckWindow(window %d, frame %d, message %d) = %v, want ok=%v",
			h.InitialWindow, h.MaxFrameSize, h.MaxMessageSize, err, ok)
	}
}

func FuzzParsePing(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(make([]byte, PingSize))
	f.Add(make([]byte, PingSize-1))
	f.Add(make([]byte, PingSize+1))

	f.Fuzz(func(t *testing.T, p []byte) {
		v, err := ParsePing(p)
		if len(p) != PingSize {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ping payload of %d bytes: %v", len(p), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParsePing(% x): %v", p, err)
		}
		for _, ft := range []FrameType{TypePing, TypePong} {
			enc := AppendPing(nil, ft, v)
			h, err := ParseHeader(enc, PingSize)
			if err != nil || h != (Header{Type: ft, Length: PingSize}) || !bytes.Equal(enc[HeaderSize:], p) {
				t.Fatalf("AppendPing(%v, %#x) = % x (%v, %v)", ft, v, enc, h, err)
			}
		}
	})
}

func FuzzParseWindowUpdate(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x00, 0x00}) // 65536
	f.Add([]byte{0x00, 0x00, 0x00, 0x01}) // 1, the smallest
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff}) // MaxWindow
	f.Add([]byte{0x00, 0x00, 0x00, 0x00}) // 0: malformed
	f.Add([]byte{0x80, 0x00, 0x00, 0x00}) // 2^31: malformed
	f.Add([]byte{0x00, 0x01, 0x00})       // length 3
	f.Add([]byte{0x00, 0x01, 0x00, 0x00, 0x00})

	f.Fuzz(func(t *testing.T, p []byte) {
		inc, err := ParseWindowUpdate(p)
		if len(p) != WindowUpdateSize {
			if !errors.Is(err, ErrMalformed) || inc != 0 {
				t.Fatalf("WINDOW_UPDATE payload of %d bytes: %d, %v", len(p), inc, err)
			}
			return
		}
		if v := binary.BigEndian.Uint32(p); v == 0 || v > MaxWindow {
			if !errors.Is(err, ErrMalformed) || inc != 0 {
				t.Fatalf("increment %d: %d, %v", v, inc, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseWindowUpdate(% x): %v", p, err)
		}
		enc := AppendWindowUpdate(nil, inc)
		h, err := ParseHeader(enc, WindowUpdateSize)
		if err != nil || h != (Header{Type: TypeWindowUpdate, Length: WindowUpdateSize}) || !bytes.Equal(enc[HeaderSize:], p) {
			t.Fatalf("AppendWindowUpdate(%d) = % x (%v, %v)", inc, enc, h, err)
		}
	})
}

// The GOAWAY encoder cuts long messages; check it against any string.
func FuzzAppendGoAway(f *testing.F) {
	f.Add("bye")
	f.Add(string(bytes.Repeat([]byte("€"), 200)))
	f.Add("\xff" + string(bytes.Repeat([]byte("a"), 600)))

	f.Fuzz(func(t *testing.T, msg string) {
		g, err := ParseGoAway(AppendGoAway(nil, GoAway{LastID: 1, Code: GoAwayNormal, Message: msg})[HeaderSize:])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case len(msg) <= MaxGoAwayMessage:
			if g.Message != msg {
				t.Fatalf("short message %q became %q", msg, g.Message)
			}
		case len(g.Message) > MaxGoAwayMessage || len(g.Message) < MaxGoAwayMessage-utf8.UTFMax+1:
			t.Fatalf("message of %d bytes cut to %d", len(msg), len(g.Message))
		case msg[:len(g.Message)] != g.Message:
			t.Fatalf("cut message is not a prefix")
		case utf8.ValidString(msg) && !utf8.ValidString(g.Message):
			t.Fatalf("valid UTF-8 cut inside a rune")
		}
	})
}
