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
	return wire.Hello{
		Role:               role,
		MaxFrameSize:       o.maxFrameSize,
		MaxMessageSize:     o.maxMessageSize,
		MaxConcurrentCalls: uint32(min(o.maxConcurrentCalls, 1<<31)),
	}
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
	stop := deadlineFor(ctx, conn, o.handshakeTimeout)
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
	fr := wire.NewReader(conn, readBufferSize)
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
	peer, err := wire.ParseHello(p)
	if err != nil {
		return nil, nil, wire.Hello{}, handshakeErr("%w", err)
	}
	if peer.Role != wire.RoleAcceptor || len(peer.Codecs) != 1 || !slices.Contains(o.codecs, peer.Codecs[0]) {
		return nil, nil, wire.Hello{}, handshakeErr("%w: the server chose codecs %q, offered %q", wire.ErrMalformed, peer.Codecs, o.codecs)
	}
	if err := checkPeerHello(peer); err != nil {
		return nil, nil, wire.Hello{}, err
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
	fr := wire.NewReader(conn, readBufferSize)
	hdr, p, err := fr.ReadFrame()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, wire.Hello{}, handshakeErr("no HELLO within %v", o.handshakeTimeout)
		}
		return nil, nil, wire.Hello{}, handshakeErr("reading HELLO: %w", err)
	}
	refuse := func(err error) (*wire.Reader, codec.Codec, wire.Hello, error) {
		b := wire.AppendGoAway(nil, wire.GoAway{Code: wire.GoAwayHandshake, Message: err.Error()})
		conn.Write(b)
		return nil, nil, wire.Hello{}, &ConnError{Reason: ReasonHandshake, Code: wire.GoAwayHandshake, Err: err}
	}
	if hdr.Type != wire.TypeHello {
		return refuse(fmt.Errorf("%w: got %v before HELLO", wire.ErrMalformed, hdr.Type))
	}
	peer, err := wire.ParseHello(p)
	if err != nil {
		return refuse(err)
	}
	if peer.Role != wire.RoleDialer {
		return refuse(fmt.Errorf("%w: HELLO from the dialer has role %d", wire.ErrMalformed, peer.Role))
	}
	if err := checkPeerHello(peer); err != nil {
		return refuse(err.Err)
	}
	var chosen string
	for _, name := range peer.Codecs {
		if slices.Contains(o.codecs, name) {
			chosen = name
			break
		}
	}
	if chosen == "" {
		return refuse(fmt.Errorf("no common codec: the client offered %q, the server accepts %q", peer.Codecs, o.codecs))
	}
	h := o.localHello(wire.RoleAcceptor)
	h.Codecs = []string{chosen}
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
	if h.MaxMessageSize == 0 {
		return handshakeErr("%w: peer's max message size is 0", wire.ErrMalformed)
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
