package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/internal/faultproxy"
	"github.com/pulse-rpc/pulse/liveness"
)

func init() {
	register(&command{name: "demo", short: "play heartbeats, dead-peer detection, reconnects and pushes on loopback, and check the bounds", run: runDemo})
}

const demoUsage = `[-speed f] [-color auto|always|never] [-calls n] [-v]

Plays, in this process and on 127.0.0.1 only, what long connections and
heartbeats are for: one server and three clients.

  alice  heartbeats and calls now and then: her RTT and phi are shown; she
         makes concurrent calls over her one connection, and must never be
         declared dead.
  bob    talks, then falls silent with heartbeats off: the server reaps him
         after its deadline (GOAWAY "peer silent"); he reconnects and talks.
  carol  her path goes dead without a FIN (an in-process proxy drops every
         byte both ways): both ends detect it within the timeout; the path
         heals and she reconnects.
  push   the server pushes a chat line to every connected client.

The timeline is followed by a summary of each expected event, its bound and
the measured time. The exit status is 0 only when every event happened
within its bound, 1 otherwise (2 for a bad command line).`

// ChatClient is the service every demo client registers, so that the
// server can push chat lines to it, and call it back, over the client's
// own connection.
type ChatClient struct {
	name   string
	onPush func(*ChatLine)
}

// Message receives a line pushed by the server.
func (c *ChatClient) Message(line *ChatLine, _ *struct{}) error {
	c.onPush(line)
	return nil
}

// Whoami is called back by the server while a call is in flight.
func (c *ChatClient) Whoami(_ struct{}, reply *string) error {
	*reply = c.name
	return nil
}

// Greeter greets a client by first asking the client who it is: a
// server-to-client call made from inside a client-to-server call.
type Greeter struct{}

// Hello calls the caller's ChatClient.Whoami and greets it by name.
func (Greeter) Hello(ctx context.Context, _ struct{}, reply *string) error {
	var name string
	if err := pulse.PeerFromContext(ctx).Call(ctx, "ChatClient.Whoami", struct{}{}, &name); err != nil {
		return err
	}
	*reply = "hello, " + name
	return nil
}

func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", demoUsage, stderr)
	speed := fs.Float64("speed", 1, "play faster (2: twice as fast, every duration halved) or slower; in (0, 20]")
	colorMode := fs.String("color", "auto", "colour the output: auto (when stdout is a terminal and NO_COLOR is unset), always or never")
	calls := fs.Int("calls", 100, "number of concurrent calls alice makes over her one connection")
	verbose := fs.Bool("v", false, "also write the library's log to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	if !(*speed > 0 && *speed <= 20) { // also NaN
		return usageError{fmt.Sprintf("-speed %v: want more than 0 and at most 20", *speed)}
	}
	if *calls < 1 || *calls > 100000 {
		return usageError{fmt.Sprintf("-calls %d: want 1 to 100000", *calls)}
	}
	color, err := demoColor(*colorMode, stdout)
	if err != nil {
		return err
	}
	logOut := io.Discard
	if *verbose {
		logOut = stderr
	}

	start := time.Now()
	d := newDemo(*speed, *calls, logOut, newTimeline(stdout, color, start))
	// The global deadline: every wait in the scenario ends by it, and then
	// everything is shut down. Should the shutdown itself hang, give up
	// a little later without it.
	limit := d.scale(60 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.run(ctx) }()
	select {
	case err = <-done:
	case <-time.After(limit + 5*time.Second):
		d.tl.close()
		return fmt.Errorf("the demo did not shut down within %v", limit+5*time.Second)
	}
	if ctx.Err() != nil {
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("gave up at the global deadline (%v)", limit)
		} else {
			err = fmt.Errorf("%w (and the global deadline, %v, passed)", err, limit)
		}
	}
	if err != nil {
		d.tl.say("demo", tlBad, "stopped: %v", err)
	}
	elapsed := time.Since(start)
	notes := []string{
		fmt.Sprintf("slack = 500ms/speed, at least 100ms (%v here): the timer's and the scheduler's lateness, which does not shrink with -speed.", d.slack),
		fmt.Sprintf("run time %s, everything closed.", tlSecs(elapsed)),
	}
	title := fmt.Sprintf("Summary (speed %g: heartbeat interval %v, timeout %v, slack %v)", *speed, d.interval, d.timeout, d.slack)
	ok := d.tl.summary(title, d.rows.all(), notes)
	d.tl.close()
	switch {
	case err != nil:
		return err
	case !ok:
		failed := 0
		for _, r := range d.rows.all() {
			if !r.ok {
				failed++
			}
		}
		return fmt.Errorf("%d of %d expected events failed (marked FAIL)", failed, len(d.rows.all()))
	}
	return nil
}

