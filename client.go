package pulse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/internal/session"
	"github.com/pulse-rpc/pulse/wire"
)

// Client is a long-lived connection to a Pulse server over which calls are
// made, as with net/rpc's Client: many goroutines may call at once, their
// requests share the connection and the replies come back in any order.
//
// The connection is kept alive by heartbeats and watched for silence (see
// Heartbeat). When it is lost, the Client reconnects with exponential
// backoff and full jitter. Calls made while no connection is ready wait
// for one within their context (or fail at once with WithFailFast). A call
// whose request was never written is retried on the next connection
// transparently; one that was written when the connection died fails with
// a *ConnError whose Sent field says it may have run.
//
// A Client may also serve: methods registered on it (Register) can be
// called by the server over the same connection, for callbacks and pushes.
// Registrations belong to the Client and survive reconnects.
//
// Methods on Client are safe for concurrent use.
type Client struct {
	opts     *options
	handlers *service.Registry
	addr     string
	redial   bool // false for NewClient: the connection cannot be dialed again
	ctx      context.Context
	cancel   context.CancelFunc // ends reconnection on Close
	hooks    hookQueue

	cur atomic.Pointer[session.Session] // the usable session, nil while none is

	mu         sync.Mutex       // protects following
	s          *session.Session // the latest session, usable or not
	state      ConnState
	ready      chan struct{} // closed when a usable session exists
	connecting bool
	closed     bool
	lastErr    error
	dials      uint64
	connects   uint64
	wg         sync.WaitGroup // the reconnecting goroutine
}

// ConnState is the state of a Client's connection.
type ConnState uint8

// Connection states.
const (
	// StateConnecting: no usable connection; dialing or waiting to retry.
	StateConnecting ConnState = iota
	// StateReady: calls go out on the connection.
	StateReady
	// StateSuspect: the connection is up, but the server has been silent
	// for a while (half the timeout, or two intervals): it may be dying.
	StateSuspect
	// StateDraining: the server sent GOAWAY; calls in flight finish on
	// the old connection while a new one is dialed.
	StateDraining
	// StateClosed: Close was called, or the connection was lost and cannot
	// be dialed again (NewClient).
	StateClosed
	// StateIdle: no connection, and none is dialed until a call is made.
	// A client enters it when the server closed its connection for
	// carrying no calls (ConnLimits.MaxConnIdle), or reaped it as silent
	// while the client has heartbeats off: dialing again at once would
	// only hold an idle connection the server is going to close.
	StateIdle
)

var stateNames = [...]string{"connecting", "ready", "suspect", "draining", "closed", "idle"}

func (st ConnState) String() string {
	if int(st) < len(stateNames) {
		return stateNames[st]
	}
	return "unknown"
}

// StateChange is one change of a Client's state, as given to the hook set
// with WithStateHook.
type StateChange struct {
	From, To ConnState
	// Addr is the server's address.
	Addr string
	// Err says why: for StateConnecting, why the previous connection was
	// lost or the last dial failed; for StateDraining, the GOAWAY.
	Err error
	At  time.Time
}

// Dial connects to the Pulse server at addr (host:port over TCP, or TLS
// with WithTLS) and runs the handshake. ctx bounds this first connection
// only; later the Client reconnects by itself until Close.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	c, err := newClient(addr, opts, true)
	if err != nil {
		return nil, err
	}
	c.dials++
	conn, err := c.dial(ctx)
	if err == nil {
		err = c.start(ctx, conn)
	}
	if err != nil {
		c.cancel()
		return nil, err
	}
	return c, nil
}

// NewClient runs the handshake over an established connection (any
// net.Conn, such as one end of net.Pipe) and returns a Client using it.
// Such a Client cannot reconnect: when the connection is lost it is
// closed. Use Dial with WithDialer for a custom transport that can be
// dialed again.
func NewClient(conn net.Conn, opts ...Option) (*Client, error) {
	c, err := newClient(conn.RemoteAddr().String(), opts, false)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.start(context.Background(), conn); err != nil {
		c.cancel()
		return nil, err
	}
	return c, nil
}

