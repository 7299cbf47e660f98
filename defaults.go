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
)
