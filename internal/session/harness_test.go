package session

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/wire"
)

// The session's own tests run sessions without the root package (which
// imports this one): a listener that starts acceptor sessions, dialer
// sessions, and blocking calls, over real loopback TCP.

const defaultTestTimeout = 10 * time.Second

// testConfig returns a Config with the public defaults and hb (zero
// fields of hb take the defaults too).
func testConfig(hb Heartbeat) *Config {
	if hb.Interval == 0 {
		hb.Interval = 2 * time.Second
	}
	if hb.Timeout == 0 {
		hb.Timeout = 8 * time.Second
	}
	if hb.MinInterval == 0 {
		hb.MinInterval = 50 * time.Millisecond
	}
	if hb.MaxInterval == 0 {
		hb.MaxInterval = time.Minute
	}
	if hb.PhiThreshold == 0 {
		hb.PhiThreshold = 8
	}
	return &Config{
		Codecs:             codec.Names(),
		MaxFrameSize:       16 << 10,
		MaxMessageSize:     4 << 20,
		MaxConcurrentCalls: 1024,
		Window:             8 << 20,
		Budget:             NewBudget(512 << 20),
		MaxQueued:          4 << 20,
		HandshakeTimeout:   10 * time.Second,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
		Heartbeat:          hb,
		Limits:             Limits{MaxConnAgeGrace: 10 * time.Second},
		Clock:              NewClock(),
	}
}

// testServer accepts connections on loopback and serves each with a
// session of cfg over reg.
type testServer struct {
	l   net.Listener
	cfg *Config
	reg *service.Registry

	mu       sync.Mutex
	sessions []*Session
	wg       sync.WaitGroup
}

// startTestServer starts a server whose registry has rcvrs registered.
// It is closed, with every session, when t ends.
func startTestServer(t testing.TB, cfg *Config, rcvrs ...any) *testServer {
	t.Helper()
	reg := service.NewRegistry()
	for _, r := range rcvrs {
		if err := reg.Register(r, "", false); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{l: l, cfg: cfg, reg: reg}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				Tune(conn)
				s, err := Start(context.Background(), conn, false, cfg, reg, func(*Session) Hooks { return Hooks{} })
				if err != nil {
					return
				}
				ts.mu.Lock()
				ts.sessions = append(ts.sessions, s)
				ts.mu.Unlock()
				s.ReadLoop()
			}()
		}
	}()
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) addr() string { return ts.l.Addr().String() }

// all returns the sessions accepted so far.
func (ts *testServer) all() []*Session {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]*Session(nil), ts.sessions...)
}

func (ts *testServer) close() {
	ts.l.Close()
	for _, s := range ts.all() {
		s.Fail(&ConnError{Reason: ReasonShutdown})
		<-s.ReaderDone()
	}
	ts.wg.Wait()
}

// dialSession dials addr and returns the dialer's session, whose reader
// runs; rcvrs are registered for the server's calls back. It is closed
// when t ends.
func dialSession(t testing.TB, addr string, cfg *Config, rcvrs ...any) *Session {
	t.Helper()
	reg := service.NewRegistry()
	for _, r := range rcvrs {
		if err := reg.Register(r, "", false); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	Tune(conn)
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	s, err := Start(ctx, conn, true, cfg, reg, func(*Session) Hooks { return Hooks{} })
	if err != nil {
		t.Fatal(err)
	}
	go s.ReadLoop()
	t.Cleanup(func() {
		s.Close()
		<-s.ReaderDone()
	})
	return s
}

// doneChan completes a Call by sending its error on a channel.
type doneChan chan error

func (d doneChan) Complete(err error) { d <- err }

// call calls method on s and waits for the reply, ctx, or the connection.
func call(ctx context.Context, s *Session, method string, args, reply any) error {
	done := make(doneChan, 1)
	c := &Call{Reply: reply, Owner: done}
	s.Send(ctx, c, method, args, false)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.Abandon(ctx.Err())
		return <-done
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawDial opens a connection to addr and makes a dialer's handshake
// by hand, offering json, so that a test can send frames in bursts.
func rawDial(t *testing.T, addr string) (net.Conn, *wire.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := wire.AppendHello(nil, wire.Hello{Role: wire.RoleDialer, MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: 1 << 20, InitialWindow: 4 << 20, Codecs: []string{"json"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	fr := wire.NewReader(conn, 4096)
	if h, _, err := fr.ReadFrame(); err != nil || h.Type != wire.TypeHello {
		t.Fatalf("server's first frame = %v, %v; want HELLO", h, err)
	}
	fr.SetMaxPayload(wire.MaxMaxFrameSize)
	return conn, fr
}

// Echo is a service for the session's tests.
type Echo struct{}

func (Echo) Echo(a string, r *string) error { *r = a; return nil }

func TestHarnessCall(t *testing.T) {
	ts := startTestServer(t, testConfig(Heartbeat{}), Echo{})
	s := dialSession(t, ts.addr(), testConfig(Heartbeat{}))
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	defer cancel()
	var got string
	if err := call(ctx, s, "Echo.Echo", "hi", &got); err != nil || got != "hi" {
		t.Fatalf("call() = %q, %v; want hi", got, err)
	}
	if err := call(ctx, s, "Echo.Nope", "hi", &got); err == nil {
		t.Fatal("call of an unknown method succeeded")
	}
}
