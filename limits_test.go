package pulse_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/liveness"
	"github.com/pulse-rpc/pulse/wire"
)

// TestOptionsForTheOtherSide: an option that only the other side uses is
// refused, with an error naming it and the constructor.
func TestOptionsForTheOtherSide(t *testing.T) {
	checkLeaks(t)
	serverOnly := map[string]pulse.Option{
		"WithConnLimits":   pulse.WithConnLimits(pulse.ConnLimits{MaxConnAge: time.Minute}),
		"WithServerLimits": pulse.WithServerLimits(pulse.ServerLimits{MaxConns: 10}),
		"WithConnHook":     pulse.WithConnHook(func(pulse.ConnEvent) {}),
	}
	clientOnly := map[string]pulse.Option{
		"WithStateHook": pulse.WithStateHook(func(pulse.StateChange) {}),
		"WithBackoff":   pulse.WithBackoff(liveness.DefaultBackoff()),
		"WithFailFast":  pulse.WithFailFast(),
		"WithDialer":    pulse.WithDialer((&net.Dialer{}).DialContext),
	}
	ts := newTestServer(t, transportTCP)
	ts.register(t, new(Arith))
	for name, opt := range serverOnly {
		_, err := pulse.Dial(testContext(t), ts.addr, opt)
		want := "option " + name + " is for servers; Dial does not use it"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Dial(%s) = %v, want an error with %q", name, err, want)
		}
		cc, sc := net.Pipe()
		_, err = pulse.NewClient(cc, opt)
		sc.Close()
		want = "option " + name + " is for servers; NewClient does not use it"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewClient(%s) = %v, want an error with %q", name, err, want)
		}
		if srv, err := pulse.NewServer(opt); err != nil {
			t.Errorf("NewServer(%s) failed: %v", name, err)
		} else {
			srv.Close()
		}
	}
	for name, opt := range clientOnly {
		_, err := pulse.NewServer(opt)
		want := "option " + name + " is for clients; NewServer does not use it"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewServer(%s) = %v, want an error with %q", name, err, want)
		}
		c, err := pulse.Dial(testContext(t), ts.addr, opt, pulse.WithLogger(testLogger(t)))
		if err != nil {
			t.Errorf("Dial(%s) failed: %v", name, err)
		} else {
			c.Close()
		}
	}
}

// TestServeTLSOnPlainListener: a Server with WithTLS serves TLS on a plain
// listener (Serve) and a plain connection (ServeConn), never plaintext.
func TestServeTLSOnPlainListener(t *testing.T) {
	checkLeaks(t)
	serverTLS, clientTLS := newTLSConfigs(t)
	ts := newTestServer(t, transportTCP, pulse.WithTLS(serverTLS))
	ts.register(t, new(Arith))

	c := dialAddr(t, ts.addr, pulse.WithTLS(clientTLS))
	var r Reply
	if err := c.Call(testContext(t), "Arith.Add", Args{1, 2}, &r); err != nil || r.C != 3 {
		t.Fatalf("Call() over TLS served by Serve(plain listener) = %d, %v; want 3, nil", r.C, err)
	}
	_, err := pulse.Dial(testContext(t), ts.addr, pulse.WithLogger(testLogger(t)))
	if !errors.Is(err, pulse.ErrHandshake) || !strings.Contains(err.Error(), "dial with WithTLS") {
		t.Errorf("plaintext Dial() to Serve with WithTLS = %v, want a handshake error saying to dial with WithTLS", err)
	}

	// ServeConn with WithTLS, on a plain TCP connection.
	l := listenTCP(t)
	served := make(chan struct{})
	go func() {
		defer close(served)
		conn, err := l.Accept()
		if err != nil {
			return
		}
		ts.ServeConn(conn)
	}()
	c2 := dialAddr(t, l.Addr().String(), pulse.WithTLS(clientTLS))
	if err := c2.Call(testContext(t), "Arith.Add", Args{2, 2}, &r); err != nil || r.C != 4 {
		t.Fatalf("Call() over TLS served by ServeConn(plain conn) = %d, %v; want 4, nil", r.C, err)
	}
	c2.Close()
	recv(t, served, "ServeConn to return")
}

