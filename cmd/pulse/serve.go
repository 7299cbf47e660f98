package main

import (
	"context"
	"crypto/tls"
	"errors"
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
	maxAge := fs.Duration("max-conn-age", 0, "close connections this old, ±10% (0: never)")
	maxCalls := fs.Int("max-calls", pulse.DefaultMaxConcurrentCalls, "handlers running at once per connection")
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
	opts := []pulse.Option{
		pulse.WithLogger(logger),
		pulse.WithHeartbeat(heartbeat),
		pulse.WithMaxConcurrentCalls(*maxCalls),
		pulse.WithConnLimits(pulse.ConnLimits{MaxConnIdle: *maxIdle, MaxConnAge: *maxAge}),
		pulse.WithConnHook(func(ev pulse.ConnEvent) {
			if ev.Open {
				logger.Info("connection open", "remote", ev.Peer.RemoteAddr(), "codec", ev.Peer.Codec(),
					"interval", ev.Peer.Stats().Interval)
				return
			}
			logger.Info("connection closed", "remote", ev.Peer.RemoteAddr(), "reason", ev.Err)
		}),
	}
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
	if err := registerDemoServices(srv); err != nil {
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
