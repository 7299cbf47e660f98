package pulse_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/internal/faultproxy"
	"github.com/pulse-rpc/pulse/liveness"
	"github.com/pulse-rpc/pulse/wire"
)

// Liveness tests run real TCP on loopback, with the fault proxy between
// client and server where the path must fail without a FIN. Heartbeat
// settings are scaled down (tens to hundreds of milliseconds) so that the
// tests take seconds. Detection times are logged; they are checked only
// against generous bounds (detectionSlack), since the machines are shared.
const detectionSlack = 2 * time.Second

// fastHeartbeat is a scaled-down production setting.
var fastHeartbeat = pulse.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, MinInterval: 10 * time.Millisecond}

// stateRecorder collects a client's state changes.
type stateRecorder struct {
	mu      sync.Mutex
	changes []pulse.StateChange
	ch      chan pulse.StateChange
}

func newStateRecorder() *stateRecorder {
	return &stateRecorder{ch: make(chan pulse.StateChange, 1024)}
}

func (r *stateRecorder) hook(sc pulse.StateChange) {
	r.mu.Lock()
	r.changes = append(r.changes, sc)
	r.mu.Unlock()
	r.ch <- sc
}

// waitState waits for a change to state to, returning it.
func (r *stateRecorder) waitState(t *testing.T, to pulse.ConnState) pulse.StateChange {
	t.Helper()
	for {
		sc := recv(t, r.ch, "client state "+to.String())
		if sc.To == to {
			return sc
		}
	}
}

// newTCPServer starts a server on loopback with opts and returns it and
// its address.
func newTCPServer(t *testing.T, opts ...pulse.Option) (*testServer, string) {
	t.Helper()
	ts := newTestServer(t, transportTCP, opts...)
	return ts, ts.addr
}

