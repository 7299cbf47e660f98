package pulse_test

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/wire"
)

// quickHandshakeFailure bounds how long a client may take to notice that
// the server does not speak Pulse: far below DefaultHandshakeTimeout.
const quickHandshakeFailure = 2 * time.Second

// dialRaw opens a plain TCP connection to addr, with a deadline of
// defaultTestTimeout on every operation. It is closed in the cleanup.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, defaultTestTimeout)
	if err != nil {
		t.Fatalf("net.Dial(%s) failed: %v", addr, err)
	}
	conn.SetDeadline(time.Now().Add(defaultTestTimeout))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// readUntilClosed reads from conn until it fails and returns the error,
// which is io.EOF (or a reset) when the peer closed the connection and a
// timeout when it did not within the deadline.
func readUntilClosed(conn net.Conn) error {
	_, err := io.Copy(io.Discard, conn)
	if err == nil {
		return io.EOF
	}
	return err
}

// checkClosedByPeer fails the test unless err says the peer closed.
func checkClosedByPeer(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %v", defaultTestTimeout)
	}
}

// rawHandshake sends a dialer's HELLO offering json on conn, reads the
// server's HELLO and returns the frame reader, ready for frames up to
// the default frame size.
func rawHandshake(t *testing.T, conn net.Conn) *wire.Reader {
	t.Helper()
	b, err := wire.AppendHello(nil, wire.Hello{
		Role:           wire.RoleDialer,
		MaxFrameSize:   wire.DefaultMaxFrameSize,
		MaxMessageSize: 1 << 20,
		InitialWindow:  4 << 20,
		Codecs:         []string{"json"},
	})
	if err != nil {
		t.Fatalf("AppendHello() failed: %v", err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatalf("writing HELLO failed: %v", err)
	}
	fr := wire.NewReader(conn, 4096)
	h, p, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("reading the server's HELLO failed: %v", err)
	}
	if h.Type != wire.TypeHello {
		t.Fatalf("server's first frame = %v, want HELLO", h)
	}
	hello, err := wire.ParseHello(p)
	if err != nil {
		t.Fatalf("ParseHello() failed: %v", err)
	}
	if hello.Role != wire.RoleAcceptor || len(hello.Codecs) != 1 || hello.Codecs[0] != "json" {
		t.Fatalf("server's HELLO = %+v, want role acceptor and codecs [json]", hello)
	}
	fr.SetMaxPayload(wire.MaxMaxFrameSize)
	return fr
}

// readGoAway reads frames until a GOAWAY and returns it.
func readGoAway(t *testing.T, fr *wire.Reader) wire.GoAway {
	t.Helper()
	for {
		h, p, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading GOAWAY failed: %v", err)
		}
		if h.Type != wire.TypeGoAway {
			continue
		}
		g, err := wire.ParseGoAway(p)
		if err != nil {
			t.Fatalf("ParseGoAway() failed: %v", err)
		}
		return g
	}
}

// checkServes fails the test unless a Pulse client can call the server.
func checkServes(t *testing.T, ts *testServer) {
	t.Helper()
	c := ts.dial(t)
	var r Reply
	if err := c.Call(testContext(t), "Arith.Add", Args{20, 22}, &r); err != nil || r.C != 42 {
		t.Errorf("Call(Arith.Add) = %d, %v; want 42, nil", r.C, err)
	}
	c.Close()
}

func TestServerDropsGarbage(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP)
	ts.register(t, new(Arith))

	conn := dialRaw(t, ts.addr)
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatalf("writing to the server failed: %v", err)
	}
	checkClosedByPeer(t, readUntilClosed(conn))
	checkServes(t, ts)
}

func TestServerDropsSilentClient(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP, pulse.WithHandshakeTimeout(shortHandshakeTimeout))
	ts.register(t, new(Arith))

	start := time.Now()
	conn := dialRaw(t, ts.addr)
	checkClosedByPeer(t, readUntilClosed(conn))
	if d := time.Since(start); d < shortHandshakeTimeout/2 {
		t.Errorf("the server dropped a silent client after %v, before its handshake timeout of %v", d, shortHandshakeTimeout)
	}
	checkServes(t, ts)
}

