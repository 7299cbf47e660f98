package session

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// TestControlAfterPartialNoWaitWrite: a write without waiting that the
// socket took only part of, ending inside a data frame, is followed on
// the wire by the rest of that frame, not by a control frame queued
// meanwhile (a WINDOW_UPDATE from a handler's goroutine, say). The rest
// used to go back to the data lane, which a round writes after the
// control lane: the control frame landed inside the data frame and the
// peer read garbage (seen as "unsupported protocol version" under load).
func TestControlAfterPartialNoWaitWrite(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		// The acceptor's half of the handshake, then nothing is read
		// until the test says so.
		fr := wire.NewReader(c, 4096)
		if _, _, err := fr.ReadFrame(); err != nil {
			c.Close()
			close(accepted)
			return
		}
		b, _ := wire.AppendHello(nil, wire.Hello{Role: wire.RoleAcceptor, MaxFrameSize: wire.DefaultMaxFrameSize,
			MaxMessageSize: 4 << 20, InitialWindow: wire.MaxWindow, Codecs: []string{"json"}})
		c.Write(b)
		accepted <- c
	}()
	cfg := testConfig(Heartbeat{Interval: time.Minute, Timeout: 10 * time.Minute})
	cfg.Codecs = []string{"json"}
	s := dialSession(t, l.Addr().String(), cfg)
	peer := <-accepted
	if peer == nil {
		t.Fatal("the acceptor's handshake failed")
	}
	defer peer.Close()
	if s.park.socket() == nil {
		t.Skip("writes without waiting need a socket that can park (Linux TCP)")
	}

	// Data frames enough to fill the socket's buffers many times over.
	const frames, size = 512, 16 << 10
	s.mu.Lock()
	for i := range frames {
		b := make([]byte, wire.HeaderSize+size)
		wire.AppendHeader(b[:0], wire.TypeNotify, wire.FlagEnd, uint32(1+2*i), size)
		s.enqueueLocked(&b, uint32(1+2*i), wire.TypeNotify, nil)
	}
	s.mu.Unlock()
	var once sync.Once
	hook := func(hs *Session) {
		if hs == s {
			once.Do(func() {
				// Queued while the write is in progress, as a handler's
				// WINDOW_UPDATE would be.
				s.queueControl(func(b []byte) []byte { return wire.AppendWindowUpdate(b, 1) }, held)
			})
		}
	}
	testHookNoWaitWritten.Store(&hook)
	defer testHookNoWaitWritten.Store(nil)
	s.queueControl(func(b []byte) []byte { return wire.AppendPing(b, wire.TypePong, 7) }, noWait)

	peer.SetReadDeadline(time.Now().Add(defaultTestTimeout))
	fr := wire.NewReader(peer, 64<<10)
	fr.SetMaxPayload(wire.MaxMaxFrameSize)
	var notifies, updates int
	for notifies < frames || updates < 1 {
		h, p, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d NOTIFY frames and %d WINDOW_UPDATE: %v", notifies, updates, err)
		}
		switch h.Type {
		case wire.TypeNotify:
			if len(p) != size || h.ID != uint32(1+2*notifies) {
				t.Fatalf("NOTIFY %d: id %d, %d bytes; want id %d, %d bytes", notifies, h.ID, len(p), 1+2*notifies, size)
			}
			notifies++
		case wire.TypeWindowUpdate:
			updates++
		case wire.TypePong, wire.TypePing:
		default:
			t.Fatalf("unexpected frame %v", h)
		}
	}
}