// dialAddr dials addr with opts; the client is closed in cleanup.
func dialAddr(t *testing.T, addr string, opts ...pulse.Option) *pulse.Client {
	t.Helper()
	opts = append([]pulse.Option{pulse.WithLogger(testLogger(t))}, opts...)
	c, err := pulse.Dial(testContext(t), addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%s) failed: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(target)
	if err != nil {
		t.Fatalf("faultproxy.New() failed: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// countingConn counts the bytes a connection reads and writes.
type countingConn struct {
	net.Conn
	read, written *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// TestIdleHeartbeatSteadyState checks the writer-idle rule on an idle
// connection: one PING from the dialer and one PONG from the acceptor per
// interval, nothing else, and the connection stays up.
func TestIdleHeartbeatSteadyState(t *testing.T) {
	checkLeaks(t)
	hb := pulse.Heartbeat{Interval: 40 * time.Millisecond, Timeout: 400 * time.Millisecond, MinInterval: 10 * time.Millisecond}
	_, addr := newTCPServer(t, pulse.WithHeartbeat(hb))
	var read, written atomic.Int64
	c := dialAddr(t, addr, pulse.WithHeartbeat(hb), pulse.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: conn, read: &read, written: &written}, nil
	}))
	const hold = 1200 * time.Millisecond
	r0, w0 := read.Load(), written.Load()
	start := time.Now()
	time.Sleep(hold) // real idle time is what is measured here
	elapsed := time.Since(start)
	pings := (written.Load() - w0) / (wire.HeaderSize + wire.PingSize)
	pongs := (read.Load() - r0) / (wire.HeaderSize + wire.PingSize)
	intervals := int64(elapsed / hb.Interval)
	t.Logf("%v idle at interval %v: %d PINGs sent, %d frames received, %d intervals", elapsed, hb.Interval, pings, pongs, intervals)
	if pings < intervals/2 || pings > intervals+1 {
		t.Errorf("client sent %d PINGs in %d intervals, want about one per interval", pings, intervals)
	}
	if pongs > pings+1 {
		t.Errorf("client received %d frames for %d PINGs: the server pinged too, want only PONGs", pongs, pings)
	}
	st := c.Stats()
	if st.State != pulse.StateReady || st.Connects != 1 {
		t.Errorf("Stats() = state %v, %d connects; want ready, 1", st.State, st.Connects)
	}
	if st.RTT <= 0 {
		t.Errorf("Stats().RTT = %v, want > 0 after heartbeats", st.RTT)
	}
	if st.Interval != hb.Interval {
		t.Errorf("Stats().Interval = %v, want the granted %v", st.Interval, hb.Interval)
	}
}

// TestSeedScenario is the long-connection scenario Pulse grew from: a
// client sends 10 messages a little apart, then falls silent (its
// heartbeats are off) for longer than the server's deadline; the server
// closes it during the pause, and the client must reconnect to continue.
// A client that keeps its heartbeats stays connected all along.
func TestSeedScenario(t *testing.T) {
	checkLeaks(t)
	const deadline = 300 * time.Millisecond
	ts, addr := newTCPServer(t, pulse.WithHeartbeat(pulse.Heartbeat{Interval: 50 * time.Millisecond, Timeout: deadline, MinInterval: 10 * time.Millisecond}))
	ts.register(t, new(Arith))

	silentRec, healthyRec := newStateRecorder(), newStateRecorder()
	silent := dialAddr(t, addr, pulse.WithHeartbeat(pulse.Heartbeat{Interval: -1, Timeout: 5 * time.Second}), pulse.WithStateHook(silentRec.hook))
	healthy := dialAddr(t, addr, pulse.WithHeartbeat(pulse.Heartbeat{Interval: 50 * time.Millisecond, Timeout: time.Second}), pulse.WithStateHook(healthyRec.hook))
	ctx := testContext(t)

	var pause time.Time
	for i := 0; i < 10; i++ {
		if i > 0 {
			time.Sleep(deadline / 3) // the original's 2 s apart, scaled
		}
		var r Reply
		if err := silent.Call(ctx, "Arith.Add", Args{A: i, B: 1}, &r); err != nil || r.C != i+1 {
			t.Fatalf("message %d: Call() = %v, %v; want %d, nil", i, r.C, err, i+1)
		}
		pause = time.Now()
	}
	if st := silent.Stats(); st.Connects != 1 {
		t.Fatalf("the messages took %d connections, want 1: every message must push the deadline", st.Connects)
	}
	// The pause: no calls, no heartbeats. The server reaps the client
	// after its deadline and tells it why with GOAWAY.
	sc := silentRec.waitState(t, pulse.StateIdle)
	reaped := time.Since(pause)
	t.Logf("silent client reaped %v into the pause (deadline %v): %v", reaped, deadline, sc.Err)
	var ce *pulse.ConnError
	if !errors.As(sc.Err, &ce) || ce.Code != pulse.ClosePeerSilent {
		t.Errorf("reap reason = %v, want a GOAWAY with code %v", sc.Err, pulse.ClosePeerSilent)
	}
	if reaped < deadline-20*time.Millisecond || reaped > deadline+detectionSlack {
		t.Errorf("reaped after %v, want about %v", reaped, deadline)
	}
	// The client reconnects and goes on.
	var r Reply
	if err := silent.Call(ctx, "Arith.Add", Args{A: 1, B: 1}, &r); err != nil || r.C != 2 {
		t.Fatalf("Call() after the pause = %v, %v; want 2, nil", r.C, err)
	}
	if st := silent.Stats(); st.Connects != 2 {
		t.Errorf("silent client made %d connections, want 2", st.Connects)
	}
	// The healthy client never lost its connection.
	if st := healthy.Stats(); st.Connects != 1 || st.State != pulse.StateReady {
		t.Errorf("healthy client: %d connections, state %v; want 1, ready", st.Connects, st.State)
	}
	if err := healthy.Call(ctx, "Arith.Add", Args{A: 2, B: 2}, &r); err != nil {
		t.Errorf("healthy client Call() = %v", err)
	}
}

// TestShortConnectionMaxAge is the short-connection scenario: the server
// gives each connection an age limit; clients calling all along move to
// new connections without a failed call.
func TestShortConnectionMaxAge(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t, pulse.WithConnLimits(pulse.ConnLimits{MaxConnAge: 150 * time.Millisecond, MaxConnAgeGrace: time.Second}))
	ts.register(t, new(Arith))
	c := dialAddr(t, addr)
	ctx := testContext(t)
	var wg sync.WaitGroup
	var failed atomic.Int64
	stop := time.Now().Add(800 * time.Millisecond)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop) && i < 100000; i++ {
				var r Reply
				if err := c.Call(ctx, "Arith.Add", Args{A: i, B: 1}, &r); err != nil || r.C != i+1 {
					t.Errorf("Call() = %v, %v", r.C, err)
					failed.Add(1)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := c.Stats()
	t.Logf("%d connections over 800ms at max age 150ms ±10%%", st.Connects)
	if st.Connects < 3 {
		t.Errorf("Stats().Connects = %d, want at least 3: connections must be cycled", st.Connects)
	}
}

// TestMaxConnIdle closes a connection that carries no call, with GOAWAY;
// the client's next call goes over a new connection.
func TestMaxConnIdle(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t, pulse.WithConnLimits(pulse.ConnLimits{MaxConnIdle: 150 * time.Millisecond}))
	ts.register(t, new(Arith))
	rec := newStateRecorder()
	c := dialAddr(t, addr, pulse.WithStateHook(rec.hook))
	ctx := testContext(t)
	var r Reply
	if err := c.Call(ctx, "Arith.Add", Args{A: 1, B: 1}, &r); err != nil {
		t.Fatal(err)
	}
	sc := rec.waitState(t, pulse.StateIdle)
	var ce *pulse.ConnError
	if !errors.As(sc.Err, &ce) || ce.Code != pulse.CloseIdle {
		t.Errorf("idle because of %v, want GOAWAY %v", sc.Err, pulse.CloseIdle)
	}
	// Idle: no connection is dialed until a call needs one.
	time.Sleep(100 * time.Millisecond)
	if st := c.Stats(); st.State != pulse.StateIdle || st.Dials != 1 {
		t.Errorf("after the idle GOAWAY: state %v, %d dials; want idle, 1 (no dial before a call)", st.State, st.Dials)
	}
	if err := c.Call(ctx, "Arith.Add", Args{A: 1, B: 1}, &r); err != nil {
		t.Errorf("Call() after the idle GOAWAY = %v", err)
	}
	if st := c.Stats(); st.Connects < 2 {
		t.Errorf("Connects = %d, want 2", st.Connects)
	}
}

