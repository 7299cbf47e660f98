package pulse_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
)

// Timeouts. defaultTestTimeout bounds anything that should happen promptly;
// it is generous so that a slow -race run does not fail, while a hang still
// fails the test instead of the whole binary.
const (
	defaultTestTimeout = 10 * time.Second
	// leakCheckTimeout is how long the leak check waits for Pulse
	// goroutines to exit after everything was closed.
	leakCheckTimeout = 5 * time.Second
	// shortHandshakeTimeout is the handshake timeout of tests that wait
	// for a silent peer to be dropped.
	shortHandshakeTimeout = 200 * time.Millisecond
)

// ---- Transports ----

// transport is a kind of connection between a test client and server.
type transport string

const (
	transportPipe transport = "pipe" // net.Pipe, served with ServeConn
	transportTCP  transport = "tcp"  // TCP on 127.0.0.1, served with Serve
	transportTLS  transport = "tls"  // TLS over TCP on 127.0.0.1
)

var allTransports = []transport{transportPipe, transportTCP, transportTLS}

// testConnTypes runs f once per transport, each in its own subtest with a
// goroutine-leak check (yamux's testConnTypes).
func testConnTypes(t *testing.T, f func(t *testing.T, tr transport)) {
	t.Helper()
	for _, tr := range allTransports {
		t.Run(string(tr), func(t *testing.T) {
			checkLeaks(t)
			f(t, tr)
		})
	}
}

// testServer is a Pulse server serving one transport. It is closed in the
// test's cleanup.
type testServer struct {
	*pulse.Server
	tr        transport
	addr      string      // listener address, for TCP and TLS
	clientTLS *tls.Config // for TLS

	serveOnce sync.Once
	serveErrc chan error
	serveErr  error
}

// newTestServer returns a server with opts (and a logger writing to t)
// serving tr. Services can be registered on it before dialing.
func newTestServer(t *testing.T, tr transport, opts ...pulse.Option) *testServer {
	t.Helper()
	opts = append([]pulse.Option{pulse.WithLogger(testLogger(t))}, opts...)
	srv, err := pulse.NewServer(opts...)
	if err != nil {
		t.Fatalf("NewServer() failed: %v", err)
	}
	ts := &testServer{Server: srv, tr: tr}
	if tr != transportPipe {
		l := listenTCP(t)
		if tr == transportTLS {
			var serverTLS *tls.Config
			serverTLS, ts.clientTLS = newTLSConfigs(t)
			l = tls.NewListener(l, serverTLS)
		}
		ts.addr = l.Addr().String()
		ts.serveErrc = make(chan error, 1)
		go func() { ts.serveErrc <- srv.Serve(l) }()
	}
	t.Cleanup(func() {
		srv.Close()
		if ts.serveErrc != nil {
			if err := ts.waitServe(t); !errors.Is(err, pulse.ErrServerClosed) {
				t.Errorf("Serve() = %v, want %v", err, pulse.ErrServerClosed)
			}
		}
	})
	return ts
}

// waitServe waits for Serve to return and returns its error.
func (ts *testServer) waitServe(t *testing.T) error {
	t.Helper()
	ts.serveOnce.Do(func() {
		select {
		case ts.serveErr = <-ts.serveErrc:
		case <-time.After(defaultTestTimeout):
			ts.serveErr = errors.New("Serve did not return")
		}
	})
	return ts.serveErr
}

// register registers rcvr on the server, failing the test on error.
func (ts *testServer) register(t *testing.T, rcvr any) {
	t.Helper()
	if err := ts.Register(rcvr); err != nil {
		t.Fatalf("Register(%T) failed: %v", rcvr, err)
	}
}

// dial connects a new client to the server, failing the test on error.
// The client is closed in the test's cleanup.
func (ts *testServer) dial(t *testing.T, opts ...pulse.Option) *pulse.Client {
	t.Helper()
	c, err := ts.tryDial(t, nil, opts...)
	if err != nil {
		t.Fatalf("dialing the %s server failed: %v", ts.tr, err)
	}
	return c
}

// dialWrapped is dial with the client's side of the connection wrapped by
// wrap (below TLS, for the TLS transport).
func (ts *testServer) dialWrapped(t *testing.T, wrap func(net.Conn) net.Conn, opts ...pulse.Option) *pulse.Client {
	t.Helper()
	c, err := ts.tryDial(t, wrap, opts...)
	if err != nil {
		t.Fatalf("dialing the %s server failed: %v", ts.tr, err)
	}
	return c
}