// garbageServer accepts connections on 127.0.0.1, writes reply to each and
// reads until the client closes, or closes at once with hangUp. It stops
// in the test's cleanup.
func garbageServer(t *testing.T, reply string, hangUp bool) string {
	t.Helper()
	l := listenTCP(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.SetDeadline(time.Now().Add(defaultTestTimeout))
			io.WriteString(conn, reply)
			if !hangUp {
				io.Copy(io.Discard, conn)
			}
			conn.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

func TestDialNonPulseServer(t *testing.T) {
	for _, tt := range []struct {
		name   string
		reply  string
		hangUp bool
	}{
		{"http", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", false},
		{"http and close", "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", true},
		{"short and close", "hi\n", true},
		{"nothing and close", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			addr := garbageServer(t, tt.reply, tt.hangUp)
			ctx := testContext(t)
			start := time.Now()
			c, err := pulse.Dial(ctx, addr, pulse.WithLogger(testLogger(t)))
			if err == nil {
				c.Close()
				t.Fatalf("Dial() to a non-Pulse server succeeded, want %v", pulse.ErrHandshake)
			}
			if !errors.Is(err, pulse.ErrHandshake) {
				t.Errorf("Dial() = %v, want %v", err, pulse.ErrHandshake)
			}
			if d := time.Since(start); d > quickHandshakeFailure {
				t.Errorf("Dial() took %v to fail, want under %v", d, quickHandshakeFailure)
			}
		})
	}
}

// TestDialSilentServer dials a server that accepts and says nothing: the
// handshake timeout (or the context) bounds Dial.
func TestDialSilentServer(t *testing.T) {
	checkLeaks(t)
	l := listenTCP(t)
	conns := make(chan net.Conn, 1)
	go func() {
		if conn, err := l.Accept(); err == nil {
			conns <- conn
		}
	}()
	t.Cleanup(func() {
		l.Close()
		select {
		case conn := <-conns:
			conn.Close()
		default:
		}
	})

	start := time.Now()
	_, err := pulse.Dial(testContext(t), l.Addr().String(),
		pulse.WithHandshakeTimeout(shortHandshakeTimeout), pulse.WithLogger(testLogger(t)))
	if !errors.Is(err, pulse.ErrHandshake) {
		t.Errorf("Dial() to a silent server = %v, want %v", err, pulse.ErrHandshake)
	}
	if d := time.Since(start); d < shortHandshakeTimeout/2 || d > defaultTestTimeout/2 {
		t.Errorf("Dial() to a silent server took %v, want about %v", d, shortHandshakeTimeout)
	}

	// The context bounds it as well.
	ctx, cancel := context.WithTimeout(context.Background(), shortHandshakeTimeout)
	defer cancel()
	_, err = pulse.Dial(ctx, l.Addr().String(), pulse.WithLogger(testLogger(t)))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, pulse.ErrHandshake) {
		t.Errorf("Dial() with a %v context to a silent server = %v, want a handshake or deadline error", shortHandshakeTimeout, err)
	}
}

func TestCodecNegotiation(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		t.Run("no common codec", func(t *testing.T) {
			ts := newTestServer(t, tr, pulse.WithCodec("raw"))
			start := time.Now()
			_, err := ts.tryDial(t, nil, pulse.WithCodec("json"))
			if !errors.Is(err, pulse.ErrHandshake) {
				t.Fatalf("Dial() offering json to a raw-only server = %v, want %v", err, pulse.ErrHandshake)
			}
			for _, name := range []string{`"json"`, `"raw"`} {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("Dial() error %q does not name the codec %s", err, name)
				}
			}
			var ce *pulse.ConnError
			if !errors.As(err, &ce) || ce.Code != pulse.CloseHandshake {
				t.Errorf("Dial() = %#v, want a *ConnError with code %v", err, pulse.CloseHandshake)
			}
			if d := time.Since(start); d > quickHandshakeFailure {
				t.Errorf("Dial() took %v to fail, want under %v", d, quickHandshakeFailure)
			}
		})
		t.Run("json", func(t *testing.T) {
			ts := newTestServer(t, tr)
			ts.register(t, new(Arith))
			c := ts.dial(t, pulse.WithCodec("json"))
			if got := c.Peer().Codec(); got != "json" {
				t.Errorf("Peer().Codec() = %q, want %q", got, "json")
			}
			waitFor(t, "the server to list the client", func() bool { return len(ts.Peers()) == 1 })
			if got := ts.Peers()[0].Codec(); got != "json" {
				t.Errorf("server's Peer.Codec() = %q, want %q", got, "json")
			}
			var r Reply
			if err := c.Call(testContext(t), "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
				t.Errorf("Call(Arith.Add) = %d, %v; want 3, nil", r.C, err)
			}
		})
		t.Run("server picks the client's first", func(t *testing.T) {
			ts := newTestServer(t, tr)
			c := ts.dial(t, pulse.WithCodec("raw", "json"))
			if got := c.Peer().Codec(); got != "raw" {
				t.Errorf("Peer().Codec() = %q, want %q", got, "raw")
			}
		})
		t.Run("default", func(t *testing.T) {
			ts := newTestServer(t, tr, pulse.WithCodec("json"))
			c := ts.dial(t) // offers the binary codec, if any, then json
			if got := c.Peer().Codec(); got != "json" {
				t.Errorf("Peer().Codec() = %q, want %q", got, "json")
			}
		})
	})
}