// TestTLSMismatchNamed: a TLS client at a plaintext port and a plaintext
// client at a TLS port each get an error that names the mismatch, and the
// server logs it.
func TestTLSMismatchNamed(t *testing.T) {
	checkLeaks(t)
	serverTLS, clientTLS := newTLSConfigs(t)

	t.Run("tls client, plaintext server", func(t *testing.T) {
		var log syncBuffer
		ts := newTestServer(t, transportTCP, pulse.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
		ts.register(t, new(Arith))
		_, err := pulse.Dial(testContext(t), ts.addr, pulse.WithTLS(clientTLS), pulse.WithLogger(testLogger(t)))
		if !errors.Is(err, pulse.ErrTLSMismatch) || !errors.Is(err, pulse.ErrHandshake) {
			t.Errorf("Dial() with TLS to a plaintext server = %v, want ErrTLSMismatch and ErrHandshake", err)
		}
		if err == nil || !strings.Contains(err.Error(), "speaks plaintext Pulse") {
			t.Errorf("Dial() with TLS to a plaintext server = %v, want it to say the server speaks plaintext Pulse", err)
		}
		waitFor(t, "the server to log the TLS client", func() bool {
			return strings.Contains(log.String(), "TLS client on a plaintext Pulse port")
		})
		checkServes(t, ts)
	})

	t.Run("plaintext client, tls server", func(t *testing.T) {
		var log syncBuffer
		srv, err := pulse.NewServer(pulse.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
		if err != nil {
			t.Fatal(err)
		}
		l := tls.NewListener(listenTCP(t), serverTLS)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(l) }()
		t.Cleanup(func() {
			srv.Close()
			<-errc
		})
		_, err = pulse.Dial(testContext(t), l.Addr().String(), pulse.WithLogger(testLogger(t)))
		if !errors.Is(err, pulse.ErrHandshake) || err == nil || !strings.Contains(err.Error(), "this port speaks TLS; dial with WithTLS") {
			t.Errorf("plaintext Dial() to a TLS server = %v, want a handshake error saying to dial with WithTLS", err)
		}
		waitFor(t, "the server to log the plaintext client", func() bool {
			return strings.Contains(log.String(), "plaintext Pulse client on a TLS port")
		})
	})

	t.Run("plaintext client reads a TLS record", func(t *testing.T) {
		// A TLS server that is not Pulse's answers with a TLS alert.
		l := listenTCP(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			conn.Write([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46}) // fatal alert, protocol_version
			io.Copy(io.Discard, conn)
		}()
		_, err := pulse.Dial(testContext(t), l.Addr().String(), pulse.WithLogger(testLogger(t)))
		if !errors.Is(err, pulse.ErrTLSMismatch) || !strings.Contains(err.Error(), "dial with WithTLS") {
			t.Errorf("plaintext Dial() answered with a TLS alert = %v, want ErrTLSMismatch saying to dial with WithTLS", err)
		}
		l.Close()
		recv(t, done, "the fake TLS server to end")
	})
}

// TestMaxConns: a connection over MaxConns gets its handshake refused with
// a message naming the limit; once a connection closes, a new one is taken.
func TestMaxConns(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP, pulse.WithServerLimits(pulse.ServerLimits{MaxConns: 2}))
	ts.register(t, new(Arith))
	c1 := ts.dial(t)
	ts.dial(t)
	_, err := ts.tryDial(t, nil)
	if !errors.Is(err, pulse.ErrHandshake) || !strings.Contains(err.Error(), "server has too many connections (limit 2") {
		t.Fatalf("third Dial() with MaxConns 2 = %v, want a refused handshake naming the limit", err)
	}
	var ce *pulse.ConnError
	if !errors.As(err, &ce) || ce.Code != pulse.CloseCode(wire.GoAwayHandshake) {
		t.Errorf("third Dial() = %#v, want a *ConnError with the code of GOAWAY %v", err, wire.GoAwayHandshake)
	}
	c1.Close()
	waitFor(t, "a connection to be taken once one closed", func() bool {
		c, err := ts.tryDial(t, nil)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// dialFrom dials addr from the loopback address local (such as
// 127.0.0.2): on Linux the whole of 127.0.0.0/8 is local.
func dialFrom(local string) pulse.Option {
	return pulse.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		return d.DialContext(ctx, network, addr)
	})
}

// TestMaxConnsPerIP: a second connection from one IP address is refused,
// naming the per-IP limit, while another address is served.
func TestMaxConnsPerIP(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP, pulse.WithServerLimits(pulse.ServerLimits{MaxConnsPerIP: 1}))
	ts.register(t, new(Arith))
	ts.dial(t, dialFrom("127.0.0.1"))
	_, err := ts.tryDial(t, nil, dialFrom("127.0.0.1"))
	if !errors.Is(err, pulse.ErrHandshake) || !strings.Contains(err.Error(), "limit 1 per IP address") {
		t.Fatalf("second Dial() from one IP with MaxConnsPerIP 1 = %v, want a refused handshake naming the per-IP limit", err)
	}
	c := ts.dial(t, dialFrom("127.0.0.2"))
	var r Reply
	if err := c.Call(testContext(t), "Arith.Add", Args{1, 1}, &r); err != nil {
		t.Errorf("Call() from another IP = %v", err)
	}
}

