package pulse

import (
	"fmt"
	"time"

	"github.com/pulse-rpc/pulse/internal/session"
	"github.com/pulse-rpc/pulse/liveness"
)

// DetectorKind selects how a connection decides that its peer is dead.
type DetectorKind uint8

const (
	// DetectorFixed declares the peer dead after Timeout without a byte
	// from it.
	DetectorFixed DetectorKind = iota
	// DetectorPhi also watches the gaps between heartbeat-scale arrivals
	// and declares the peer dead as soon as the current silence is very
	// unlikely for that history (phi accrual, Hayashibara et al. 2004):
	// never before the floor, always by Timeout.
	DetectorPhi
)

func (k DetectorKind) String() string {
	if k == DetectorPhi {
		return "phi"
	}
	return "fixed"
}

// Heartbeat configures liveness for a Client or a Server. The zero value
// of a field means its default.
//
// Each side makes sure the peer hears from it: after Interval without
// writing anything it sends a PING, which the peer answers at once with a
// PONG (that answer counts as the peer's own write). Any byte read counts
// as a sign of life. A side declares its peer dead when it has read
// nothing for Timeout, or earlier with DetectorPhi. The guarantee: a peer
// that vanishes is detected within Timeout of the last byte read from it,
// plus scheduling slack; a peer whose bytes keep arriving, however slowly,
// is never declared dead.
type Heartbeat struct {
	// Interval is how long a side may go without writing before it sends
	// a PING (default DefaultInterval). A client proposes it; the server
	// grants a value within [MinInterval, MaxInterval] and no more than
	// half of its own Timeout, and both sides use the granted value.
	// Negative turns heartbeats off for the connection: this side sends no
	// PING, a server sends none to such a client either, and a client
	// without heartbeats does not judge the server's silence. Only calls
	// then keep the connection alive: the server reaps it after its
	// Timeout without one (the "every message extends the deadline"
	// pattern).
	Interval time.Duration
	// Timeout is how long a side waits without reading a byte before it
	// declares the peer dead (default DefaultTimeout). It must be at least
	// twice the interval in use. A server states its Timeout in the
	// handshake as the deadline it enforces. Negative disables detection
	// on this side.
	Timeout time.Duration
	// Detector selects the detector (default DetectorFixed).
	Detector DetectorKind
	// PhiThreshold is DetectorPhi's threshold (default 8).
	PhiThreshold float64
	// MinInterval and MaxInterval bound the interval a server grants
	// (defaults DefaultMinInterval, DefaultMaxInterval). Server only.
	MinInterval, MaxInterval time.Duration
}

// WithHeartbeat sets the heartbeat and dead-peer detection settings.
func WithHeartbeat(h Heartbeat) Option {
	return optionFunc(func(o *options) { o.hb = &h })
}

// withDefaults fills in zero fields.
func (h Heartbeat) withDefaults() Heartbeat {
	if h.Interval == 0 {
		h.Interval = DefaultInterval
	}
	if h.Timeout == 0 {
		h.Timeout = DefaultTimeout
	}
	if h.MinInterval == 0 {
		h.MinInterval = DefaultMinInterval
	}
	if h.MaxInterval == 0 {
		h.MaxInterval = DefaultMaxInterval
	}
	if h.PhiThreshold == 0 {
		h.PhiThreshold = liveness.DefaultThreshold
	}
	return h
}

// validate refuses settings that cannot work, naming the fields.
func (h Heartbeat) validate() error {
	if h.Interval > 0 && h.Timeout > 0 && h.Timeout < 2*h.Interval {
		return fmt.Errorf("pulse: Heartbeat.Timeout (%v) must be at least twice Heartbeat.Interval (%v): a healthy peer may stay silent for a whole interval plus a round trip", h.Timeout, h.Interval)
	}
	if h.MinInterval <= 0 || h.MaxInterval < h.MinInterval {
		return fmt.Errorf("pulse: Heartbeat.MinInterval (%v) must be positive and at most Heartbeat.MaxInterval (%v)", h.MinInterval, h.MaxInterval)
	}
	if h.PhiThreshold <= 0 {
		return fmt.Errorf("pulse: Heartbeat.PhiThreshold (%v) must be positive", h.PhiThreshold)
	}
	if h.Detector != DetectorFixed && h.Detector != DetectorPhi {
		return fmt.Errorf("pulse: Heartbeat.Detector %d is not a DetectorKind", h.Detector)
	}
	return nil
}

