package pulse

import (
	"context"
	"net"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/session"
)

// Peer is the other end of one connection, as seen from this side. A
// handler gets the Peer that called it from its context (PeerFromContext)
// and can call methods the peer registered, or push notifications to it,
// over the same connection. Server.Peers lists the connected peers.
//
// A Peer is bound to one connection: once that closes, its calls fail with
// a *ConnError. Its methods are safe for concurrent use.
type Peer struct {
	s *session.Session
}

type peerKey struct{}

// peerOf returns the Peer of s (its Owner).
func peerOf(s *session.Session) *Peer { return s.Owner.(*Peer) }

// peerContext is the parent of the contexts of s's handlers: it carries
// the Peer (session.Config.BaseContext).
func peerContext(s *session.Session) context.Context {
	return context.WithValue(context.Background(), peerKey{}, peerOf(s))
}

// newPeer makes the Peer of s and hooks it to s.
func newPeer(s *session.Session) *Peer {
	p := &Peer{s: s}
	s.Owner = p
	return p
}

// PeerFromContext returns the peer whose call is being served with ctx, or
// nil when ctx does not come from a Pulse handler.
func PeerFromContext(ctx context.Context) *Peer {
	p, _ := ctx.Value(peerKey{}).(*Peer)
	return p
}

// Call calls the peer's method and waits for it to complete, for ctx to
// end, or for the connection to fail.
func (p *Peer) Call(ctx context.Context, serviceMethod string, args, reply any) error {
	call := getCall(serviceMethod, args, reply)
	call.send(ctx, p.s, false)
	err := call.wait(ctx)
	putCall(call)
	return err
}

// Go calls the peer's method asynchronously, as Client.Go.
func (p *Peer) Go(ctx context.Context, serviceMethod string, args, reply any, done chan *Call) *Call {
	call := newCall(serviceMethod, args, reply, done)
	call.send(ctx, p.s, true)
	return call
}

// Notify sends a one-way call: the peer runs the method and sends no reply.
// Notify returns once the message is queued on the connection; its error
// reports only failures on this side (encoding, a closed connection). When
// the connection's send queue is full (WithMaxQueued), Notify does what
// WithSlowConsumer says: by default on a server it closes the connection
// of a peer that does not keep up and returns ErrSlowConsumer.
func (p *Peer) Notify(ctx context.Context, serviceMethod string, args any) error {
	return publicErr(p.s.Notify(ctx, serviceMethod, args))
}

// RemoteAddr returns the address of the peer.
func (p *Peer) RemoteAddr() net.Addr { return p.s.RemoteAddr() }

// LocalAddr returns the local address of the connection.
func (p *Peer) LocalAddr() net.Addr { return p.s.LocalAddr() }

// Codec returns the name of the codec negotiated for the connection.
func (p *Peer) Codec() string { return p.s.Codec().Name() }

// Done returns a channel that is closed when the connection closes.
func (p *Peer) Done() <-chan struct{} { return p.s.Done() }

// Err returns why the connection closed (a *ConnError), or nil while it
// is open.
func (p *Peer) Err() error {
	if ce := p.s.Err(); ce != nil {
		return publicConnErr(ce)
	}
	return nil
}

// Stats returns a snapshot of the connection's health.
func (p *Peer) Stats() ConnStats { return connStats(p.s) }

// ConnStats describes the health of one connection.
type ConnStats struct {
	// RemoteAddr is the peer's address; Codec the negotiated codec.
	RemoteAddr, Codec string
	// RTT is the smoothed round-trip time measured by heartbeats.
	RTT time.Duration
	// Phi is the phi-accrual suspicion level (DetectorPhi only).
	Phi float64
	// SinceRead is how long ago the last byte arrived from the peer.
	SinceRead time.Duration
	// Interval is the granted heartbeat interval, 0 without heartbeats.
	Interval time.Duration
	// Timeout is the silence after which this side declares the peer
	// dead; PeerTimeout the silence after which the peer declares this
	// side dead (as it stated in the handshake).
	Timeout, PeerTimeout time.Duration
	// Pending counts calls this side started and waits for; Running the
	// peer's calls admitted here and not finished.
	Pending, Running int
	// Credit is how many bytes of messages this side may send before the
	// peer grants more (flow control): near 0 means the peer holds all
	// its budget, and calls and replies wait for room.
	// Queued is how many bytes of messages wait to be written (at most
	// about WithMaxQueued's bound).
	Credit, Queued int
	// Suspect says the peer has been silent for a while; Draining that
	// this side sent GOAWAY; Closed that the connection is closed.
	Suspect, Draining, Closed bool
}

// connStats builds the ConnStats of s. session.Stats has the same fields
// in the same order, so that this is a conversion, which stops compiling
// if the two drift apart.
func connStats(s *session.Session) ConnStats { return ConnStats(s.Stats()) }

// Close closes the connection to the peer: pending calls on it fail with
// ErrShutdown. It returns nil, also when the connection was closed already.
func (p *Peer) Close() error {
	p.s.Close()
	return nil
}

// encodeFor returns args encoded with c, for sending the same arguments
// to many peers (Server.Broadcast) without encoding them for each.
func encodeFor(c codec.Codec, args any) (*codec.RawMessage, error) {
	b, err := c.Append(nil, args)
	if err != nil {
		return nil, err
	}
	raw := codec.RawMessage(b)
	return &raw, nil
}

// Draining returns a channel that is closed when the connection of the
// call being served with ctx starts draining (the server is shutting down,
// or the connection reached its age or idle limit): the handler should
// finish soon. It returns nil when ctx is not from a Pulse handler.
func Draining(ctx context.Context) <-chan struct{} {
	p := PeerFromContext(ctx)
	if p == nil {
		return nil
	}
	return p.s.Draining()
}
