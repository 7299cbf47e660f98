package pulse

import (
	"context"
	"net"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/liveness"
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
	call := getCall(serviceMethod, args, reply)
	p.s.send(ctx, call, false, false)
	err := call.wait(ctx)
	putCall(call)
	return err
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
func (p *Peer) Done() <-chan struct{} { return p.s.doneChan() }

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

// Stats returns a snapshot of the connection's health.
func (p *Peer) Stats() ConnStats { return p.s.stats() }

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
	// Suspect says the peer has been silent for a while; Draining that
	// this side sent GOAWAY; Closed that the connection is closed.
	Suspect, Draining, Closed bool
}

// stats builds the connection's ConnStats.
func (s *session) stats() ConnStats {
	st := ConnStats{
		RemoteAddr:  s.conn.RemoteAddr().String(),
		Codec:       s.codec.Name(),
		SinceRead:   time.Duration(nanotime() - s.lastRead.Load()),
		PeerTimeout: s.peerTimeout,
		Running:     int(s.running.Load()),
	}
	s.mu.Lock()
	st.Pending = len(s.pending)
	st.Draining = s.goAwayOut
	st.Closed = s.closed
	s.mu.Unlock()
	if m := s.mon; m != nil {
		st.RTT = time.Duration(m.srtt.Load())
		st.Interval = m.interval
		st.Timeout = m.timeout
		m.mu.Lock()
		st.Suspect = m.isSuspect
		lastSign := m.lastSign(s.lastRead.Load())
		m.mu.Unlock()
		if p, ok := m.det.(*liveness.PhiAccrual); ok {
			// Judged as the detector judges it: from the last sign of
			// life, which may be the kernel's (see monitor.lookKernel).
			st.Phi = p.Phi(time.Duration(nanotime()), time.Duration(lastSign))
		}
	}
	return st
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