// TestBlackholeDetection cuts the path without a FIN or RST (the proxy
// drops every byte both ways): both ends must declare the other dead
// within the timeout, the pending call must fail saying it may have run,
// and the client must reconnect once the path heals.
func TestBlackholeDetection(t *testing.T) {
	checkLeaks(t)
	for _, det := range []pulse.DetectorKind{pulse.DetectorFixed, pulse.DetectorPhi} {
		t.Run(det.String(), func(t *testing.T) {
			hb := fastHeartbeat
			hb.Detector = det
			ts, addr := newTCPServer(t, pulse.WithHeartbeat(hb))
			b := newBlocker(t)
			ts.register(t, b)
			p := newProxy(t, addr)
			rec := newStateRecorder()
			c := dialAddr(t, p.Addr(), pulse.WithHeartbeat(hb), pulse.WithStateHook(rec.hook))
			call := goCall(c, "Blocker.Wait", 1, new(int))
			b.waitStarted(t, 1)
			waitFor(t, "the server to list the peer", func() bool { return len(ts.Peers()) == 1 })
			peer := ts.Peers()[0]

			p.Blackhole(faultproxy.Both)
			cut := time.Now()
			err := waitCall(t, call)
			clientDetect := time.Since(cut)
			var ce *pulse.ConnError
			if !errors.As(err, &ce) || !errors.Is(err, pulse.ErrPeerSilent) || !ce.Sent {
				t.Fatalf("pending call error = %v, want a *ConnError matching ErrPeerSilent with Sent=true", err)
			}
			recv(t, peer.Done(), "the server to reap the connection")
			serverDetect := time.Since(cut)
			t.Logf("%v detector, timeout %v: client detected after %v, server after %v", det, hb.Timeout, clientDetect, serverDetect)
			for side, d := range map[string]time.Duration{"client": clientDetect, "server": serverDetect} {
				if d > hb.Timeout+detectionSlack {
					t.Errorf("%s detected after %v, want within %v + slack", side, d, hb.Timeout)
				}
			}
			if !errors.Is(peer.Err(), pulse.ErrPeerSilent) {
				t.Errorf("server side close reason = %v, want ErrPeerSilent", peer.Err())
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("error %v is not a net.Error with Timeout() true", err)
			}

			// Heal: the client reconnects through the proxy.
			p.Heal()
			b.Release()
			var n int
			if err := c.Call(testContext(t), "Blocker.Wait", 2, &n); err != nil || n != 2 {
				t.Fatalf("Call() after healing = %v, %v; want 2, nil", n, err)
			}
			if st := c.Stats(); st.Connects < 2 {
				t.Errorf("Connects = %d after healing, want 2", st.Connects)
			}
		})
	}
}