func (ts *testServer) tryDial(t *testing.T, wrap func(net.Conn) net.Conn, opts ...pulse.Option) (*pulse.Client, error) {
	t.Helper()
	opts = append([]pulse.Option{pulse.WithLogger(testLogger(t))}, opts...)
	var (
		c   *pulse.Client
		err error
	)
	switch ts.tr {
	case transportPipe:
		cc, sc := net.Pipe()
		go ts.ServeConn(sc)
		var conn net.Conn = cc
		if wrap != nil {
			conn = wrap(cc)
		}
		c, err = pulse.NewClient(conn, opts...)
	default:
		if ts.tr == transportTLS {
			opts = append(opts, pulse.WithTLS(ts.clientTLS))
		}
		if wrap != nil {
			opts = append(opts, pulse.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				conn, err := d.DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return wrap(conn), nil
			}))
		}
		ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
		defer cancel()
		c, err = pulse.Dial(ctx, ts.addr, opts...)
	}
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// listenTCP listens on a free port of 127.0.0.1. The listener is closed in
// the test's cleanup (closing it twice is harmless).
func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() failed: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// newTLSConfigs returns a server config with a fresh self-signed ECDSA
// certificate for 127.0.0.1, and a client config that trusts it.
func newTLSConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("ecdsa.GenerateKey() failed: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pulse test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("x509.CreateCertificate() failed: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("x509.ParseCertificate() failed: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}

// ---- Logging ----

// testLogger returns a logger that writes to t.Log until the test's
// cleanup, and discards afterwards, so that a goroutine logging late never
// makes the testing package panic.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for checking what
// a logger wrote.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ---- Waiting ----

// recv receives from ch or fails the test after defaultTestTimeout.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(defaultTestTimeout):
		t.Fatalf("timed out after %v waiting for %s", defaultTestTimeout, what)
		panic("unreachable")
	}
}

// waitFor polls cond until it holds, failing the test after
// defaultTestTimeout. It is for "eventually" conditions that have no event
// to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(defaultTestTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", defaultTestTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testContext returns a context bounded by defaultTestTimeout.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
	t.Cleanup(cancel)
	return ctx
}

// ---- Services ----

// Args and Reply are the arguments and reply of Arith's methods.
type Args struct{ A, B int }

type Reply struct{ C int }

// Arith covers the method shapes: value and pointer arguments, with and
// without a context, builtin types, and a method that returns an error.
type Arith struct {
	calls atomic.Int64 // calls of every method
}

func (a *Arith) Add(args Args, reply *Reply) error {
	a.calls.Add(1)
	reply.C = args.A + args.B
	return nil
}

func (a *Arith) Mul(args *Args, reply *Reply) error {
	a.calls.Add(1)
	reply.C = args.A * args.B
	return nil
}

func (a *Arith) AddCtx(ctx context.Context, args Args, reply *Reply) error {
	a.calls.Add(1)
	if ctx == nil || pulse.PeerFromContext(ctx) == nil {
		return errors.New("no peer in the handler's context")
	}
	reply.C = args.A + args.B
	return nil
}

func (a *Arith) MulCtx(ctx context.Context, args *Args, reply *Reply) error {
	a.calls.Add(1)
	if ctx == nil || pulse.PeerFromContext(ctx) == nil {
		return errors.New("no peer in the handler's context")
	}
	reply.C = args.A * args.B
	return nil
}

func (a *Arith) Div(args Args, reply *Reply) error {
	a.calls.Add(1)
	if args.B == 0 {
		return errors.New("divide by zero")
	}
	reply.C = args.A / args.B
	return nil
}

// SlowAdd is Add with a delay that decreases as args.A grows (modulo 8),
// so that concurrent calls complete out of order.
func (a *Arith) SlowAdd(args Args, reply *Reply) error {
	a.calls.Add(1)
	time.Sleep(time.Duration(7-args.A%8) * 200 * time.Microsecond)
	reply.C = args.A + args.B
	return nil
}

// Echo returns its argument.
func (a *Arith) Echo(s string, reply *string) error {
	a.calls.Add(1)
	*reply = s
	return nil
}

// Make returns a string of n bytes (pattern(n)).
func (a *Arith) Make(n int, reply *string) error {
	a.calls.Add(1)
	*reply = pattern(n)
	return nil
}

// Deadline reports the handler's context deadline.
func (a *Arith) Deadline(ctx context.Context, _ int, reply *DeadlineReply) error {
	a.calls.Add(1)
	dl, ok := ctx.Deadline()
	reply.Has = ok
	if ok {
		reply.UnixNano = dl.UnixNano()
	}
	return nil
}

type DeadlineReply struct {
	Has      bool
	UnixNano int64
}

// Value has a value receiver.
type Value struct{}

func (Value) Negate(n int, reply *int) error {
	*reply = -n
	return nil
}

// pattern returns n bytes of printable text that differ along the string,
// so that misordered chunks are noticed.
func pattern(n int) string {
	// Byte i is 'a'+(i/7+i)%26, which repeats every 182 bytes.
	const period = 7 * 26
	var block [period]byte
	for i := range block {
		block[i] = 'a' + byte((i/7+i)%26)
	}
	return strings.Repeat(string(block[:]), n/period+1)[:n]
}

