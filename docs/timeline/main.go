// Command timeline measures Pulse's dead-peer detection in a real run and
// draws it, for docs/liveness.md.
//
//	go run ./docs/timeline
//
// It starts a server and a client on 127.0.0.1 with a fault-injecting proxy
// (internal/faultproxy) between them, lets heartbeats flow, makes a call,
// blackholes the path in both directions without closing a socket, and
// waits for each side to declare the other dead. Then it heals the path,
// waits for the client to reconnect and makes another call. Both ends' conns
// are wrapped in a sniffer that parses the frame headers going each way, so
// the picture shows every frame each side wrote and read, with the moments
// that matter marked on it.
//
// Output: an SVG (-out), a markdown summary (-md) and the same summary on
// stdout. The program exits with status 1, and writes nothing, when a side
// fails to detect the cut within Timeout + 2 s, when the client does not
// reconnect, or when goroutines or sockets outlive the run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/internal/faultproxy"
	"github.com/pulse-rpc/pulse/wire"
)

const command = "go run ./docs/timeline"

type config struct {
	out, md          string
	interval         time.Duration
	timeout          time.Duration
	handshakeTimeout time.Duration
	verbose          bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.out, "out", "docs/liveness-timeline.svg", "where to write the SVG")
	flag.StringVar(&cfg.md, "md", "docs/liveness-timeline.md", "where to write the markdown summary")
	flag.DurationVar(&cfg.interval, "interval", 200*time.Millisecond, "Heartbeat.Interval of both sides (negative: no heartbeats, as in pulse.Heartbeat)")
	flag.DurationVar(&cfg.timeout, "timeout", time.Second, "Heartbeat.Timeout of both sides")
	flag.DurationVar(&cfg.handshakeTimeout, "handshake-timeout", 0,
		"the client's handshake timeout (WithHandshakeTimeout); 0 means the library default (10s, and a client bounds its handshakes by its heartbeat Timeout too)")
	flag.BoolVar(&cfg.verbose, "v", false, "also print every frame and debug log record")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "timeline: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if cfg.timeout <= 0 {
		fmt.Fprintln(os.Stderr, "timeline: -timeout must be positive")
		os.Exit(2)
	}

	baseGoroutines := runtime.NumGoroutine()
	res, err := run(cfg)
	if cerr := checkCleanup(baseGoroutines); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "timeline: FAIL: %v\n", err)
		if res != nil {
			fmt.Fprintln(os.Stderr, "\nwhat was measured before the failure:")
			fmt.Fprint(os.Stderr, res.text())
		}
		os.Exit(1)
	}

	if cfg.verbose {
		res.dump(os.Stdout)
	}
	fmt.Print(res.text())
	if err := writeFile(cfg.out, res.svg()); err != nil {
		fmt.Fprintf(os.Stderr, "timeline: %v\n", err)
		os.Exit(1)
	}
	if err := writeFile(cfg.md, res.markdown(cfg)); err != nil {
		fmt.Fprintf(os.Stderr, "timeline: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\nwrote %s and %s\n", cfg.out, cfg.md)
}

func writeFile(path, content string) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

// ---- Recording ----

type side int

const (
	clientSide side = iota
	serverSide
)

func (s side) String() string { return [...]string{"client", "server"}[s] }

// frame is one frame seen by a sniffer.
type frame struct {
	at   time.Duration // since t0: when the write began, or when the read returned
	side side
	sent bool // written by this side (else read)
	conn int  // connection number on this side, from 1
	hdr  wire.Header
}

// connInfo is the life of one connection as one side saw it.
type connInfo struct {
	side           side
	n              int
	opened, closed time.Duration // closed is -1 while open
}

// logRecord is a log record from the library.
type logRecord struct {
	at    time.Duration
	side  side
	level slog.Level
	msg   string
	attrs string
}

// recorder collects everything with times relative to t0.
type recorder struct {
	t0 time.Time

	mu      sync.Mutex
	frames  []frame
	conns   []*connInfo
	states  []pulse.StateChange
	logs    []logRecord
	desyncs []string
	nconn   [2]int
}

func (r *recorder) since(t time.Time) time.Duration { return t.Sub(r.t0) }
func (r *recorder) now() time.Duration              { return time.Since(r.t0) }

func (r *recorder) addFrame(f frame) {
	r.mu.Lock()
	r.frames = append(r.frames, f)
	r.mu.Unlock()
}

func (r *recorder) addState(ev pulse.StateChange) {
	r.mu.Lock()
	r.states = append(r.states, ev)
	r.mu.Unlock()
}

// stateAfter returns the first state change into one of the states in to
// that happened after from, if any.
func (r *recorder) stateAfter(from time.Duration, to ...pulse.ConnState) (pulse.StateChange, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.states {
		if r.since(ev.At) > from && slices.Contains(to, ev.To) {
			return ev, true
		}
	}
	return pulse.StateChange{}, false
}