// BigReply replies with n bytes.
type BigReply struct{}

func (BigReply) Get(n int, reply *[]byte) error {
	*reply = make([]byte, n)
	for i := range *reply {
		(*reply)[i] = byte(i)
	}
	return nil
}

// TestSlowLinkNoFalseDetection carries a reply many times larger than the
// throttled link delivers in Timeout, with short heartbeat settings: the
// bytes keep arriving, so neither end may declare the other dead, and the
// transfer completes.
func TestSlowLinkNoFalseDetection(t *testing.T) {
	checkLeaks(t)
	hb := pulse.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 500 * time.Millisecond, MinInterval: 10 * time.Millisecond, Detector: pulse.DetectorPhi}
	ts, addr := newTCPServer(t, pulse.WithHeartbeat(hb))
	ts.register(t, BigReply{})
	p := newProxy(t, addr)
	rec := newStateRecorder()
	c := dialAddr(t, p.Addr(), pulse.WithHeartbeat(hb), pulse.WithStateHook(rec.hook))
	const rate = 256 << 10 // bytes per second
	const size = 768 << 10 // 3 s at that rate, six timeouts
	p.Throttle(faultproxy.Downstream, rate)
	start := time.Now()
	var got []byte
	if err := c.Call(testContext(t), "BigReply.Get", size, &got); err != nil {
		t.Fatalf("Call() over the slow link = %v", err)
	}
	t.Logf("%d KiB at %d KiB/s took %v (timeout %v)", size>>10, rate>>10, time.Since(start), hb.Timeout)
	if len(got) != size || got[size-1] != byte((size-1)%256) {
		t.Errorf("reply of %d bytes, want %d intact", len(got), size)
	}
	if st := c.Stats(); st.Connects != 1 {
		t.Errorf("Connects = %d: the connection was declared dead during the transfer", st.Connects)
	}
}

