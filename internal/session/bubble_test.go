package session

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/wire"
)

// Sessions over net.Pipe for tests that run inside a testing/synctest
// bubble (synctest.Test): no real sleeps, time moves only when every
// goroutine of the bubble waits. Everything is made inside the bubble:
// the pipe, each side's Config (testConfig, so that its Clock reads the
// bubble's time) and a worker pool for each Config, so that the
// handlers' goroutines belong to the bubble too.

// pipePair is a dialer and an acceptor over net.Pipe, their readers
// running, each conn wrapped in a tap that counts what its side writes.
type pipePair struct {
	dialer, acceptor       *Session
	dialerTap, acceptorTap *tapConn
}

// bubbleConfig is testConfig(hb) with a worker pool of its own. Called
// inside a bubble, everything it makes belongs to the bubble.
func bubbleConfig(hb Heartbeat) *Config {
	cfg := testConfig(hb)
	cfg.Workers = new(WorkerPool)
	return cfg
}

// newPipePair runs both handshakes at once over net.Pipe and starts both
// readers. rcvrs are registered on both sides. Both sessions are closed,
// their readers waited for and their pools' idle workers ended when t
// ends. It must be called inside a synctest bubble, with Configs made
// there (bubbleConfig).
func newPipePair(t *testing.T, dialCfg, acceptCfg *Config, rcvrs ...any) *pipePair {
	t.Helper()
	registry := func() *service.Registry {
		reg := service.NewRegistry()
		for _, r := range rcvrs {
			if err := reg.Register(r, "", false); err != nil {
				t.Fatal(err)
			}
		}
		return reg
	}
	dreg, areg := registry(), registry()
	c1, c2 := net.Pipe()
	p := &pipePair{dialerTap: &tapConn{Conn: c1}, acceptorTap: &tapConn{Conn: c2}}
	hooks := func(*Session) Hooks { return Hooks{} }
	accepted := make(chan error, 1)
	go func() {
		var err error
		p.acceptor, err = Start(context.Background(), p.acceptorTap, false, acceptCfg, areg, hooks)
		accepted <- err
	}()
	var err error
	p.dialer, err = Start(context.Background(), p.dialerTap, true, dialCfg, dreg, hooks)
	if aerr := <-accepted; err != nil || aerr != nil {
		if p.dialer != nil {
			p.dialer.Fail(&ConnError{Reason: ReasonShutdown})
		}
		if p.acceptor != nil {
			p.acceptor.Fail(&ConnError{Reason: ReasonShutdown})
		}
		t.Fatalf("handshake over a pipe: dialer %v, acceptor %v", err, aerr)
	}
	go p.dialer.ReadLoop()
	go p.acceptor.ReadLoop()
	t.Cleanup(func() {
		p.dialer.Close()
		p.acceptor.Close()
		<-p.dialer.ReaderDone()
		<-p.acceptor.ReaderDone()
		// Each pool's idle workers exit when its last session ends.
	})
	return p
}

// tapConn counts the frames written through it, by type, and can mute its
// side: a muted side's writes are dropped (reported written), so that the
// peer hears nothing more from it while it still reads.
type tapConn struct {
	net.Conn

	mu     sync.Mutex
	buf    []byte // the start of a frame not yet written whole
	frames [wire.TypeGoAway + 1]int
	muted  bool
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.buf = append(c.buf, p...)
	for len(c.buf) >= wire.HeaderSize {
		n := wire.HeaderSize + int(binary.BigEndian.Uint32(c.buf[8:12]))
		if len(c.buf) < n {
			break
		}
		if typ := wire.FrameType(c.buf[1]); typ.Valid() {
			c.frames[typ]++
		}
		c.buf = c.buf[n:]
	}
	if len(c.buf) == 0 {
		c.buf = nil
	}
	muted := c.muted
	c.mu.Unlock()
	if muted {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// count returns how many frames of type typ were written through c.
func (c *tapConn) count(typ wire.FrameType) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames[typ]
}

// mute drops everything written through c from now on.
func (c *tapConn) mute() {
	c.mu.Lock()
	c.muted = true
	c.mu.Unlock()
}
