package pulse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/wire"
)

// localHello is what this side states in its HELLO.
func (o *options) localHello(role wire.Role) wire.Hello {
	h := wire.Hello{
		Role:               role,
		MaxFrameSize:       o.maxFrameSize,
		MaxMessageSize:     o.maxMessageSize,
		MaxConcurrentCalls: uint32(min(o.maxConcurrentCalls, 1<<31)),
	}
	if o.heartbeat.Interval > 0 {
		h.Interval = o.heartbeat.Interval
	}
	if o.heartbeat.Timeout > 0 {
		h.Timeout = o.heartbeat.Timeout
	}
	return h
}

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
// the acceptor's answer. It returns a reader that may hold frames already.
func clientHandshake(ctx context.Context, conn net.Conn, o *options) (*wire.Reader, codec.Codec, wire.Hello, error) {
	stop := deadlineFor(ctx, conn, o.dialHandshakeTimeout())
	defer stop()
	h := o.localHello(wire.RoleDialer)
	h.Codecs = o.codecs
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("%v", err)
	}
	if _, err := conn.Write(b); err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("sending HELLO: %w", ctxErr(ctx, err))
	}
	fr := newFrameReader(conn)
	hdr, p, err := fr.ReadFrame()
	if err != nil {
		if errors.Is(err, wire.ErrVersion) || errors.Is(err, wire.ErrFrameType) || errors.Is(err, wire.ErrFrameTooLarge) {
			return nil, nil, wire.Hello{}, handshakeErr("%w (is %s a Pulse server?)", err, conn.RemoteAddr())
		}
		return nil, nil, wire.Hello{}, handshakeErr("reading HELLO: %w", ctxErr(ctx, err))
	}
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
	if hdr.ID != 0 || peer.Role != wire.RoleAcceptor || len(peer.Codecs) != 1 || !slices.Contains(o.codecs, peer.Codecs[0]) {
		return refuse(handshakeErr("%w: the server chose codecs %q, offered %q (HELLO id %d, role %d)", wire.ErrMalformed, peer.Codecs, o.codecs, hdr.ID, peer.Role))
	}
	if err := checkPeerHello(peer); err != nil {
		return refuse(err)
	}
	if hb := o.heartbeat; hb.Timeout > 0 && peer.Interval > 0 && hb.Timeout < 2*peer.Interval {
		return refuse(handshakeErr("the server granted a heartbeat interval of %v (this client proposed %v), "+
			"but this client's Heartbeat.Timeout is %v: it must be at least twice the interval; raise Timeout to %v or more, "+
			"or have the server allow a shorter interval (Heartbeat.MinInterval)", peer.Interval, h.Interval, hb.Timeout, 2*peer.Interval))
	}
	conn.SetDeadline(time.Time{})
	return fr, codec.Get(peer.Codecs[0]), peer, nil
}

// serverHandshake runs the acceptor's side: read the offer, choose a codec
// and answer. A peer that does not speak Pulse, or offers nothing this side
// accepts, gets an error (and, when it spoke Pulse, a GOAWAY saying why).
func serverHandshake(conn net.Conn, o *options) (*wire.Reader, codec.Codec, wire.Hello, error) {
	stop := deadlineFor(context.Background(), conn, o.handshakeTimeout)
	defer stop()
	fr := newFrameReader(conn)
	hdr, p, err := fr.ReadFrame()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, wire.Hello{}, handshakeErr("no HELLO within %v", o.handshakeTimeout)
		}
		return nil, nil, wire.Hello{}, handshakeErr("reading HELLO: %w", err)
	}
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
		if slices.Contains(o.codecs, name) {
			chosen = name
			break
		}
	}
	if chosen == "" {
		return refuse(wire.GoAwayHandshake, fmt.Errorf("no common codec: the client offered %q, the server accepts %q", peer.Codecs, o.codecs))
	}
	h := o.localHello(wire.RoleAcceptor)
	h.Codecs = []string{chosen}
	// Grant an interval within this server's bounds; state the deadline it
	// enforces and the ping rate it tolerates.
	h.Interval = o.heartbeat.grant(peer.Interval)
	h.MinPingInterval = minPingGap(o.heartbeat, h.Interval)
	b, err := wire.AppendHello(nil, h)
	if err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("%v", err)
	}
	if _, err := conn.Write(b); err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("sending HELLO: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return fr, codec.Get(chosen), peer, nil
}

// checkPeerHello refuses settings this side cannot work with.
func checkPeerHello(h wire.Hello) *ConnError {
	if h.MaxFrameSize < wire.MinMaxFrameSize || h.MaxFrameSize > wire.MaxMaxFrameSize {
		return handshakeErr("%w: peer's max frame size %d outside [%d, %d]", wire.ErrMalformed, h.MaxFrameSize, wire.MinMaxFrameSize, wire.MaxMaxFrameSize)
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

// minPingGap is the shortest gap between two pings from the peer that a
// server answers: half the granted interval, or half its minimum when the
// client sends no heartbeats.
func minPingGap(hb Heartbeat, granted time.Duration) time.Duration {
	if granted > 0 {
		return granted / 2
	}
	return hb.MinInterval / 2
}

// dialHandshakeTimeout bounds a client's handshakes (TLS and Pulse): the
// handshake timeout, but no more than the heartbeat Timeout, so that a
// redial into a path that is still dead gives up within the liveness
// bound instead of hanging for the whole handshake timeout.
func (o *options) dialHandshakeTimeout() time.Duration {
	if t := o.heartbeat.Timeout; t > 0 && t < o.handshakeTimeout {
		return t
	}
	return o.handshakeTimeout
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