// TestPingFlood pings far faster than the granted interval allows: the
// server stops answering, then sends GOAWAY "too many pings", and the
// client's error says so and names the permitted rate.
func TestPingFlood(t *testing.T) {
	checkLeaks(t)
	hb := pulse.Heartbeat{Interval: 200 * time.Millisecond, Timeout: 2 * time.Second}
	_, addr := newTCPServer(t, pulse.WithHeartbeat(hb))
	rec := newStateRecorder()
	c := dialAddr(t, addr, pulse.WithHeartbeat(hb), pulse.WithStateHook(rec.hook))
	ctx := testContext(t)
	var err error
	// Pings closer together than the permitted rate go unanswered, so
	// each waits only a little before the next is sent.
	for i := 0; i < 50 && !errors.As(err, new(*pulse.ConnError)); i++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		_, err = c.Ping(pctx)
		cancel()
	}
	sc := rec.waitState(t, pulse.StateDraining)
	var ce *pulse.ConnError
	if !errors.As(sc.Err, &ce) || ce.Code != pulse.CloseTooManyPings {
		t.Fatalf("state change error = %v, want GOAWAY %v", sc.Err, pulse.CloseTooManyPings)
	}
	t.Logf("flood ended with: %v", sc.Err)
	if want := "permitted rate is one ping per 100ms"; !contains(sc.Err.Error(), want) {
		t.Errorf("error %q does not name the permitted rate (%q)", sc.Err, want)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// Work is a handler that records which calls it accepted.
type Work struct {
	mu       sync.Mutex
	accepted map[int]bool
}

func (w *Work) Do(n int, reply *int) error {
	w.mu.Lock()
	w.accepted[n] = true
	w.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	*reply = n
	return nil
}

// TestShutdownUnderLoad shuts the server down gracefully while calls are in
// flight: no call the server accepted may fail.
func TestShutdownUnderLoad(t *testing.T) {
	checkLeaks(t)
	srv, err := pulse.NewServer(pulse.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	w := &Work{accepted: map[int]bool{}}
	if err := srv.Register(w); err != nil {
		t.Fatal(err)
	}
	l := listenTCP(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	c := dialAddr(t, l.Addr().String())

	const n = 200
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var r int
			results[i] = c.Call(ctx, "Work.Do", i, &r)
			if results[i] == nil && r != i {
				results[i] = errors.New("wrong reply")
			}
		}()
	}
	// Shut down while calls are in flight: once the server has accepted
	// some of them.
	waitFor(t, "the server to accept calls", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.accepted) >= 20
	})
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	wg.Wait()
	if err := <-served; !errors.Is(err, pulse.ErrServerClosed) {
		t.Errorf("Serve() = %v, want ErrServerClosed", err)
	}
	ok, failedAccepted, failedOther := 0, 0, 0
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, err := range results {
		switch {
		case err == nil:
			ok++
		case w.accepted[i]:
			failedAccepted++
			t.Errorf("call %d was accepted by the server but failed: %v", i, err)
		default:
			failedOther++
		}
	}
	t.Logf("%d calls: %d ok, %d not accepted (failed when no server was left), %d accepted but failed", n, ok, failedOther, failedAccepted)
	if ok == 0 {
		t.Errorf("no call succeeded")
	}
}

// TestReconnectBackoff checks the reconnect delays against the backoff's
// bounds while the server is away, and that the client comes back when
// it returns on the same address.
func TestReconnectBackoff(t *testing.T) {
	checkLeaks(t)
	l := listenTCP(t)
	addr := l.Addr().String()
	srv, err := pulse.NewServer(pulse.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(new(Arith))
	go srv.Serve(l)
	bo := liveness.Backoff{Base: 10 * time.Millisecond, Factor: 2, Cap: 80 * time.Millisecond}
	rec := newStateRecorder()
	c := dialAddr(t, addr, pulse.WithBackoff(bo), pulse.WithStateHook(rec.hook))
	srv.Close()

	rec.waitState(t, pulse.StateConnecting)
	var attempts []time.Time
	for len(attempts) < 8 {
		sc := rec.waitState(t, pulse.StateConnecting)
		attempts = append(attempts, sc.At)
	}
	for i := 1; i < len(attempts); i++ {
		gap := attempts[i].Sub(attempts[i-1])
		if gap > bo.Cap+detectionSlack {
			t.Errorf("gap %d between dials = %v, want at most the cap %v plus slack", i, gap, bo.Cap)
		}
	}
	t.Logf("dial attempts at gaps: %v", gaps(attempts))

	// The server comes back on the same address.
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen again on %s: %v", addr, err)
	}
	srv2, _ := pulse.NewServer(pulse.WithLogger(testLogger(t)))
	srv2.Register(new(Arith))
	go srv2.Serve(l2)
	t.Cleanup(func() { srv2.Close() })
	var r Reply
	if err := c.Call(testContext(t), "Arith.Add", Args{A: 1, B: 2}, &r); err != nil || r.C != 3 {
		t.Fatalf("Call() after the server came back = %v, %v", r.C, err)
	}
}

