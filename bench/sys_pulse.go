package main

import (
	"context"
	"errors"
	"net"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/codec"
)

// pulseSystem is Pulse with the raw codec: arguments []byte, reply
// *[]byte, which the codec's Unmarshal refills in place.
type pulseSystem struct{}

// PulseEcho is the service, registered as "Echo".
type PulseEcho struct{}

// Echo returns its argument.
func (PulseEcho) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

func pulseOptions(idle bool) []pulse.Option {
	opts := []pulse.Option{pulse.WithCodec(codec.RawName), pulse.WithLogger(benchLogger)}
	if idle {
		opts = append(opts, pulse.WithHeartbeat(pulse.Heartbeat{Interval: idleHeartbeat, Timeout: idleHeartbeatTimeout}))
	}
	return opts
}

func (pulseSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	srv, err := pulse.NewServer(pulseOptions(o.Idle)...)
	if err != nil {
		return nil, err
	}
	if err := srv.RegisterName("Echo", PulseEcho{}); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, pulse.ErrServerClosed) {
			benchLogger.Error("pulse: serve", "err", err)
		}
	}()
	return func() {
		srv.Close()
		<-done
	}, nil
}

func (pulseSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	opts := pulseOptions(o.Idle)
	if o.LocalAddr != nil {
		opts = append(opts, pulse.WithDialer(tcpDialer(o)))
	}
	c, err := pulse.Dial(ctx, addr, opts...)
	if err != nil {
		return nil, err
	}
	return pulseConn{c}, nil
}

type pulseConn struct{ c *pulse.Client }

func (p pulseConn) Echo(req, resp *[]byte) error {
	return p.c.Call(context.Background(), "Echo.Echo", req, resp)
}

func (p pulseConn) Close() error { return p.c.Close() }
