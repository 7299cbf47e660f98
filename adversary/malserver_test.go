//go:build adversary && linux

package adversary

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// fakeServer is a hostile Pulse acceptor, driven by hand: it completes the
// handshake, answers PINGs, and echoes the CALLs of a real client, except
// that every fourth call gets a REPLY that announces 4 MiB and never
// completes; once attack is closed it also sends, every 5 ms, REPLY frames
// for ids the client never used: 16 announcing 4 MiB each and 4 complete
// ones of 1 KiB.
type fakeServer struct {
	ln       net.Listener
	attack   chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
	accepted atomic.Int64
	calls    atomic.Int64
	bogus    atomic.Int64 // REPLY frames sent for ids never used
	conns    sync.Map
}

func startFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := &fakeServer{ln: ln, attack: make(chan struct{}), done: make(chan struct{})}
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fs.accepted.Add(1)
			fs.conns.Store(c, true)
			fs.wg.Add(1)
			go func() {
				defer fs.wg.Done()
				defer c.Close()
				fs.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		close(fs.done)
		ln.Close()
		fs.conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		fs.wg.Wait()
	})
	return fs
}

func (fs *fakeServer) serve(c net.Conn) {
	fr := wire.NewReader(c, 64<<10)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	h, p, err := fr.ReadFrame()
	if err != nil || h.Type != wire.TypeHello {
		return
	}
	offer, err := wire.ParseHello(p)
	if err != nil {
		return
	}
	b, _ := wire.AppendHello(nil, wire.Hello{
		Role: wire.RoleAcceptor, MaxFrameSize: ourMaxFrame, MaxMessageSize: 64 << 20, InitialWindow: wire.MaxWindow,
		Interval: offer.Interval, Codecs: []string{"json"},
	})
	if _, err := c.Write(b); err != nil {
		return
	}
	c.SetDeadline(time.Time{})
	fr.SetMaxPayload(ourMaxFrame)

	var wmu sync.Mutex
	write := func(b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Write(b)
		return err
	}
	stopAttack := make(chan struct{})
	defer close(stopAttack)
	go fs.bogusReplies(write, stopAttack)
	for {
		h, p, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch h.Type {
		case wire.TypePing:
			write(wire.AppendFrame(nil, wire.TypePong, 0, 0, p))
		case wire.TypeCall:
			if h.Flags&wire.FlagEnd == 0 {
				continue // the client's calls are small
			}
			_, _, args, err := wire.ParseCall(p)
			if err != nil {
				continue
			}
			var out []byte
			if fs.calls.Add(1)%4 == 0 {
				// A reply announcing 4 MiB that never completes.
				pl := wire.AppendMessageLen(nil, 4<<20)
				pl = wire.AppendReplyHead(pl, wire.StatusOK)
				out = wire.AppendFrame(nil, wire.TypeReply, 0, h.ID, pl)
			} else {
				pl := wire.AppendReplyHead(nil, wire.StatusOK)
				out = wire.AppendFrame(nil, wire.TypeReply, wire.FlagEnd, h.ID, append(pl, args...))
			}
			if write(out) != nil {
				return
			}
		}
	}
}

// bogusReplies sends REPLY frames for ids the client never used.
func (fs *fakeServer) bogusReplies(write func([]byte) error, stop <-chan struct{}) {
	select {
	case <-fs.attack:
	case <-stop:
		return
	}
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	id := uint32(1<<30 + 1)
	body := make([]byte, 1024)
	for i := range body {
		body[i] = '1'
	}
	var buf []byte
	for {
		select {
		case <-stop:
			return
		case <-fs.done:
			return
		case <-tk.C:
		}
		buf = buf[:0]
		for range 16 {
			pl := wire.AppendMessageLen(nil, 4<<20)
			pl = wire.AppendReplyHead(pl, wire.StatusOK)
			buf = wire.AppendFrame(buf, wire.TypeReply, 0, id, pl)
			id += 2
		}
		for range 4 {
			pl := append(wire.AppendReplyHead(nil, wire.StatusOK), body...)
			buf = wire.AppendFrame(buf, wire.TypeReply, wire.FlagEnd, id, pl)
			id += 2
		}
		if write(buf) != nil {
			return
		}
		fs.bogus.Add(20)
	}
}

// TestMaliciousServer (attack 1b): a hostile server sends a real client
// process REPLY frames for ids it never used, most announcing 4 MiB, and
// answers some of its real calls with 4 MiB replies that never complete.
// The client must hold no more than its budgets, and every one of its
// calls must end in success or a typed error, none hanging.
func TestMaliciousServer(t *testing.T) {
	fs := startFakeServer(t)
	tg := startTarget(t, "malicious-server", "client", "-addr", fs.ln.Addr().String(),
		"-duration", "7s", "-calls-every", "10ms", "-call-timeout", "1s",
		"-conn-budget", fmt.Sprint(connBudget), "-process-budget", fmt.Sprint(procBudget))
	time.Sleep(500 * time.Millisecond) // connected and calling
	base := tg.baseline()
	stop := tg.watch()
	close(fs.attack)
	time.Sleep(5 * time.Second)
	stop()
	peak := tg.stats()
	// Let the calls in flight end (1 s deadline + 1 s to count as hung).
	time.Sleep(2500 * time.Millisecond)
	end := tg.stats()
	cs := end.Client
	if cs == nil {
		t.Fatal("the client reported no calls")
	}
	t.Logf("client: %d ok, %d typed errors, %d untyped, %d hung, %d in flight; errors %v; fake server: %d connections, %d calls, %d bogus REPLY frames",
		cs.OK, cs.Typed, cs.Untyped, cs.Hung, cs.InFlight, cs.ErrSamples, fs.accepted.Load(), fs.calls.Load(), fs.bogus.Load())
	if cs.Untyped > 0 || cs.Hung > 0 {
		t.Errorf("malicious-server: %d calls ended in an untyped error and %d hung", cs.Untyped, cs.Hung)
	}
	if cs.OK == 0 {
		t.Errorf("malicious-server: no call succeeded, though the server answered three in four")
	}
	// Calls in flight: one every 10 ms for up to 1 s.
	measure(t, "malicious-server", base, peak, limits{held: procBudget, goroutines: 128},
		fmt.Sprintf("bogus_replies=%d client_ok=%d client_typed=%d client_untyped=%d client_hung=%d",
			fs.bogus.Load(), cs.OK, cs.Typed, cs.Untyped, cs.Hung))
}
