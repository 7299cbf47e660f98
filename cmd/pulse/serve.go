package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pulse-rpc/pulse"
)

func init() {
	register(&command{name: "serve", short: "run a server with the demo services (echo, arithmetic, chat)", run: runServe})
}

// DefaultAddr is where "pulse serve" listens and the other commands dial
// by default.
const DefaultAddr = "127.0.0.1:7373"

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[flags]", stderr)
	addr := fs.String("addr", DefaultAddr, "address to listen on")
	var hb heartbeatFlags
	hb.register(fs)
	maxIdle := fs.Duration("max-conn-idle", 0, "close connections without calls for this long (0: never)")
	maxAge := fs.Duration("max-conn-age", 0, "close connections this old, give or take -max-conn-age-jitter (0: never)")
	ageJitter := fs.Float64("max-conn-age-jitter", pulse.DefaultMaxConnAgeJitter, "random spread of -max-conn-age, as a fraction either way (0: none, the age is exact)")
	grace := fs.Duration("max-conn-age-grace", pulse.DefaultMaxConnAgeGrace, "after the GOAWAY of -max-conn-idle or -max-conn-age, how long calls in flight may finish (0: none, close at once)")
	maxCalls := fs.Int("max-calls", pulse.DefaultMaxConcurrentCalls, "handlers running at once per connection")
	var lim limitFlags
	lim.register(fs)
	chatMembers := fs.Int("chat-max-members", DefaultChatMaxMembers, "members the chat room holds at once")
	chatLine := fs.Int("chat-max-line", DefaultChatMaxLine, "longest line said in the chat room, in bytes")
	tlsCert := fs.String("tls-cert", "", "serve TLS with this PEM certificate (with -tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key for -tls-cert")
	selfSigned := fs.Bool("tls-self-signed", false, "serve TLS with a fresh self-signed certificate for the listen host (testing)")
	drain := fs.Duration("drain-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long running calls may take before the server closes hard")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	heartbeat, err := hb.heartbeat()
	if err != nil {
		return err
	}
	bounds, err := lim.options()
	if err != nil {
		return err
	}
	opts := []pulse.Option{
		pulse.WithLogger(logger),
		pulse.WithHeartbeat(heartbeat),
		pulse.WithMaxConcurrentCalls(*maxCalls),
		pulse.WithConnLimits(connLimits(*maxIdle, *maxAge, *grace, *ageJitter)),
		pulse.WithServerLimits(lim.limits()),
		pulse.WithConnHook(func(ev pulse.ConnEvent) {
			if ev.Open {
				logger.Info("connection open", "remote", ev.Peer.RemoteAddr(), "codec", ev.Peer.Codec(),
					"interval", ev.Peer.Stats().Interval)
				return
			}
			logger.Info("connection closed", "remote", ev.Peer.RemoteAddr(), "reason", ev.Err)
		}),
	}
	opts = append(opts, bounds...)
	var tlsConfig *tls.Config
	switch {
	case *tlsCert != "" || *tlsKey != "":
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			return err
		}
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	case *selfSigned:
		host, _, err := net.SplitHostPort(*addr)
		if err != nil {
			return usageError{fmt.Sprintf("-addr %q: %v", *addr, err)}
		}
		if host == "" {
			host = "localhost"
		}
		if tlsConfig, err = selfSignedTLS([]string{host, "localhost"}); err != nil {
			return err
		}
	}
	srv, err := pulse.NewServer(opts...)
	if err != nil {
		return usageError{err.Error()}
	}
	if err := registerServices(srv, &Chat{srv: srv, MaxMembers: *chatMembers, MaxLine: *chatLine}); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	// Catch the signals before saying "listening": whoever waits for that
	// line and then sends SIGINT or SIGTERM must get a drain, not the
	// default action (killed).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	logger.Info("listening", "addr", l.Addr().String(), "tls", tlsConfig != nil,
		"interval", heartbeat.Interval, "timeout", heartbeat.Timeout, "detector", hb.detector)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case sig := <-sigs:
		logger.Info("draining", "signal", sig.String(), "timeout", *drain, "peers", len(srv.Peers()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if err != nil {
			logger.Warn("drain did not finish; closed hard", "err", err)
		}
	case sig := <-sigs:
		logger.Warn("second signal: closing hard", "signal", sig.String())
		srv.Close()
		<-shut
	}
	if err := <-served; !errors.Is(err, pulse.ErrServerClosed) {
		return err
	}
	logger.Info("stopped")
	return nil
}

