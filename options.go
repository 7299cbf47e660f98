package pulse

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/session"
	"github.com/pulse-rpc/pulse/liveness"
	"github.com/pulse-rpc/pulse/wire"
)

// An Option configures a Server or a Client. Options that concern only one
// side say so ("Server only", "Client only"), and the other side refuses
// them with an error naming the option: an option that cannot take effect
// is a mistake to report, not to ignore.
type Option interface{ apply(*options) }

// optionFunc is an option for both sides.
type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// side is the side of a connection an option is for.
type side uint8

const (
	forServers side = iota + 1
	forClients
)

func (sd side) String() string {
	if sd == forServers {
		return "servers"
	}
	return "clients"
}

// sideOption is an option for one side only, named for the error that
// the other side's constructor returns.
type sideOption struct {
	name string
	side side
	f    func(*options)
}

func (so sideOption) apply(o *options) { so.f(o) }

func serverOption(name string, f func(*options)) Option {
	return sideOption{name: name, side: forServers, f: f}
}

func clientOption(name string, f func(*options)) Option {
	return sideOption{name: name, side: forClients, f: f}
}

// checkSide refuses the options of opts that are for the other side than
// sd; ctor names the function that was given them.
func checkSide(opts []Option, sd side, ctor string) error {
	for _, opt := range opts {
		if so, ok := opt.(sideOption); ok && so.side != sd {
			return fmt.Errorf("pulse: option %s is for %s; %s does not use it", so.name, so.side, ctor)
		}
	}
	return nil
}

type options struct {
	// sess is what the sessions of this Server or Client get: the options
	// that concern one connection are kept there, not copied (every
	// Client has its own options). sessionConfig completes it.
	sess session.Config

	// hb is the Heartbeat given with WithHeartbeat, until newOptions
	// checks it and keeps it in sess.
	hb        *Heartbeat
	limits    ConnLimits
	srvLimits ServerLimits
	tlsConfig *tls.Config
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	backoff   liveness.Backoff
	stateHook func(StateChange)
	connHook  func(ConnEvent)
	codecsSet bool
	failFast  bool
	// connBudget and sharedBudget are WithConnBudget's and
	// WithSharedBudget's values, 0 when not given.
	connBudget   int
	sharedBudget int64
	// slowSet says WithSlowConsumer was given.
	slowSet bool
}

// preferredBinaryCodec is offered first by clients when it is registered.
const preferredBinaryCodec = "cbor"

func newOptions(opts []Option) (*options, error) {
	o := &options{sess: session.Config{
		MaxFrameSize:       DefaultMaxFrameSize,
		MaxMessageSize:     DefaultMaxMessageSize,
		MaxConcurrentCalls: DefaultMaxConcurrentCalls,
		HandshakeTimeout:   DefaultHandshakeTimeout,
		MessageTimeout:     DefaultMessageTimeout,
		MaxQueued:          DefaultMaxQueued,
	}}
	for _, opt := range opts {
		opt.apply(o)
	}
	if o.sess.Logger == nil {
		o.sess.Logger = slog.Default()
	}
	if len(o.sess.Codecs) == 0 {
		o.sess.Codecs = defaultCodecs()
	} else {
		o.codecsSet = true
	}
	for _, name := range o.sess.Codecs {
		if codec.Get(name) == nil {
			return nil, fmt.Errorf("pulse: codec %q is not registered (registered: %v)", name, codec.Names())
		}
	}
	c := &o.sess
	if c.MaxFrameSize < wire.MinMaxFrameSize || c.MaxFrameSize > wire.MaxMaxFrameSize {
		return nil, fmt.Errorf("pulse: max frame size %d outside [%d, %d]", c.MaxFrameSize, wire.MinMaxFrameSize, wire.MaxMaxFrameSize)
	}
	if c.MaxMessageSize < 1 {
		return nil, fmt.Errorf("pulse: max message size must be positive, got %d", c.MaxMessageSize)
	}
	if c.MaxConcurrentCalls < 1 {
		return nil, fmt.Errorf("pulse: max concurrent calls must be positive, got %d", c.MaxConcurrentCalls)
	}
	if c.HandshakeTimeout <= 0 {
		return nil, fmt.Errorf("pulse: handshake timeout must be positive, got %v", c.HandshakeTimeout)
	}
	if c.MessageTimeout <= 0 || c.MessageTimeout > session.MaxMessageTimeout {
		return nil, fmt.Errorf("pulse: message timeout %v outside (0, %v]", c.MessageTimeout, session.MaxMessageTimeout)
	}
	if err := o.budgets(); err != nil {
		return nil, err
	}
	if c.MaxQueued < 1 {
		return nil, fmt.Errorf("pulse: max queued bytes must be positive, got %d", c.MaxQueued)
	}
	if c.Slow > session.SlowClose {
		return nil, fmt.Errorf("pulse: unknown slow-consumer policy %d", c.Slow)
	}
	var hb Heartbeat
	if o.hb != nil {
		hb = *o.hb
		o.hb = nil
	}
	hb = hb.withDefaults()
	if err := hb.validate(); err != nil {
		return nil, err
	}
	c.Heartbeat = hb.session()
	if err := o.limits.validate(); err != nil {
		return nil, err
	}
	if err := o.srvLimits.validate(); err != nil {
		return nil, err
	}
	if o.backoff == (liveness.Backoff{}) {
		o.backoff = liveness.DefaultBackoff()
	}
	if o.backoff.Base <= 0 || o.backoff.Factor < 1 || o.backoff.Cap < o.backoff.Base {
		return nil, fmt.Errorf("pulse: backoff needs Base > 0, Factor >= 1 and Cap >= Base, got %+v", o.backoff)
	}
	return o, nil
}