// demoRows are the expectations, in the order of the summary.
type demoRows struct {
	concurrent, bobReaped, bobTold, bobBack, carolClient, carolServer, carolBack, push, alice *demoRow
}

func (r *demoRows) all() []*demoRow {
	return []*demoRow{r.concurrent, r.bobReaped, r.bobTold, r.bobBack, r.carolClient, r.carolServer, r.carolBack, r.push, r.alice}
}

// demoClose is a connection closing on the server.
type demoClose struct {
	who string
	n   int // the actor's connection number on the server
	at  time.Time
	err error
}

// demoPush is a chat line pushed to a client.
type demoPush struct {
	who  string
	at   time.Time
	line ChatLine
}

type demo struct {
	speed float64
	calls int
	tl    *timeline
	start time.Time
	log   io.Writer

	interval, timeout, slack time.Duration
	handshake                time.Duration // carol's handshake timeout
	backoff                  liveness.Backoff

	srv   *pulse.Server
	lns   []net.Listener
	px    *faultproxy.Proxy
	ports map[string]string // the server's listening address → who dials it

	alice, bob, carol *pulse.Client
	rows              demoRows

	mu      sync.Mutex    // protects following
	changed chan struct{} // closed and replaced when anything below changes
	opens   map[string]int
	connNo  map[*pulse.Peer]int
	closes  []demoClose
	states  map[string][]pulse.StateChange
	pushes  []demoPush
}

func newDemo(speed float64, calls int, log io.Writer, tl *timeline) *demo {
	d := &demo{speed: speed, calls: calls, tl: tl, start: tl.start, log: log,
		changed: make(chan struct{}), opens: map[string]int{}, connNo: map[*pulse.Peer]int{},
		states: map[string][]pulse.StateChange{}, ports: map[string]string{}}
	d.interval = d.scale(500 * time.Millisecond)
	d.timeout = d.scale(2 * time.Second)
	d.slack = max(d.scale(500*time.Millisecond), 100*time.Millisecond)
	d.handshake = d.scale(time.Second)
	d.backoff = liveness.Backoff{Base: d.scale(50 * time.Millisecond), Factor: 2, Cap: d.scale(400 * time.Millisecond)}
	detect := "≤ " + tlSecs(d.timeout+d.slack) + " after cut"
	d.rows = demoRows{
		concurrent:  &demoRow{event: fmt.Sprintf("alice: %d concurrent calls", calls), bound: "all correct"},
		bobReaped:   &demoRow{event: "server reaps silent bob", bound: tlSecs(d.timeout) + "–" + tlSecs(d.timeout+d.slack) + " after last call"},
		bobTold:     &demoRow{event: `bob gets GOAWAY "peer silent"`, bound: "≤ " + tlSecs(d.timeout+d.slack) + " after last call"},
		bobBack:     &demoRow{event: "bob calls again (and redials)", bound: "≤ " + tlSecs(d.backoff.Cap+d.slack) + " after GOAWAY"},
		carolClient: &demoRow{event: "carol detects the dead path", bound: detect},
		carolServer: &demoRow{event: "server detects carol's dead path", bound: detect},
		carolBack:   &demoRow{event: "carol reconnects and calls again", bound: "≤ " + tlSecs(d.handshake+d.backoff.Cap+d.slack) + " after heal"},
		push:        &demoRow{event: "push reaches every client", bound: "3 of 3 in ≤ " + tlSecs(d.slack)},
		alice:       &demoRow{event: "alice is never declared dead", bound: "1 conn, always ready"},
	}
	return d
}

// scale divides a duration of the scenario at speed 1 by the speed.
func (d *demo) scale(x time.Duration) time.Duration {
	return time.Duration(math.Round(float64(x) / d.speed))
}