// session is h, with its defaults filled in, as the session
// layer takes it.
func (h Heartbeat) session() session.Heartbeat {
	return session.Heartbeat{
		Interval: h.Interval, Timeout: h.Timeout,
		Phi: h.Detector == DetectorPhi, PhiThreshold: h.PhiThreshold,
		MinInterval: h.MinInterval, MaxInterval: h.MaxInterval,
	}
}

// ConnLimits make a server close connections that are idle or old, the
// "short connection" mode. Each ends with GOAWAY, so that clients move to
// a new connection without failing calls, then a hard close after the
// grace period. The zero value means no limit.
//
// The grace and the jitter default when zero, like the other settings of
// Pulse, so "none" is written with a named sentinel, NoGrace or NoJitter,
// rather than with a pointer or a second field: the struct stays a plain
// comparable value, a literal stays one line, and no combination of fields
// contradicts another. grpc-go's keepalive.ServerParameters is the model;
// there a zero MaxConnectionAgeGrace means an infinite grace, here it means
// DefaultMaxConnAgeGrace, as it always has.
type ConnLimits struct {
	// MaxConnIdle closes a connection that has carried no call for this
	// long.
	MaxConnIdle time.Duration
	// MaxConnAge closes a connection this long after it opened, moved at
	// random by up to MaxConnAgeJitter either way so that clients do not
	// all reconnect at once.
	MaxConnAge time.Duration
	// MaxConnAgeGrace is how long calls in flight may take to finish after
	// the GOAWAY of MaxConnIdle or MaxConnAge (zero: DefaultMaxConnAgeGrace).
	// NoGrace closes the connection right after the GOAWAY: calls still in
	// flight then fail on the client with a *ConnError.
	MaxConnAgeGrace time.Duration
	// MaxConnAgeJitter is the fraction of MaxConnAge by which each
	// connection's age limit is moved at random, either way, in [0, 1)
	// (zero: DefaultMaxConnAgeJitter, ±10 %). NoJitter makes the age
	// exact: with MaxConnAge 10 s and NoGrace, every connection gets its
	// GOAWAY and is closed 10 s after its handshake, the absolute
	// deadline of the short-connection servers Pulse grew from.
	MaxConnAgeJitter float64
}

// NoGrace, as ConnLimits.MaxConnAgeGrace, closes a connection right after
// its idle or age GOAWAY, without waiting for calls in flight.
const NoGrace time.Duration = -1

// NoJitter, as ConnLimits.MaxConnAgeJitter, makes MaxConnAge exact.
const NoJitter = -1.0

// WithConnLimits sets a server's idle and age limits. Server only: Dial
// and NewClient refuse it.
func WithConnLimits(l ConnLimits) Option {
	return serverOption("WithConnLimits", func(o *options) { o.limits = l })
}

// validate refuses limits that cannot work, naming the field.
func (l ConnLimits) validate() error {
	switch {
	case l.MaxConnIdle < 0 || l.MaxConnAge < 0:
		return fmt.Errorf("pulse: ConnLimits.MaxConnIdle and MaxConnAge must not be negative: %+v", l)
	case l.MaxConnAgeGrace < 0 && l.MaxConnAgeGrace != NoGrace:
		return fmt.Errorf("pulse: ConnLimits.MaxConnAgeGrace is %v: it must be positive, zero (the default, %v) or NoGrace", l.MaxConnAgeGrace, DefaultMaxConnAgeGrace)
	case l.MaxConnAgeJitter != NoJitter && (l.MaxConnAgeJitter < 0 || l.MaxConnAgeJitter >= 1):
		return fmt.Errorf("pulse: ConnLimits.MaxConnAgeJitter is %v: it must be in [0, 1) (0: the default, %v) or NoJitter", l.MaxConnAgeJitter, DefaultMaxConnAgeJitter)
	}
	return nil
}

// session is l with its defaults filled in, as the session layer takes it
// (where zero grace and zero jitter mean none).
func (l ConnLimits) session() session.Limits {
	switch l.MaxConnAgeGrace {
	case 0:
		l.MaxConnAgeGrace = DefaultMaxConnAgeGrace
	case NoGrace:
		l.MaxConnAgeGrace = 0
	}
	switch l.MaxConnAgeJitter {
	case 0:
		l.MaxConnAgeJitter = DefaultMaxConnAgeJitter
	case NoJitter:
		l.MaxConnAgeJitter = 0
	}
	return session.Limits(l)
}