// budgets checks the connection and shared budgets against each other and
// the message size, filling in the defaults.
func (o *options) budgets() error {
	c := &o.sess
	need := max(int64(c.MaxMessageSize)+wire.MessageLenSize, int64(c.MaxFrameSize))
	if need > wire.MaxWindow {
		return fmt.Errorf("pulse: max message size %d is over the largest connection budget the protocol allows, %d bytes", c.MaxMessageSize, wire.MaxWindow-wire.MessageLenSize)
	}
	conn := int64(o.connBudget)
	switch {
	case conn == 0:
		conn = min(max(DefaultConnBudget, 2*int64(c.MaxMessageSize)), wire.MaxWindow)
	case conn < need || conn > wire.MaxWindow:
		return fmt.Errorf("pulse: connection budget %d outside [%d, %d]: it must hold a message of the max message size (%d) with its 4-byte length", conn, need, wire.MaxWindow, c.MaxMessageSize)
	}
	shared := o.sharedBudget
	switch {
	case shared == 0:
		shared = max(DefaultSharedBudget, conn)
	case shared < conn:
		return fmt.Errorf("pulse: shared budget %d is smaller than the connection budget %d", shared, conn)
	}
	c.Window = uint32(conn)
	c.Budget = session.NewBudget(shared)
	return nil
}

// sessionConfig builds what the sessions get from the options, once the
// codecs are final. The Config carries its own clock, made now: a Server
// or Client made inside a testing/synctest bubble reads the bubble's time.
func (o *options) sessionConfig() {
	c := &o.sess
	c.Limits = o.limits.session()
	c.BaseContext = peerContext
	c.PublicErr = publicErr
	c.Clock = session.NewClock()
}

// defaultCodecs is the offer of a client that names none: the binary codec
// first when it is registered, then JSON.
func defaultCodecs() []string {
	var names []string
	if codec.Get(preferredBinaryCodec) != nil {
		names = append(names, preferredBinaryCodec)
	}
	return append(names, codec.JSONName)
}

// WithCodec sets the codecs by name. A client offers them in this order and
// the server picks the first it accepts; a server accepts only these. By
// default a client offers the binary codec, then JSON, and a server accepts
// every registered codec.
func WithCodec(names ...string) Option {
	return optionFunc(func(o *options) { o.sess.Codecs = append([]string(nil), names...) })
}