func TestUnregisteredCodecOption(t *testing.T) {
	checkLeaks(t)
	_, err := pulse.Dial(testContext(t), "127.0.0.1:1", pulse.WithCodec("no-such-codec"))
	if err == nil || !strings.Contains(err.Error(), "no-such-codec") {
		t.Errorf("Dial(WithCodec(no-such-codec)) = %v, want an error naming the codec", err)
	}
}

// TestProtocolViolations breaks the protocol after a valid handshake: the
// server answers with GOAWAY (protocol error), naming the last call it
// took, closes the connection, and goes on serving others.
func TestProtocolViolations(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		code  wire.GoAwayCode
		last  uint32 // the GOAWAY's LastID, when not 3
	}{
		{"REPLY for an id the server never used", wire.AppendFrame(nil, wire.TypeReply, wire.FlagEnd, 5, []byte{0}), wire.GoAwayProtocolError, 0},
		{"REPLY with id 0", wire.AppendFrame(nil, wire.TypeReply, wire.FlagEnd, 0, []byte{0}), wire.GoAwayProtocolError, 0},
		{"CONTINUATION without a start", wire.AppendFrame(nil, wire.TypeContinuation, wire.FlagEnd, 5, []byte("x")), wire.GoAwayProtocolError, 0},
		{"CALL with the server's parity", wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 4, []byte{0}), wire.GoAwayProtocolError, 0},
		{"CANCEL with the server's parity", wire.AppendHeader(nil, wire.TypeCancel, 0, 4, 0), wire.GoAwayProtocolError, 0},
		{"HELLO after the handshake", mustHello(t), wire.GoAwayProtocolError, 0},
		{"unknown frame type", []byte{wire.Version, 0x42, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0}, wire.GoAwayProtocolError, 0},
		{"bad version", []byte{wire.Version + 1, byte(wire.TypePing), 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}, wire.GoAwayProtocolError, 0},
		{"version 1 frame", []byte{1, byte(wire.TypePing), 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0}, wire.GoAwayProtocolError, 0},
		{"CALL with id 0", wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 0, []byte{0, 0}), wire.GoAwayProtocolError, 0},
		{"WINDOW_UPDATE of 0", wire.AppendFrame(nil, wire.TypeWindowUpdate, 0, 0, []byte{0, 0, 0, 0}), wire.GoAwayProtocolError, 0},
		{"short WINDOW_UPDATE", wire.AppendFrame(nil, wire.TypeWindowUpdate, 0, 0, []byte{0, 0, 1}), wire.GoAwayProtocolError, 0},
		{"WINDOW_UPDATE past the largest window", wire.AppendWindowUpdate(nil, wire.MaxWindow), wire.GoAwayFlowControl, 0},
		{"data beyond the credit granted", overCredit(), wire.GoAwayFlowControl, 105},
		{"frame over the limit", wire.AppendHeader(nil, wire.TypeCall, 0, 5, wire.DefaultMaxFrameSize+1), wire.GoAwayProtocolError, 0},
		{"short PING", wire.AppendFrame(nil, wire.TypePing, 0, 0, []byte{1, 2, 3}), wire.GoAwayProtocolError, 0},
		// Call ids (PROTOCOL.md §5): the valid call below used 3, skipping 1.
		{"CALL with an id used before", wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 3, []byte{0}), wire.GoAwayProtocolError, 0},
		{"NOTIFY with a call's id", wire.AppendFrame(nil, wire.TypeNotify, wire.FlagEnd, 3, []byte{0}), wire.GoAwayProtocolError, 0},
		{"CALL with a skipped id, twice", append(wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 1, []byte{0}),
			wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 1, []byte{0})...), wire.GoAwayProtocolError, 0},
		{"CALL with an id skipped too long ago", append(wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 3+2*2000, []byte{0}),
			wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 5, []byte{0})...), wire.GoAwayProtocolError, 3 + 2*2000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			ts := newTestServer(t, transportTCP)
			ts.register(t, new(Arith))
			conn := dialRaw(t, ts.addr)
			fr := rawHandshake(t, conn)

			// One valid call first: the GOAWAY names it as the last.
			call := wire.AppendHeader(nil, wire.TypeCall, wire.FlagEnd, 3, 0)
			call = wire.AppendCallHead(call, "Arith.Add", 0)
			call = append(call, `{"A":2,"B":3}`...)
			wire.PutLength(call, len(call)-wire.HeaderSize)
			if _, err := conn.Write(call); err != nil {
				t.Fatalf("writing CALL failed: %v", err)
			}
			h, p, err := fr.ReadFrame()
			if err != nil || h.Type != wire.TypeReply || h.ID != 3 {
				t.Fatalf("ReadFrame() = %v, %v; want REPLY for id 3", h, err)
			}
			if status, body, err := wire.ParseReply(p); err != nil || status != wire.StatusOK || string(body) != `{"C":5}` {
				t.Fatalf("REPLY = %v %q %v, want OK {\"C\":5}", status, body, err)
			}

			if _, err := conn.Write(tt.frame); err != nil {
				t.Fatalf("writing the bad frame failed: %v", err)
			}
			g := readGoAway(t, fr)
			last := cmp.Or(tt.last, 3)
			if g.Code != tt.code || g.LastID != last {
				t.Errorf("GOAWAY = {Code: %v, LastID: %d, %q}, want {Code: %v, LastID: %d}", g.Code, g.LastID, g.Message, tt.code, last)
			}
			if g.Message == "" {
				t.Errorf("GOAWAY has no message, want the reason")
			}
			checkClosedByPeer(t, readUntilClosed(conn))
			checkServes(t, ts)
		})
	}
}

