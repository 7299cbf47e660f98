//go:build linux

package pulse

import (
	"bytes"
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/wire"
)

// bufferControl returns a socket option setter for net.ListenConfig and
// net.Dialer that sets opt (SO_SNDBUF, SO_RCVBUF) to size.
func bufferControl(opt, size int) func(_, _ string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, size)
		}); err != nil {
			return err
		}
		return serr
	}
}

// TestPingAheadOfLargeMessage: when the peer stops reading in the middle
// of a large message and a PING is queued meanwhile, the PING goes out
// after the round under way: the data ahead of it is what the two sockets
// held, plus at most one round (maxWriteSize). The message still arrives
// whole and in order.
func TestPingAheadOfLargeMessage(t *testing.T) {
	const (
		size   = 8 << 20
		rcvBuf = 64 << 10 // the kernel doubles it
	)
	lc := net.ListenConfig{Control: bufferControl(syscall.SO_RCVBUF, rcvBuf)}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, _ := l.Accept() // nil on failure
		accepted <- conn
	}()

	hb := WithHeartbeat(Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute})
	dialed := make(chan *Client, 1)
	go func() {
		c, err := Dial(context.Background(), l.Addr().String(), WithCodec(codec.RawName), hb)
		if err != nil {
			t.Error(err)
		}
		dialed <- c
	}()
	conn := <-accepted
	if conn == nil {
		t.Fatal("accept failed")
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fr := wire.NewReader(conn, 32<<10)
	if h, _, err := fr.ReadFrame(); err != nil || h.Type != wire.TypeHello {
		t.Fatalf("client's first frame = %v, %v; want HELLO", h, err)
	}
	b, err := wire.AppendHello(nil, wire.Hello{Role: wire.RoleAcceptor, MaxFrameSize: wire.DefaultMaxFrameSize,
		MaxMessageSize: 16 << 20, Codecs: []string{codec.RawName}, Interval: time.Minute, Timeout: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	fr.SetMaxPayload(wire.MaxMaxFrameSize)
	c := <-dialed
	if c == nil {
		t.FailNow()
	}
	defer c.Close()
	s, err := c.session(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i % 251)
	}
	if err := c.Notify(context.Background(), "Sink.Take", msg); err != nil {
		t.Fatal(err)
	}

	// got gathers the message body; data counts its bytes read, of
	// total.
	var (
		got         []byte
		data, total int
		pingData    uint64
	)
	read := func() wire.Header {
		t.Helper()
		h, p, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("ReadFrame() after %d bytes of the message: %v", data, err)
		}
		switch h.Type {
		case wire.TypeNotify:
			n, rest, err := wire.ParseMessageLen(p)
			if err != nil {
				t.Fatal(err)
			}
			total = int(n)
			got = append(got, rest...)
			data += len(rest)
		case wire.TypeContinuation:
			got = append(got, p...)
			data += len(p)
		case wire.TypePing:
			if pingData, err = wire.ParsePing(p); err != nil {
				t.Fatal(err)
			}
		}
		return h
	}
	for data < 64<<10 {
		read()
	}
	// The client's writer fills the two sockets' buffers and waits in
	// the middle of a round; then a PING is queued behind it.
	waitFor(t, 10*time.Second, "the client's writer to wait for the socket", func() bool {
		ws := s.mon.writeStart.Load()
		return ws != 0 && nanotime()-ws > int64(50*time.Millisecond)
	})
	pinged := make(chan error, 1)
	go func() {
		_, err := c.Ping(context.Background())
		pinged <- err
	}()
	waitFor(t, 10*time.Second, "the PING to be queued", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.ctrl != nil && len(s.ctrl.b) > 0
	})
	before := data
	for read().Type != wire.TypePing {
		if data == total {
			t.Fatalf("the PING did not come before the end of the message")
		}
	}
	ahead := data - before
	t.Logf("%d bytes of the message read after the PING was queued, before the PING", ahead)
	// What the two sockets hold (130 to 200 KiB here, with the receive
	// buffer at 128 KiB and TCP_NOTSENT_LOWAT at 16 KiB) plus one round.
	if limit := 512 << 10; ahead > limit {
		t.Errorf("%d bytes of the message went ahead of the PING, want at most %d", ahead, limit)
	}
	if _, err := conn.Write(wire.AppendPing(nil, wire.TypePong, pingData)); err != nil {
		t.Fatal(err)
	}
	for data < total {
		if h := read(); h.Type == wire.TypePing {
			t.Fatal("a second PING")
		}
	}
	// The body is the call's head (method name, deadline), then msg.
	if len(got) != total || !bytes.HasSuffix(got, msg) {
		t.Fatalf("the message arrived changed (%d bytes of %d)", len(got), total)
	}
	select {
	case err := <-pinged:
		if err != nil {
			t.Errorf("Ping() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("no answer to Ping() after its PONG")
	}
}
