package pulse

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/internal/session"
	"github.com/pulse-rpc/pulse/wire"
)

// Server serves registered methods to the clients that connect to it, and
// can call methods the clients registered, over the same connections.
//
// Methods on Server are safe for concurrent use.
type Server struct {
	opts *options
	reg  *service.Registry
	adm  *admission // ServerLimits on connections and handshakes

	mu        sync.Mutex // protects following
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // connections still in their handshake
	sessions  map[*session.Session]struct{}
	closed    bool
	done      chan struct{}

	wg sync.WaitGroup // connection goroutines
}

// NewServer returns a server configured by opts. It fails when an option
// is invalid, saying which and why.
func NewServer(opts ...Option) (*Server, error) {
	if err := checkSide(opts, forServers, "NewServer"); err != nil {
		return nil, err
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	if !o.codecsSet {
		o.sess.Codecs = codec.Names()
	}
	if !o.slowSet {
		// A push to a client that does not keep up closes it, rather
		// than holding memory or the pusher.
		o.sess.Slow = session.SlowClose
	}
	o.sessionConfig()
	o.srvLimits = o.srvLimits.withDefaults()
	if n := o.srvLimits.MaxHandlers; n != NoLimit {
		o.sess.Gate = session.NewGate(n)
	}
	return &Server{
		opts:      o,
		reg:       service.NewRegistry(),
		adm:       newAdmission(o.srvLimits, o.sess.Logger),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		sessions:  make(map[*session.Session]struct{}),
		done:      make(chan struct{}),
	}, nil
}

// Register publishes the methods of rcvr under the name of its concrete
// type. The methods must have one of the shapes
//
//	func (t *T) Method(args A, reply *R) error
//	func (t *T) Method(ctx context.Context, args A, reply *R) error
//
// with A and R exported or builtin types, as in net/rpc. The context
// carries the caller's deadline, is cancelled when the caller cancels or
// the connection dies, and gives the calling Peer (PeerFromContext).
// Register returns an error when rcvr has no suitable method or the name
// is taken.
func (srv *Server) Register(rcvr any) error { return srv.reg.Register(rcvr, "", false) }

// RegisterName is Register with the given service name.
func (srv *Server) RegisterName(name string, rcvr any) error {
	return srv.reg.Register(rcvr, name, true)
}

// ListenAndServe listens on the TCP address addr (with TLS when the server
// has WithTLS) and serves it, as Serve does. It returns ErrServerClosed
// after Close.
func (srv *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if srv.opts.tlsConfig != nil {
		l = tls.NewListener(l, srv.opts.tlsConfig)
	}
	return srv.Serve(l)
}

// Serve accepts connections on l and serves each on its own goroutine. It
// returns ErrServerClosed after Close, or the listener's error. Temporary
// accept errors (such as running out of file descriptors) are retried with
// a growing delay, as net/http does.
//
// With WithTLS, Serve serves TLS whatever l is: it wraps each accepted
// connection with tls.Server unless it is a *tls.Conn already (l made by
// tls.NewListener, whose configuration then applies). A connection over
// the pending-handshake limits (ServerLimits) is closed at once; one over
// the connection limits gets its handshake refused with a message naming
// the limit.
func (srv *Server) Serve(l net.Listener) error {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	srv.listeners[l] = struct{}{}
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.listeners, l)
		srv.mu.Unlock()
	}()

	var tempDelay time.Duration
	for {
		conn, err := l.Accept()
		if err != nil {
			if srv.isClosed() {
				return ErrServerClosed
			}
			if isTemporaryAccept(err) {
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				srv.opts.sess.Logger.Warn("pulse: accept error; retrying", "err", err, "delay", tempDelay)
				select {
				case <-time.After(tempDelay):
				case <-srv.done:
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		tempDelay = 0
		ip := remoteIP(conn.RemoteAddr())
		if !srv.adm.startHandshake(ip) {
			conn.Close()
			continue
		}
		// Added under mu, which Close takes to mark the server closed
		// before it waits: no connection starts after that.
		srv.mu.Lock()
		if srv.closed {
			srv.mu.Unlock()
			conn.Close()
			srv.adm.endHandshake(ip)
			return ErrServerClosed
		}
		srv.wg.Add(1)
		srv.mu.Unlock()
		go func() {
			defer srv.wg.Done()
			srv.serveConn(conn, ip)
		}()
	}
}

func isTemporaryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// ServeConn serves one connection (any net.Conn) and blocks until it
// closes, like net/rpc's ServeConn. With WithTLS it serves TLS, unless
// conn is a *tls.Conn already. The ServerLimits apply as in Serve.
func (srv *Server) ServeConn(conn net.Conn) {
	ip := remoteIP(conn.RemoteAddr())
	if !srv.adm.startHandshake(ip) {
		conn.Close()
		return
	}
	srv.wg.Add(1)
	defer srv.wg.Done()
	srv.serveConn(conn, ip)
}

func (srv *Server) isClosed() bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.closed
}

// serveConn serves conn, counted as a pending handshake from ip, which it
// ends once the handshake is over.
func (srv *Server) serveConn(conn net.Conn, ip netip.Addr) {
	srv.mu.Lock()
	if srv.closed {
		srv.mu.Unlock()
		conn.Close()
		srv.adm.endHandshake(ip)
		return
	}
	srv.conns[conn] = struct{}{}
	srv.mu.Unlock()
	session.Tune(conn)
	raw := conn
	conn = srv.serverTLS(conn)
	if msg := srv.adm.reserveConn(ip); msg != "" {
		srv.refuseConn(conn, msg)
		srv.adm.endHandshake(ip)
		srv.mu.Lock()
		delete(srv.conns, raw)
		srv.mu.Unlock()
		return
	}

	s, err := session.Start(context.Background(), conn, false, &srv.opts.sess, srv.reg, func(s *session.Session) session.Hooks {
		newPeer(s)
		return session.Hooks{OnClose: srv.removeSession}
	})

	srv.adm.endHandshake(ip)
	if err != nil {
		srv.adm.releaseConn(ip) // a session releases it when it closes
	}
	srv.mu.Lock()
	delete(srv.conns, raw)
	if err == nil && srv.closed {
		err = ErrServerClosed
		srv.mu.Unlock()
		s.Fail(&session.ConnError{Reason: session.ReasonShutdown})
		return
	}
	if err == nil {
		srv.sessions[s] = struct{}{}
	}
	srv.mu.Unlock()
	if err != nil {
		srv.opts.sess.Logger.Info("pulse: handshake failed", "remote", conn.RemoteAddr(), "err", err)
		return
	}
	srv.opts.sess.Logger.Debug("pulse: connection open", "remote", conn.RemoteAddr(), "codec", s.Codec().Name())
	if h := srv.opts.connHook; h != nil {
		h(ConnEvent{Peer: peerOf(s), Open: true})
	}
	s.ReadLoop()
}

func (srv *Server) removeSession(s *session.Session) {
	srv.adm.releaseConn(remoteIP(s.RemoteAddr()))
	srv.mu.Lock()
	_, known := srv.sessions[s]
	delete(srv.sessions, s)
	srv.mu.Unlock()
	if h := srv.opts.connHook; h != nil && known {
		h(ConnEvent{Peer: peerOf(s), Err: publicConnErr(s.Err())})
	}
}

// Peers returns the clients connected now.
func (srv *Server) Peers() []*Peer {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	peers := make([]*Peer, 0, len(srv.sessions))
	for s := range srv.sessions {
		peers = append(peers, peerOf(s))
	}
	return peers
}

// Broadcast sends a one-way call to every connected client and returns
// those it could not reach: their connection is closing, or their send
// queue is full (WithMaxQueued). It never waits for a client: one that
// does not keep up is skipped, and under SlowConsumerClose (a server's
// default) closed, so the slowest client never holds up the others or the
// caller. The arguments are encoded once per codec in use, not once per
// client. The error reports an encoding failure only; ctx's end stops the
// broadcast, and the clients not yet sent to are among the unreached.
func (srv *Server) Broadcast(ctx context.Context, serviceMethod string, args any) (unreached []*Peer, err error) {
	encoded := map[string]*codec.RawMessage{}
	peers := srv.Peers()
	for i, p := range peers {
		if ctx.Err() != nil {
			return append(unreached, peers[i:]...), nil
		}
		c := p.s.Codec()
		raw, ok := encoded[c.Name()]
		if !ok {
			if raw, err = encodeFor(c, args); err != nil {
				return append(unreached, peers[i:]...), err
			}
			encoded[c.Name()] = raw
		}
		if p.s.Push(ctx, serviceMethod, raw) != nil {
			unreached = append(unreached, p)
		}
	}
	return unreached, nil
}

// Shutdown stops the server gracefully: it stops accepting connections
// and sends every connection a GOAWAY (code "server shutting down") that
// names the last call it will process. Handlers already running finish
// (Draining(ctx) tells them the server is going away), their replies are
// written, then each connection closes. Clients send newer calls to
// another connection or server, so no call the server accepted fails.
// When ctx ends first, Shutdown closes what remains at once, as Close
// does, and returns ctx's error. Serve returns ErrServerClosed at once.
func (srv *Server) Shutdown(ctx context.Context) error {
	sessions, ok := srv.stop()
	if !ok {
		return ErrServerClosed
	}
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.StartDrain(wire.GoAwayShutdown, "server shutting down")
			if s.WaitSettled(ctx.Done()) {
				s.LingerClose(&session.ConnError{Reason: session.ReasonShutdown, Code: wire.GoAwayShutdown, Message: "server shut down"}, time.Second)
			}
		}()
	}
	drained := make(chan struct{})
	go func() {
		wg.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		for _, s := range sessions {
			s.Fail(&session.ConnError{Reason: session.ReasonShutdown, Code: wire.GoAwayShutdown, Message: "server shutdown deadline passed"})
		}
		<-drained
	}
	srv.wait(sessions)
	return err
}