func mustHello(t *testing.T) []byte {
	b, err := wire.AppendHello(nil, wire.Hello{Role: wire.RoleDialer, MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: 1 << 20, InitialWindow: 4 << 20, Codecs: []string{"json"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRawFrames exercises messages a Pulse client would not produce but
// that are valid: a CALL in many small frames, an aborted message, a PING,
// a CANCEL for a finished call and a message over the size limit.
func TestRawFrames(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP, pulse.WithMaxMessageSize(1<<10))
	ts.register(t, new(Arith))
	conn := dialRaw(t, ts.addr)
	fr := rawHandshake(t, conn)

	write := func(b []byte) {
		t.Helper()
		if _, err := conn.Write(b); err != nil {
			t.Fatalf("Write() failed: %v", err)
		}
	}
	readReply := func(id uint32) (wire.Status, string) {
		t.Helper()
		for {
			h, p, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("ReadFrame() failed: %v", err)
			}
			if h.Type == wire.TypeReply && h.ID == id && h.Flags&wire.FlagEnd != 0 {
				status, body, _ := wire.ParseReply(p)
				return status, string(body)
			}
			if h.Type != wire.TypePong {
				t.Fatalf("ReadFrame() = %v, want REPLY for id %d", h, id)
			}
		}
	}

	// PING is answered with PONG.
	write(wire.AppendPing(nil, wire.TypePing, 0xfeed))
	h, p, err := fr.ReadFrame()
	if err != nil || h.Type != wire.TypePong {
		t.Fatalf("ReadFrame() after PING = %v, %v; want PONG", h, err)
	}
	if data, err := wire.ParsePing(p); err != nil || data != 0xfeed {
		t.Errorf("PONG data = %#x, %v; want 0xfeed", data, err)
	}

	// A CALL in one-byte frames (the first one also carries the
	// message's total length).
	msg := wire.AppendCallHead(nil, "Arith.Add", time.Second)
	msg = append(msg, `{"A":40,"B":2}`...)
	for i := range msg {
		typ, flags := wire.TypeContinuation, wire.Flags(0)
		payload := msg[i : i+1]
		if i == 0 {
			typ = wire.TypeCall
			payload = append(wire.AppendMessageLen(nil, len(msg)), payload...)
		}
		if i == len(msg)-1 {
			flags = wire.FlagEnd
		}
		write(wire.AppendFrame(nil, typ, flags, 1, payload))
	}
	if status, body := readReply(1); status != wire.StatusOK || body != `{"C":42}` {
		t.Errorf("reply to a CALL in one-byte frames = %v %q, want OK {\"C\":42}", status, body)
	}

	// An aborted message is dropped; its id... and the next call works.
	write(wire.AppendFrame(nil, wire.TypeCall, 0, 3, append(wire.AppendMessageLen(nil, len(msg)), msg[:5]...)))
	write(wire.AppendHeader(nil, wire.TypeContinuation, wire.FlagEnd|wire.FlagAbort, 3, 0))
	// A CANCEL for a call that is over is ignored.
	write(wire.AppendHeader(nil, wire.TypeCancel, 0, 1, 0))
	write(wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 5, msg))
	if status, body := readReply(5); status != wire.StatusOK || body != `{"C":42}` {
		t.Errorf("reply after an aborted message = %v %q, want OK {\"C\":42}", status, body)
	}

	// A CALL whose head does not decode is answered BAD_ARGS.
	write(wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 7, []byte{0xff}))
	if status, _ := readReply(7); status != wire.StatusBadArgs {
		t.Errorf("reply to a CALL with a bad head = %v, want %v", status, wire.StatusBadArgs)
	}

	// A CALL over the server's 1 KiB message limit, in frames and in
	// one, is answered TOO_LARGE without running.
	big := wire.AppendCallHead(nil, "Arith.Echo", 0)
	big = append(big, `"`+pattern(2<<10)+`"`...)
	write(wire.AppendFrame(nil, wire.TypeCall, 0, 9, append(wire.AppendMessageLen(nil, len(big)), big[:1000]...)))
	write(wire.AppendFrame(nil, wire.TypeContinuation, wire.FlagEnd, 9, big[1000:]))
	if status, _ := readReply(9); status != wire.StatusTooLarge {
		t.Errorf("reply to a CALL over the limit in frames = %v, want %v", status, wire.StatusTooLarge)
	}
	write(wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 11, big))
	if status, _ := readReply(11); status != wire.StatusTooLarge {
		t.Errorf("reply to a CALL over the limit in one frame = %v, want %v", status, wire.StatusTooLarge)
	}

	// A REPLY for a call the server is no longer waiting for (or never
	// made, in its own id space) is discarded without error.
	write(wire.AppendFrame(nil, wire.TypeReply, wire.FlagEnd, 2, []byte{0}))
	write(wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 13, msg))
	if status, _ := readReply(13); status != wire.StatusOK {
		t.Errorf("reply after a stray REPLY = %v, want OK", status)
	}

	// A clean close: the server sees EOF.
	write(wire.AppendGoAway(nil, wire.GoAway{LastID: 0, Code: wire.GoAwayNormal}))
	conn.(*net.TCPConn).CloseWrite()
	checkClosedByPeer(t, readUntilClosed(conn))
	waitFor(t, "the server to drop the raw client", func() bool { return len(ts.Peers()) == 0 })
}

