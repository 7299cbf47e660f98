package main

import (
	"testing"

	"github.com/pulse-rpc/pulse/bench/internal/benchpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
)

// TestDescriptorMatchesGenerator checks that the generated code embeds the
// descriptor gen builds: bench.pb.go is gen's output, not stale.
func TestDescriptorMatchesGenerator(t *testing.T) {
	got := protodesc.ToFileDescriptorProto(benchpb.File_bench_proto)
	want := benchFile()
	if !proto.Equal(got, want) {
		t.Errorf("bench.pb.go's descriptor differs from gen's (run go generate in bench/internal/benchpb):\n%s", cmp.Diff(want, got, protocmp.Transform()))
	}
}
