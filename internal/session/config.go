package session

import (
	"context"
	"log/slog"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// Config is what a session needs from its Server or Client. One Config
// serves every session of its owner; it is not changed once a session
// uses it. The root package builds it from the public options, which have
// validated it.
type Config struct {
	Codecs             []string // offered (client) or accepted (server), in order
	MaxFrameSize       uint32   // largest frame payload this side accepts
	MaxMessageSize     uint32   // largest message this side accepts
	MaxConcurrentCalls int      // handlers running at once per connection
	// Window is the credit this side grants each peer for message bytes
	// (HELLO's InitialWindow): the most one connection can make it hold.
	// At least MaxMessageSize plus wire.MessageLenSize, and MaxFrameSize.
	Window uint32
	// Budget bounds the message bytes held by all the sessions of this
	// Config together; nil for none.
	Budget *Budget
	// MaxQueued bounds the bytes of messages a session queues for sending
	// (queue.go), 0 for no bound; Slow says what a notification does when
	// they fill it.
	MaxQueued        int
	Slow             SlowPolicy
	HandshakeTimeout time.Duration
	// MessageTimeout bounds how long a frame or message the peer started
	// may go without progress (stall.go); 0 for no bound.
	MessageTimeout time.Duration
	Logger         *slog.Logger
	Heartbeat      Heartbeat
	Limits         Limits
	// Gate, when set, bounds the handlers running at once across every
	// session that shares it (a Server's connections). Nil: no bound.
	Gate *Gate

	// BaseContext returns the parent of the contexts of s's handlers
	// (net/http's Server.BaseContext): the root puts the Peer in it. It
	// is called at most once per session, on first use. Nil means
	// context.Background().
	BaseContext func(s *Session) context.Context
	// PublicErr converts the session's close error (a *ConnError) into
	// the cause that handler contexts are cancelled with. Nil keeps it.
	PublicErr func(error) error

	// Clock reads the time for every session of this Config; it must be
	// made with NewClock (Start refuses the zero Clock).
	Clock Clock
	// Workers runs the handlers of this Config's sessions. Nil means the
	// process-wide pool.
	Workers *WorkerPool
}

// Heartbeat is the liveness part of a Config (the root's Heartbeat, with
// its defaults filled in).
type Heartbeat struct {
	// Interval is how long a side may go without writing before it
	// pings; negative turns heartbeats off for the connection.
	Interval time.Duration
	// Timeout is the silence after which the peer is dead; negative
	// disables detection on this side.
	Timeout time.Duration
	// Phi selects the phi-accrual detector, with PhiThreshold.
	Phi          bool
	PhiThreshold float64
	// MinInterval and MaxInterval bound the interval a server grants.
	MinInterval, MaxInterval time.Duration
}

// Limits are a server's idle and age limits (zero: none), the grace that
// connections told to go away for them get (zero: none, the connection
// closes right after its GOAWAY), and the jitter of the age: a fraction of
// MaxConnAge by which each connection's age limit is moved at random,
// either way (zero: none, the age is exact). The root fills in its
// defaults; the session takes the values as they are. The fields match
// the root's ConnLimits, which converts to Limits.
type Limits struct {
	MaxConnIdle, MaxConnAge, MaxConnAgeGrace time.Duration
	MaxConnAgeJitter                         float64
}

// grant returns the interval a server grants for a client's proposal: 0
// (no client pings) stays 0; otherwise it is clamped to the server's
// bounds and to half its deadline, so that a client pinging at that
// interval can never be reaped.
func (h Heartbeat) grant(proposed time.Duration) time.Duration {
	if proposed <= 0 {
		return 0
	}
	g := min(max(proposed, h.MinInterval), h.MaxInterval)
	if h.Timeout > 0 {
		g = min(g, h.Timeout/2)
	}
	return max(g, time.Millisecond)
}

// Clock reads monotonic time as nanoseconds since its epoch, the moment
// it was made. Every time a session keeps (last read, last write, ping
// tokens) is such a reading. A clock made inside a testing/synctest
// bubble reads the bubble's time, so that the monitor's timing can be
// tested without real sleeps.
type Clock struct{ epoch time.Time }

// NewClock returns a clock whose epoch is now.
func NewClock() Clock { return Clock{epoch: time.Now()} }

// Now returns the nanoseconds since the clock's epoch, plus one: a reading
// is never 0, which the session's times use for "none" (a clock made in a
// synctest bubble reads its epoch exactly until the bubble's time moves).
func (c *Clock) Now() int64 { return int64(time.Since(c.epoch)) + 1 }

// Internal limits and sizes. The public defaults are in the root's
// defaults.go.
const (
	// maxPartialMessages bounds the messages a peer may have half-sent at
	// once, on top of the concurrent-call limit.
	maxPartialMessages = 64
	// readBufferSize is the per-connection read buffer while frames flow.
	// It holds a whole default-size frame with its header and more, so that
	// chunks of large messages are read without growing it.
	readBufferSize = 32 << 10
	// maxWriteSize is the most one write system call carries: the write
	// watchdog judges progress per call.
	maxWriteSize = 64 << 10
	// maxPingStrikes is how many too-early pings a server forgives before
	// it sends GOAWAY "too many pings".
	maxPingStrikes = 2
	// NotsentLowat is TCP_NOTSENT_LOWAT: unsent bytes the kernel may hold
	// ahead of a heartbeat.
	NotsentLowat = 16 << 10
)

// localHello is what this side states in its HELLO.
func (cfg *Config) localHello(role wire.Role) wire.Hello {
	h := wire.Hello{
		Role:               role,
		MaxFrameSize:       cfg.MaxFrameSize,
		MaxMessageSize:     cfg.MaxMessageSize,
		MaxConcurrentCalls: uint32(min(cfg.MaxConcurrentCalls, 1<<31)),
		InitialWindow:      cfg.Window,
	}
	if cfg.Heartbeat.Interval > 0 {
		h.Interval = cfg.Heartbeat.Interval
	}
	if cfg.Heartbeat.Timeout > 0 {
		h.Timeout = cfg.Heartbeat.Timeout
	}
	return h
}

// DialHandshakeTimeout bounds a client's handshakes (TLS and Pulse): the
// handshake timeout, but no more than the heartbeat Timeout, so that a
// redial into a path that is still dead gives up within the liveness
// bound instead of hanging for the whole handshake timeout.
func (cfg *Config) DialHandshakeTimeout() time.Duration {
	if t := cfg.Heartbeat.Timeout; t > 0 && t < cfg.HandshakeTimeout {
		return t
	}
	return cfg.HandshakeTimeout
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