// TestHandshakeRefusals sends HELLOs the server must refuse, and checks
// the GOAWAY code of PROTOCOL.md §4.1: 3 (protocol error) for a first
// frame that is not a dialer's HELLO, 8 (handshake refused) for settings
// or codecs it does not accept.
func TestHandshakeRefusals(t *testing.T) {
	hello := func(mod func(*wire.Hello)) []byte {
		h := wire.Hello{Role: wire.RoleDialer, MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: 1 << 20, InitialWindow: 4 << 20, Codecs: []string{"json"}}
		mod(&h)
		b, err := wire.AppendHello(nil, h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	withID := func(b []byte, id uint32) []byte {
		b[4], b[5], b[6], b[7] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
		return b
	}
	tests := []struct {
		name  string
		frame []byte
		code  wire.GoAwayCode
	}{
		{"CALL first", wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 1, []byte{0}), wire.GoAwayProtocolError},
		{"bad magic", wire.AppendFrame(nil, wire.TypeHello, wire.FlagEnd, 0, []byte("HTTP\x00\x00\x00")), wire.GoAwayProtocolError},
		{"acceptor role", hello(func(h *wire.Hello) { h.Role = wire.RoleAcceptor }), wire.GoAwayProtocolError},
		{"nonzero id", withID(hello(func(*wire.Hello) {}), 7), wire.GoAwayProtocolError},
		{"frame size too small", hello(func(h *wire.Hello) { h.MaxFrameSize = wire.MinMaxFrameSize - 1 }), wire.GoAwayHandshake},
		{"frame size too large", hello(func(h *wire.Hello) { h.MaxFrameSize = wire.MaxMaxFrameSize + 1 }), wire.GoAwayHandshake},
		{"no codec", hello(func(h *wire.Hello) { h.Codecs = nil }), wire.GoAwayHandshake},
		{"unknown codec", hello(func(h *wire.Hello) { h.Codecs = []string{"x-unknown"} }), wire.GoAwayHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			ts := newTestServer(t, transportTCP)
			ts.register(t, new(Arith))
			conn := dialRaw(t, ts.addr)
			if _, err := conn.Write(tt.frame); err != nil {
				t.Fatalf("Write() failed: %v", err)
			}
			h, p, err := wire.NewReader(conn, 4096).ReadFrame()
			if err != nil || h.Type != wire.TypeGoAway {
				t.Fatalf("server's answer = %v, %v; want GOAWAY", h, err)
			}
			g, err := wire.ParseGoAway(p)
			if err != nil {
				t.Fatalf("ParseGoAway() failed: %v", err)
			}
			if g.Code != tt.code || g.LastID != 0 || g.Message == "" {
				t.Errorf("GOAWAY = {Code: %v, LastID: %d, Message: %q}, want {Code: %v, LastID: 0, a reason}", g.Code, g.LastID, g.Message, tt.code)
			}
			checkClosedByPeer(t, readUntilClosed(conn))
			checkServes(t, ts)
		})
	}
}

