package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/bench/internal/benchpb"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// TestStructSizes pins the shape of the struct cells' requests: the small
// struct's fields, and the big one about 4 KiB in protobuf and gob (CBOR
// keys every field by name, so it is larger).
func TestStructSizes(t *testing.T) {
	s, b := newSmall(3), newBig(3)
	if len(s.Name) != 16 || len(s.Tags) != 3 || len(b.Items) != bigItems {
		t.Errorf("small struct: name of %d characters, %d tags; big: %d items", len(s.Name), len(s.Tags), len(b.Items))
	}
	for _, c := range []struct {
		name   string
		size   int
		lo, hi int
	}{
		{"small, protobuf", proto.Size(smallPB(s)), 40, 80},
		{"small, gob", gobSize(&s), 40, 80},
		{"small, CBOR", cborSize(&s), 60, 120},
		{"big, protobuf", proto.Size(bigPB(b)), 3800, 4400},
		{"big, gob", gobSize(&b), 3800, 4400},
		{"big, CBOR", cborSize(&b), 5000, 6500},
	} {
		if c.size < c.lo || c.size > c.hi {
			t.Errorf("%s: %d bytes, want %d to %d", c.name, c.size, c.lo, c.hi)
		}
	}
}

// TestGRPCCodecProto checks that the codec forced on grpc-go's ends hands
// protobuf messages to grpc-go's proto codec: the bytes are
// proto.Marshal's, and they decode into an equal message.
func TestGRPCCodecProto(t *testing.T) {
	in := bigPB(newBig(5))
	in.Seq = 42
	bs, err := grpcRawCodec{}.Marshal(in)
	if err != nil {
		t.Fatalf("Marshal() failed: %v", err)
	}
	defer bs.Free()
	want, err := proto.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := bs.Materialize(); !bytes.Equal(got, want) {
		t.Errorf("Marshal() = %d bytes, not proto.Marshal's %d", len(got), len(want))
	}
	out := new(benchpb.Big)
	if err := (grpcRawCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(want)}, out); err != nil {
		t.Fatalf("Unmarshal() failed: %v", err)
	}
	if !proto.Equal(in, out) {
		t.Error("Unmarshal() returned a different message")
	}
	// And the Go struct and the message carry the same values.
	if b := newBig(5); out.Items[7].Name != b.Items[7].Name || out.Items[7].Price != b.Items[7].Price || out.Tags[2] != b.Tags[2] {
		t.Error("bigPB() lost values")
	}
}

// TestAdaptersStructs echoes both structs through every system of the
// struct cells, from concurrent callers, and checks that Pulse uses its
// default codec, CBOR.
func TestAdaptersStructs(t *testing.T) {
	for _, name := range cellSystems(systemNames) {
		if !structSystem(name) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			done := checkLeaks(t)
			defer done()
			c, stop := serveDial(t, systems[name], serveOptions{}, dialOptions{Structs: true})
			defer stop()
			if p, ok := c.(pulseConn); ok {
				if got := p.c.Peer().Codec(); got != "cbor" {
					t.Errorf("Pulse negotiated codec %q, want cbor", got)
				}
			}
			for _, k := range []string{kindSmall, kindBig} {
				if err := checkStructEcho(c, k); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Go(func() {
					k := []string{kindSmall, kindBig}[g%2]
					call, size, err := c.(structConn).structCaller(k, g)
					if err != nil || size <= 0 {
						errs <- errors.Join(err, errors.New("no size"))
						return
					}
					for i := range 20 {
						if err := call(int32(i), i%5 == 0); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
	if _, ok := any(&rawConn{}).(structConn); ok || structSystem("raw") {
		t.Error("raw TCP takes part in the struct cells")
	}
}

// TestStructCallerChecks checks that a wrong reply is caught.
func TestStructCallerChecks(t *testing.T) {
	call, _, err := goStructCaller(kindSmall, 1, func(_ string, in, out any) error {
		*out.(*Small) = *in.(*Small)
		out.(*Small).Seq++
		return nil
	}, cborSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(3, false); !errors.As(err, new(errBadEcho)) {
		t.Errorf("a reply with another Seq: %v, want errBadEcho", err)
	}
	call, _, _ = goStructCaller(kindBig, 1, func(_ string, in, out any) error {
		*out.(*Big) = *in.(*Big)
		out.(*Big).Items = out.(*Big).Items[1:]
		return nil
	}, cborSize)
	if err := call(3, false); err != nil {
		t.Errorf("shallow check failed: %v", err)
	}
	if err := call(3, true); !errors.As(err, new(errBadEcho)) {
		t.Errorf("a reply missing an item, deep check: %v, want errBadEcho", err)
	}
}

// TestAdaptersTLS runs every system over TLS with a certificate made as
// the server process makes it, in the cells' and the idle test's
// settings, and checks that the server speaks nothing but TLS: a client
// without TLS fails.
func TestAdaptersTLS(t *testing.T) {
	srvCfg, cert, err := newTLSServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cliCfg, err := newTLSClientConfig(cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range cellSystems(systemNames) {
		t.Run(name, func(t *testing.T) {
			done := checkLeaks(t)
			defer done()
			for _, idle := range []bool{false, true} {
				c, stop := serveDial(t, systems[name], serveOptions{Idle: idle, TLS: srvCfg}, dialOptions{Idle: idle, TLS: cliCfg})
				err := checkEcho(c, 64)
				if err == nil {
					err = checkEcho(c, 100<<10) // several TLS records
				}
				stop()
				if err != nil {
					t.Fatalf("idle %v: %v", idle, err)
				}
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			stop, err := systems[name].Serve(l, serveOptions{TLS: srvCfg})
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			// grpc-go retries until the context ends.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c, err := systems[name].Dial(ctx, l.Addr().String(), dialOptions{})
			if err == nil {
				err = checkEcho(c, 64)
				c.Close()
			}
			if err == nil {
				t.Error("a client without TLS was served")
			}
		})
	}
	// The client verifies the server: another certificate is refused.
	_, other, err := newTLSServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	otherCfg, _ := newTLSClientConfig(other)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, _ := rawSystem{}.Serve(l, serveOptions{TLS: srvCfg})
	defer stop()
	if _, err := (rawSystem{}).Dial(context.Background(), l.Addr().String(), dialOptions{TLS: otherCfg}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("dial trusting another certificate: %v, want a certificate error", err)
	}
}