// TestMaxPendingHandshakes: connections whose handshake has not finished
// count as pending; over the limit (total or per IP) a new connection is
// closed at once, and the refusals are logged with a count.
func TestMaxPendingHandshakes(t *testing.T) {
	checkLeaks(t)
	var log syncBuffer
	ts := newTestServer(t, transportTCP,
		pulse.WithLogger(slog.New(slog.NewTextHandler(&log, nil))),
		pulse.WithHandshakeTimeout(time.Minute),
		pulse.WithServerLimits(pulse.ServerLimits{MaxPendingHandshakes: 3, MaxPendingHandshakesPerIP: 2}))
	ts.register(t, new(Arith))

	// Two silent connections from 127.0.0.1 fill its share. The server
	// accepts in the order the connections were made, so the next one
	// from that address is over the limit.
	silent := []net.Conn{dialRaw(t, ts.addr), dialRaw(t, ts.addr)}
	over := dialRaw(t, ts.addr)
	if n, err := over.Read(make([]byte, 1)); err == nil {
		t.Fatalf("Read() on a connection over the per-IP pending limit = %d, nil; want it closed", n)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection over the per-IP pending limit was not closed within %v", defaultTestTimeout)
	}
	// Another address has room for one more (3 in all), then no one has.
	rawFrom(t, "127.0.0.2", ts.addr)
	_, err := ts.tryDial(t, nil, dialFrom("127.0.0.3"))
	if err == nil {
		t.Fatal("Dial() with 3 handshakes pending and MaxPendingHandshakes 3 succeeded")
	}
	waitFor(t, "the refusals to be logged", func() bool {
		return strings.Contains(log.String(), "too many pending handshakes") && strings.Contains(log.String(), "refused_total=")
	})
	// A handshake that ends frees its place.
	silent[0].Close()
	silent[1].Close()
	waitFor(t, "a new connection to be served once pending ones closed", func() bool {
		c, err := ts.tryDial(t, nil)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// rawFrom opens a plain TCP connection to addr from the loopback address
// local; it is closed in the cleanup.
func rawFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: defaultTestTimeout}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("Dial(%s) from %s failed: %v", addr, local, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestMaxHandlers: the server-wide bound on running handlers refuses a
// call over it with ErrBusy, naming the limit, whichever connection it
// comes from; the connection stays usable.
func TestMaxHandlers(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP, pulse.WithServerLimits(pulse.ServerLimits{MaxHandlers: 2}))
	b := newBlocker(t)
	ts.register(t, b)
	ts.register(t, new(Arith))
	c1, c2 := ts.dial(t), ts.dial(t)
	call1 := goCall(c1, "Blocker.Wait", 1, new(int))
	call2 := goCall(c2, "Blocker.Wait", 2, new(int))
	b.waitStarted(t, 2)
	var r Reply
	err := c1.Call(testContext(t), "Arith.Add", Args{1, 1}, &r)
	if !errors.Is(err, pulse.ErrBusy) || !strings.Contains(err.Error(), "server-wide limit") {
		t.Errorf("Call() with 2 handlers running and MaxHandlers 2 = %v, want ErrBusy naming the server-wide limit", err)
	}
	b.Release()
	for _, call := range []*pulse.Call{call1, call2} {
		if err := waitCall(t, call); err != nil {
			t.Errorf("blocked call = %v", err)
		}
	}
	if err := c2.Call(testContext(t), "Arith.Add", Args{1, 1}, &r); err != nil || r.C != 2 {
		t.Errorf("Call() once the handlers returned = %d, %v; want 2, nil", r.C, err)
	}
}

// TestMaxHandlersKeepsRoomForLight: one connection sending as many calls
// as it may cannot take the whole server-wide bound: its calls past three
// quarters of it are refused with ErrBusy, and another connection's calls
// still run.
func TestMaxHandlersKeepsRoomForLight(t *testing.T) {
	checkLeaks(t)
	const limit, heavy = 64, 48 // heavy: three quarters
	ts := newTestServer(t, transportTCP, pulse.WithServerLimits(pulse.ServerLimits{MaxHandlers: limit}))
	b := newBlocker(t)
	ts.register(t, b)
	ts.register(t, new(Arith))
	c1, c2 := ts.dial(t), ts.dial(t)
	calls := make([]*pulse.Call, 2*limit)
	for i := range calls {
		calls[i] = goCall(c1, "Blocker.Wait", i, new(int))
	}
	b.waitStarted(t, heavy)
	waitFor(t, "the calls past three quarters to be refused", func() bool {
		done := 0
		for _, call := range calls {
			done += len(call.Done)
		}
		return done == len(calls)-heavy
	})
	for i := range 8 {
		var r Reply
		if err := c2.Call(testContext(t), "Arith.Add", Args{i, 1}, &r); err != nil || r.C != i+1 {
			t.Fatalf("a light connection's call with %d handlers running = %d, %v; want %d, nil", heavy, r.C, err, i+1)
		}
	}
	b.Release()
	ran := 0
	for _, call := range calls {
		if err := waitCall(t, call); err == nil {
			ran++
		} else if !errors.Is(err, pulse.ErrBusy) {
			t.Errorf("a call = %v, want success or ErrBusy", err)
		}
	}
	if ran != heavy {
		t.Errorf("%d of the heavy connection's %d calls ran, want %d (three quarters of MaxHandlers %d)", ran, len(calls), heavy, limit)
	}
}

// countingListener signals on reads each time a connection it accepted
// has read its first bytes.
type countingListener struct {
	net.Listener
	read chan struct{}
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstReadConn{Conn: c, read: l.read}, nil
}

type firstReadConn struct {
	net.Conn
	once sync.Once
	read chan struct{}
}

func (c *firstReadConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() { c.read <- struct{}{} })
	}
	return n, err
}