// TestHandshakeNoMessageLimit sends a HELLO with MaxMessageSize 0, which
// PROTOCOL.md §4.3 defines as "no limit stated": the server accepts it.
func TestHandshakeNoMessageLimit(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP)
	ts.register(t, new(Arith))
	conn := dialRaw(t, ts.addr)
	b, err := wire.AppendHello(nil, wire.Hello{Role: wire.RoleDialer, MaxFrameSize: wire.DefaultMaxFrameSize, InitialWindow: 1 << 20, Codecs: []string{"json"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatalf("Write() failed: %v", err)
	}
	fr := wire.NewReader(conn, 4096)
	h, p, err := fr.ReadFrame()
	if err != nil {
		t.Fatalf("ReadFrame() failed: %v", err)
	}
	if h.Type != wire.TypeHello {
		g, _ := wire.ParseGoAway(p)
		t.Fatalf("server answered %v (%+v) to a HELLO with MaxMessageSize 0, want HELLO", h, g)
	}
	fr.SetMaxPayload(wire.DefaultMaxFrameSize)
	call := wire.AppendCallHead(nil, "Arith.Make", 0)
	call = append(call, "100000"...)
	if _, err := conn.Write(wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 1, call)); err != nil {
		t.Fatalf("Write() failed: %v", err)
	}
	var got int
	for {
		h, p, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame() failed: %v", err)
		}
		if h.ID != 1 {
			continue
		}
		if h.Type == wire.TypeReply && h.Flags&wire.FlagEnd == 0 {
			total, rest, err := wire.ParseMessageLen(p)
			if err != nil || total != 1+100000+2 {
				t.Fatalf("REPLY total length = %d, %v; want %d", total, err, 1+100000+2)
			}
			p = rest
		}
		if h.Type == wire.TypeReply && p[0] != byte(wire.StatusOK) {
			t.Fatalf("REPLY status = %v, want OK: %s", wire.Status(p[0]), p[1:])
		}
		got += len(p)
		if h.Flags&wire.FlagEnd != 0 {
			break
		}
	}
	if want := 1 + 100000 + 2; got != want { // status, quoted string
		t.Errorf("REPLY of %d bytes, want %d", got, want)
	}
}