// Blocker's Wait blocks until the test releases it (all calls at once) or
// its context ends. A handler whose context ended keeps holding until the
// release, so that its own reply never races the caller's cancellation.
type Blocker struct {
	calls   atomic.Int64
	started chan int   // receives n for each call of Wait
	ended   chan error // receives the handler's context error when it ended
	release chan struct{}
	once    sync.Once
}

// newBlocker returns a Blocker released in the test's cleanup (before the
// servers created earlier are closed).
func newBlocker(t *testing.T) *Blocker {
	b := &Blocker{
		started: make(chan int, 1024),
		ended:   make(chan error, 1024),
		release: make(chan struct{}),
	}
	t.Cleanup(b.Release)
	return b
}

// Release lets every Wait return, now and later.
func (b *Blocker) Release() { b.once.Do(func() { close(b.release) }) }

func (b *Blocker) Wait(ctx context.Context, n int, reply *int) error {
	b.calls.Add(1)
	b.started <- n
	select {
	case <-b.release:
		*reply = n
		return nil
	case <-ctx.Done():
		b.ended <- ctx.Err()
		<-b.release
		return ctx.Err()
	}
}

// waitStarted waits until n calls of Wait have started.
func (b *Blocker) waitStarted(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		recv(t, b.started, fmt.Sprintf("handler %d of %d to start", i+1, n))
	}
}

// Inbox records the notifications it receives.
type Inbox struct {
	got chan string
}

func newInbox() *Inbox { return &Inbox{got: make(chan string, 64)} }

func (in *Inbox) Push(msg string, _ *struct{}) error {
	in.got <- msg
	return nil
}

// ---- Calls ----

// goCall starts a call with no deadline.
func goCall(c *pulse.Client, method string, args, reply any) *pulse.Call {
	return c.Go(context.Background(), method, args, reply, nil)
}

// waitCall waits for call to complete and returns its error.
func waitCall(t *testing.T, call *pulse.Call) error {
	t.Helper()
	return recv(t, call.Done, call.ServiceMethod+" to complete").Error
}

// ---- Fault injection ----

// connHook wraps the client's side of one connection (below TLS) so that
// a test can stall its writes after some bytes or break it.
type connHook struct {
	mu   sync.Mutex
	conn net.Conn // the wrapped conn, once dialed

	armed    atomic.Bool
	limit    atomic.Int64 // block writes once written reaches this
	written  atomic.Int64 // bytes written since blockAfter
	holdNext atomic.Bool  // hold the next write after it went out

	reached     chan struct{} // closed when a write is blocked
	release     chan struct{} // closed to let writes go on
	closed      chan struct{} // closed by Close
	reachedOnce sync.Once
	releaseOnce sync.Once
	closeOnce   sync.Once
}

func newConnHook(t *testing.T) *connHook {
	h := &connHook{
		reached: make(chan struct{}),
		release: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	t.Cleanup(h.unblock)
	return h
}

// wrap is the function to give dialWrapped.
func (h *connHook) wrap(c net.Conn) net.Conn {
	h.mu.Lock()
	h.conn = c
	h.mu.Unlock()
	return &hookedConn{Conn: c, h: h}
}

// blockAfter makes writes block, once n more bytes have been written,
// until unblock.
func (h *connHook) blockAfter(n int64) {
	h.written.Store(0)
	h.limit.Store(n)
	h.armed.Store(true)
}

// holdAfterNextWrite makes the next write go out whole and then not
// return until unblock, even if the connection is closed meanwhile: the
// writer looks stalled after its write system call.
func (h *connHook) holdAfterNextWrite() { h.holdNext.Store(true) }

func (h *connHook) unblock() { h.releaseOnce.Do(func() { close(h.release) }) }

// closeNow closes the underlying connection, as a network failure would.
func (h *connHook) closeNow() {
	h.mu.Lock()
	c := h.conn
	h.mu.Unlock()
	h.closeOnce.Do(func() { close(h.closed) })
	if c != nil {
		c.Close()
	}
}

type hookedConn struct {
	net.Conn
	h *connHook
}

func (c *hookedConn) Write(p []byte) (int, error) {
	h := c.h
	if h.holdNext.CompareAndSwap(true, false) {
		n, err := c.Conn.Write(p)
		h.reachedOnce.Do(func() { close(h.reached) })
		<-h.release
		return n, err
	}
	if h.armed.Load() && h.written.Load() >= h.limit.Load() {
		h.reachedOnce.Do(func() { close(h.reached) })
		select {
		case <-h.release:
		case <-h.closed:
			return 0, net.ErrClosed
		}
	}
	n, err := c.Conn.Write(p)
	h.written.Add(int64(n))
	return n, err
}

func (c *hookedConn) Close() error {
	c.h.closeOnce.Do(func() { close(c.h.closed) })
	return c.Conn.Close()
}