// TestPendingHandshakeMemory: a pending handshake that has received part
// of its HELLO holds at most a HELLO-sized buffer, not a full read buffer
// (32 KiB). Measured as live heap per connection over many real TCP
// connections, each with the header and one byte of its HELLO's payload
// received, with a generous factor.
func TestPendingHandshakeMemory(t *testing.T) {
	checkLeaks(t)
	const (
		n = 200
		// bound per connection: the HELLO payload buffer (4 KiB) plus the
		// connection's own structures, with room to spare; a 32 KiB read
		// buffer per connection does not fit.
		bound = 4<<10 + 8<<10
	)
	srv, err := pulse.NewServer(pulse.WithLogger(testLogger(t)), pulse.WithHandshakeTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: listenTCP(t), read: make(chan struct{}, n)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-errc
	})
	// The header of a HELLO announcing 100 bytes, and its first byte.
	partial := append(wire.AppendHeader(nil, wire.TypeHello, wire.FlagEnd, 0, 100), wire.Magic[0])

	before := liveHeap()
	for range n {
		conn := dialRaw(t, l.Addr().String())
		if _, err := conn.Write(partial); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		recv(t, l.read, "the server to read a connection's first bytes")
	}
	after := liveHeap()
	per := (int64(after) - int64(before)) / n
	t.Logf("live heap per pending handshake: %d bytes", per)
	if per > bound {
		t.Errorf("live heap per pending handshake = %d bytes, want at most %d", per, bound)
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestConnAgeNoGrace: with NoGrace and NoJitter, a connection is told to
// go away at its age and closed at once, even with a call running: the
// call fails instead of finishing within a grace.
func TestConnAgeNoGrace(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t, pulse.WithConnLimits(pulse.ConnLimits{
		MaxConnAge: 200 * time.Millisecond, MaxConnAgeJitter: pulse.NoJitter, MaxConnAgeGrace: pulse.NoGrace}))
	b := newBlocker(t)
	ts.register(t, b)
	c := dialAddr(t, addr)
	call := goCall(c, "Blocker.Wait", 1, new(int))
	b.waitStarted(t, 1)
	err := waitCall(t, call)
	var ce *pulse.ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("call running at the connection's age with NoGrace = %v, want a *ConnError", err)
	}
	recv(t, b.ended, "the handler's context to end")
}

