// Command gen writes bench.pb.go and bench_grpc.pb.go, the output of
// protoc-gen-go and protoc-gen-go-grpc for bench.proto, without protoc:
// it builds bench.proto's descriptor in Go (benchFile), hands it to each
// plugin as a CodeGeneratorRequest on its stdin, the way protoc does, and
// writes the files of the response. Run it with `go generate` in
// bench/internal/benchpb (or `go -C bench generate ./internal/benchpb`).
//
// protoc-gen-go is the version in bench/go.mod; protoc-gen-go-grpc is
// pinned below. Both are fetched through the Go module proxy when not in
// the module cache.
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// protocGenGoGRPC is the version of protoc-gen-go-grpc that wrote
// bench_grpc.pb.go.
const protocGenGoGRPC = "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run() error {
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: []string{"bench.proto"},
		Parameter:      proto.String("paths=source_relative"),
		ProtoFile:      []*descriptorpb.FileDescriptorProto{benchFile()},
	}
	in, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	for _, plugin := range [][]string{
		{"go", "run", "google.golang.org/protobuf/cmd/protoc-gen-go"},
		{"go", "run", protocGenGoGRPC},
	} {
		cmd := exec.Command(plugin[0], plugin[1:]...)
		cmd.Stdin = bytes.NewReader(in)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%v: %w", plugin, err)
		}
		var resp pluginpb.CodeGeneratorResponse
		if err := proto.Unmarshal(out, &resp); err != nil {
			return fmt.Errorf("%v: response: %w", plugin, err)
		}
		if resp.Error != nil {
			return fmt.Errorf("%v: %s", plugin, resp.GetError())
		}
		for _, f := range resp.File {
			if err := os.WriteFile(filepath.Clean(f.GetName()), []byte(f.GetContent()), 0o644); err != nil {
				return err
			}
			fmt.Fprintln(os.Stderr, "gen: wrote", f.GetName())
		}
	}
	return nil
}

// benchFile is bench.proto's descriptor, as protoc would build it (without
// source locations, so that comments are not carried over).
func benchFile() *descriptorpb.FileDescriptorProto {
	field := func(name string, number int32, typ descriptorpb.FieldDescriptorProto_Type, repeated bool, typeName string) *descriptorpb.FieldDescriptorProto {
		label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
		if repeated {
			label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
		}
		f := &descriptorpb.FieldDescriptorProto{
			Name:     proto.String(name),
			Number:   proto.Int32(number),
			Label:    label.Enum(),
			Type:     typ.Enum(),
			JsonName: proto.String(name),
		}
		if typeName != "" {
			f.TypeName = proto.String(typeName)
		}
		return f
	}
	const (
		int64T  = descriptorpb.FieldDescriptorProto_TYPE_INT64
		int32T  = descriptorpb.FieldDescriptorProto_TYPE_INT32
		stringT = descriptorpb.FieldDescriptorProto_TYPE_STRING
		doubleT = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
		msgT    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	// The fields Small and Big share, numbers 1 to 5.
	head := func() []*descriptorpb.FieldDescriptorProto {
		return []*descriptorpb.FieldDescriptorProto{
			field("id", 1, int64T, false, ""),
			field("seq", 2, int32T, false, ""),
			field("name", 3, stringT, false, ""),
			field("tags", 4, stringT, true, ""),
			field("score", 5, doubleT, false, ""),
		}
	}
	method := func(name, in, out string) *descriptorpb.MethodDescriptorProto {
		return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(in), OutputType: proto.String(out)}
	}
	return &descriptorpb.FileDescriptorProto{
		Name:    proto.String("bench.proto"),
		Package: proto.String("bench"),
		Syntax:  proto.String("proto3"),
		Options: &descriptorpb.FileOptions{GoPackage: proto.String("github.com/pulse-rpc/pulse/bench/internal/benchpb")},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("Small"), Field: head()},
			{Name: proto.String("Item"), Field: []*descriptorpb.FieldDescriptorProto{
				field("id", 1, int64T, false, ""),
				field("name", 2, stringT, false, ""),
				field("qty", 3, int32T, false, ""),
				field("price", 4, doubleT, false, ""),
			}},
			{Name: proto.String("Big"), Field: append(head(), field("items", 6, msgT, true, ".bench.Item"))},
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("StructEcho"),
			Method: []*descriptorpb.MethodDescriptorProto{
				method("EchoSmall", ".bench.Small", ".bench.Small"),
				method("EchoBig", ".bench.Big", ".bench.Big"),
			},
		}},
	}
}
