package pulse_test

import (
	"context"
	"net"
	"net/rpc"
	"testing"

	"github.com/pulse-rpc/pulse"
)

// BenchService is the service the benchmarks call.
type BenchService struct{}

// BenchArgs carries a payload.
type BenchArgs struct {
	Data []byte
}

// Echo returns the payload.
func (BenchService) Echo(args *BenchArgs, reply *BenchArgs) error {
	reply.Data = args.Data
	return nil
}

func benchPulseClient(b *testing.B, opts ...pulse.Option) *pulse.Client {
	b.Helper()
	srv, err := pulse.NewServer(opts...)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Register(BenchService{}); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	c, err := pulse.Dial(context.Background(), l.Addr().String(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		srv.Close()
	})
	return c
}

func benchNetRPCClient(b *testing.B) *rpc.Client {
	b.Helper()
	srv := rpc.NewServer()
	if err := srv.Register(BenchService{}); err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Accept(l)
	c, err := rpc.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		c.Close()
		l.Close()
	})
	return c
}

var benchSizes = []struct {
	name string
	size int
}{
	{"64B", 64},
	{"4KiB", 4 << 10},
	{"1MiB", 1 << 20},
}

// BenchmarkCall measures one goroutine calling Echo in a loop over
// loopback TCP (latency-bound), for Pulse and for net/rpc.
func BenchmarkCall(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run("pulse/"+sz.name, func(b *testing.B) {
			c := benchPulseClient(b)
			args := &BenchArgs{Data: make([]byte, sz.size)}
			var reply BenchArgs
			ctx := context.Background()
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Call(ctx, "BenchService.Echo", args, &reply); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("netrpc/"+sz.name, func(b *testing.B) {
			c := benchNetRPCClient(b)
			args := &BenchArgs{Data: make([]byte, sz.size)}
			var reply BenchArgs
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Call("BenchService.Echo", args, &reply); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCallParallel measures many goroutines (GOMAXPROCS x 16)
// sharing one connection (throughput-bound), for Pulse and for net/rpc.
func BenchmarkCallParallel(b *testing.B) {
	for _, sz := range benchSizes {
		b.Run("pulse/"+sz.name, func(b *testing.B) {
			c := benchPulseClient(b)
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				args := &BenchArgs{Data: make([]byte, sz.size)}
				var reply BenchArgs
				ctx := context.Background()
				for pb.Next() {
					if err := c.Call(ctx, "BenchService.Echo", args, &reply); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run("netrpc/"+sz.name, func(b *testing.B) {
			c := benchNetRPCClient(b)
			b.SetBytes(int64(sz.size))
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				args := &BenchArgs{Data: make([]byte, sz.size)}
				var reply BenchArgs
				for pb.Next() {
					if err := c.Call("BenchService.Echo", args, &reply); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCallNatural measures the calls of naturalCalls (allocs_test.go)
// over loopback TCP to a server in a process of its own, so that the
// allocations reported are the client's alone: the raw codec with the
// payload passed as []byte and as *[]byte, with a fresh or a reused reply
// slice, and the default codec with a small struct.
func BenchmarkCallNatural(b *testing.B) {
	for _, nc := range naturalCalls {
		b.Run(nc.name, func(b *testing.B) {
			addr := startEchoServer(b, nc.codec)
			var opts []pulse.Option
			if nc.codec != "default" {
				opts = append(opts, pulse.WithCodec(nc.codec))
			}
			c := dialEcho(b, addr, opts...)
			call := nc.loop(c, context.Background(), make([]byte, 64))
			b.ReportAllocs()
			for b.Loop() {
				if err := call(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