func gaps(ts []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i].Sub(ts[i-1]).Round(time.Millisecond))
	}
	return out
}

// TestFailFast makes calls fail at once while no connection is ready.
func TestFailFast(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t)
	ts.register(t, new(Arith))
	rec := newStateRecorder()
	c := dialAddr(t, addr, pulse.WithFailFast(), pulse.WithStateHook(rec.hook),
		pulse.WithBackoff(liveness.Backoff{Base: time.Hour, Factor: 1, Cap: time.Hour}))
	ts.Close()
	rec.waitState(t, pulse.StateConnecting)
	start := time.Now()
	err := c.Call(testContext(t), "Arith.Add", Args{}, new(Reply))
	var ce *pulse.ConnError
	if !errors.As(err, &ce) || ce.Sent {
		t.Fatalf("Call() with no connection = %v, want a *ConnError with Sent=false", err)
	}
	t.Logf("failed fast after %v: %v", time.Since(start), err)
}

// TestHeartbeatNegotiation covers the checks made at construction and at
// connect time.
func TestHeartbeatNegotiation(t *testing.T) {
	checkLeaks(t)
	if _, err := pulse.NewServer(pulse.WithHeartbeat(pulse.Heartbeat{Interval: time.Second, Timeout: time.Second})); err == nil ||
		!contains(err.Error(), "Heartbeat.Timeout (1s) must be at least twice Heartbeat.Interval (1s)") {
		t.Errorf("NewServer(Timeout = Interval) error = %v, want one naming both fields", err)
	}
	// The server grants at least 500ms; a client whose timeout cannot
	// cover that is refused at connect with a message naming the values.
	ts, addr := newTCPServer(t, pulse.WithHeartbeat(pulse.Heartbeat{Interval: time.Second, Timeout: 4 * time.Second, MinInterval: 500 * time.Millisecond}))
	_ = ts
	_, err := pulse.Dial(testContext(t), addr, pulse.WithHeartbeat(pulse.Heartbeat{Interval: 100 * time.Millisecond, Timeout: 300 * time.Millisecond}))
	if !errors.Is(err, pulse.ErrHandshake) || !contains(err.Error(), "granted a heartbeat interval of 500ms") {
		t.Errorf("Dial() with too short a timeout = %v, want ErrHandshake naming the granted interval", err)
	}
	// A granted interval within bounds is adopted.
	c := dialAddr(t, addr, pulse.WithHeartbeat(pulse.Heartbeat{Interval: 700 * time.Millisecond, Timeout: 3 * time.Second}))
	if st := c.Stats(); st.Interval != 700*time.Millisecond || st.PeerTimeout != 4*time.Second {
		t.Errorf("Stats() interval %v, server timeout %v; want 700ms, 4s", st.Interval, st.PeerTimeout)
	}
	// A proposal above half the server's deadline is cut down.
	c2 := dialAddr(t, addr, pulse.WithHeartbeat(pulse.Heartbeat{Interval: 10 * time.Second, Timeout: 30 * time.Second}))
	if st := c2.Stats(); st.Interval != 2*time.Second {
		t.Errorf("Stats().Interval = %v, want 2s (half the server's 4s deadline)", st.Interval)
	}
}

// Feed is a push service: subscribers get every published line through
// their Inbox.Push method, over their own connection.
type Feed struct {
	mu   sync.Mutex
	subs map[*pulse.Peer]bool
}

func (f *Feed) Subscribe(ctx context.Context, _ int, _ *int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.subs == nil {
		f.subs = map[*pulse.Peer]bool{}
	}
	f.subs[pulse.PeerFromContext(ctx)] = true
	return nil
}

func (f *Feed) publish(ctx context.Context, msg string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for p := range f.subs {
		if p.Notify(ctx, "Inbox.Push", msg) == nil {
			n++
		}
	}
	return n
}