// WithTLS makes a Client dial with TLS, and a Server serve TLS: on
// ListenAndServe, on Serve (each accepted connection that is not a
// *tls.Conn already, as from a listener made by tls.NewListener, is
// wrapped with tls.Server) and on ServeConn (likewise). A client config
// without ServerName gets the host of the dialed address.
func WithTLS(cfg *tls.Config) Option {
	return optionFunc(func(o *options) { o.tlsConfig = cfg })
}

// WithMaxFrameSize sets the largest frame payload this side accepts
// (default DefaultMaxFrameSize). Messages larger than the peer's limit are
// split into several frames.
func WithMaxFrameSize(n int) Option {
	return optionFunc(func(o *options) { o.sess.MaxFrameSize = clampU32(n) })
}

// WithMaxMessageSize sets the largest message (call arguments or reply)
// this side accepts (default DefaultMaxMessageSize). The peer learns it in
// the handshake and refuses to send larger ones.
func WithMaxMessageSize(n int) Option {
	return optionFunc(func(o *options) { o.sess.MaxMessageSize = clampU32(n) })
}

// WithConnBudget sets the most message bytes one connection can make this
// side hold: calls whose handlers have not returned, replies not yet
// decoded, messages still arriving. It is the flow-control window this
// side grants its peer (PROTOCOL.md, flow control): once the peer has
// sent that many bytes that this side still holds, it waits for credit,
// while heartbeats keep flowing. It caps one connection's throughput at
// n bytes per round trip. It must hold one message of the max message
// size plus 4 bytes. Default DefaultConnBudget, or twice the max message
// size when that is larger.
func WithConnBudget(n int) Option {
	return optionFunc(func(o *options) { o.connBudget = n })
}

// WithSharedBudget sets the most message bytes all the connections of this
// Server (or Client) can make it hold together, so that many connections
// do not multiply WithConnBudget. A message that does not fit is refused:
// a call gets ErrBusy (unexecuted, safe to retry), a reply fails its call
// with ErrBusy, a notification is dropped. Default DefaultSharedBudget, or
// the connection budget when that is larger.
func WithSharedBudget(n int64) Option {
	return optionFunc(func(o *options) { o.sharedBudget = n })
}

// WithMaxQueued sets the most bytes of messages one connection queues for
// sending. A call (Call, Go, Peer.Call) that would take the queue past it
// waits for room within its context, and fails with its context's error,
// unsent, if none comes; a handler's reply waits for room before its call
// is let go, so that a peer that does not read its replies stops getting
// credit and so stops sending calls; a notification does what
// WithSlowConsumer says. Frames the connection must send without waiting
// (refusals, heartbeats) may take it past the bound; past twice the bound
// the peer is closed with GOAWAY "slow consumer". A single message larger
// than n is queued when the queue is empty. Default DefaultMaxQueued.
func WithMaxQueued(n int) Option {
	return optionFunc(func(o *options) { o.sess.MaxQueued = n })
}

// SlowConsumerPolicy says what a notification (Notify) does when its
// connection's send queue is full (WithMaxQueued).
type SlowConsumerPolicy uint8

const (
	// SlowConsumerWait waits for room within the notification's context.
	// The default for clients.
	SlowConsumerWait SlowConsumerPolicy = SlowConsumerPolicy(session.SlowWait)
	// SlowConsumerDrop fails the notification at once with
	// ErrSlowConsumer; the connection goes on.
	SlowConsumerDrop SlowConsumerPolicy = SlowConsumerPolicy(session.SlowDrop)
	// SlowConsumerClose fails the notification with ErrSlowConsumer and
	// closes the connection with GOAWAY "slow consumer": a client that
	// cannot keep up with pushes reconnects and catches up instead of
	// holding the server's memory. The default for servers.
	SlowConsumerClose SlowConsumerPolicy = SlowConsumerPolicy(session.SlowClose)
)

// WithSlowConsumer sets what Notify and Peer.Notify do when the
// connection's send queue is full. Server.Broadcast never waits: with the
// wait policy it drops instead.
func WithSlowConsumer(p SlowConsumerPolicy) Option {
	return optionFunc(func(o *options) { o.sess.Slow, o.slowSet = session.SlowPolicy(p), true })
}