// wrap returns conn with a sniffer on both directions.
func (r *recorder) wrap(conn net.Conn, s side) net.Conn {
	r.mu.Lock()
	r.nconn[s]++
	ci := &connInfo{side: s, n: r.nconn[s], opened: r.now(), closed: -1}
	r.conns = append(r.conns, ci)
	r.mu.Unlock()
	c := &sniffConn{Conn: conn, r: r, info: ci}
	c.rp = parser{r: r, side: s, conn: ci.n, sent: false}
	c.wp = parser{r: r, side: s, conn: ci.n, sent: true}
	return c
}

// parser finds frame boundaries in one direction of a connection: it
// gathers the 12-byte header, records the frame, then skips its payload.
type parser struct {
	r    *recorder
	side side
	conn int
	sent bool

	hdr  [wire.HeaderSize]byte
	have int    // header bytes gathered
	skip uint32 // payload bytes still to skip
	bad  bool   // lost sync; parse no more
}

func (p *parser) feed(b []byte, at time.Duration) {
	for len(b) > 0 && !p.bad {
		if p.skip > 0 {
			k := uint32(min(uint64(len(b)), uint64(p.skip)))
			b = b[k:]
			p.skip -= k
			continue
		}
		k := copy(p.hdr[p.have:], b)
		p.have += k
		b = b[k:]
		if p.have < wire.HeaderSize {
			return
		}
		p.have = 0
		h, err := wire.ParseHeader(p.hdr[:], math.MaxUint32)
		if err != nil {
			p.bad = true
			dir := "read"
			if p.sent {
				dir = "written"
			}
			p.r.mu.Lock()
			p.r.desyncs = append(p.r.desyncs, fmt.Sprintf("%v conn %d, bytes %s: %v", p.side, p.conn, dir, err))
			p.r.mu.Unlock()
			return
		}
		p.r.addFrame(frame{at: at, side: p.side, sent: p.sent, conn: p.conn, hdr: h})
		p.skip = h.Length
	}
}

// sniffConn records the frames written to and read from a net.Conn.
// Wrapping hides the *net.TCPConn from Pulse, which then skips its TCP
// tuning (TCP_NOTSENT_LOWAT, TCP_USER_TIMEOUT); neither matters on an idle
// loopback connection whose bytes the proxy always reads.
type sniffConn struct {
	net.Conn
	r    *recorder
	info *connInfo

	rmu, wmu sync.Mutex
	rp, wp   parser
	closed   atomic.Bool
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		at := c.r.now()
		c.rmu.Lock()
		c.rp.feed(b[:n], at)
		c.rmu.Unlock()
	}
	return n, err
}

func (c *sniffConn) Write(b []byte) (int, error) {
	at := c.r.now()
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.wmu.Lock()
		c.wp.feed(b[:n], at)
		c.wmu.Unlock()
	}
	return n, err
}

func (c *sniffConn) Close() error {
	if !c.closed.Swap(true) {
		c.r.mu.Lock()
		c.info.closed = c.r.now()
		c.r.mu.Unlock()
	}
	return c.Conn.Close()
}

// sniffListener wraps each accepted conn in a sniffer.
type sniffListener struct {
	net.Listener
	r *recorder
}

func (l sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.r.wrap(c, serverSide), nil
}

// logHandler keeps the library's log records.
type logHandler struct {
	r     *recorder
	side  side
	attrs []slog.Attr
}

func (h logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h logHandler) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	add := func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	rec.Attrs(add)
	h.r.mu.Lock()
	h.r.logs = append(h.r.logs, logRecord{at: h.r.since(rec.Time), side: h.side, level: rec.Level, msg: rec.Message, attrs: b.String()})
	h.r.mu.Unlock()
	return nil
}

func (h logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(slices.Clip(h.attrs), as...)
	return h
}

func (h logHandler) WithGroup(string) slog.Handler { return h }

// Echo is the trivial service.
type Echo struct{}

// Say returns its argument.
func (Echo) Say(in string, out *string) error {
	*out = in
	return nil
}

// ---- The run ----

// result is what one run measured. Times are since t0, the moment before
// the client dialed; -1 means "did not happen".
type result struct {
	cfg       config
	granted   time.Duration
	frames    []frame
	conns     []*connInfo
	states    []pulse.StateChange
	logs      []logRecord
	desyncs   []string
	t0        time.Time
	stats     pulse.Stats
	firstCall time.Duration
	firstRTT  time.Duration

	cut          time.Duration
	lastHeard    [2]time.Duration // last frame each side read before the cut
	suspect      time.Duration    // client state suspect
	clientDead   time.Duration    // client state leaves ready/suspect
	clientErr    error
	clientDecide time.Duration // client log "peer declared dead"
	serverDone   time.Duration // the server's Peer.Done closed
	serverEmpty  time.Duration // Server.Peers() empty (5 ms polling)
	serverDecide time.Duration // server log "peer declared dead"
	serverErr    error
	heal         time.Duration
	reconnected  time.Duration
	secondCall   time.Duration
	secondRTT    time.Duration
	closed       time.Duration
}

