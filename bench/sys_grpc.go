package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
)

// grpcSystem is grpc-go: a unary call carrying raw bytes through a codec
// of our own (no protobuf, no generated code), keepalive on.
type grpcSystem struct{}

// grpcRawCodec moves []byte bodies as they are. It implements
// encoding.CodecV2, grpc-go's buffer-pool-aware interface, so that
// neither direction copies more than it must.
type grpcRawCodec struct{}

func (grpcRawCodec) Name() string { return "benchraw" }

func (grpcRawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch b := v.(type) {
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("benchraw codec cannot marshal %T", v)
}

func (grpcRawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("benchraw codec cannot unmarshal into %T", v)
	}
	n := data.Len()
	if cap(*p) < n {
		*p = make([]byte, n)
	}
	*p = (*p)[:n]
	data.CopyTo(*p)
	return nil
}

const grpcMethod = "/bench.Echo/Echo"

// grpcEchoServer is the (empty) handler type of the hand-written service
// description.
type grpcEchoServer interface{}

var grpcEchoDesc = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*grpcEchoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new([]byte)
			if err := dec(in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return in, nil
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: grpcMethod}, func(_ context.Context, req any) (any, error) { return req, nil })
		},
	}},
	Metadata: "bench",
}

// Keepalive. Load runs mirror Pulse's default heartbeat (server pings
// after 2 s without activity, deadline 8 s); the idle test uses the
// tightest settings grpc-go permits: a server may ping every 1 s (its
// minimum), a client every 10 s (its minimum). The enforcement policy
// lets clients ping every 10 s even without calls in flight, so that the
// server never sends GOAWAY "too_many_pings".
func grpcServerKeepalive(idle bool) keepalive.ServerParameters {
	if idle {
		return keepalive.ServerParameters{Time: idleHeartbeat, Timeout: idleHeartbeatTimeout}
	}
	return keepalive.ServerParameters{Time: 2 * time.Second, Timeout: 8 * time.Second}
}

var grpcEnforcement = keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}

func grpcClientKeepalive(idle bool) keepalive.ClientParameters {
	if idle {
		return keepalive.ClientParameters{Time: max(grpcMinClientKeepalive, idleHeartbeat), Timeout: idleHeartbeatTimeout, PermitWithoutStream: true}
	}
	return keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 20 * time.Second, PermitWithoutStream: true}
}

func (grpcSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	srv := grpc.NewServer(
		grpc.ForceServerCodecV2(grpcRawCodec{}),
		grpc.KeepaliveEnforcementPolicy(grpcEnforcement),
		grpc.KeepaliveParams(grpcServerKeepalive(o.Idle)),
	)
	srv.RegisterService(&grpcEchoDesc, struct{}{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	return func() {
		srv.Stop()
		<-done
	}, nil
}

func (grpcSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	d := tcpDialer(o)
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(grpcRawCodec{})),
		grpc.WithKeepaliveParams(grpcClientKeepalive(o.Idle)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d(ctx, "tcp", a) }),
	)
	if err != nil {
		return nil, err
	}
	// NewClient connects lazily: connect now so that Dial means the same
	// as for the other systems.
	cc.Connect()
	for {
		st := cc.GetState()
		if st == connectivity.Ready {
			break
		}
		if st == connectivity.Shutdown || !cc.WaitForStateChange(ctx, st) {
			cc.Close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("grpc: connect %s: %w (state %v)", addr, ctx.Err(), st)
			}
			return nil, fmt.Errorf("grpc: connect %s: state %v", addr, st)
		}
	}
	return grpcConn{cc}, nil
}

type grpcConn struct{ cc *grpc.ClientConn }

func (g grpcConn) Echo(req, resp *[]byte) error {
	return g.cc.Invoke(context.Background(), grpcMethod, req, resp)
}

func (g grpcConn) Close() error { return g.cc.Close() }
