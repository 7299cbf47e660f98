package pulse_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
)

func TestServeReturnsErrServerClosed(t *testing.T) {
	checkLeaks(t)
	srv, err := pulse.NewServer(pulse.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewServer() failed: %v", err)
	}
	l1, l2 := listenTCP(t), listenTCP(t)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(l1) }()
	go func() { errc <- srv.Serve(l2) }()

	// Both listeners serve.
	for _, addr := range []string{l1.Addr().String(), l2.Addr().String()} {
		c, err := pulse.Dial(testContext(t), addr, pulse.WithLogger(testLogger(t)))
		if err != nil {
			t.Fatalf("Dial(%s) failed: %v", addr, err)
		}
		c.Close()
	}

	if err := srv.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	for i := 0; i < 2; i++ {
		if err := recv(t, errc, "Serve to return"); !errors.Is(err, pulse.ErrServerClosed) {
			t.Errorf("Serve() after Close = %v, want %v", err, pulse.ErrServerClosed)
		}
	}
	if err := srv.Close(); !errors.Is(err, pulse.ErrServerClosed) {
		t.Errorf("second Close() = %v, want %v", err, pulse.ErrServerClosed)
	}

	// Serving after Close returns at once and closes the listener.
	l3 := listenTCP(t)
	if err := srv.Serve(l3); !errors.Is(err, pulse.ErrServerClosed) {
		t.Errorf("Serve() on a closed server = %v, want %v", err, pulse.ErrServerClosed)
	}
	if _, err := l3.Accept(); err == nil {
		t.Errorf("the listener given to Serve on a closed server still accepts")
	}
	if err := srv.ListenAndServe("127.0.0.1:0"); !errors.Is(err, pulse.ErrServerClosed) {
		t.Errorf("ListenAndServe() on a closed server = %v, want %v", err, pulse.ErrServerClosed)
	}
}

// TestServerCloseWithClients closes a server with connected clients,
// including one still in its handshake: Close returns once the connection
// goroutines are gone, and each client sees its connection close.
func TestServerCloseWithClients(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr, pulse.WithHandshakeTimeout(time.Minute))
		ts.register(t, new(Arith))
		// Fail fast: with the server gone, a call must not wait for a
		// reconnect that cannot happen.
		clients := []*pulse.Client{ts.dial(t, pulse.WithFailFast()), ts.dial(t, pulse.WithFailFast())}
		if tr != transportPipe {
			dialRaw(t, ts.addr) // says nothing: stuck in the handshake
		}
		waitFor(t, "the server to list the clients", func() bool { return len(ts.Peers()) == 2 })

		closed := make(chan error, 1)
		go func() { closed <- ts.Close() }()
		if err := recv(t, closed, "Server.Close to return"); err != nil {
			t.Fatalf("Close() = %v, want nil", err)
		}
		for i, c := range clients {
			recv(t, c.Peer().Done(), "the client to see the close")
			err := c.Call(testContext(t), "Arith.Add", Args{}, new(Reply))
			var ce *pulse.ConnError
			if !errors.As(err, &ce) || ce.Sent {
				t.Errorf("client %d: Call() after Server.Close = %v, want a *ConnError with Sent false", i, err)
			}
		}
		if n := len(ts.Peers()); n != 0 {
			t.Errorf("len(Peers()) after Close = %d, want 0", n)
		}
	})
}

func TestNewServerInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  pulse.Option
		want string // in the error
	}{
		{"frame size too small", pulse.WithMaxFrameSize(100), "frame size"},
		{"frame size too large", pulse.WithMaxFrameSize(1 << 30), "frame size"},
		{"message size zero", pulse.WithMaxMessageSize(0), "message size"},
		{"message size negative", pulse.WithMaxMessageSize(-1), "message size"},
		{"concurrent calls zero", pulse.WithMaxConcurrentCalls(0), "concurrent calls"},
		{"handshake timeout zero", pulse.WithHandshakeTimeout(0), "handshake timeout"},
		{"handshake timeout negative", pulse.WithHandshakeTimeout(-time.Second), "handshake timeout"},
		{"message timeout zero", pulse.WithMessageTimeout(0), "message timeout"},
		{"message timeout over a day", pulse.WithMessageTimeout(25 * time.Hour), "message timeout"},
		{"unknown codec", pulse.WithCodec("json", "nope"), `"nope"`},
		{"connection budget under a message", pulse.WithConnBudget(pulse.DefaultMaxMessageSize), "connection budget"},
		{"connection budget negative", pulse.WithConnBudget(-1), "connection budget"},
		{"shared budget under the connection's", pulse.WithSharedBudget(pulse.DefaultConnBudget - 1), "shared budget"},
		{"shared budget negative", pulse.WithSharedBudget(-1), "shared budget"},
		{"max queued zero", pulse.WithMaxQueued(0), "max queued"},
		{"unknown slow-consumer policy", pulse.WithSlowConsumer(9), "slow-consumer policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := pulse.NewServer(tt.opt)
			if err == nil {
				srv.Close()
				t.Fatalf("NewServer(%s) = nil error, want one naming %s", tt.name, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewServer(%s) = %q, want an error containing %q", tt.name, err, tt.want)
			}
			// The client checks its options the same way.
			if _, err := pulse.Dial(context.Background(), "127.0.0.1:1", tt.opt); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Dial(%s) = %v, want an error containing %q", tt.name, err, tt.want)
			}
		})
	}
}