// connLimits turns the flags' values, where 0 means none, into
// ConnLimits, where zero means the default.
func connLimits(idle, age, grace time.Duration, jitter float64) pulse.ConnLimits {
	l := pulse.ConnLimits{MaxConnIdle: idle, MaxConnAge: age, MaxConnAgeGrace: grace, MaxConnAgeJitter: jitter}
	if grace == 0 {
		l.MaxConnAgeGrace = pulse.NoGrace
	}
	if jitter == 0 {
		l.MaxConnAgeJitter = pulse.NoJitter
	}
	return l
}

// limitFlags are the flags of the server-wide limits (pulse.ServerLimits).
// On the command line 0 means no limit.
type limitFlags struct {
	conns, connsPerIP, pending, pendingPerIP, handlers *int

	// The per-connection bounds of what a peer can make the server hold
	// (docs/limits.md).
	maxMessage, connBudget, maxQueued *int
	sharedBudget                      *int64
	messageTimeout, handshakeTimeout  *time.Duration
	slowConsumer                      *string
}

func (f *limitFlags) register(fs *flag.FlagSet) {
	def := func(n int) int { return max(n, 0) } // NoLimit shows as 0
	f.conns = fs.Int("max-conns", def(pulse.DefaultMaxConns), "connections open at once (0: no limit)")
	f.connsPerIP = fs.Int("max-conns-per-ip", def(pulse.DefaultMaxConnsPerIP), "connections open at once from one IP address (0: no limit)")
	f.pending = fs.Int("max-pending-handshakes", pulse.DefaultMaxPendingHandshakes, "connections whose handshake has not finished; more are closed at once (0: no limit)")
	f.pendingPerIP = fs.Int("max-pending-handshakes-per-ip", pulse.DefaultMaxPendingHandshakesPerIP, "pending handshakes from one IP address (0: no limit)")
	f.handlers = fs.Int("max-handlers", pulse.DefaultMaxHandlers, "handlers running at once across all connections (0: no limit)")
	f.maxMessage = fs.Int("max-message-size", pulse.DefaultMaxMessageSize, "largest message accepted, in bytes")
	f.connBudget = fs.Int("conn-budget", 0, "message bytes one connection can make the server hold: its flow-control window (0: the default, 8 MiB or twice -max-message-size)")
	f.sharedBudget = fs.Int64("shared-budget", pulse.DefaultSharedBudget, "message bytes all connections together can make the server hold")
	f.maxQueued = fs.Int("max-queued", pulse.DefaultMaxQueued, "bytes queued for sending per connection")
	f.slowConsumer = fs.String("slow-consumer", "close", "what a push to a peer whose send queue is full does: wait, drop or close")
	f.messageTimeout = fs.Duration("message-timeout", pulse.DefaultMessageTimeout, "how long a frame or message a peer started may go without progress")
	f.handshakeTimeout = fs.Duration("handshake-timeout", pulse.DefaultHandshakeTimeout, "how long a connection may take to finish its handshake")
}

// options returns the options of the per-connection bounds.
func (f *limitFlags) options() ([]pulse.Option, error) {
	var slow pulse.SlowConsumerPolicy
	switch *f.slowConsumer {
	case "wait":
		slow = pulse.SlowConsumerWait
	case "drop":
		slow = pulse.SlowConsumerDrop
	case "close":
		slow = pulse.SlowConsumerClose
	default:
		return nil, usageError{fmt.Sprintf("-slow-consumer %q: want wait, drop or close", *f.slowConsumer)}
	}
	return []pulse.Option{
		pulse.WithMaxMessageSize(*f.maxMessage),
		pulse.WithConnBudget(*f.connBudget),
		pulse.WithSharedBudget(*f.sharedBudget),
		pulse.WithMaxQueued(*f.maxQueued),
		pulse.WithSlowConsumer(slow),
		pulse.WithMessageTimeout(*f.messageTimeout),
		pulse.WithHandshakeTimeout(*f.handshakeTimeout),
	}, nil
}

func (f *limitFlags) limits() pulse.ServerLimits {
	v := func(n int) int {
		if n <= 0 {
			return pulse.NoLimit
		}
		return n
	}
	return pulse.ServerLimits{
		MaxConns: v(*f.conns), MaxConnsPerIP: v(*f.connsPerIP),
		MaxPendingHandshakes: v(*f.pending), MaxPendingHandshakesPerIP: v(*f.pendingPerIP),
		MaxHandlers: v(*f.handlers),
	}
}
