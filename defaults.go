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

	// maxPartialMessages bounds the messages a peer may have half-sent at
	// once, on top of the concurrent-call limit.
	maxPartialMessages = 64
	// readBufferSize is the per-connection read buffer while frames flow.
	// It holds a whole default-size frame with its header and more, so that
	// chunks of large messages are read without growing it.
	readBufferSize = 32 << 10
	// maxKeptWriteBuffer is the largest write buffer kept for reuse.
	maxKeptWriteBuffer = 256 << 10
)