// TestConnLimitsValidation: the sentinels are accepted, other negative
// values refused with the field's name.
func TestConnLimitsValidation(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		l    pulse.ConnLimits
		want string // "" for valid
	}{
		{pulse.ConnLimits{MaxConnAge: time.Second, MaxConnAgeGrace: pulse.NoGrace, MaxConnAgeJitter: pulse.NoJitter}, ""},
		{pulse.ConnLimits{MaxConnAge: time.Second, MaxConnAgeJitter: 0.5}, ""},
		{pulse.ConnLimits{MaxConnAgeGrace: -time.Second}, "MaxConnAgeGrace"},
		{pulse.ConnLimits{MaxConnAgeJitter: 1}, "MaxConnAgeJitter"},
		{pulse.ConnLimits{MaxConnAgeJitter: -0.5}, "MaxConnAgeJitter"},
		{pulse.ConnLimits{MaxConnAge: -1}, "MaxConnAge"},
	} {
		srv, err := pulse.NewServer(pulse.WithConnLimits(tc.l))
		if srv != nil {
			srv.Close()
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("NewServer(WithConnLimits(%+v)) = %v, want error with %q", tc.l, err, tc.want)
		}
	}
	for _, l := range []pulse.ServerLimits{{MaxConns: -2}, {MaxHandlers: -5}} {
		if _, err := pulse.NewServer(pulse.WithServerLimits(l)); err == nil || !strings.Contains(err.Error(), "ServerLimits.") {
			t.Errorf("NewServer(WithServerLimits(%+v)) = %v, want an error naming the field", l, err)
		}
	}
	srv, err := pulse.NewServer(pulse.WithServerLimits(pulse.ServerLimits{MaxConns: pulse.NoLimit, MaxHandlers: pulse.NoLimit}))
	if err != nil {
		t.Errorf("NewServer(WithServerLimits(NoLimit)) = %v", err)
	} else {
		srv.Close()
	}
}
