package service

import (
	"context"
	"testing"

	"github.com/pulse-rpc/pulse/codec"
)

// DispatchService is the service BenchmarkDispatch calls.
type DispatchService struct{}

// DispatchArgs are its arguments.
type DispatchArgs struct{ A, B int }

func (DispatchService) Add(args *DispatchArgs, reply *int) error {
	*reply = args.A + args.B
	return nil
}

// BenchmarkDispatch measures what the reader does for each incoming call
// before the handler runs, and the handler's own invocation: the method
// lookup, decoding the arguments, and calling the method by reflection.
func BenchmarkDispatch(b *testing.B) {
	r := NewRegistry()
	if err := r.Register(DispatchService{}, "Bench", true); err != nil {
		b.Fatal(err)
	}
	args, err := codec.CBOR.Append(nil, &DispatchArgs{A: 1, B: 2})
	if err != nil {
		b.Fatal(err)
	}
	benchDispatch(b, r, "Bench.Add", codec.CBOR, args)
}

// BenchmarkDispatchBytes is BenchmarkDispatch for the shape of an echo
// over the raw codec: a []byte argument and a *[]byte reply.
func BenchmarkDispatchBytes(b *testing.B) {
	r := NewRegistry()
	if err := r.Register(EmptyRcvr{}, "Echo", true); err != nil {
		b.Fatal(err)
	}
	benchDispatch(b, r, "Echo.Bytes", codec.Raw, make([]byte, 64))
}

// benchDispatch measures the dispatch of calls of method with the
// encoded arguments args: lookup, decoding, the reply value and the call.
func benchDispatch(b *testing.B, r *Registry, method string, c codec.Codec, args []byte) {
	name := []byte(method)
	b.ReportAllocs()
	for b.Loop() {
		svc, mt, kind := r.Lookup(name)
		if kind != Found {
			b.Fatal("lookup failed")
		}
		argp, argv := mt.NewArgs()
		if err := c.Unmarshal(args, argp); err != nil {
			b.Fatal(err)
		}
		reply := mt.NewReply()
		if err := mt.Call(nil, svc, argv, reply); err != nil {
			b.Fatal(err)
		}
	}
}

// CallShapes has methods of the shapes BenchmarkMethodCall calls.
type CallShapes struct{ n int }

func (*CallShapes) Ptr(args *DispatchArgs, reply *int) error {
	*reply = args.A + args.B
	return nil
}

func (*CallShapes) Bytes(args []byte, reply *[]byte) error {
	*reply = append((*reply)[:0], args...)
	return nil
}

func (*CallShapes) Ctx(ctx context.Context, args string, reply *string) error {
	*reply = args
	return ctx.Err()
}

// EmptyRcvr has a zero-size receiver, as a stateless service often has.
type EmptyRcvr struct{}

func (EmptyRcvr) Bytes(args []byte, reply *[]byte) error {
	*reply = append((*reply)[:0], args...)
	return nil
}

// ValueRcvr has a receiver that is neither a pointer nor empty.
type ValueRcvr struct{ a, b int }

func (v ValueRcvr) Add(args DispatchArgs, reply *int) error {
	*reply = args.A + args.B + v.a + v.b
	return nil
}

// BenchmarkMethodCall measures calling a registered method, by its shape
// of receiver and arguments.
func BenchmarkMethodCall(b *testing.B) {
	for _, tt := range []struct {
		name, method string
		rcvr         any
	}{
		{"ptr-rcvr/ptr-arg", "Ptr", &CallShapes{}},
		{"ptr-rcvr/slice-arg", "Bytes", &CallShapes{}},
		{"ptr-rcvr/ctx/string-arg", "Ctx", &CallShapes{}},
		{"empty-rcvr/slice-arg", "Bytes", EmptyRcvr{}},
		{"value-rcvr/struct-arg", "Add", ValueRcvr{}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			svc, mt := registeredMethod(b, tt.rcvr, tt.method)
			_, argv := mt.NewArgs()
			reply := mt.NewReply()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := mt.Call(ctx, svc, argv, reply); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// registeredMethod registers rcvr as service "S" in a new Registry and
// returns it and its method.
func registeredMethod(tb testing.TB, rcvr any, method string) (*Service, *Method) {
	tb.Helper()
	r := NewRegistry()
	if err := r.Register(rcvr, "S", true); err != nil {
		tb.Fatal(err)
	}
	svc, mt, kind := r.Lookup([]byte("S." + method))
	if kind != Found {
		tb.Fatalf("lookup of S.%s: %v", method, kind)
	}
	return svc, mt
}
