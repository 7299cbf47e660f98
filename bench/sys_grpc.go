package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pulse-rpc/pulse/bench/internal/benchpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	gproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// grpcSystem is grpc-go, keepalive on. In the byte cells and the idle
// test: a unary call carrying raw bytes through a codec of our own (no
// protobuf, no generated code). In the struct cells: the protobuf messages
// and the service of bench.proto, protoc-gen-go's and protoc-gen-go-grpc's
// output (internal/benchpb), through grpc-go's own proto codec.
type grpcSystem struct{}

// grpcRawCodec moves []byte bodies as they are. It implements
// encoding.CodecV2, grpc-go's buffer-pool-aware interface, so that
// neither direction copies more than it must. It is forced on both ends,
// and hands every other value (the protobuf messages of the struct cells)
// to grpc-go's proto codec, the one grpc-go uses when none is forced.
type grpcRawCodec struct{}

// grpcProtoCodec is grpc-go's registered proto codec.
var grpcProtoCodec = encoding.GetCodecV2(gproto.Name)

func (grpcRawCodec) Name() string { return "benchraw" }

func (grpcRawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch b := v.(type) {
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return grpcProtoCodec.Marshal(v)
}

func (grpcRawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return grpcProtoCodec.Unmarshal(data, v)
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

// grpcStructEcho is the StructEcho service of the struct cells.
type grpcStructEcho struct {
	benchpb.UnimplementedStructEchoServer
}

func (grpcStructEcho) EchoSmall(_ context.Context, in *benchpb.Small) (*benchpb.Small, error) {
	return in, nil
}

func (grpcStructEcho) EchoBig(_ context.Context, in *benchpb.Big) (*benchpb.Big, error) {
	return in, nil
}

func (grpcSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(grpcRawCodec{}),
		grpc.KeepaliveEnforcementPolicy(grpcEnforcement),
		grpc.KeepaliveParams(grpcServerKeepalive(o.Idle)),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	srv := grpc.NewServer(opts...)
	srv.RegisterService(&grpcEchoDesc, struct{}{})
	benchpb.RegisterStructEchoServer(srv, grpcStructEcho{})
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
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
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

// structCaller calls through the generated client, whose methods make a
// new reply message for each call.
func (g grpcConn) structCaller(k string, seed int) (structCaller, int, error) {
	ctx := context.Background()
	client := benchpb.NewStructEchoClient(g.cc)
	switch k {
	case kindSmall:
		in := smallPB(newSmall(seed))
		return func(seq int32, deep bool) error {
			in.Seq = seq
			out, err := client.EchoSmall(ctx, in)
			if err != nil {
				return err
			}
			return checkProto(in, out, seq, out.Seq, deep)
		}, proto.Size(in), nil
	case kindBig:
		in := bigPB(newBig(seed))
		return func(seq int32, deep bool) error {
			in.Seq = seq
			out, err := client.EchoBig(ctx, in)
			if err != nil {
				return err
			}
			return checkProto(in, out, seq, out.Seq, deep)
		}, proto.Size(in), nil
	}
	return nil, 0, fmt.Errorf("no struct cell of kind %q", k)
}

// checkProto is checkSeq for protobuf messages.
func checkProto(in, out proto.Message, inSeq, outSeq int32, deep bool) error {
	if outSeq != inSeq {
		return errBadEcho{fmt.Sprintf("seq %d came back as %d", inSeq, outSeq)}
	}
	if deep && !proto.Equal(in, out) {
		return errBadEcho{fmt.Sprintf("%T differs", in)}
	}
	return nil
}

func (g grpcConn) Close() error { return g.cc.Close() }