// stop marks the server closed, closes its listeners and the connections
// still in their handshake, and returns its sessions. It reports false if
// the server was closed already.
func (srv *Server) stop() ([]*session.Session, bool) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		return nil, false
	}
	srv.closed = true
	close(srv.done)
	for l := range srv.listeners {
		l.Close()
	}
	for c := range srv.conns {
		c.Close()
	}
	sessions := make([]*session.Session, 0, len(srv.sessions))
	for s := range srv.sessions {
		sessions = append(sessions, s)
	}
	return sessions, true
}

// Close stops the server at once: it closes the listeners and every
// connection; calls in flight fail with ErrShutdown on the clients, and
// the contexts of running handlers are cancelled. Close waits for the
// connections' goroutines to end, not for handlers. Serve returns
// ErrServerClosed. A second Close returns ErrServerClosed.
func (srv *Server) Close() error {
	sessions, ok := srv.stop()
	if !ok {
		return ErrServerClosed
	}
	for _, s := range sessions {
		s.Fail(&session.ConnError{Reason: session.ReasonShutdown, Message: "server closed"})
	}
	srv.wait(sessions)
	return nil
}

// wait waits for the connections' goroutines: those in their handshake,
// and the readers of sessions (a parked reader is resumed by the close and
// ends; see internal/session/park.go).
func (srv *Server) wait(sessions []*session.Session) {
	srv.wg.Wait()
	for _, s := range sessions {
		<-s.ReaderDone()
	}
}
