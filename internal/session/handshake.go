package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/internal/sock"
	"github.com/pulse-rpc/pulse/wire"
)

func handshakeErr(format string, args ...any) *ConnError {
	err := fmt.Errorf(format, args...)
	return &ConnError{Reason: ReasonHandshake, Err: err}
}

// deadlineFor bounds the handshake by the timeout and by ctx. It also arms
// ctx's cancellation to interrupt the handshake's I/O.
func deadlineFor(ctx context.Context, conn net.Conn, timeout time.Duration) (stop func() bool) {
	dl := time.Now().Add(timeout)
	if cdl, ok := ctx.Deadline(); ok && cdl.Before(dl) {
		dl = cdl
	}
	conn.SetDeadline(dl)
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}

// clientHandshake runs the dialer's side of the handshake: offer, then read
// the acceptor's answer. It returns the reader of the session; the frames
// the acceptor sent after its HELLO are still unread.
func clientHandshake(ctx context.Context, conn net.Conn, cfg *Config) (*wire.Reader, codec.Codec, wire.Hello, error) {
	stop := deadlineFor(ctx, conn, cfg.DialHandshakeTimeout())
	defer stop()
	h := cfg.localHello(wire.RoleDialer)
	h.Codecs = cfg.Codecs
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("%v", err)
	}
	if _, err := conn.Write(b); err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("sending HELLO: %w", ctxErr(ctx, err))
	}
	hdr, p, release, err := readHello(conn)
	if err != nil {
		switch {
		case errors.Is(err, ErrTLSPeer):
			return nil, nil, wire.Hello{}, handshakeErr("%w: %s answered with a TLS record: the server speaks TLS on this port; dial with WithTLS", err, conn.RemoteAddr())
		case errors.Is(err, wire.ErrVersion) || errors.Is(err, wire.ErrFrameType) || errors.Is(err, wire.ErrFrameTooLarge):
			return nil, nil, wire.Hello{}, handshakeErr("%w (is %s a Pulse server?)", err, conn.RemoteAddr())
		}
		return nil, nil, wire.Hello{}, handshakeErr("reading HELLO: %w", ctxErr(ctx, err))
	}
	defer release()
	switch hdr.Type {
	case wire.TypeHello:
	case wire.TypeGoAway:
		g, err := wire.ParseGoAway(p)
		if err != nil {
			return nil, nil, wire.Hello{}, handshakeErr("%w", err)
		}
		return nil, nil, wire.Hello{}, &ConnError{Reason: ReasonHandshake, Code: g.Code, Message: g.Message,
			Err: errors.New("the server refused the connection")}
	default:
		return nil, nil, wire.Hello{}, handshakeErr("%w: got %v before HELLO", wire.ErrMalformed, hdr.Type)
	}
	// A bad HELLO from a Pulse acceptor is refused with GOAWAY code 8.
	refuse := func(ce *ConnError) (*wire.Reader, codec.Codec, wire.Hello, error) {
		conn.Write(wire.AppendGoAway(nil, wire.GoAway{Code: wire.GoAwayHandshake, Message: ce.Err.Error()}))
		return nil, nil, wire.Hello{}, ce
	}
	peer, err := wire.ParseHello(p)
	if err != nil {
		return refuse(handshakeErr("%w", err))
	}
	if hdr.ID != 0 || peer.Role != wire.RoleAcceptor || len(peer.Codecs) != 1 || !slices.Contains(cfg.Codecs, peer.Codecs[0]) {
		return refuse(handshakeErr("%w: the server chose codecs %q, offered %q (HELLO id %d, role %d)", wire.ErrMalformed, peer.Codecs, cfg.Codecs, hdr.ID, peer.Role))
	}
	if err := checkPeerHello(peer); err != nil {
		return refuse(err)
	}
	if hb := cfg.Heartbeat; hb.Timeout > 0 && peer.Interval > 0 && hb.Timeout < 2*peer.Interval {
		return refuse(handshakeErr("the server granted a heartbeat interval of %v (this client proposed %v), "+
			"but this client's Heartbeat.Timeout is %v: it must be at least twice the interval; raise Timeout to %v or more, "+
			"or have the server allow a shorter interval (Heartbeat.MinInterval)", peer.Interval, h.Interval, hb.Timeout, 2*peer.Interval))
	}
	conn.SetDeadline(time.Time{})
	return newFrameReader(conn), codec.Get(peer.Codecs[0]), peer, nil
}