// logger returns the library's logger for one side.
func (d *demo) logger(who string) *slog.Logger {
	if d.log == io.Discard {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(d.log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("side", who)
}

// notifyLocked wakes the waiters. d.mu must be held.
func (d *demo) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// waitFor waits until cond, called with d.mu held, is true, for at most
// limit or until ctx ends. It reports whether cond became true.
func (d *demo) waitFor(ctx context.Context, limit time.Duration, cond func() bool) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	for {
		d.mu.Lock()
		ok := cond()
		ch := d.changed
		d.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// sleepUntil sleeps until the scenario's time x (at speed 1) has come.
func (d *demo) sleepUntil(ctx context.Context, x time.Duration) error {
	t := time.NewTimer(time.Until(d.start.Add(d.scale(x))))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stateAfter returns who's first state change after t that satisfies
// pred. d.mu must be held.
func (d *demo) stateAfter(who string, t time.Time, pred func(pulse.StateChange) bool) (pulse.StateChange, bool) {
	for _, sc := range d.states[who] {
		if sc.At.After(t) && pred(sc) {
			return sc, true
		}
	}
	return pulse.StateChange{}, false
}

// closeAfter returns the first close of one of who's connections on the
// server after t. d.mu must be held.
func (d *demo) closeAfter(who string, t time.Time) (demoClose, bool) {
	for _, c := range d.closes {
		if c.who == who && c.at.After(t) {
			return c, true
		}
	}
	return demoClose{}, false
}

// ---- Hooks: they feed the timeline ----

// connEvent is the server's connection hook. Each client dials its own
// port of the one server, so the port a connection came in on
// (Peer.LocalAddr) names its client from the moment it opens, carol's
// too, although hers arrive from the proxy's address.
func (d *demo) connEvent(ev pulse.ConnEvent) {
	now := time.Now()
	who := d.ports[ev.Peer.LocalAddr().String()]
	d.mu.Lock()
	if ev.Open {
		d.opens[who]++
		d.connNo[ev.Peer] = d.opens[who]
	}
	n := d.connNo[ev.Peer]
	if !ev.Open {
		d.closes = append(d.closes, demoClose{who: who, n: n, at: now, err: ev.Err})
	}
	d.notifyLocked()
	d.mu.Unlock()

	if ev.Open {
		hb := "no heartbeats: only calls keep it alive"
		if iv := ev.Peer.Stats().Interval; iv > 0 {
			hb = "heartbeat every " + iv.String()
		}
		via := ""
		if who == "carol" {
			via = " (the proxy)"
		}
		d.tl.add(now, "server", tlInfo, "", "%s's connection #%d open, from %s%s; %s", who, n, ev.Peer.RemoteAddr(), via, hb)
		return
	}
	var ce *pulse.ConnError
	if errors.Is(ev.Err, pulse.ErrPeerSilent) && errors.As(ev.Err, &ce) {
		d.tl.add(now, "server", tlBad, "", "declares %s dead: %s; sends GOAWAY %q, closes #%d", who, ce.Message, ce.Code, n)
		return
	}
	d.tl.add(now, "server", tlInfo, "", "%s's connection #%d closed: %s", who, n, demoErrText(ev.Err))
}

// stateChange is each client's state hook.
func (d *demo) stateChange(who string, sc pulse.StateChange) {
	d.mu.Lock()
	prev := d.states[who]
	d.states[who] = append(prev, sc)
	readies := 0
	var lostAt time.Time // the last loss of a ready connection
	for _, p := range d.states[who] {
		switch {
		case p.To == pulse.StateReady && p.From != pulse.StateSuspect:
			readies++
		case (p.From == pulse.StateReady || p.From == pulse.StateSuspect) && p.To != pulse.StateReady && p.To != pulse.StateSuspect:
			lostAt = p.At
		}
	}
	d.notifyLocked()
	d.mu.Unlock()

	switch sc.To {
	case pulse.StateReady:
		switch {
		case sc.From == pulse.StateSuspect:
			d.tl.add(sc.At, who, tlGood, "", "the server is heard again: ready")
		case readies > 1:
			d.tl.add(sc.At, who, tlGood, "", "reconnected: connection #%d, %s after losing the last one", readies, tlShort(sc.At.Sub(lostAt)))
		}
		// The first connection is told by the scenario, with its settings.
	case pulse.StateSuspect:
		d.tl.add(sc.At, who, tlBad, "", "suspect: nothing heard from the server for %v", min(d.timeout/2, 2*d.interval))
	case pulse.StateDraining:
		d.tl.add(sc.At, who, tlBad, "", "told by the server: %s; redialing", demoErrText(sc.Err))
	case pulse.StateIdle:
		d.tl.add(sc.At, who, tlBad, "", "told by the server: %s; idle: his next call dials again", demoErrText(sc.Err))
	case pulse.StateConnecting:
		switch sc.From {
		case pulse.StateReady, pulse.StateSuspect:
			if errors.Is(sc.Err, pulse.ErrPeerSilent) {
				d.tl.add(sc.At, who, tlBad, "", "declares the server dead: %s; redialing", demoErrText(sc.Err))
			} else {
				d.tl.add(sc.At, who, tlBad, "", "connection lost: %s; redialing", demoErrText(sc.Err))
			}
		case pulse.StateConnecting:
			if errors.Is(sc.Err, pulse.ErrHandshake) && (errors.Is(sc.Err, os.ErrDeadlineExceeded) || errors.Is(sc.Err, context.DeadlineExceeded)) {
				d.tl.add(sc.At, who, tlBad, "", "redial failed: no answer to its HELLO within the handshake timeout; the path is still dead")
			} else {
				d.tl.add(sc.At, who, tlBad, "", "redial failed: %s", demoErrText(sc.Err))
			}
		}
		// From draining: the old connection closed after its GOAWAY,
		// told already.
	case pulse.StateClosed:
		d.tl.add(sc.At, who, tlInfo, "", "closed")
	}
}

// pushed records a chat line pushed to who.
func (d *demo) pushed(who string, line *ChatLine) {
	now := time.Now()
	d.mu.Lock()
	d.pushes = append(d.pushes, demoPush{who: who, at: now, line: *line})
	d.notifyLocked()
	d.mu.Unlock()
	d.tl.add(now, "push", tlInfo, "", "server → %s: <%s> %s", who, line.From, line.Text)
}

// demoErrText says briefly why a connection closed or a dial failed:
// the library's error without its "pulse: connection closed: " wording.
func demoErrText(err error) string {
	if err == nil {
		return "no error"
	}
	var ce *pulse.ConnError
	if !errors.As(err, &ce) {
		return strings.TrimPrefix(err.Error(), "pulse: ")
	}
	var s string
	switch {
	case ce.Reason == pulse.ReasonGoAway:
		s = fmt.Sprintf("GOAWAY %q", ce.Code.String())
	case ce.Reason == pulse.ReasonSilent && ce.Message != "":
		return ce.Message // "no byte for 2s (timeout 2s)", or phi's verdict
	case ce.Reason == pulse.ReasonPeerClose:
		s = "closed by the peer" // its Message says the same
		if ce.Err != nil {
			s += ": " + ce.Err.Error()
		}
		return s
	case ce.Code != pulse.CloseNormal:
		s = fmt.Sprintf("%s (GOAWAY %q)", ce.Reason, ce.Code.String())
	default:
		s = ce.Reason.String()
	}
	if ce.Message != "" {
		s += ": " + ce.Message
	}
	if ce.Err != nil {
		sep := ": "
		if ce.Reason == pulse.ReasonGoAway {
			sep = ", then " // the GOAWAY came first, then this
		}
		s += sep + strings.TrimPrefix(ce.Err.Error(), "pulse: ")
	}
	return s
}

// demoHealth is a client's connection health, for the end of a line.
func demoHealth(c *pulse.Client) string {
	st := c.Stats()
	if st.RTT == 0 {
		return fmt.Sprintf("no heartbeat answered yet, last byte %s ago", tlShort(st.SinceRead))
	}
	return fmt.Sprintf("rtt %s, phi %.2f, last byte %s ago", tlShort(st.RTT), st.Phi, tlShort(st.SinceRead))
}

// ---- The run ----

// run sets everything up, plays the scenario and shuts everything down.
// It returns an error when something could not be set up or the global
// deadline passed; the expectations are in d.rows.
func (d *demo) run(ctx context.Context) (err error) {
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	d.tl.plain(sgrBold, "pulse demo: one server and three clients in this process, on 127.0.0.1")
	d.tl.plain(sgrDim, "heartbeat interval %v, timeout %v (speed %g); a dead peer must be found within timeout + %v of slack", d.interval, d.timeout, d.speed, d.slack)
	d.tl.plain("", "")

	srv, err := pulse.NewServer(
		pulse.WithHeartbeat(pulse.Heartbeat{Interval: d.interval, Timeout: d.timeout, MinInterval: time.Millisecond}),
		pulse.WithMaxConcurrentCalls(max(pulse.DefaultMaxConcurrentCalls, d.calls)),
		pulse.WithLogger(d.logger("server")),
		pulse.WithConnHook(d.connEvent),
	)
	if err != nil {
		return err
	}
	d.srv = srv
	if err := registerDemoServices(srv); err != nil {
		return err
	}
	if err := srv.Register(Greeter{}); err != nil {
		return err
	}
	// One port per client, so that the server can tell who a connection
	// is (see connEvent).
	addrs := map[string]string{}
	for _, who := range []string{"alice", "bob", "carol"} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		d.lns = append(d.lns, l)
		d.ports[l.Addr().String()] = who
		addrs[who] = l.Addr().String()
	}
	served := make(chan error, len(d.lns))
	for _, l := range d.lns {
		go func() { served <- srv.Serve(l) }()
	}
	cleanups = append(cleanups, func() {
		srv.Close()
		for range d.lns {
			if err := <-served; !errors.Is(err, pulse.ErrServerClosed) {
				d.tl.say("server", tlBad, "Serve returned %v", err)
			}
		}
		d.tl.say("server", tlInfo, "closed")
	})
	d.tl.say("server", tlInfo, "listening on %s (alice), %s (bob), %s (carol); heartbeat %v, deadline %v",
		addrs["alice"], addrs["bob"], addrs["carol"], d.interval, d.timeout)

	px, err := faultproxy.New(addrs["carol"])
	if err != nil {
		return err
	}
	d.px = px
	cleanups = append(cleanups, func() { px.Close() })
	d.tl.say("proxy", tlInfo, "fault proxy %s → %s: carol's network path", px.Addr(), addrs["carol"])

	// The clients. Closing them is the first thing cleanup does (after
	// the goroutines that call them stop): their GOAWAYs reach the server
	// before the proxy and the server close.
	phi := pulse.Heartbeat{Interval: d.interval, Timeout: d.timeout, Detector: pulse.DetectorPhi}
	var clients []*pulse.Client
	cleanups = append(cleanups, func() {
		for _, c := range clients {
			c.Close()
		}
		wait := max(d.scale(time.Second), 200*time.Millisecond)
		for end := time.Now().Add(wait); len(srv.Peers()) > 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
	})
	dial := func(who, addr string, hb pulse.Heartbeat, extra ...pulse.Option) (*pulse.Client, error) {
		opts := append([]pulse.Option{
			pulse.WithHeartbeat(hb),
			pulse.WithBackoff(d.backoff),
			pulse.WithLogger(d.logger(who)),
			pulse.WithStateHook(func(sc pulse.StateChange) { d.stateChange(who, sc) }),
		}, extra...)
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		c, err := pulse.Dial(dctx, addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", who, err)
		}
		clients = append(clients, c)
		if err := c.Register(&ChatClient{name: who, onPush: func(l *ChatLine) { d.pushed(who, l) }}); err != nil {
			return nil, err
		}
		return c, nil
	}
	if d.alice, err = dial("alice", addrs["alice"], phi); err != nil {
		return err
	}
	st := d.alice.Stats()
	d.tl.say("alice", tlInfo, "connected: codec %s, heartbeat every %v, phi detector, the server reaps her after %v of silence", st.Codec, st.Interval, st.PeerTimeout)
	// Bob's Timeout bounds only his dials: without heartbeats a client
	// does not judge the server's silence.
	if d.bob, err = dial("bob", addrs["bob"], pulse.Heartbeat{Interval: -1, Timeout: d.timeout}); err != nil {
		return err
	}
	d.tl.say("bob", tlInfo, "connected, heartbeats off: only his calls keep the connection alive (server deadline %v)", d.bob.Stats().PeerTimeout)
	if d.carol, err = dial("carol", px.Addr(), phi, pulse.WithHandshakeTimeout(d.handshake)); err != nil {
		return err
	}
	d.tl.say("carol", tlInfo, "connected through the proxy: heartbeat every %v, phi detector, handshake timeout %v", d.carol.Stats().Interval, d.handshake)

	// Alice calls now and then all along; bob, once back, talks often
	// enough to keep his connection. Both stop before the clients close.
	stop := make(chan struct{})
	var (
		bg                     sync.WaitGroup
		stopOnce               sync.Once
		aliceFailed, bobFailed int
	)
	halt := func() {
		stopOnce.Do(func() { close(stop) })
		bg.Wait()
	}
	cleanups = append(cleanups, halt)
	bg.Go(func() { aliceFailed = d.aliceTalks(ctx, stop) })

	err = d.scenario(ctx, stop, &bg, &bobFailed)

	// Alice's verdict: one connection, no state change after it, no
	// failed call.
	halt()
	d.mu.Lock()
	changes := len(d.states["alice"]) - 1
	d.mu.Unlock()
	connects := d.alice.Stats().Connects
	d.rows.alice.measured = fmt.Sprintf("%d conn, %d changes, %d failed calls", connects, changes, aliceFailed)
	d.rows.alice.ok = connects == 1 && changes == 0 && aliceFailed == 0 && err == nil
	if err != nil {
		d.rows.alice.measured += " (run cut short)"
	}
	if bobFailed > 0 {
		d.tl.say("bob", tlBad, "%d of his calls after the reconnect failed", bobFailed)
		d.rows.bobBack.measured += fmt.Sprintf(" (%d later calls failed)", bobFailed)
		d.rows.bobBack.ok = false
	}
	return err
}

// aliceTalks makes a call every 1.5 s (at speed 1) until stop, showing
// her connection's health, and returns how many calls failed.
func (d *demo) aliceTalks(ctx context.Context, stop <-chan struct{}) (failed int) {
	for i := 0; ; i++ {
		t := time.NewTimer(time.Until(d.start.Add(d.scale(900*time.Millisecond + time.Duration(i)*1500*time.Millisecond))))
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return failed
		}
		cctx, cancel := context.WithTimeout(ctx, d.timeout)
		t0 := time.Now()
		var r EchoReply
		err := d.alice.Call(cctx, "Echo.Echo", &EchoArgs{Msg: "still here"}, &r)
		cancel()
		if err != nil {
			failed++
			d.tl.add(t0, "alice", tlBad, demoHealth(d.alice), "Echo.Echo failed: %v", err)
			continue
		}
		d.tl.add(t0, "alice", tlInfo, demoHealth(d.alice), "Echo.Echo %q in %s", r.Msg, tlShort(time.Since(t0)))
	}
}

// call makes one call bounded by the timeout.
func (d *demo) call(ctx context.Context, c *pulse.Client, method string, args, reply any) error {
	cctx, cancel := context.WithTimeout(ctx, 2*d.timeout)
	defer cancel()
	return c.Call(cctx, method, args, reply)
}

// scenario plays the story. Times in comments and sleepUntil are at speed
// 1.
func (d *demo) scenario(ctx context.Context, stop <-chan struct{}, bg *sync.WaitGroup, bobFailed *int) error {
	// A call, a callback, concurrent calls.
	if err := d.sleepUntil(ctx, 100*time.Millisecond); err != nil {
		return err
	}
	t0 := time.Now()
	var sum int
	if err := d.call(ctx, d.alice, "Arith.Add", &ArithArgs{A: 2, B: 3}, &sum); err != nil {
		return fmt.Errorf("alice: Arith.Add: %w", err)
	}
	d.tl.add(t0, "alice", tlInfo, "", "Arith.Add(2, 3) = %d in %s", sum, tlShort(time.Since(t0)))
	t0 = time.Now()
	var greeting string
	if err := d.call(ctx, d.bob, "Greeter.Hello", struct{}{}, &greeting); err != nil {
		return fmt.Errorf("bob: Greeter.Hello: %w", err)
	}
	d.tl.add(t0, "bob", tlInfo, "", "Greeter.Hello = %q: the server called him back (ChatClient.Whoami) in the middle of his call", greeting)
	d.concurrent(ctx)

	// Bob talks, then falls silent.
	var lastCall time.Time
	for i := range 3 {
		if err := d.sleepUntil(ctx, time.Duration(500+500*i)*time.Millisecond); err != nil {
			return err
		}
		lastCall = time.Now()
		var r EchoReply
		msg := fmt.Sprintf("message %d of 3", i+1)
		if err := d.call(ctx, d.bob, "Echo.Echo", &EchoArgs{Msg: msg}, &r); err != nil {
			return fmt.Errorf("bob: Echo.Echo: %w", err)
		}
		note := ""
		if i == 0 {
			note = fmt.Sprintf(": each call moves the server's deadline for him to %v later", d.timeout)
		}
		d.tl.add(lastCall, "bob", tlInfo, "", "Echo.Echo %q%s", msg, note)
	}
	d.tl.say("bob", tlInfo, "falls silent with heartbeats off: the server should reap him at %s",
		tlSecs(lastCall.Add(d.timeout).Sub(d.start)))

	// The server reaps him; he hears why.
	var reap demoClose
	var told pulse.StateChange
	var reaped, gotTold bool
	d.waitFor(ctx, d.timeout+d.slack+d.scale(2*time.Second), func() bool {
		reap, reaped = d.closeAfter("bob", lastCall)
		told, gotTold = d.stateAfter("bob", lastCall, func(sc pulse.StateChange) bool {
			return sc.To == pulse.StateDraining || sc.To == pulse.StateConnecting || sc.To == pulse.StateIdle
		})
		return reaped && gotTold
	})
	if reaped {
		after := reap.at.Sub(lastCall)
		d.rows.bobReaped.measured = tlSecs(after)
		d.rows.bobReaped.ok = errors.Is(reap.err, pulse.ErrPeerSilent) && after >= d.timeout && after <= d.timeout+d.slack
		if !errors.Is(reap.err, pulse.ErrPeerSilent) {
			d.rows.bobReaped.measured += " (" + demoErrText(reap.err) + ")"
		}
	}
	if gotTold {
		after := told.At.Sub(lastCall)
		var ce *pulse.ConnError
		silent := (told.To == pulse.StateDraining || told.To == pulse.StateIdle) && errors.As(told.Err, &ce) && ce.Code == pulse.ClosePeerSilent
		d.rows.bobTold.measured = tlSecs(after)
		if !silent {
			d.rows.bobTold.measured += " (" + demoErrText(told.Err) + ")"
		}
		d.rows.bobTold.ok = silent && after <= d.timeout+d.slack
	}
	if !gotTold {
		return ctx.Err()
	}

	// He calls again: with heartbeats off he went idle, so this call dials
	// a new connection.
	{
		var r EchoReply
		err := d.call(ctx, d.bob, "Echo.Echo", &EchoArgs{Msg: "back"}, &r)
		after := time.Since(told.At)
		if err != nil {
			d.tl.say("bob", tlBad, "Echo.Echo failed after the reconnect: %v", err)
			d.rows.bobBack.measured = "call failed"
		} else {
			d.tl.say("bob", tlGood, "Echo.Echo %q on connection #%d; from now on he calls every %v, within the deadline", r.Msg, d.bob.Stats().Connects, d.timeout/2)
			d.rows.bobBack.measured = tlSecs(after)
			d.rows.bobBack.ok = after <= d.backoff.Cap+d.slack
			bg.Go(func() { *bobFailed = d.bobTalks(ctx, stop) })
		}
	}

	// Carol's path dies without a FIN.
	if err := d.sleepUntil(ctx, 4500*time.Millisecond); err != nil {
		return err
	}
	var carolPeer *pulse.Peer
	for _, p := range d.srv.Peers() {
		if d.ports[p.LocalAddr().String()] == "carol" {
			carolPeer = p
		}
	}
	meta := "carol: " + demoHealth(d.carol)
	if carolPeer != nil {
		meta += "; server: last byte from carol " + tlShort(carolPeer.Stats().SinceRead) + " ago"
	}
	cut := time.Now()
	d.px.Blackhole(faultproxy.Both)
	d.tl.add(cut, "proxy", tlBad, meta, "blackhole: carol's path drops every byte both ways; no FIN, no RST, the sockets stay open")

	var clientDead pulse.StateChange
	var serverDead demoClose
	var cDead, sDead bool
	d.waitFor(ctx, d.timeout+d.slack+d.scale(2*time.Second), func() bool {
		clientDead, cDead = d.stateAfter("carol", cut, func(sc pulse.StateChange) bool {
			return sc.To != pulse.StateReady && sc.To != pulse.StateSuspect
		})
		serverDead, sDead = d.closeAfter("carol", cut)
		return cDead && sDead
	})
	healAt := time.Now()
	if cDead {
		after := clientDead.At.Sub(cut)
		d.rows.carolClient.measured = tlSecs(after)
		if !errors.Is(clientDead.Err, pulse.ErrPeerSilent) {
			d.rows.carolClient.measured += " (" + demoErrText(clientDead.Err) + ")"
		}
		d.rows.carolClient.ok = errors.Is(clientDead.Err, pulse.ErrPeerSilent) && after <= d.timeout+d.slack
	}
	if sDead {
		after := serverDead.at.Sub(cut)
		d.rows.carolServer.measured = tlSecs(after)
		if !errors.Is(serverDead.err, pulse.ErrPeerSilent) {
			d.rows.carolServer.measured += " (" + demoErrText(serverDead.err) + ")"
		}
		d.rows.carolServer.ok = errors.Is(serverDead.err, pulse.ErrPeerSilent) && after <= d.timeout+d.slack
	}
	if cDead && sDead {
		healAt = clientDead.At
		if serverDead.at.After(healAt) {
			healAt = serverDead.at
		}
		healAt = healAt.Add(d.scale(300 * time.Millisecond))
	}
	if err := demoSleep(ctx, time.Until(healAt)); err != nil {
		return err
	}

	// The path heals; carol reconnects by herself.
	heal := time.Now()
	d.px.Heal()
	d.tl.add(heal, "proxy", tlGood, "", "heal: carol's path carries bytes again")
	var carolBack bool
	d.waitFor(ctx, d.handshake+d.backoff.Cap+d.slack+d.scale(2*time.Second), func() bool {
		_, carolBack = d.stateAfter("carol", heal, func(sc pulse.StateChange) bool { return sc.To == pulse.StateReady })
		return carolBack
	})
	if carolBack {
		var r EchoReply
		if err := d.call(ctx, d.carol, "Echo.Echo", &EchoArgs{Msg: "back"}, &r); err != nil {
			d.tl.say("carol", tlBad, "Echo.Echo failed after the reconnect: %v", err)
			d.rows.carolBack.measured = "call failed"
		} else {
			after := time.Since(heal)
			d.tl.say("carol", tlGood, "Echo.Echo %q on connection #%d", r.Msg, d.carol.Stats().Connects)
			d.rows.carolBack.measured = tlSecs(after)
			d.rows.carolBack.ok = after <= d.handshake+d.backoff.Cap+d.slack
		}
	} else if err := ctx.Err(); err != nil {
		return err
	}

	// The chat room: the server pushes to every connected client.
	if err := demoSleep(ctx, d.scale(300*time.Millisecond)); err != nil {
		return err
	}
	d.pushStep(ctx)
	return demoSleep(ctx, d.scale(500*time.Millisecond))
}

// concurrent has alice make many calls at once over her one connection.
func (d *demo) concurrent(ctx context.Context) {
	row := d.rows.concurrent
	before := d.alice.Stats().Connects
	cctx, cancel := context.WithTimeout(ctx, 2*d.timeout+time.Duration(d.calls)*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	done := make(chan *pulse.Call, d.calls)
	for i := range d.calls {
		d.alice.Go(cctx, "Arith.Multiply", &ArithArgs{A: i, B: i}, new(int), done)
	}
	correct := 0
	var order []string
	arrival := make([]int, 0, d.calls)
	for k := range d.calls {
		c := <-done
		a := c.Args.(*ArithArgs)
		if c.Error == nil && *c.Reply.(*int) == a.A*a.B {
			correct++
		}
		arrival = append(arrival, a.A)
		if k < 6 {
			order = append(order, fmt.Sprintf("#%d", a.A))
		}
	}
	took := time.Since(t0)
	conns := d.alice.Stats().Connects - before + 1
	row.measured = fmt.Sprintf("%d/%d in %s, %d conn", correct, d.calls, tlShort(took), conns)
	row.ok = correct == d.calls && conns == 1
	kind := tlInfo
	if !row.ok {
		kind = tlBad
	}
	if d.calls > len(order) {
		order = append(order, "…")
	}
	d.tl.add(t0, "alice", kind, "", "%d concurrent Arith.Multiply calls over her one connection: %d correct in %s; replies back in the order %s (%d out of call order)",
		d.calls, correct, tlShort(took), strings.Join(order, " "), d.calls-demoLongestIncreasing(arrival))
}

// demoLongestIncreasing returns the length of the longest increasing
// subsequence of xs: the replies that came back in call order, the others
// having overtaken or been overtaken.
func demoLongestIncreasing(xs []int) int {
	var tails []int // tails[k]: the least last element of an increasing run of k+1
	for _, x := range xs {
		i, _ := slices.BinarySearch(tails, x)
		if i == len(tails) {
			tails = append(tails, x)
		} else {
			tails[i] = x
		}
	}
	return len(tails)
}

// bobTalks has bob call every half deadline until stop, and returns how
// many calls failed.
func (d *demo) bobTalks(ctx context.Context, stop <-chan struct{}) (failed int) {
	tick := time.NewTicker(d.timeout / 2)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-stop:
			return failed
		}
		var r EchoReply
		if err := d.call(ctx, d.bob, "Echo.Echo", &EchoArgs{Msg: "still talking"}, &r); err != nil {
			failed++
			d.tl.say("bob", tlBad, "Echo.Echo failed: %v", err)
		}
	}
}

// pushStep has alice join the chat room and say a line, which the server
// pushes to every connected client.
func (d *demo) pushStep(ctx context.Context) {
	row := d.rows.push
	var n int
	t0 := time.Now()
	if err := d.call(ctx, d.alice, "Chat.Join", &ChatJoin{Name: "alice"}, &n); err != nil {
		d.tl.say("alice", tlBad, "Chat.Join failed: %v", err)
		return
	}
	d.tl.add(t0, "alice", tlInfo, "", "Chat.Join: the server pushes her arrival to the %d connected clients", n)
	const text = "hello, everyone"
	t0 = time.Now()
	if err := d.call(ctx, d.alice, "Chat.Say", &ChatLine{Text: text}, &n); err != nil {
		d.tl.say("alice", tlBad, "Chat.Say failed: %v", err)
		return
	}
	d.tl.add(t0, "alice", tlInfo, "", "Chat.Say %q: the server pushes it to %d clients, each over its own connection", text, n)
	got := map[string]time.Time{}
	d.waitFor(ctx, d.slack+d.scale(time.Second), func() bool {
		for _, p := range d.pushes {
			if p.line.Text == text && p.at.After(t0) {
				if _, ok := got[p.who]; !ok {
					got[p.who] = p.at
				}
			}
		}
		return len(got) == 3
	})
	var last time.Duration
	var missing []string
	for _, who := range []string{"alice", "bob", "carol"} {
		if at, ok := got[who]; ok {
			last = max(last, at.Sub(t0))
		} else {
			missing = append(missing, who)
		}
	}
	row.measured = fmt.Sprintf("%d of 3 in %s", len(got), tlShort(last))
	if len(missing) > 0 {
		row.measured += ", not " + strings.Join(missing, ", ")
	}
	row.ok = len(got) == 3 && n == 3 && last <= d.slack
}

// demoSleep sleeps for d or until ctx ends.
func demoSleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