// closedChan is a closed channel: what a connected Client's ready is, so
// that each of many idle clients does not keep a closed channel of its own.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func newClient(addr string, opts []Option, redial bool) (*Client, error) {
	ctor := "Dial"
	if !redial {
		ctor = "NewClient"
	}
	if err := checkSide(opts, forClients, ctor); err != nil {
		return nil, err
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	o.sessionConfig()
	c := &Client{opts: o, handlers: service.NewRegistry(), addr: addr, redial: redial, ready: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.hooks.f = o.stateHook
	return c, nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var (
		conn net.Conn
		err  error
	)
	if c.opts.dial != nil {
		conn, err = c.opts.dial(ctx, "tcp", c.addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		return nil, &ConnError{Reason: ReasonIO, Message: "dial " + c.addr, Err: err}
	}
	session.Tune(conn)
	if cfg := c.opts.tlsConfig; cfg != nil {
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(c.addr); err == nil {
				cfg.ServerName = host
			} else {
				cfg.ServerName = c.addr
			}
		}
		tc := tls.Client(conn, cfg)
		hctx, cancel := context.WithTimeout(ctx, c.opts.sess.DialHandshakeTimeout())
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, &ConnError{Reason: ReasonHandshake, Message: "TLS handshake with " + c.addr, Err: tlsDialErr(err)}
		}
		conn = tc
	}
	return conn, nil
}

// start runs the Pulse handshake on conn and makes its session current.
func (c *Client) start(ctx context.Context, conn net.Conn) error {
	s, err := session.Start(ctx, conn, true, &c.opts.sess, c.handlers, func(s *session.Session) session.Hooks {
		newPeer(s)
		return session.Hooks{OnClose: c.lost, OnGoAway: c.goAway, OnSuspect: c.suspect}
	})
	if err != nil {
		return publicErr(err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.Close()
		return &ConnError{Reason: ReasonShutdown}
	}
	c.s = s
	c.connects++
	c.connecting = false
	c.cur.Store(s)
	close(c.ready)
	c.ready = closedChan // let the closed one go: waiters hold their own reference
	c.setStateLocked(StateReady, nil)
	c.mu.Unlock()
	go s.ReadLoop()
	return nil
}

// lost is called when a session closes.
func (c *Client) lost(s *session.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur.CompareAndSwap(s, nil)
	if c.s != s || c.closed {
		return
	}
	if c.ready == nil || isClosed(c.ready) {
		c.ready = make(chan struct{})
	}
	if c.state == StateIdle || c.connecting {
		return // the connection closing after its GOAWAY changes nothing
	}
	err := publicConnErr(s.Err())
	c.lastErr = err
	if !c.redial {
		c.setStateLocked(StateClosed, err)
		return
	}
	c.setStateLocked(StateConnecting, err)
	c.reconnectLocked(false)
}

// goAway is called when the server sends GOAWAY on s: new calls go to a
// new connection while the old one finishes what it has.
func (c *Client) goAway(s *session.Session, g wire.GoAway) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.cur.CompareAndSwap(s, nil) || c.closed {
		return
	}
	if isClosed(c.ready) {
		c.ready = make(chan struct{})
	}
	err := &ConnError{Reason: ReasonGoAway, Code: CloseCode(g.Code), Message: g.Message}
	c.lastErr = err
	switch {
	case !c.redial:
		c.setStateLocked(StateClosed, err)
	case g.Code == wire.GoAwayIdle || g.Code == wire.GoAwayPeerSilent && c.opts.sess.Heartbeat.Interval < 0:
		c.setStateLocked(StateIdle, err)
	default:
		c.setStateLocked(StateDraining, err)
		c.reconnectLocked(false)
	}
}