func (res *result) rel(t time.Time) time.Duration { return t.Sub(res.t0) }

func run(cfg config) (res *result, err error) {
	r := &recorder{}
	res = &result{cfg: cfg, cut: -1, suspect: -1, clientDead: -1, clientDecide: -1, serverDone: -1,
		serverEmpty: -1, serverDecide: -1, heal: -1, reconnected: -1, secondCall: -1, firstCall: -1, closed: -1}
	hb := pulse.Heartbeat{Interval: cfg.interval, Timeout: cfg.timeout, MinInterval: 10 * time.Millisecond}

	// Everything started is stopped by cleanup, on every path.
	var (
		cleanups []func()
		once     sync.Once
	)
	cleanup := func() {
		once.Do(func() {
			for _, f := range slices.Backward(cleanups) {
				f()
			}
		})
	}
	defer func() {
		cleanup()
		r.mu.Lock()
		res.frames = slices.Clone(r.frames)
		res.conns = slices.Clone(r.conns)
		res.states = slices.Clone(r.states)
		res.logs = slices.Clone(r.logs)
		res.desyncs = slices.Clone(r.desyncs)
		r.mu.Unlock()
		slices.SortStableFunc(res.frames, func(a, b frame) int { return int(a.at - b.at) })
		res.analyse()
	}()

	srv, err := pulse.NewServer(pulse.WithHeartbeat(hb), pulse.WithLogger(slog.New(logHandler{r: r, side: serverSide})))
	if err != nil {
		return res, err
	}
	if err := srv.Register(Echo{}); err != nil {
		return res, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sniffListener{Listener: ln, r: r}) }()
	cleanups = append(cleanups, func() {
		srv.Close()
		if err := <-served; !errors.Is(err, pulse.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "timeline: Serve returned %v\n", err)
		}
	})

	px, err := faultproxy.New(ln.Addr().String())
	if err != nil {
		return res, err
	}
	cleanups = append(cleanups, func() { px.Close() })

	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return r.wrap(c, clientSide), nil
	}
	copts := []pulse.Option{
		pulse.WithHeartbeat(hb),
		pulse.WithDialer(dial),
		pulse.WithStateHook(r.addState),
		pulse.WithLogger(slog.New(logHandler{r: r, side: clientSide})),
	}
	if cfg.handshakeTimeout > 0 {
		copts = append(copts, pulse.WithHandshakeTimeout(cfg.handshakeTimeout))
	}

	r.t0 = time.Now()
	res.t0 = r.t0
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	client, err := pulse.Dial(dctx, px.Addr(), copts...)
	cancel()
	if err != nil {
		return res, fmt.Errorf("dial through the proxy: %w", err)
	}
	cleanups = append(cleanups, func() {
		client.Close()
		res.closed = r.now()
		// Let the client's GOAWAY reach the server before the proxy,
		// which would cut it off, is closed.
		for end := time.Now().Add(time.Second); len(srv.Peers()) > 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
	})
	res.granted = client.Stats().Interval

	sleepUntil := func(d time.Duration) { time.Sleep(time.Until(r.t0.Add(d))) }
	call := func(msg string) (time.Duration, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		at := r.now()
		var out string
		if err := client.Call(ctx, "Echo.Say", msg, &out); err != nil {
			return at, 0, err
		}
		if out != msg {
			return at, 0, fmt.Errorf("Echo.Say returned %q, want %q", out, msg)
		}
		return at, r.now() - at, nil
	}

	// Idle heartbeats, then one call.
	callAt := max(1200*time.Millisecond, 6*cfg.interval)
	sleepUntil(callAt)
	if res.firstCall, res.firstRTT, err = call("before"); err != nil {
		return res, fmt.Errorf("call before the cut: %w", err)
	}

	// Cut the path.
	sleepUntil(callAt + 300*time.Millisecond)
	peers := srv.Peers()
	if len(peers) != 1 {
		return res, fmt.Errorf("server has %d peers before the cut, want 1", len(peers))
	}
	peer := peers[0]
	px.Blackhole(faultproxy.Both)
	res.cut = r.now()

	// Wait for both sides to notice.
	limit := cfg.timeout + 2*time.Second
	deadline := r.t0.Add(res.cut + limit)
	tick := time.NewTicker(5 * time.Millisecond)
	done := peer.Done()
	for res.clientDead < 0 || res.serverDone < 0 || res.serverEmpty < 0 {
		select {
		case <-done:
			res.serverDone = r.now()
			res.serverErr = peer.Err()
			done = nil
		case <-tick.C:
		}
		if res.clientDead < 0 {
			if ev, ok := r.stateAfter(res.cut, pulse.StateConnecting, pulse.StateClosed, pulse.StateDraining); ok {
				res.clientDead, res.clientErr = r.since(ev.At), ev.Err
			}
		}
		if res.serverEmpty < 0 && len(srv.Peers()) == 0 {
			res.serverEmpty = r.now()
		}
		if time.Now().After(deadline) {
			tick.Stop()
			var missing []string
			if res.clientDead < 0 {
				missing = append(missing, fmt.Sprintf("the client did not declare the server dead (state now %v)", client.Stats().State))
			}
			if res.serverDone < 0 || res.serverEmpty < 0 {
				missing = append(missing, "the server did not reap the client")
			}
			return res, fmt.Errorf("liveness is broken: %s within Timeout + 2s (%v) of the blackhole at %s",
				strings.Join(missing, " and "), limit, secs(res.cut))
		}
	}
	tick.Stop()

	// Heal, once both have given up on the old connection.
	healAt := max(res.cut+1700*time.Millisecond, max(res.clientDead, res.serverDone)+300*time.Millisecond)
	sleepUntil(healAt)
	px.Heal()
	res.heal = r.now()

	// Wait for the client to reconnect.
	hs := cfg.handshakeTimeout
	if hs <= 0 {
		hs = pulse.DefaultHandshakeTimeout
	}
	reLimit := hs + 3*time.Second
	reDeadline := time.Now().Add(reLimit)
	for {
		if ev, ok := r.stateAfter(res.clientDead, pulse.StateReady); ok {
			res.reconnected = r.since(ev.At)
			break
		}
		if time.Now().After(reDeadline) {
			return res, fmt.Errorf("the client did not reconnect within %v of the heal (state %v, last error: %v)",
				reLimit, client.Stats().State, client.Stats().LastErr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res.secondCall, res.secondRTT, err = call("after"); err != nil {
		return res, fmt.Errorf("call after the reconnect: %w", err)
	}

	// A second more of idle heartbeats on the new connection.
	sleepUntil(max(res.reconnected, res.secondCall) + time.Second)
	res.stats = client.Stats()
	return res, nil
}

// analyse derives what the frames and logs say.
func (res *result) analyse() {
	for _, ev := range res.states {
		if ev.To == pulse.StateSuspect && res.cut >= 0 && res.rel(ev.At) > res.cut && res.suspect < 0 {
			res.suspect = res.rel(ev.At)
		}
	}
	for s := range 2 {
		res.lastHeard[s] = -1
		for _, f := range res.frames {
			if int(f.side) == s && !f.sent && f.at <= res.cut {
				res.lastHeard[s] = f.at
			}
		}
	}
	for _, l := range res.logs {
		if l.msg == "pulse: peer declared dead" && l.at > res.cut {
			if l.side == clientSide && res.clientDecide < 0 {
				res.clientDecide = l.at
			}
			if l.side == serverSide && res.serverDecide < 0 {
				res.serverDecide = l.at
			}
		}
	}
}

// checkCleanup makes sure the run left no goroutine or socket behind.
func checkCleanup(base int) error {
	deadline := time.Now().Add(3 * time.Second)
	for {
		g := runtime.NumGoroutine()
		s, sockErr := openSockets()
		if g <= base && (sockErr != nil || s == 0) {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("after cleanup %d goroutines run (%d before the run) and %d sockets are open:\n%s", g, base, s, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openSockets counts this process's open sockets (Linux; an error elsewhere).
func openSockets() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n, nil
}

// ---- Text ----

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}

func plusMS(d time.Duration) string {
	return fmt.Sprintf("+%d ms", d.Round(time.Millisecond).Milliseconds())
}

// row is one line of the summary table.
type row struct{ event, at, after, bound string }

func (res *result) rows() []row {
	var rows []row
	add := func(event string, at time.Duration, bound string) {
		if at < 0 {
			rows = append(rows, row{event, "did not happen", "", bound})
			return
		}
		after := "—"
		if res.cut >= 0 && at > res.cut {
			after = plusMS(at - res.cut)
		}
		rows = append(rows, row{event, secs(at), after, bound})
	}
	to := res.cfg.timeout
	add("call before the cut (CALL written)", res.firstCall, "—")
	add("blackhole, both directions", res.cut, "—")
	add("client turns suspect", res.suspect, "—")
	add("client declares the server dead", res.clientDead, "≤ "+plusMS(to)+" (cut + Timeout)")
	add("server reaps the client (Peer.Done)", res.serverDone, "≤ "+plusMS(to)+" (cut + Timeout)")
	add("heal", res.heal, "—")
	add("client ready again (reconnected)", res.reconnected, "—")
	add("call after the reconnect (CALL written)", res.secondCall, "—")
	return rows
}

// notes are the measured details under the table.
func (res *result) notes() []string {
	var n []string
	to := res.cfg.timeout
	if res.granted > 0 {
		n = append(n, fmt.Sprintf("Granted heartbeat interval: %v; Timeout %v on both sides.", res.granted, to))
	}
	for s, name := range []string{"client", "server"} {
		if res.lastHeard[s] >= 0 && res.cut >= 0 {
			n = append(n, fmt.Sprintf("Last frame the %s read before the cut: %s (%s before it).", name, secs(res.lastHeard[s]), ms(res.cut-res.lastHeard[s])))
		}
	}
	if res.clientDead >= 0 && res.lastHeard[clientSide] >= 0 {
		s := fmt.Sprintf("Client: silence when it gave up %s (Timeout %s)", ms(res.clientDead-res.lastHeard[clientSide]), ms(to))
		if res.clientDecide >= 0 {
			s += fmt.Sprintf("; the detector fired at %s, the state changed %s later", secs(res.clientDecide), ms(res.clientDead-res.clientDecide))
		}
		n = append(n, s+".")
	}
	if res.serverDone >= 0 && res.lastHeard[serverSide] >= 0 {
		s := fmt.Sprintf("Server: silence when it reaped %s (Timeout %s)", ms(res.serverDone-res.lastHeard[serverSide]), ms(to))
		if res.serverDecide >= 0 {
			s += fmt.Sprintf("; the detector fired at %s", secs(res.serverDecide))
		}
		if res.serverEmpty >= 0 {
			s += fmt.Sprintf("; Server.Peers() was empty by %s (5 ms polling)", secs(res.serverEmpty))
		}
		n = append(n, s+".")
	}
	if res.clientErr != nil {
		n = append(n, fmt.Sprintf("Client error: %v", res.clientErr))
	}
	if res.serverErr != nil {
		n = append(n, fmt.Sprintf("Server error: %v", res.serverErr))
	}
	if res.secondCall >= 0 {
		n = append(n, fmt.Sprintf("Call round trips: %v before the cut, %v after the reconnect.", res.firstRTT.Round(10*time.Microsecond), res.secondRTT.Round(10*time.Microsecond)))
	}
	for _, c := range res.conns {
		if c.side != clientSide {
			continue
		}
		helloIn := false
		for _, f := range res.frames {
			if f.side == clientSide && f.conn == c.n && !f.sent && f.hdr.Type == wire.TypeHello {
				helloIn = true
			}
		}
		s := fmt.Sprintf("Client connection %d: dialed at %s", c.n, secs(c.opened))
		if c.closed >= 0 {
			s += fmt.Sprintf(", closed at %s", secs(c.closed))
		}
		if !helloIn {
			s += ", never got the server's HELLO (dialed into the blackhole; the handshake timed out)"
		}
		n = append(n, s+".")
	}
	if st := res.stats; st.Dials > 0 {
		n = append(n, fmt.Sprintf("Client Stats at the end: %d dials, %d connects, smoothed RTT %v, codec %s.", st.Dials, st.Connects, st.RTT.Round(time.Microsecond), st.Codec))
	}
	n = append(n, "Frames written: client "+res.counts(clientSide)+"; server "+res.counts(serverSide)+".")
	for _, d := range res.desyncs {
		n = append(n, "Sniffer lost frame sync: "+d)
	}
	return n
}

// counts summarises the frames side wrote, by type.
func (res *result) counts(s side) string {
	c := map[wire.FrameType]int{}
	for _, f := range res.frames {
		if f.side == s && f.sent {
			c[f.hdr.Type]++
		}
	}
	var parts []string
	for t := wire.TypeHello; t <= wire.TypeGoAway; t++ {
		if c[t] > 0 {
			parts = append(parts, fmt.Sprintf("%d %v", c[t], t))
		}
	}
	return strings.Join(parts, ", ")
}

func (res *result) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Pulse liveness timeline, Interval %v, Timeout %v, %s\n\n", res.cfg.interval, res.cfg.timeout, runtime.Version())
	rows := res.rows()
	w := [3]int{len("event"), len("time"), len("after the cut")}
	for _, r := range rows {
		w[0] = max(w[0], len([]rune(r.event)))
		w[1] = max(w[1], len([]rune(r.at)))
		w[2] = max(w[2], len([]rune(r.after)))
	}
	line := func(a, t, d, bd string) {
		fmt.Fprintf(&b, "%s  %s  %s  %s\n", pad(a, w[0]), pad(t, w[1]), pad(d, w[2]), bd)
	}
	line("event", "time", "after the cut", "bound")
	for _, r := range rows {
		line(r.event, r.at, r.after, r.bound)
	}
	b.WriteString("\n")
	for _, n := range res.notes() {
		b.WriteString(n + "\n")
	}
	var logs []string
	for _, l := range res.logs {
		if l.level >= slog.LevelInfo {
			logs = append(logs, fmt.Sprintf("  %s %s %v %s%s", secs(l.at), l.side, l.level, l.msg, l.attrs))
		}
	}
	if len(logs) > 0 {
		b.WriteString("\nLibrary log (info and above):\n" + strings.Join(logs, "\n") + "\n")
	}
	return b.String()
}

func pad(s string, n int) string { return s + strings.Repeat(" ", max(0, n-len([]rune(s)))) }

func (res *result) dump(w *os.File) {
	fmt.Fprintln(w, "Frames:")
	for _, f := range res.frames {
		dir := "read "
		if f.sent {
			dir = "wrote"
		}
		fmt.Fprintf(w, "  %s %s conn %d %s %v\n", secs(f.at), f.side, f.conn, dir, f.hdr)
	}
	fmt.Fprintln(w, "States:")
	for _, ev := range res.states {
		fmt.Fprintf(w, "  %s %v -> %v err=%v\n", secs(res.rel(ev.At)), ev.From, ev.To, ev.Err)
	}
	fmt.Fprintln(w, "Log:")
	for _, l := range res.logs {
		fmt.Fprintf(w, "  %s %s %v %s%s\n", secs(l.at), l.side, l.level, l.msg, l.attrs)
	}
	fmt.Fprintln(w)
}

func (res *result) markdown(cfg config) string {
	var b strings.Builder
	img := cfg.out
	if rel, err := filepath.Rel(filepath.Dir(cfg.md), cfg.out); err == nil {
		img = filepath.ToSlash(rel)
	}
	b.WriteString("# Liveness timeline, measured\n\n")
	fmt.Fprintf(&b, "![Liveness timeline: a path cut on an idle connection, detection on both sides, heal and reconnect](%s)\n\n", img)
	fmt.Fprintf(&b, "Generated from a real run on loopback by\n\n```sh\n%s\n```\n\n", command)
	hs := "the library default (" + pulse.DefaultHandshakeTimeout.String() + ", bounded by the heartbeat Timeout)"
	if cfg.handshakeTimeout > 0 {
		hs = cfg.handshakeTimeout.String()
	}
	fmt.Fprintf(&b, "A server and a client on 127.0.0.1, with `internal/faultproxy` between them, both with "+
		"`pulse.Heartbeat{Interval: %v, Timeout: %v, MinInterval: 10ms}`; client handshake timeout %s. "+
		"After idle heartbeats and one call the proxy blackholes both directions without closing a socket "+
		"(writes succeed, nothing arrives), then heals; the client reconnects and calls again. "+
		"Both ends' connections are wrapped in a sniffer that parses the frame headers each way; the client's state "+
		"comes from WithStateHook. Times are seconds since the client dialed (%s, %s/%s); each run differs by a few milliseconds.\n\n",
		cfg.interval, cfg.timeout, hs, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	b.WriteString("| event | time | delay after the cut | bound |\n|---|---|---|---|\n")
	for _, r := range res.rows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.event, r.at, r.after, r.bound)
	}
	b.WriteString("\nThe bound holds because each side declares its peer dead Timeout after the last byte it read, " +
		"and that byte arrived before the cut (plus scheduling slack, a few milliseconds here). " +
		"How far under the bound a detection lands depends only on where in the heartbeat cycle the cut falls: " +
		"it is the time from the last frame read to the cut (below).\n\n")
	b.WriteString("A redial made while the path is still cut lands in the blackhole: the proxy accepts it, " +
		"its HELLO is dropped, and the client gives up on it after its heartbeat Timeout (a client bounds its " +
		"handshakes by that Timeout, not only by the 10 s handshake timeout), then tries again with backoff.\n\n")
	for _, n := range res.notes() {
		b.WriteString("- " + mdEscape(n) + "\n")
	}
	return b.String()
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

// ---- SVG ----

var frameColors = map[wire.FrameType]string{
	wire.TypePing:   "#2563eb",
	wire.TypePong:   "#06b6d4",
	wire.TypeCall:   "#f59e0b",
	wire.TypeReply:  "#16a34a",
	wire.TypeGoAway: "#dc2626",
	wire.TypeHello:  "#7c3aed",
}

const otherColor = "#6b7280"

var stateColors = map[pulse.ConnState]string{
	pulse.StateConnecting: "#fca5a5",
	pulse.StateReady:      "#86efac",
	pulse.StateSuspect:    "#fcd34d",
	pulse.StateDraining:   "#c4b5fd",
	pulse.StateClosed:     "#d1d5db",
}

func colorOf(t wire.FrameType) string {
	if c, ok := frameColors[t]; ok {
		return c
	}
	return otherColor
}

func esc(s string) string { return html.EscapeString(s) }

// marker is a labelled vertical line.
type marker struct {
	at     time.Duration
	label  string
	color  string
	dashed bool
}

func (res *result) svg() string {
	const (
		width, height = 1000, 336
		left, right   = 78.0, 975.0
		laneClient    = 140.0
		laneServer    = 204.0
		axisY         = 248.0
		labelTop      = 58.0
		labelStep     = 13.0
		labelRows     = 4
		charW         = 6.4 // per character at 11 px, generous
	)
	end := res.closed
	for _, f := range res.frames {
		end = max(end, f.at)
	}
	tMax := time.Duration(math.Ceil((end+150*time.Millisecond).Seconds()*2) / 2 * float64(time.Second))
	if tMax <= 0 {
		tMax = time.Second
	}
	x := func(d time.Duration) float64 { return left + (right-left)*d.Seconds()/tMax.Seconds() }

	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%.0f" y="22" font-size="15" font-weight="bold" fill="#111827">Pulse liveness: the path under an idle connection is cut, then healed (measured)</text>`+"\n", left)
	p(`<text x="%.0f" y="39" font-size="11.5" fill="#4b5563">%s</text>`+"\n", left, esc(fmt.Sprintf(
		"real run on 127.0.0.1 through faultproxy · Heartbeat Interval %v, Timeout %v on both sides · %s",
		res.cfg.interval, res.cfg.timeout, command)))

	// Blackhole band.
	if res.cut >= 0 {
		heal := res.heal
		if heal < 0 {
			heal = end
		}
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#6b7280" fill-opacity="0.13"/>`+"\n",
			x(res.cut), laneClient-30, x(heal)-x(res.cut), axisY-10-(laneClient-30))
		p(`<text x="%.1f" y="%.1f" font-size="10.5" fill="#4b5563" text-anchor="middle">blackhole: bytes dropped both ways, no socket closed</text>`+"\n",
			(x(res.cut)+x(heal))/2, axisY-14)
	}

	// Markers, drawn under the frames, with labels in rows placed so that
	// they do not overlap.
	var marks []marker
	if res.cut >= 0 {
		marks = append(marks, marker{res.cut, fmt.Sprintf("blackhole %.2f s", res.cut.Seconds()), "#111827", false})
		marks = append(marks, marker{res.cut + res.cfg.timeout, fmt.Sprintf("bound: cut + Timeout (%s)", plusMS(res.cfg.timeout)), "#9f1239", true})
	}
	if res.clientDead >= 0 {
		marks = append(marks, marker{res.clientDead, fmt.Sprintf("client declares server dead (%s)", plusMS(res.clientDead-res.cut)), "#9f1239", false})
	}
	if res.serverDone >= 0 {
		marks = append(marks, marker{res.serverDone, fmt.Sprintf("server reaps client (%s)", plusMS(res.serverDone-res.cut)), "#9a3412", false})
	}
	if res.heal >= 0 {
		marks = append(marks, marker{res.heal, fmt.Sprintf("heal %.2f s", res.heal.Seconds()), "#15803d", false})
	}
	if res.reconnected >= 0 {
		marks = append(marks, marker{res.reconnected, fmt.Sprintf("reconnected %.2f s", res.reconnected.Seconds()), "#0f766e", false})
	}
	slices.SortStableFunc(marks, func(a, b marker) int { return int(a.at - b.at) })
	var (
		rowEnd [labelRows]float64
		labels []string
	)
	for i := range rowEnd {
		rowEnd[i] = -1e9
	}
	for _, m := range marks {
		xx := x(m.at)
		w := float64(len([]rune(m.label))) * charW
		anchor, lo, hi, tx := "start", xx+3, xx+3+w, xx+3
		if hi > width-4 {
			anchor, lo, hi, tx = "end", xx-3-w, xx-3, xx-3
		}
		row := labelRows - 1
		for i := range labelRows {
			if lo > rowEnd[i]+10 {
				row = i
				break
			}
		}
		rowEnd[row] = hi
		ly := labelTop + float64(row)*labelStep
		dash := ""
		if m.dashed {
			dash = ` stroke-dasharray="5,3"`
		}
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.3" stroke-opacity="0.7"%s/>`+"\n", xx, ly+3, xx, axisY, m.color, dash)
		labels = append(labels, fmt.Sprintf(`<text x="%.1f" y="%.1f" font-size="11" fill="%s" text-anchor="%s" stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke">%s</text>`+"\n", tx, ly, m.color, anchor, esc(m.label)))
	}
	// Labels over every line, their white halo keeping them legible.
	for _, l := range labels {
		b.WriteString(l)
	}

	// Lanes.
	for _, l := range []struct {
		name string
		y    float64
	}{{"client", laneClient}, {"server", laneServer}} {
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#9ca3af" stroke-width="1"/>`+"\n", left, l.y, right, l.y)
		p(`<text x="12" y="%.1f" font-size="13" font-weight="bold" fill="#111827">%s</text>`+"\n", l.y+4, l.name)
		p(`<text x="12" y="%.1f" font-size="9.5" fill="#6b7280">sent ▲</text>`+"\n", l.y-10)
		p(`<text x="12" y="%.1f" font-size="9.5" fill="#6b7280">read ▼</text>`+"\n", l.y+17)
	}

	// Client state strip, just under the client's read ticks.
	stripY := laneClient + 14
	for i, ev := range res.states {
		from := res.rel(ev.At)
		to := end
		if i+1 < len(res.states) {
			to = res.rel(res.states[i+1].At)
		}
		if ev.To == pulse.StateClosed || to <= from {
			continue
		}
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="5" fill="%s"><title>%s</title></rect>`+"\n",
			x(from), stripY, max(x(to)-x(from), 0.8), stateColors[ev.To], esc("client state "+ev.To.String()))
	}

	// Client connections whose handshake never completed: a bracket over
	// their life.
	for _, c := range res.conns {
		if c.side != clientSide || c.closed < 0 {
			continue
		}
		helloIn := false
		for _, f := range res.frames {
			if f.side == clientSide && f.conn == c.n && !f.sent && f.hdr.Type == wire.TypeHello {
				helloIn = true
				break
			}
		}
		if helloIn {
			continue
		}
		x1, x2, y := x(c.opened), x(c.closed), stripY+24
		p(`<path d="M%.1f %.1f V%.1f H%.1f V%.1f" fill="none" stroke="#7c3aed" stroke-width="1"/>`+"\n", x1, y-4, y, x2, y-4)
		p(`<text x="%.1f" y="%.1f" font-size="9.5" fill="#5b21b6" text-anchor="middle" stroke="#ffffff" stroke-width="3" stroke-linejoin="round" paint-order="stroke">%s</text>`+"\n",
			(x1+x2)/2, y-4, esc(fmt.Sprintf("redial %d: HELLO lost, handshake timeout", c.n-1)))
	}

	// Frames: sent above the lane, read below it.
	for _, f := range res.frames {
		y := laneClient
		if f.side == serverSide {
			y = laneServer
		}
		xx := x(f.at)
		title := esc(fmt.Sprintf("%s %s %v at %s (conn %d)", f.side, map[bool]string{true: "sent", false: "read"}[f.sent], f.hdr.Type, secs(f.at), f.conn))
		if f.sent {
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2.4"><title>%s</title></line>`+"\n",
				xx, y-1, xx, y-17, colorOf(f.hdr.Type), title)
		} else {
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5" stroke-opacity="0.8"><title>%s</title></line>`+"\n",
				xx, y+2, xx, y+11, colorOf(f.hdr.Type), title)
		}
	}

	// Time axis.
	p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#374151" stroke-width="1"/>`+"\n", left, axisY, right, axisY)
	for t := time.Duration(0); t <= tMax; t += 500 * time.Millisecond {
		xx := x(t)
		h, size := 4.0, 10.5
		if t%time.Second == 0 {
			h, size = 7, 11.5
		}
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#374151" stroke-width="1"/>`+"\n", xx, axisY, xx, axisY+h)
		p(`<text x="%.1f" y="%.1f" font-size="%.1f" fill="#374151" text-anchor="middle">%g</text>`+"\n", xx, axisY+19, size, t.Seconds())
	}
	p(`<text x="%.1f" y="%.1f" font-size="11" fill="#374151" text-anchor="end">time since the client dialed (s)</text>`+"\n", right, axisY+34)

	// Legend.
	ly := axisY + 56
	lx := left
	p(`<text x="%.1f" y="%.1f" font-size="11" fill="#374151">frames:</text>`+"\n", lx, ly+4)
	lx += 50
	for _, t := range []wire.FrameType{wire.TypePing, wire.TypePong, wire.TypeCall, wire.TypeReply, wire.TypeGoAway, wire.TypeHello} {
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", lx, ly-6, lx, ly+6, colorOf(t))
		p(`<text x="%.1f" y="%.1f" font-size="11" fill="#111827">%v</text>`+"\n", lx+6, ly+4, t)
		lx += 14 + float64(len(t.String()))*7.5 + 10
	}
	p(`<text x="%.1f" y="%.1f" font-size="11" fill="#4b5563">tall tick above a lane: frame that side wrote; short tick below: frame it read</text>`+"\n", lx+8, ly+4)

	ly += 22
	lx = left
	p(`<rect x="%.1f" y="%.1f" width="22" height="12" fill="#6b7280" fill-opacity="0.13" stroke="#9ca3af" stroke-width="0.5"/>`+"\n", lx, ly-6)
	p(`<text x="%.1f" y="%.1f" font-size="11" fill="#111827">blackhole</text>`+"\n", lx+28, ly+4)
	lx += 100
	p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#9f1239" stroke-width="1.3" stroke-dasharray="5,3"/>`+"\n", lx, ly, lx+24, ly)
	p(`<text x="%.1f" y="%.1f" font-size="11" fill="#111827">detection bound (cut + Timeout)</text>`+"\n", lx+30, ly+4)
	lx += 230
	p(`<text x="%.1f" y="%.1f" font-size="11" fill="#374151">client state:</text>`+"\n", lx, ly+4)
	lx += 78
	for _, st := range []pulse.ConnState{pulse.StateReady, pulse.StateSuspect, pulse.StateConnecting} {
		p(`<rect x="%.1f" y="%.1f" width="22" height="6" fill="%s"/>`+"\n", lx, ly-3, stateColors[st])
		p(`<text x="%.1f" y="%.1f" font-size="11" fill="#111827">%v</text>`+"\n", lx+27, ly+4, st)
		lx += 27 + float64(len(st.String()))*7 + 16
	}
	p("</svg>\n")
	return b.String()
}