// serverHandshake runs the acceptor's side: read the offer, choose a codec
// and answer. A peer that does not speak Pulse, or offers nothing this side
// accepts, gets an error (and, when it spoke Pulse, a GOAWAY saying why).
func serverHandshake(conn net.Conn, cfg *Config) (*wire.Reader, codec.Codec, wire.Hello, error) {
	stop := deadlineFor(context.Background(), conn, cfg.HandshakeTimeout)
	defer stop()
	hdr, p, release, err := readHello(conn)
	if err != nil {
		return nil, nil, wire.Hello{}, helloReadErr(conn, cfg, err)
	}
	defer release()
	// PROTOCOL.md 4.1: a first frame that is not a dialer's HELLO gets
	// GOAWAY code 3; settings or codecs refused get code 8.
	refuse := func(code wire.GoAwayCode, err error) (*wire.Reader, codec.Codec, wire.Hello, error) {
		b := wire.AppendGoAway(nil, wire.GoAway{Code: code, Message: err.Error()})
		conn.Write(b)
		return nil, nil, wire.Hello{}, &ConnError{Reason: ReasonHandshake, Code: code, Err: err}
	}
	if hdr.Type != wire.TypeHello || hdr.ID != 0 {
		return refuse(wire.GoAwayProtocolError, fmt.Errorf("%w: first frame is %v, want a HELLO with id 0", wire.ErrMalformed, hdr))
	}
	peer, err := wire.ParseHello(p)
	if err != nil {
		return refuse(wire.GoAwayProtocolError, err)
	}
	if peer.Role != wire.RoleDialer {
		return refuse(wire.GoAwayProtocolError, fmt.Errorf("%w: HELLO from the dialer has role %d", wire.ErrMalformed, peer.Role))
	}
	if err := checkPeerHello(peer); err != nil {
		return refuse(wire.GoAwayHandshake, err.Err)
	}
	var chosen string
	for _, name := range peer.Codecs {
		if slices.Contains(cfg.Codecs, name) {
			chosen = name
			break
		}
	}
	if chosen == "" {
		return refuse(wire.GoAwayHandshake, fmt.Errorf("no common codec: the client offered %q, the server accepts %q", peer.Codecs, cfg.Codecs))
	}
	h := cfg.localHello(wire.RoleAcceptor)
	h.Codecs = []string{chosen}
	// Grant an interval within this server's bounds; state the deadline it
	// enforces and the ping rate it tolerates.
	h.Interval = cfg.Heartbeat.grant(peer.Interval)
	h.MinPingInterval = minPingGap(cfg.Heartbeat, h.Interval)
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("%v", err)
	}
	if _, err := conn.Write(b); err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("sending HELLO: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return newFrameReader(conn), codec.Get(chosen), peer, nil
}

// checkPeerHello refuses settings this side cannot work with.
func checkPeerHello(h wire.Hello) *ConnError {
	if h.MaxFrameSize < wire.MinMaxFrameSize || h.MaxFrameSize > wire.MaxMaxFrameSize {
		return handshakeErr("%w: peer's max frame size %d outside [%d, %d]", wire.ErrMalformed, h.MaxFrameSize, wire.MinMaxFrameSize, wire.MaxMaxFrameSize)
	}
	if err := wire.CheckWindow(h); err != nil {
		return handshakeErr("%w", err)
	}
	return nil
}

// ctxErr prefers the context's error when it interrupted the I/O.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// newFrameReader returns the reader of a connection, from the handshake
// on. It takes its buffer from a shared pool only while bytes are
// arriving and reads into a small inline array otherwise, so that
// accepting or dialing thousands of connections does not allocate a full
// buffer for each of their handshakes.
func newFrameReader(conn net.Conn) *wire.Reader {
	fr := wire.NewReader(conn, readBufferSize)
	fr.SetBufferPool(&readBufPool)
	return fr
}

// Hooks are the owner's callbacks for one session. Each may be nil.
type Hooks struct {
	// OnClose runs when the session closes, before its pending calls fail
	// (so that a retry finds the session gone).
	OnClose func(*Session)
	// OnGoAway runs when the peer sends GOAWAY, before the calls it did
	// not process fail (so that they can go to another connection).
	OnGoAway func(*Session, wire.GoAway)
	// OnSuspect runs when the peer becomes suspect (silent for a while)
	// and when it recovers, from the monitor's timer.
	OnSuspect func(*Session, bool)
}

// Tune sets the socket options Pulse wants on conn (TCP_NOTSENT_LOWAT).
func Tune(conn net.Conn) { sock.Tune(conn, NotsentLowat) }

// Start runs the handshake on conn for either side (dialer says which),
// then sets up the session and its heartbeats. setup runs before anything
// can call the hooks it returns; it sets Owner. The caller starts the
// reader (ReadLoop). On failure conn is closed and the error is a
// *ConnError.
func Start(ctx context.Context, conn net.Conn, dialer bool, cfg *Config, handlers *service.Registry, setup func(*Session) Hooks) (*Session, error) {
	if cfg.Clock.epoch.IsZero() {
		conn.Close()
		return nil, errors.New("pulse: session.Config.Clock is not set (NewClock)")
	}
	rd := &reads{clock: &cfg.Clock}
	live := liveConn{Conn: conn, r: rd}
	var (
		fr   *wire.Reader
		c    codec.Codec
		peer wire.Hello
		err  error
	)
	if dialer {
		fr, c, peer, err = clientHandshake(ctx, live, cfg)
	} else {
		fr, c, peer, err = serverHandshake(live, cfg)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	// The handshake read exactly the peer's HELLO (readHello), never
	// asking for more, so its last read did not show the socket empty.
	// Take it as empty, as it nearly always is (a dialer sends nothing
	// before the answer): the reader may park at once, and a socket that
	// holds bytes after all is found readable by the parker at once.
	rd.drained = true
	s := newSession(conn, fr, c, dialer, cfg, handlers, peer, rd)
	h := setup(s)
	s.onClose, s.onGoAway, s.onSuspect = h.OnClose, h.OnGoAway, h.OnSuspect
	interval := peer.Interval // granted by the server
	if !dialer {
		interval = cfg.Heartbeat.grant(peer.Interval)
		s.minPingGap = minPingGap(cfg.Heartbeat, interval)
	}
	s.mon = newMonitor(s, cfg.Heartbeat, interval, cfg.Limits)
	rd.mon = s.mon
	s.mon.start()
	return s, nil
}
