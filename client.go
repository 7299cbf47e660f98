package pulse

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/wire"
)

// Client is a connection to a Pulse server over which calls are made, as
// with net/rpc's Client: many goroutines may call at once, their requests
// share the connection and the replies come back in any order.
//
// A Client may also serve: methods registered on it (Register) can be
// called by the server over the same connection, for callbacks and pushes.
//
// Methods on Client are safe for concurrent use.
type Client struct {
	opts     *options
	handlers *registry
	addr     string

	mu     sync.Mutex // protects following
	s      *session
	closed bool
}

// Dial connects to the Pulse server at addr (host:port over TCP, or TLS
// with WithTLS) and runs the handshake. ctx bounds the dial and the
// handshake only; the connection lives until Close.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	c := &Client{opts: o, handlers: newRegistry(), addr: addr}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx, conn); err != nil {
		return nil, err
	}
	return c, nil
}

// NewClient runs the handshake over an established connection (any
// net.Conn, such as one end of net.Pipe) and returns a Client using it.
func NewClient(conn net.Conn, opts ...Option) (*Client, error) {
	o, err := newOptions(opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &Client{opts: o, handlers: newRegistry(), addr: conn.RemoteAddr().String()}
	if err := c.start(context.Background(), conn); err != nil {
		return nil, err
	}
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
		hctx, cancel := context.WithTimeout(ctx, c.opts.handshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, &ConnError{Reason: ReasonHandshake, Message: "TLS handshake with " + c.addr, Err: err}
		}
		conn = tc
	}
	return conn, nil
}

// start runs the Pulse handshake on conn and starts its session.
func (c *Client) start(ctx context.Context, conn net.Conn) error {
	s, err := startSession(ctx, conn, true, c.opts, c.handlers, nil)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.s = s
	c.mu.Unlock()
	return nil
}

// startSession runs the handshake for either side, then starts the
// session's reader (on a new goroutine for a dialer; an acceptor runs it
// itself with serve).
func startSession(ctx context.Context, conn net.Conn, dialer bool, o *options, handlers *registry, onClose func(*session)) (*session, error) {
	last := new(atomic.Int64)
	live := liveConn{Conn: conn, last: last}
	var (
		fr   *wire.Reader
		c    codec.Codec
		peer wire.Hello
		err  error
	)
	if dialer {
		fr, c, peer, err = clientHandshake(ctx, live, o)
	} else {
		fr, c, peer, err = serverHandshake(live, o)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := newSession(conn, fr, c, dialer, o, handlers, peer, last, onClose)
	if dialer {
		go s.readLoop()
	}
	return s, nil
}

// session returns the current session.
func (c *Client) session() (*session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, &ConnError{Reason: ReasonShutdown}
	}
	return c.s, nil
}

// Call calls the named method ("Service.Method") with args and waits for
// it to complete, storing its result in reply. It returns when the reply
// arrives, when ctx ends (the server is told to cancel the call), or when
// the connection fails, whichever is first. The error is a ServerError
// when the method returned one, a *CallError when the call failed on its
// own, or a *ConnError when the connection failed.
func (c *Client) Call(ctx context.Context, serviceMethod string, args, reply any) error {
	s, err := c.session()
	if err != nil {
		return err
	}
	call := newCall(serviceMethod, args, reply, nil)
	s.send(ctx, call, false, false)
	return call.wait(ctx)
}

// Go starts the call asynchronously and returns its Call, which is sent on
// done (or on a new channel when done is nil) when it completes. done must
// be buffered. When ctx ends first, the call completes with the context's
// error and the server is told to cancel it.
func (c *Client) Go(ctx context.Context, serviceMethod string, args, reply any, done chan *Call) *Call {
	call := newCall(serviceMethod, args, reply, done)
	s, err := c.session()
	if err != nil {
		call.Error = err
		call.done()
		return call
	}
	s.send(ctx, call, false, true)
	return call
}

// Notify sends a one-way call: the server runs the method and sends no
// reply. It returns once the message is queued on the connection.
func (c *Client) Notify(ctx context.Context, serviceMethod string, args any) error {
	s, err := c.session()
	if err != nil {
		return err
	}
	return s.notify(ctx, serviceMethod, args)
}

// Register publishes rcvr's suitable methods so that the server can call
// them over this client's connection, with the same rules as
// Server.Register.
func (c *Client) Register(rcvr any) error { return c.handlers.register(rcvr, "", false) }

// RegisterName is Register with the given service name.
func (c *Client) RegisterName(name string, rcvr any) error {
	return c.handlers.register(rcvr, name, true)
}

// Peer returns the server end of the current connection.
func (c *Client) Peer() *Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.peer
}

// Close closes the connection. Pending calls fail with an error matching
// ErrShutdown. Close waits for the connection's goroutines to stop (not
// for handlers of server calls, whose contexts are cancelled). Closing a
// closed Client returns ErrShutdown, as in net/rpc.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrShutdown
	}
	c.closed = true
	s := c.s
	c.mu.Unlock()
	s.close()
	<-s.readerDone
	return nil
}