// TestResubscribeAfterReconnect: the client's handlers survive a lost
// connection, and its state hook subscribes again on the new one, so
// pushes resume.
func TestResubscribeAfterReconnect(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t)
	feed := &Feed{}
	ts.register(t, feed)
	p := newProxy(t, addr)
	inbox := newInbox()
	var client atomic.Pointer[pulse.Client]
	ready := make(chan struct{}, 4)
	hook := func(sc pulse.StateChange) {
		if c := client.Load(); sc.To == pulse.StateReady && c != nil {
			if err := c.Call(context.Background(), "Feed.Subscribe", 0, new(int)); err == nil {
				ready <- struct{}{}
			}
		}
	}
	c, err := pulse.Dial(testContext(t), p.Addr(), pulse.WithLogger(testLogger(t)), pulse.WithStateHook(hook),
		pulse.WithBackoff(liveness.Backoff{Base: 5 * time.Millisecond, Factor: 2, Cap: 50 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	client.Store(c)
	if err := c.Register(inbox); err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if err := c.Call(ctx, "Feed.Subscribe", 0, new(int)); err != nil {
		t.Fatal(err)
	}
	feed.publish(ctx, "one")
	if got := recv(t, inbox.got, "the first push"); got != "one" {
		t.Fatalf("push = %q, want %q", got, "one")
	}
	p.CloseConns() // the connection is reset
	recv(t, ready, "the hook to subscribe again after the reconnect")
	// A push queued on the old connection before the server noticed the
	// reset is lost with it (a notification is one-way); publish until one
	// arrives over the new connection.
	waitFor(t, "a push over the new connection", func() bool {
		feed.publish(ctx, "two")
		select {
		case got := <-inbox.got:
			return got == "two"
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
	if st := c.Stats(); st.Connects != 2 {
		t.Errorf("Connects = %d, want 2", st.Connects)
	}
}

// Sink accepts anything.
type Sink struct{}

func (Sink) Put(b []byte, n *int) error {
	*n = len(b)
	return nil
}

// TestStuckWrite freezes the client-to-server direction: the proxy stops
// reading, so the client's writes stop making progress, while the server
// still pings the client and the client still hears it. The server's
// deadline is long here, so it is the client's write watchdog that must
// end the connection, within the client's timeout. The call, only partly
// written, was never sent: the client retries it, and fails it when its
// context ends, since the path stays frozen.
func TestStuckWrite(t *testing.T) {
	checkLeaks(t)
	server := pulse.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 10 * time.Second, MinInterval: 10 * time.Millisecond}
	client := pulse.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 300 * time.Millisecond}
	ts, addr := newTCPServer(t, pulse.WithHeartbeat(server), pulse.WithMaxMessageSize(64<<20))
	ts.register(t, Sink{})
	p := newProxy(t, addr)
	rec := newStateRecorder()
	c := dialAddr(t, p.Addr(), pulse.WithHeartbeat(client), pulse.WithStateHook(rec.hook))
	p.Freeze(faultproxy.Upstream)
	frozen := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	call := c.Go(ctx, "Sink.Put", make([]byte, 16<<20), new(int), nil)
	sc := rec.waitState(t, pulse.StateConnecting)
	took := time.Since(frozen)
	var ce *pulse.ConnError
	if !errors.As(sc.Err, &ce) {
		t.Fatalf("connection lost with %v, want a *ConnError", sc.Err)
	}
	t.Logf("client gave up on the write after %v: %v", took, sc.Err)
	if ce.Reason != pulse.ReasonWriteStall && ce.Reason != pulse.ReasonIO {
		t.Errorf("reason = %v, want a stalled write", ce.Reason)
	}
	if took > client.Timeout+detectionSlack {
		t.Errorf("gave up after %v, want within %v + slack", took, client.Timeout)
	}
	err := waitCall(t, call)
	var sent *pulse.ConnError
	if errors.As(err, &sent) && sent.Sent {
		t.Errorf("call error %v says the request was sent; it never was whole", err)
	}
	if err == nil {
		t.Errorf("the call succeeded through a frozen path")
	}
	p.Heal()
}

// Drainer waits in its handler until the server starts draining.
type Drainer struct{ started chan struct{} }

func (d *Drainer) Wait(ctx context.Context, _ int, reply *string) error {
	d.started <- struct{}{}
	select {
	case <-pulse.Draining(ctx):
		*reply = "drained"
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestDrainingContext: a running handler learns through Draining(ctx)
// that the server is shutting down, finishes, and its reply still reaches
// the caller.
func TestDrainingContext(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t)
	d := &Drainer{started: make(chan struct{}, 1)}
	ts.register(t, d)
	c := dialAddr(t, addr)
	var reply string
	call := c.Go(testContext(t), "Drainer.Wait", 0, &reply, nil)
	recv(t, d.started, "the handler to start")
	if pulse.Draining(context.Background()) != nil {
		t.Errorf("Draining(a context not from a handler) != nil")
	}
	if err := ts.Shutdown(testContext(t)); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	if err := waitCall(t, call); err != nil || reply != "drained" {
		t.Errorf("call during Shutdown = %q, %v; want \"drained\", nil", reply, err)
	}
}

// writeCounter counts Write calls.
type writeCounter struct {
	net.Conn
	writes *atomic.Int64
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestWritesCoalesce: many goroutines calling at once share write system
// calls: the client writes fewer times than it sends calls.
func TestWritesCoalesce(t *testing.T) {
	if runtime.GOMAXPROCS(0) == 1 {
		// With one P the callers take turns: each finds no writer busy
		// and writes its own call, so there is nothing to coalesce.
		t.Skip("calls are not concurrent with GOMAXPROCS=1")
	}
	checkLeaks(t)
	ts, addr := newTCPServer(t)
	ts.register(t, new(Arith))
	var writes atomic.Int64
	c := dialAddr(t, addr, pulse.WithDialer(func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{Conn: conn, writes: &writes}, nil
	}))
	ctx := testContext(t)
	const goroutines, calls = 64, 50
	start := make(chan struct{})
	before := writes.Load()
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < calls; i++ {
				var r Reply
				if err := c.Call(ctx, "Arith.Add", Args{A: i, B: g}, &r); err != nil || r.C != i+g {
					t.Errorf("Call() = %v, %v", r.C, err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	n := writes.Load() - before
	t.Logf("%d calls took %d writes (%.2f calls per write)", goroutines*calls, n, float64(goroutines*calls)/float64(n))
	if n >= goroutines*calls {
		t.Errorf("%d writes for %d calls: concurrent calls were not coalesced", n, goroutines*calls)
	}
}

// Recorder records the order of the notifications it receives.
type Recorder struct {
	mu  sync.Mutex
	got []int
	all chan struct{}
	n   int
}

func (r *Recorder) Note(i int, _ *struct{}) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, i)
	if len(r.got) == r.n {
		close(r.all)
	}
	return nil
}

// TestNotificationsInOrder: the notifications one peer sends run one at a
// time, in the order sent (a chat's lines, a feed's updates), while calls
// on the same connection run concurrently.
func TestNotificationsInOrder(t *testing.T) {
	checkLeaks(t)
	ts, addr := newTCPServer(t)
	ts.register(t, new(Arith))
	const n = 500
	rec := &Recorder{all: make(chan struct{}), n: n}
	c := dialAddr(t, addr)
	if err := c.Register(rec); err != nil {
		t.Fatal(err)
	}
	// The client must have a peer on the server.
	if err := c.Call(testContext(t), "Arith.Add", Args{A: 1, B: 1}, new(Reply)); err != nil {
		t.Fatal(err)
	}
	peer := ts.Peers()[0]
	ctx := testContext(t)
	for i := 0; i < n; i++ {
		if err := peer.Notify(ctx, "Recorder.Note", i); err != nil {
			t.Fatalf("Notify(%d) = %v", i, err)
		}
	}
	recv(t, rec.all, "every notification")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i, got := range rec.got {
		if got != i {
			t.Fatalf("notification %d ran as the %d-th: %v...", got, i, rec.got[:min(len(rec.got), i+5)])
		}
	}
}
