package pulse_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
)

// TestListenAndServeTLS serves TLS with ListenAndServe, WithTLS on both
// sides.
func TestListenAndServeTLS(t *testing.T) {
	checkLeaks(t)
	serverTLS, clientTLS := newTLSConfigs(t)
	srv, err := pulse.NewServer(pulse.WithTLS(serverTLS), pulse.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewServer() failed: %v", err)
	}
	if err := srv.Register(new(Arith)); err != nil {
		t.Fatal(err)
	}

	// ListenAndServe does not tell its address: pick a free port, and try
	// another if something takes it meanwhile.
	var (
		addr string
		errc = make(chan error, 1)
		c    *pulse.Client
	)
	for attempt := 0; c == nil; attempt++ {
		if attempt == 5 {
			t.Fatalf("could not start ListenAndServe on a free port")
		}
		l := listenTCP(t)
		addr = l.Addr().String()
		l.Close()
		go func() { errc <- srv.ListenAndServe(addr) }()
		c, err = dialUntilUp(t, addr, errc, pulse.WithTLS(clientTLS), pulse.WithLogger(testLogger(t)))
		if err != nil {
			t.Logf("ListenAndServe(%s): %v; trying another port", addr, err)
		}
	}
	t.Cleanup(func() { c.Close() })

	var r Reply
	if err := c.Call(testContext(t), "Arith.Add", Args{40, 2}, &r); err != nil || r.C != 42 {
		t.Errorf("Call(Arith.Add) over TLS = %d, %v; want 42, nil", r.C, err)
	}
	if !strings.HasPrefix(c.Peer().RemoteAddr().String(), "127.0.0.1:") {
		t.Errorf("Peer().RemoteAddr() = %v, want 127.0.0.1:port", c.Peer().RemoteAddr())
	}

	// A client without TLS gets no Pulse handshake from a TLS server.
	if c2, err := pulse.Dial(testContext(t), addr, pulse.WithHandshakeTimeout(time.Second), pulse.WithLogger(testLogger(t))); err == nil {
		c2.Close()
		t.Errorf("Dial() without TLS to a TLS server succeeded, want an error")
	} else if !errors.Is(err, pulse.ErrHandshake) {
		t.Errorf("Dial() without TLS to a TLS server = %v, want %v", err, pulse.ErrHandshake)
	}

	if err := srv.Close(); err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
	if err := recv(t, errc, "ListenAndServe to return"); !errors.Is(err, pulse.ErrServerClosed) {
		t.Errorf("ListenAndServe() = %v, want %v", err, pulse.ErrServerClosed)
	}
	recv(t, c.Peer().Done(), "the client to see the server close")
}

// dialUntilUp dials addr until it answers, or ListenAndServe reports an
// error on errc.
func dialUntilUp(t *testing.T, addr string, errc <-chan error, opts ...pulse.Option) (*pulse.Client, error) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pulse.Dial(ctx, addr, opts...)
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case serr := <-errc:
			return nil, serr
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dial(%s) still failing after %v: %v", addr, defaultTestTimeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTLSUntrustedServer(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTLS)
	ts.register(t, new(Arith))

	_, otherClientTLS := newTLSConfigs(t) // trusts another certificate
	_, err := pulse.Dial(testContext(t), ts.addr, pulse.WithTLS(otherClientTLS), pulse.WithLogger(testLogger(t)))
	if !errors.Is(err, pulse.ErrHandshake) {
		t.Fatalf("Dial() to an untrusted TLS server = %v, want %v", err, pulse.ErrHandshake)
	}
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) {
		t.Errorf("Dial() error %v does not wrap a *tls.CertificateVerificationError", err)
	}
	checkServes(t, ts)
}

func TestTLSClientToPlainServer(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP)
	ts.register(t, new(Arith))
	_, clientTLS := newTLSConfigs(t)
	start := time.Now()
	_, err := pulse.Dial(testContext(t), ts.addr, pulse.WithTLS(clientTLS), pulse.WithLogger(testLogger(t)))
	if !errors.Is(err, pulse.ErrHandshake) {
		t.Errorf("Dial() with TLS to a plain server = %v, want %v", err, pulse.ErrHandshake)
	}
	if d := time.Since(start); d > quickHandshakeFailure {
		t.Errorf("Dial() with TLS to a plain server took %v, want under %v", d, quickHandshakeFailure)
	}
	checkServes(t, ts)
}