// acceptOne accepts one connection on 127.0.0.1, reads the dialer's
// HELLO and runs then with the connection, its reader and the HELLO; the
// listener and the connection close, and then returns, before the test
// ends (then may wait for t.Context to end). It returns the address.
func acceptOne(t *testing.T, then func(conn net.Conn, fr *wire.Reader, offer wire.Hello)) string {
	t.Helper()
	l := listenTCP(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(defaultTestTimeout))
		fr := wire.NewReader(conn, 4096)
		h, p, err := fr.ReadFrame()
		if err != nil || h.Type != wire.TypeHello {
			return
		}
		offer, err := wire.ParseHello(p)
		if err != nil {
			return
		}
		then(conn, fr, offer)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().String()
}

// fakeAcceptor accepts one connection on 127.0.0.1, reads the dialer's
// HELLO, answers with answer and sends back what it reads next.
func fakeAcceptor(t *testing.T, answer wire.Hello) (addr string, next <-chan wire.GoAway) {
	t.Helper()
	gc := make(chan wire.GoAway, 1)
	addr = acceptOne(t, func(conn net.Conn, fr *wire.Reader, _ wire.Hello) {
		b, _ := wire.AppendHello(nil, answer)
		conn.Write(b)
		h, p, err := fr.ReadFrame()
		if err != nil || h.Type != wire.TypeGoAway {
			return
		}
		if g, err := wire.ParseGoAway(p); err == nil {
			gc <- g
		}
	})
	return addr, gc
}

// TestDialerRefusesBadHello has an acceptor choose a codec the client did
// not offer: the client refuses with GOAWAY code 8 (PROTOCOL.md §4.1 step 5).
func TestDialerRefusesBadHello(t *testing.T) {
	checkLeaks(t)
	addr, goAways := fakeAcceptor(t, wire.Hello{
		Role: wire.RoleAcceptor, MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: 1 << 20, InitialWindow: 4 << 20, Codecs: []string{"raw"},
	})
	_, err := pulse.Dial(testContext(t), addr, pulse.WithCodec("json"), pulse.WithLogger(testLogger(t)))
	if !errors.Is(err, pulse.ErrHandshake) {
		t.Fatalf("Dial() to a server choosing a codec not offered = %v, want %v", err, pulse.ErrHandshake)
	}
	if g := recv(t, goAways, "the client's GOAWAY"); g.Code != wire.GoAwayHandshake {
		t.Errorf("client's GOAWAY code = %v, want %v", g.Code, wire.GoAwayHandshake)
	}
}