// WithMaxConcurrentCalls bounds how many handlers run at once for one
// connection (default DefaultMaxConcurrentCalls). Calls beyond the bound
// fail at once with ErrBusy, without running.
func WithMaxConcurrentCalls(n int) Option {
	return optionFunc(func(o *options) { o.sess.MaxConcurrentCalls = n })
}

// WithHandshakeTimeout bounds the handshake (default
// DefaultHandshakeTimeout). A client bounds its dials and handshakes by
// its heartbeat Timeout as well, whichever is shorter.
func WithHandshakeTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.sess.HandshakeTimeout = d })
}

// WithMessageTimeout bounds how long a frame or message the peer has
// started may go without progress (default DefaultMessageTimeout, 30 s).
// A frame must arrive whole within d of its first byte; while messages
// are arriving in several frames, one of their frames carrying at least
// 1 KiB, or ending one, must arrive within d of the last, not counting
// time the peer waited for credit (WithConnBudget). Otherwise the
// connection is closed with GOAWAY "stalled message" (CloseStalled), and
// what the peer's partial frame and messages held is let go.
//
// It never bounds how long a whole message takes: Pulse sends the frames
// of a started message back to back, so a slow but moving link progresses
// many times per second. What it asks of a path is a frame per d: 16 KiB
// (the default MaxFrameSize) per 30 s is about 4.4 kbit/s. A peer that
// stops in the middle of a frame or message, or dribbles bytes to look
// alive, is closed within d. docs/limits.md has the details.
func WithMessageTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.sess.MessageTimeout = d })
}

// WithLogger sets the logger for connection events and handler panics
// (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(o *options) { o.sess.Logger = l })
}

// WithDialer replaces the function a Client uses to open connections
// (default a net.Dialer). It is how a client runs over a transport other
// than TCP, or through a proxy. Pulse sets its TCP options
// (TCP_NOTSENT_LOWAT) only on a *net.TCPConn or a
// *tls.Conn over one; a connection wrapped in another type keeps the
// dialer's settings.
//
// Client only: NewServer refuses it.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return clientOption("WithDialer", func(o *options) { o.dial = dial })
}

func clampU32(n int) uint32 {
	if n < 0 {
		return 0
	}
	if uint64(n) > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(n)
}

// WithBackoff sets how a Client waits between reconnection attempts:
// exponential from Base by Factor up to Cap, each delay drawn uniformly
// from zero to that value (full jitter), so that clients cut off together
// do not come back together. The default is liveness.DefaultBackoff():
// 100 ms, x1.6, capped at 10 s. Client only: NewServer refuses it.
func WithBackoff(b liveness.Backoff) Option {
	return clientOption("WithBackoff", func(o *options) { o.backoff = b })
}

// WithFailFast makes calls fail at once, with a *ConnError that is not
// Sent, while the Client has no ready connection, instead of waiting for
// one within their context. Client only: NewServer refuses it.
func WithFailFast() Option {
	return clientOption("WithFailFast", func(o *options) { o.failFast = true })
}

// WithStateHook makes a Client report each change of its connection state
// to f. Calls to f are made one at a time, in order, on a goroutine of
// their own, never with a lock held; f may call the Client. A push
// subscriber uses it to subscribe again after a reconnect. Client only:
// NewServer refuses it.
func WithStateHook(f func(StateChange)) Option {
	return clientOption("WithStateHook", func(o *options) { o.stateHook = f })
}

// ConnEvent is a connection opening or closing on a Server, as given to
// the hook set with WithConnHook.
type ConnEvent struct {
	Peer *Peer
	// Open is true when the connection just completed its handshake,
	// false when it closed.
	Open bool
	// Err is why the connection closed (a *ConnError), nil when it opened.
	Err error
}

// WithConnHook makes a Server call f when a connection opens (after its
// handshake) and when it closes, with the reason. f runs on the
// connection's own goroutines, never with a lock held; it must not block
// for long. Server only: Dial and NewClient refuse it.
func WithConnHook(f func(ConnEvent)) Option {
	return serverOption("WithConnHook", func(o *options) { o.connHook = f })
}
