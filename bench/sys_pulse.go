package main

import (
	"context"
	"errors"
	"net"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/codec"
)

// pulseSystem is Pulse. In the byte cells and the idle test the client
// uses the raw codec: arguments []byte, reply *[]byte, which the codec's
// Unmarshal refills in place. In the struct cells it uses its default
// codec (no WithCodec: CBOR). The server accepts every registered codec,
// its default.
type pulseSystem struct{}

// PulseEcho is the service, registered as "Echo".
type PulseEcho struct{}

// Echo returns its argument.
func (PulseEcho) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

// Small returns its argument.
func (PulseEcho) Small(args *Small, reply *Small) error {
	*reply = *args
	return nil
}

// Big returns its argument.
func (PulseEcho) Big(args *Big, reply *Big) error {
	*reply = *args
	return nil
}

// pulseOptions are the options common to both ends.
func pulseOptions(idle bool) []pulse.Option {
	opts := []pulse.Option{pulse.WithLogger(benchLogger)}
	if idle {
		opts = append(opts, pulse.WithHeartbeat(pulse.Heartbeat{Interval: idleHeartbeat, Timeout: idleHeartbeatTimeout}))
	}
	return opts
}

func (pulseSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	opts := pulseOptions(o.Idle)
	if o.TLS != nil {
		opts = append(opts, pulse.WithTLS(o.TLS))
	}
	srv, err := pulse.NewServer(opts...)
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
	if !o.Structs {
		opts = append(opts, pulse.WithCodec(codec.RawName))
	}
	if o.LocalAddr != nil {
		opts = append(opts, pulse.WithDialer(tcpDialer(o)))
	}
	if o.TLS != nil {
		opts = append(opts, pulse.WithTLS(o.TLS))
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

func (p pulseConn) structCaller(k string, seed int) (structCaller, int, error) {
	ctx := context.Background()
	return goStructCaller(k, seed, func(method string, in, out any) error {
		return p.c.Call(ctx, method, in, out)
	}, cborSize)
}

func (p pulseConn) Close() error { return p.c.Close() }
