//go:build linux

package pulse_test

import (
	"bytes"
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/wire"
)

// TestPingAheadOfLargeMessage: a large message goes out in runs of
// frames, each written as fast as the kernel takes it. When the peer
// stops reading in the middle of a run and a PING is queued meanwhile,
// the PING goes out after the frame under way: the data ahead of it is
// what the two sockets held, plus at most a frame. The message still
// arrives whole and in order.
func TestPingAheadOfLargeMessage(t *testing.T) {
	checkLeaks(t)
	const (
		size   = 8 << 20
		rcvBuf = 64 << 10 // the kernel doubles it
	)
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
	}()

	hb := pulse.WithHeartbeat(pulse.Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute})
	dialed := make(chan *pulse.Client, 1)
	go func() {
		c, err := pulse.Dial(testContext(t), l.Addr().String(), pulse.WithCodec(codec.RawName), hb, pulse.WithLogger(testLogger(t)))
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

	msg := make([]byte, size)
	for i := range msg {
		msg[i] = byte(i % 251)
	}
	if err := c.Notify(testContext(t), "Sink.Take", msg); err != nil {
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
	// the middle of a run; then a PING is queued.
	time.Sleep(200 * time.Millisecond)
	pinged := make(chan error, 1)
	go func() {
		_, err := c.Ping(testContext(t))
		pinged <- err
	}()
	time.Sleep(200 * time.Millisecond)
	before := data
	for read().Type != wire.TypePing {
		if data == total {
			t.Fatalf("the PING did not come before the end of the message")
		}
	}
	ahead := data - before
	t.Logf("%d bytes of the message read after the PING was queued, before the PING", ahead)
	// What the two sockets hold (200 to 300 KiB here, with the receive
	// buffer at 128 KiB and TCP_NOTSENT_LOWAT at 16 KiB) plus one frame.
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
	if err := recv(t, pinged, "the PONG"); err != nil {
		t.Errorf("Ping() = %v", err)
	}
}
