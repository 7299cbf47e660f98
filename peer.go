package pulse

import (
	"context"
	"net"

	"github.com/pulse-rpc/pulse/codec"
)

// Peer is the other end of one connection, as seen from this side. A
// handler gets the Peer that called it from its context (PeerFromContext)
// and can call methods the peer registered, or push notifications to it,
// over the same connection. Server.Peers lists the connected peers.
//
// A Peer is bound to one connection: once that closes, its calls fail with
// a *ConnError. Its methods are safe for concurrent use.
type Peer struct {
	s *session
}

type peerKey struct{}

// PeerFromContext returns the peer whose call is being served with ctx, or
// nil when ctx does not come from a Pulse handler.
func PeerFromContext(ctx context.Context) *Peer {
	p, _ := ctx.Value(peerKey{}).(*Peer)
	return p
}

// Call calls the peer's method and waits for it to complete, for ctx to
// end, or for the connection to fail.
func (p *Peer) Call(ctx context.Context, serviceMethod string, args, reply any) error {
	call := newCall(serviceMethod, args, reply, nil)
	p.s.send(ctx, call, false, false)
	return call.wait(ctx)
}

// Go calls the peer's method asynchronously, as Client.Go.
func (p *Peer) Go(ctx context.Context, serviceMethod string, args, reply any, done chan *Call) *Call {
	call := newCall(serviceMethod, args, reply, done)
	p.s.send(ctx, call, false, true)
	return call
}

// Notify sends a one-way call: the peer runs the method and sends no reply.
// Notify returns once the message is queued on the connection; its error
// reports only failures on this side (encoding, a closed connection).
func (p *Peer) Notify(ctx context.Context, serviceMethod string, args any) error {
	return p.s.notify(ctx, serviceMethod, args)
}

// RemoteAddr returns the address of the peer.
func (p *Peer) RemoteAddr() net.Addr { return p.s.conn.RemoteAddr() }

// LocalAddr returns the local address of the connection.
func (p *Peer) LocalAddr() net.Addr { return p.s.conn.LocalAddr() }

// Codec returns the name of the codec negotiated for the connection.
func (p *Peer) Codec() string { return p.s.codec.Name() }

// Done returns a channel that is closed when the connection closes.
func (p *Peer) Done() <-chan struct{} { return p.s.done }

// Err returns why the connection closed (a *ConnError), or nil while it
// is open.
func (p *Peer) Err() error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if p.s.err == nil {
		return nil
	}
	return p.s.err
}

// Close closes the connection to the peer: pending calls on it fail with
// ErrShutdown. It returns nil, also when the connection was closed already.
func (p *Peer) Close() error {
	p.s.close()
	return nil
}

// notify sends a NOTIFY and returns once it is queued.
func (s *session) notify(ctx context.Context, serviceMethod string, args any) error {
	call := &Call{ServiceMethod: serviceMethod, Args: args, Done: make(chan *Call, 1)}
	s.send(ctx, call, true, false)
	select {
	case <-call.Done:
		return call.Error
	default:
		return nil
	}
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
