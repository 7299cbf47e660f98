package pulse

import (
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
	r := newRegistry()
	if err := r.register(DispatchService{}, "Bench", true); err != nil {
		b.Fatal(err)
	}
	args, err := codec.CBOR.Append(nil, &DispatchArgs{A: 1, B: 2})
	if err != nil {
		b.Fatal(err)
	}
	method := []byte("Bench.Add")
	b.ReportAllocs()
	for b.Loop() {
		svc, mt, kind := r.lookup(method)
		if kind != kindNone {
			b.Fatal("lookup failed")
		}
		argp, argv := mt.newArgs()
		if err := codec.CBOR.Unmarshal(args, argp); err != nil {
			b.Fatal(err)
		}
		reply := mt.newReply()
		if err := mt.call(nil, svc, argv, reply); err != nil {
			b.Fatal(err)
		}
	}
}