// TestBurstRepliesFlushed: calls that arrive together may run one after
// another on the connection's reader, their replies held to go out
// together. When a burst ends with a frame that writes nothing (here a
// CANCEL for a call that is over), the held replies must still go out at
// once: the raw client sends no heartbeats that could carry them later.
func TestBurstRepliesFlushed(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP)
	ts.register(t, new(Arith))
	conn := dialRaw(t, ts.addr)
	fr := rawHandshake(t, conn)
	msg := wire.AppendCallHead(nil, "Arith.Add", 0)
	msg = append(msg, `{"A":40,"B":2}`...)
	id := uint32(1)
	for round := range 40 {
		var b []byte
		n := 1 + round
		want := make(map[uint32]bool, n)
		for range n {
			b = wire.AppendFrame(b, wire.TypeCall, wire.FlagEnd, id, msg)
			want[id] = true
			id += 2
		}
		b = wire.AppendHeader(b, wire.TypeCancel, 0, 1, 0)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(b); err != nil {
			t.Fatalf("Write() failed: %v", err)
		}
		for len(want) > 0 {
			h, p, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("round %d: %d of %d replies missing: %v", round, len(want), n, err)
			}
			if h.Type != wire.TypeReply || !want[h.ID] {
				t.Fatalf("round %d: ReadFrame() = %v, want a REPLY to one of the burst", round, h)
			}
			if status, body, _ := wire.ParseReply(p); status != wire.StatusOK || string(body) != `{"C":42}` {
				t.Fatalf("round %d: reply %d = %v %q, want OK {\"C\":42}", round, h.ID, status, body)
			}
			delete(want, h.ID)
		}
	}
}

// TestBurstBehindSlowCall: when the first call of a burst blocks, the
// calls behind it are answered while it still runs (the reader's job moves
// on), and its own reply, held to go out with the burst's, still goes out
// when it returns.
func TestBurstBehindSlowCall(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP)
	ts.register(t, new(Arith))
	blocker := newBlocker(t)
	ts.register(t, blocker)
	conn := dialRaw(t, ts.addr)
	fr := rawHandshake(t, conn)

	wait := wire.AppendCallHead(nil, "Blocker.Wait", 0)
	wait = append(wait, `7`...)
	add := wire.AppendCallHead(nil, "Arith.Add", 0)
	add = append(add, `{"A":40,"B":2}`...)
	b := wire.AppendFrame(nil, wire.TypeCall, wire.FlagEnd, 1, wait)
	for id := uint32(3); id <= 11; id += 2 {
		b = wire.AppendFrame(b, wire.TypeCall, wire.FlagEnd, id, add)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatalf("Write() failed: %v", err)
	}
	readReply := func() (uint32, wire.Status, string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		h, p, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame() failed: %v", err)
		}
		if h.Type != wire.TypeReply {
			t.Fatalf("ReadFrame() = %v, want a REPLY", h)
		}
		status, body, _ := wire.ParseReply(p)
		return h.ID, status, string(body)
	}
	for range 5 {
		if id, status, body := readReply(); id == 1 || status != wire.StatusOK || body != `{"C":42}` {
			t.Fatalf("reply %d = %v %q while Blocker.Wait blocks, want an OK reply to Arith.Add", id, status, body)
		}
	}
	blocker.Release()
	if id, status, body := readReply(); id != 1 || status != wire.StatusOK || body != "7" {
		t.Fatalf("reply %d = %v %q after the release, want 1 OK 7", id, status, body)
	}
}

// overCredit returns the first frames of CALL messages of 3 MiB that are
// never finished, one byte more than a default server grants a connection
// in its HELLO: the server holds what arrives of them, so it grants no
// more credit.
func overCredit() []byte {
	var b []byte
	left := pulse.DefaultConnBudget + 1
	const msg = 3 << 20
	for id := uint32(101); left > 0; id += 2 {
		for sent := 0; sent < msg && left > 0; {
			n := min(left, wire.DefaultMaxFrameSize-wire.MessageLenSize, msg-sent)
			if sent == 0 {
				p := wire.AppendMessageLen(nil, msg)
				b = wire.AppendFrame(b, wire.TypeCall, 0, id, append(p, make([]byte, n)...))
				left -= wire.MessageLenSize
			} else {
				b = wire.AppendFrame(b, wire.TypeContinuation, 0, id, make([]byte, n))
			}
			sent += n
			left -= n
		}
	}
	return b
}