// Types for registration errors.

type NoMethods struct{}

type BadShapes struct{}

func (BadShapes) TooFew(a int) error                       { return nil }
func (BadShapes) ReplyNotPointer(a int, r int) error       { return nil }
func (BadShapes) NoError(a int, r *int)                    {}
func (BadShapes) TwoResults(a int, r *int) (int, error)    { return 0, nil }
func (BadShapes) Unexported(a unexportedArg, r *int) error { return nil }

type unexportedArg struct{}

type unexported struct{}

func (unexported) Add(a int, r *int) error { return nil }

type PointerOnly struct{}

func (*PointerOnly) Add(a int, r *int) error { return nil }

func TestRegisterErrors(t *testing.T) {
	srv, err := pulse.NewServer()
	if err != nil {
		t.Fatalf("NewServer() failed: %v", err)
	}
	t.Cleanup(func() { srv.Close() })

	tests := []struct {
		name string
		rcvr any
		want string
	}{
		{"no methods", NoMethods{}, "no exported methods"},
		{"bad shapes", BadShapes{}, "ReplyNotPointer"},
		{"unexported type", unexported{}, "not exported"},
		{"value of pointer-method type", PointerOnly{}, "pointer"},
		{"nil", nil, "nil"},
	}
	for _, tt := range tests {
		if err := srv.Register(tt.rcvr); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Register(%s) = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}

	if err := srv.Register(new(Arith)); err != nil {
		t.Fatalf("Register(*Arith) failed: %v", err)
	}
	if err := srv.Register(new(Arith)); err == nil || !strings.Contains(err.Error(), "Arith") {
		t.Errorf("second Register(*Arith) = %v, want an error naming Arith", err)
	}
	if err := srv.RegisterName("Arith", Value{}); err == nil {
		t.Errorf("RegisterName(Arith) of a taken name = nil, want an error")
	}
	if err := srv.RegisterName("Calc", new(Arith)); err != nil {
		t.Errorf("RegisterName(Calc, *Arith) failed: %v", err)
	}
	if err := srv.RegisterName("a.b", new(Arith)); err == nil {
		t.Errorf("RegisterName(a.b) = nil, want an error: names must not contain a dot")
	}
	// A name makes an unexported type usable, as in net/rpc.
	if err := srv.RegisterName("Lower", unexported{}); err != nil {
		t.Errorf("RegisterName(Lower, unexported{}) failed: %v", err)
	}

	// The client's registry follows the same rules.
	checkLeaks(t)
	ts := newTestServer(t, transportPipe)
	c := ts.dial(t)
	if err := c.Register(NoMethods{}); err == nil {
		t.Errorf("Client.Register(NoMethods{}) = nil, want an error")
	}
	if err := c.Register(new(Arith)); err != nil {
		t.Errorf("Client.Register(*Arith) failed: %v", err)
	}
	if err := c.Register(new(Arith)); err == nil {
		t.Errorf("second Client.Register(*Arith) = nil, want an error")
	}
}

// TestRegisteredNameServes calls services registered under names.
func TestRegisteredNameServes(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		if err := ts.RegisterName("Calc", new(Arith)); err != nil {
			t.Fatal(err)
		}
		if err := ts.RegisterName("Lower", unexported{}); err != nil {
			t.Fatal(err)
		}
		c := ts.dial(t)
		ctx := testContext(t)
		var r Reply
		if err := c.Call(ctx, "Calc.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
			t.Errorf("Call(Calc.Add) = %d, %v; want 3, nil", r.C, err)
		}
		if err := c.Call(ctx, "Lower.Add", 1, new(int)); err != nil {
			t.Errorf("Call(Lower.Add) failed: %v", err)
		}
		if err := c.Call(ctx, "Arith.Add", Args{1, 2}, &r); !errors.Is(err, pulse.ErrUnknownService) {
			t.Errorf("Call(Arith.Add) = %v, want %v: it was registered as Calc", err, pulse.ErrUnknownService)
		}
	})
}