// suspect is called when s's peer turns silent or speaks again.
func (c *Client) suspect(s *session.Session, suspect bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s != s || c.closed {
		return
	}
	switch {
	case suspect && c.state == StateReady:
		c.setStateLocked(StateSuspect, nil)
	case !suspect && c.state == StateSuspect:
		c.setStateLocked(StateReady, nil)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// setStateLocked changes the state and queues the change for the hook.
func (c *Client) setStateLocked(to ConnState, err error) {
	if c.state == to && to != StateConnecting {
		return
	}
	ev := StateChange{From: c.state, To: to, Addr: c.addr, Err: err, At: time.Now()}
	c.state = to
	c.opts.sess.Logger.Debug("pulse: client state", "addr", c.addr, "from", ev.From, "to", to, "err", err)
	c.hooks.push(ev)
}

// reconnectLocked starts the reconnecting goroutine unless it runs. now
// skips the wait before the first attempt: a call is waiting.
func (c *Client) reconnectLocked(now bool) {
	if c.connecting || c.closed || !c.redial {
		return
	}
	if c.state == StateIdle {
		c.setStateLocked(StateConnecting, nil)
		now = true
	}
	c.connecting = true
	c.wg.Add(1)
	go c.reconnect(now)
}

// reconnect dials until a connection is ready or the Client closes,
// waiting between attempts with exponential backoff and full jitter (also
// before the first attempt, so that clients cut off at once by a server
// restart come back spread out).
func (c *Client) reconnect(now bool) {
	defer c.wg.Done()
	for attempt := 0; ; attempt++ {
		if attempt > 0 || !now {
			t := time.NewTimer(c.opts.backoff.Delay(attempt, rand.Float64))
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return
			}
		}
		c.mu.Lock()
		c.dials++
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.sess.DialHandshakeTimeout())
		conn, err := c.dial(ctx)
		if err == nil {
			err = c.start(ctx, conn)
		}
		cancel()
		if err == nil {
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.lastErr = err
		c.setStateLocked(StateConnecting, err)
		c.mu.Unlock()
	}
}

// session returns a usable session, waiting for one within ctx unless the
// Client fails fast.
func (c *Client) session(ctx context.Context) (*session.Session, error) {
	for {
		if s := c.cur.Load(); s != nil {
			return s, nil
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, &ConnError{Reason: ReasonShutdown}
		}
		if s := c.cur.Load(); s != nil {
			c.mu.Unlock()
			return s, nil
		}
		lastErr := c.lastErr
		if !c.redial {
			c.mu.Unlock()
			return nil, notReady(lastErr)
		}
		c.reconnectLocked(false)
		ready := c.ready
		c.mu.Unlock()
		if c.opts.failFast {
			return nil, notReady(lastErr)
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, &CallError{Status: StatusCanceled, Err: ctx.Err(),
				Message: "no connection became ready: " + errString(lastErr)}
		}
	}
}

func notReady(cause error) error {
	return &ConnError{Reason: ReasonUnknown, Message: "no connection is ready", Err: cause}
}

func errString(err error) string {
	if err == nil {
		return "still connecting"
	}
	return err.Error()
}

// retryable reports whether a call that failed with err can go again on
// another connection: it was never written (or not processed, by GOAWAY),
// its context is live, and the Client can reconnect.
func (c *Client) retryable(ctx context.Context, err error) bool {
	var ce *ConnError
	if !c.redial || ctx.Err() != nil || !errors.As(err, &ce) || ce.Sent {
		return false
	}
	return !(ce.Reason == ReasonShutdown && ce.Code == CloseNormal && c.isClosed())
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Call calls the named method ("Service.Method") with args and waits for
// it to complete, storing its result in reply. It returns when the reply
// arrives, when ctx ends (the server is told to cancel the call), or when
// the connection fails, whichever is first. The error is a ServerError
// when the method returned one, a *CallError when the call failed on its
// own, or a *ConnError when the connection failed.
//
// Call allocates nothing of its own, but args and reply escape to the heap,
// since the connection's codec (any registered one) receives them: a
// []byte passed as args costs a copy into an interface, and a reply
// variable declared in a loop an allocation per turn. With the raw codec,
// a *[]byte args and a reply slice reused with room make a call that
// allocates nothing.
func (c *Client) Call(ctx context.Context, serviceMethod string, args, reply any) error {
	for {
		s, err := c.session(ctx)
		if err != nil {
			if ce, ok := err.(*CallError); ok {
				ce.Method = serviceMethod
			}
			return err
		}
		call := getCall(serviceMethod, args, reply)
		call.send(ctx, s, false)
		err = call.wait(ctx)
		putCall(call)
		if err == nil || !c.retryable(ctx, err) {
			return err
		}
	}
}

// Go starts the call asynchronously and returns its Call, which is sent on
// done (or on a new channel when done is nil) when it completes. done must
// be buffered. When ctx ends first, the call completes with the context's
// error and the server is told to cancel it. A call that cannot be sent
// yet waits for a connection, like Call.
func (c *Client) Go(ctx context.Context, serviceMethod string, args, reply any, done chan *Call) *Call {
	call := newCall(serviceMethod, args, reply, done)
	call.retry = func(call *Call) bool {
		if !c.retryable(ctx, call.Error) {
			return false
		}
		go c.resend(ctx, call)
		return true
	}
	if s := c.cur.Load(); s != nil {
		call.send(ctx, s, true)
	} else {
		go c.resend(ctx, call)
	}
	return call
}

// resend waits for a usable session and sends call on it.
func (c *Client) resend(ctx context.Context, call *Call) {
	s, err := c.session(ctx)
	if err != nil {
		if ce, ok := err.(*CallError); ok {
			ce.Method = call.ServiceMethod
		}
		call.retry = nil
		call.finish(err)
		return
	}
	call.Error = nil
	call.send(ctx, s, true)
}

// Notify sends a one-way call: the server runs the method and sends no
// reply. It returns once the message is queued on a connection.
func (c *Client) Notify(ctx context.Context, serviceMethod string, args any) error {
	for {
		s, err := c.session(ctx)
		if err != nil {
			return err
		}
		err = publicErr(s.Notify(ctx, serviceMethod, args))
		if err == nil || !c.retryable(ctx, err) {
			return err
		}
	}
}

// Ping sends a PING on the current connection and returns the round-trip
// time to the PONG. Servers limit how often they may be pinged: pinging
// faster than half the granted heartbeat interval, again and again, gets
// the connection closed with GOAWAY "too many pings".
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	s, err := c.session(ctx)
	if err != nil {
		return 0, err
	}
	rtt, err := s.Ping(ctx)
	return rtt, publicErr(err)
}

// Register publishes rcvr's suitable methods so that the server can call
// them over this client's connection, with the same rules as
// Server.Register. Registrations survive reconnects.
func (c *Client) Register(rcvr any) error { return c.handlers.Register(rcvr, "", false) }

// RegisterName is Register with the given service name.
func (c *Client) RegisterName(name string, rcvr any) error {
	return c.handlers.Register(rcvr, name, true)
}

// Peer returns the server end of the latest connection.
func (c *Client) Peer() *Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s == nil {
		return nil
	}
	return peerOf(c.s)
}

