package pulse

import (
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// Every default lives here, so that one file tells what an unconfigured
// Server or Client does.
const (
	// DefaultMaxFrameSize is the largest frame payload accepted. Larger
	// messages are split into frames of this size so that control frames
	// (heartbeats, cancellations) can be written between them.
	DefaultMaxFrameSize = wire.DefaultMaxFrameSize
	// DefaultMaxMessageSize is the largest call argument or reply accepted,
	// as grpc-go's default receive limit.
	DefaultMaxMessageSize = 4 << 20
	// DefaultMaxConcurrentCalls bounds the handlers running at once for one
	// connection; calls beyond it are refused with ErrBusy, unexecuted.
	DefaultMaxConcurrentCalls = 1024
	// DefaultHandshakeTimeout bounds the handshake: a peer that connects and
	// says nothing is dropped after it.
	DefaultHandshakeTimeout = 10 * time.Second

	// DefaultMessageTimeout is how long a frame or message the peer has
	// started may go without progress before the connection is closed
	// (WithMessageTimeout).
	DefaultMessageTimeout = 30 * time.Second
	// DefaultConnBudget is the most message bytes one connection can make
	// this side hold: the flow-control window it grants its peer (see
	// WithConnBudget). Two default-size messages; it moves a single
	// stream at 8 MiB per round trip (800 MiB/s at 10 ms, 80 MiB/s at
	// 100 ms). When MaxMessageSize is raised and the budget is not set, the
	// budget is twice MaxMessageSize.
	DefaultConnBudget = 2 * DefaultMaxMessageSize
	// DefaultSharedBudget is the most message bytes all the connections of
	// one Server (or one Client) can make it hold together (see
	// WithSharedBudget).
	DefaultSharedBudget = 512 << 20
	// DefaultMaxQueued is the most bytes of messages a connection queues
	// for sending before callers wait for room (see WithMaxQueued): one
	// default-size message, with room to spare for small ones.
	DefaultMaxQueued = 4 << 20
)

// Heartbeat defaults. An idle connection carries one PING and one PONG per
// DefaultInterval. DefaultTimeout is four intervals: a heartbeat can be
// lost and retransmitted by TCP (200 ms minimum RTO, doubling) more than
// once before a healthy peer could be taken for dead, and a dead peer is
// still found within seconds, not the 15 minutes TCP takes on its own.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = 8 * time.Second
	// DefaultMinInterval and DefaultMaxInterval bound the interval a server
	// grants. Intervals well below a second are allowed.
	DefaultMinInterval = 50 * time.Millisecond
	DefaultMaxInterval = time.Minute
	// DefaultMaxConnAgeGrace is how long a connection told to go away for
	// its age or idleness may finish its calls before it is closed.
	DefaultMaxConnAgeGrace = 10 * time.Second
	// DefaultMaxConnAgeJitter is the fraction of MaxConnAge by which a
	// connection's age limit moves at random, either way (±10 %), so that
	// clients that connected together do not reconnect together.
	DefaultMaxConnAgeJitter = 0.1
)

// Server-wide limits (ServerLimits). Each bounds what all the connections
// of one Server hold together, whatever their number. NoLimit turns one
// off.
const (
	// NoLimit, as a field of ServerLimits, means no limit.
	NoLimit = -1
	// DefaultMaxConns is how many connections a Server holds at once: no
	// limit, as in net/http and grpc-go; the process's open-file limit
	// bounds them (Serve backs off when it is reached), and an idle
	// connection costs a few KiB (docs/idle-100k.md). Set one for a
	// server facing the internet.
	DefaultMaxConns = NoLimit
	// DefaultMaxConnsPerIP is how many connections one remote IP address
	// may hold: no limit by default, since many clients may share an
	// address (NAT, a proxy, a load balancer).
	DefaultMaxConnsPerIP = NoLimit
	// DefaultMaxPendingHandshakes bounds the connections accepted whose
	// handshake (TLS and Pulse) has not finished. Each holds a goroutine
	// and, once its HELLO's header has arrived, a buffer of
	// wire.MaxHelloSize bytes; a handshake takes one round trip, so
	// healthy clients rarely have more than a few pending at once.
	DefaultMaxPendingHandshakes = 4096
	// DefaultMaxPendingHandshakesPerIP bounds pending handshakes from one
	// remote IP address, so that one host cannot take them all.
	DefaultMaxPendingHandshakesPerIP = 256
	// DefaultMaxHandlers bounds the handlers running at once across all the
	// connections of a Server (each holds a goroutine with at least 8 KiB
	// of stack), so that DefaultMaxConcurrentCalls is not multiplied by
	// the number of connections.
	DefaultMaxHandlers = 16384
)