func TestDialErrors(t *testing.T) {
	checkLeaks(t)
	// A port nobody listens on.
	l := listenTCP(t)
	addr := l.Addr().String()
	l.Close()
	_, err := pulse.Dial(testContext(t), addr)
	var ce *pulse.ConnError
	if !errors.As(err, &ce) || ce.Reason != pulse.ReasonIO {
		t.Errorf("Dial() to a closed port = %v, want a *ConnError with reason %v", err, pulse.ReasonIO)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Errorf("Dial() to a closed port = %v, want it to wrap a *net.OpError", err)
	}

	// A cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := pulse.Dial(ctx, "127.0.0.1:1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Dial() with a cancelled context = %v, want %v", err, context.Canceled)
	}

	// WithDialer's error comes back.
	boom := errors.New("boom")
	_, err = pulse.Dial(testContext(t), "anywhere:1", pulse.WithDialer(func(context.Context, string, string) (net.Conn, error) {
		return nil, boom
	}))
	if !errors.Is(err, boom) {
		t.Errorf("Dial() with a failing dialer = %v, want %v", err, boom)
	}
}

// TestWithDialer runs a client over a custom dialer: here, one end of
// net.Pipe.
func TestWithDialer(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportPipe)
	ts.register(t, new(Arith))
	var dialed string
	c, err := pulse.Dial(testContext(t), "pipe-address", pulse.WithLogger(testLogger(t)),
		pulse.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
			dialed = network + " " + addr
			cc, sc := net.Pipe()
			go ts.ServeConn(sc)
			return cc, nil
		}))
	if err != nil {
		t.Fatalf("Dial() with a pipe dialer failed: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if dialed != "tcp pipe-address" {
		t.Errorf("dialer called with %q, want %q", dialed, "tcp pipe-address")
	}
	var r Reply
	if err := c.Call(testContext(t), "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
		t.Errorf("Call(Arith.Add) = %d, %v; want 3, nil", r.C, err)
	}
}

// TestServeConnReturns checks that ServeConn returns when the client
// closes the connection.
func TestServeConnReturns(t *testing.T) {
	checkLeaks(t)
	srv, err := pulse.NewServer(pulse.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cc, sc := net.Pipe()
	returned := make(chan struct{})
	go func() {
		srv.ServeConn(sc)
		close(returned)
	}()
	c, err := pulse.NewClient(cc, pulse.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("NewClient() failed: %v", err)
	}
	c.Close()
	recv(t, returned, "ServeConn to return")
}

// readerGoroutines counts the goroutines running a connection's reader.
func readerGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "session.(*Session).readFrames(")
}

// TestTLSReadersPark: on Linux the readers of idle TLS connections give up
// their goroutines as plain ones do, on both sides, and come back for
// heartbeats (the connections stay up over ten intervals, with a timeout
// of ten), for calls, and for the replies that wake the clients.
func TestTLSReadersPark(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("readers park on Linux only")
	}
	checkLeaks(t)
	hb := pulse.WithHeartbeat(pulse.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 500 * time.Millisecond})
	ts := newTestServer(t, transportTLS, hb)
	ts.register(t, new(Arith))
	const n = 8
	clients := make([]*pulse.Client, n)
	for i := range clients {
		clients[i] = ts.dial(t, hb)
		var r Reply
		if err := clients[i].Call(testContext(t), "Arith.Add", Args{i, 1}, &r); err != nil || r.C != i+1 {
			t.Fatalf("call %d over TLS = %d, %v; want %d, nil", i, r.C, err, i+1)
		}
	}
	waitFor(t, "the readers of idle TLS connections to park", func() bool { return readerGoroutines() <= n/2 })
	time.Sleep(10 * 50 * time.Millisecond)
	for round := range 3 {
		for i, c := range clients {
			var r Reply
			if err := c.Call(testContext(t), "Arith.Add", Args{i, round}, &r); err != nil || r.C != i+round {
				t.Fatalf("round %d: call %d after parking = %d, %v; want %d, nil", round, i, r.C, err, i+round)
			}
		}
		waitFor(t, "the readers to park again", func() bool { return readerGoroutines() <= n/2 })
	}
	// Heartbeats that went unanswered while the readers were parked
	// would have ended connections: the calls above would then have gone
	// over new ones.
	for i, c := range clients {
		if st := c.Stats(); st.Connects != 1 {
			t.Errorf("client %d connected %d times, want once: its connection did not survive the idle spells", i, st.Connects)
		}
	}
	if got := len(ts.Peers()); got != n {
		t.Fatalf("the server has %d connections after idle spells, want %d", got, n)
	}
}