// Stats is a snapshot of a Client: its state, its reconnection history,
// and the health of its latest connection.
type Stats struct {
	State ConnState
	// Addr is the server's address.
	Addr string
	// Dials counts connection attempts, Connects the successful ones.
	Dials, Connects uint64
	// LastErr is why the last connection closed or the last dial failed.
	LastErr error
	// ConnStats describes the latest connection.
	ConnStats
}

// Stats returns a snapshot of the Client.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	st := Stats{State: c.state, Addr: c.addr, Dials: c.dials, Connects: c.connects, LastErr: c.lastErr}
	s := c.s
	c.mu.Unlock()
	if s != nil {
		st.ConnStats = connStats(s)
	}
	return st
}

// Close closes the connection and stops reconnecting. Pending calls fail
// with an error matching ErrShutdown. Close waits for the connection's
// goroutines to stop (not for handlers of server calls, whose contexts are
// cancelled). Closing a closed Client returns ErrShutdown, as in net/rpc.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrShutdown
	}
	c.closed = true
	c.cancel()
	s := c.s
	c.cur.Store(nil)
	c.setStateLocked(StateClosed, ErrShutdown)
	c.mu.Unlock()
	if s != nil {
		s.Close()
		<-s.ReaderDone()
	}
	c.wg.Wait()
	c.hooks.wait()
	return nil
}

// hookQueue runs state hooks one at a time, in order, on a goroutine that
// exists only while there are changes to deliver.
type hookQueue struct {
	f       func(StateChange)
	mu      sync.Mutex
	q       []StateChange
	running bool
	idle    *sync.Cond
}

func (h *hookQueue) push(ev StateChange) {
	if h.f == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.q = append(h.q, ev)
	if !h.running {
		h.running = true
		go h.run()
	}
}

func (h *hookQueue) run() {
	for {
		h.mu.Lock()
		if len(h.q) == 0 {
			h.running = false
			if h.idle != nil {
				h.idle.Broadcast()
			}
			h.mu.Unlock()
			return
		}
		ev := h.q[0]
		h.q = h.q[1:]
		h.mu.Unlock()
		h.f(ev)
	}
}

// wait waits until every queued change was delivered. It must not be
// called from the hook itself.
func (h *hookQueue) wait() {
	if h.f == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.idle == nil {
		h.idle = sync.NewCond(&h.mu)
	}
	for h.running {
		h.idle.Wait()
	}
}

// tlsDialErr names a TLS/plaintext mismatch in the error of a TLS
// handshake: a Pulse server on a plaintext port answers a TLS client with a
// GOAWAY frame, which crypto/tls reports as a first record that is not TLS,
// with its first bytes.
func tlsDialErr(err error) error {
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && session.LooksLikePulse(rhe.RecordHeader[:]) {
		return fmt.Errorf("%w: the server speaks plaintext Pulse on this port, not TLS; dial without WithTLS (%v)", ErrTLSMismatch, err)
	}
	return err
}
