package main

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"reflect"
	"strconv"

	"github.com/pulse-rpc/pulse/bench/internal/benchpb"
	"github.com/pulse-rpc/pulse/codec"
)

// The struct cells: what users send, a struct through each system's
// default codec, instead of bytes through a codec that copies them. Pulse
// and net/rpc take the Go structs below (Pulse through its default codec,
// CBOR; net/rpc through gob); grpc-go takes the protobuf messages of
// bench.proto (internal/benchpb, protoc-gen-go's output). Raw TCP has no
// codec and does not take part.
//
// Each call is written as a user writes it: the request, built once, goes
// by pointer with its Seq field set for the call; the reply is a fresh
// value, `var out Small` for Pulse and net/rpc, the `new(Small)` of the
// generated stub for grpc-go.

// Kinds of cell (cellSpec.Kind), also the first part of their names.
const (
	kindBytes = ""           // Payload bytes through a raw codec
	kindSmall = "struct"     // Small
	kindBig   = "struct4KiB" // Big
)

// Small is the small struct: a few fields of the common kinds.
type Small struct {
	ID    int64
	Seq   int32
	Name  string
	Tags  []string
	Score float64
}

// Item is one element of Big's list.
type Item struct {
	ID    int64
	Name  string
	Qty   int32
	Price float64
}

// Big is Small's fields plus bigItems items, about 4 KiB encoded (the
// request sizes are in each run's results, request_bytes).
type Big struct {
	ID    int64
	Seq   int32
	Name  string
	Tags  []string
	Score float64
	Items []Item
}

// bigItems is how many items a Big carries.
const bigItems = 100

// newSmall returns the request of the worker seed: a 16-character name and
// three short tags.
func newSmall(seed int) Small {
	return Small{
		ID:    1<<33 + int64(seed)*1_000_003,
		Name:  fmt.Sprintf("user-%011d", seed),
		Tags:  []string{"alpha", "beta", "gamma-" + strconv.Itoa(seed%10)},
		Score: float64(seed) + 0.25,
	}
}

func newBig(seed int) Big {
	s := newSmall(seed)
	b := Big{ID: s.ID, Name: s.Name, Tags: s.Tags, Score: s.Score, Items: make([]Item, bigItems)}
	for i := range b.Items {
		b.Items[i] = Item{
			ID:    1<<20 + int64(seed)*1000 + int64(i),
			Name:  fmt.Sprintf("item-%06d-%09d", seed, i),
			Qty:   int32(i%50 + 1),
			Price: float64(i)*1.25 + 0.99,
		}
	}
	return b
}

func smallPB(s Small) *benchpb.Small {
	return &benchpb.Small{Id: s.ID, Seq: s.Seq, Name: s.Name, Tags: s.Tags, Score: s.Score}
}

func bigPB(b Big) *benchpb.Big {
	m := &benchpb.Big{Id: b.ID, Seq: b.Seq, Name: b.Name, Tags: b.Tags, Score: b.Score, Items: make([]*benchpb.Item, len(b.Items))}
	for i, it := range b.Items {
		m.Items[i] = &benchpb.Item{Id: it.ID, Name: it.Name, Qty: it.Qty, Price: it.Price}
	}
	return m
}

// structCaller is how a load worker calls in a struct cell: call makes one
// call with the request's Seq set to seq and checks the reply's Seq (with
// deep, the whole reply) against the request.
type structCaller func(seq int32, deep bool) error

// structConn is an echoConn of a system that takes part in the struct
// cells (dialed with dialOptions.Structs).
type structConn interface {
	// structCaller returns the caller for cells of kind k with the request
	// of seed, and the request's encoded size in the system's codec.
	structCaller(k string, seed int) (call structCaller, size int, err error)
}

// structSystem reports whether sys takes part in the struct cells.
func structSystem(sys string) bool { return sys != "raw" && !idleOnlySystems[sys] }

// errBadEcho is a reply that is not the request.
type errBadEcho struct{ what string }

func (e errBadEcho) Error() string { return "echo came back different: " + e.what }

// checkSeq compares the sequence numbers of a request and its reply, and
// with deep the whole values.
func checkSeq(in, out any, inSeq, outSeq int32, deep bool) error {
	if outSeq != inSeq {
		return errBadEcho{fmt.Sprintf("seq %d came back as %d", inSeq, outSeq)}
	}
	if deep && !reflect.DeepEqual(in, out) {
		return errBadEcho{fmt.Sprintf("%T differs", in)}
	}
	return nil
}

// goStructCaller is the caller of Pulse and net/rpc, which take Go
// values: invoke is the system's Call with the method name of k.
func goStructCaller(k string, seed int, invoke func(method string, in, out any) error, size func(v any) int) (structCaller, int, error) {
	switch k {
	case kindSmall:
		in := newSmall(seed)
		return func(seq int32, deep bool) error {
			in.Seq = seq
			var out Small
			if err := invoke("Echo.Small", &in, &out); err != nil {
				return err
			}
			return checkSeq(&in, &out, seq, out.Seq, deep)
		}, size(&in), nil
	case kindBig:
		in := newBig(seed)
		return func(seq int32, deep bool) error {
			in.Seq = seq
			var out Big
			if err := invoke("Echo.Big", &in, &out); err != nil {
				return err
			}
			return checkSeq(&in, &out, seq, out.Seq, deep)
		}, size(&in), nil
	}
	return nil, 0, fmt.Errorf("no struct cell of kind %q", k)
}

// cborSize is v's size through Pulse's default codec.
func cborSize(v any) int {
	b, err := codec.CBOR.Append(nil, v)
	if err != nil {
		return 0
	}
	return len(b)
}

// gobSize is v's size in a gob stream once its type has been sent, as in
// every net/rpc call on a connection but the first.
func gobSize(v any) int {
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	if enc.Encode(v) != nil {
		return 0
	}
	n := buf.Len()
	if enc.Encode(v) != nil {
		return 0
	}
	return buf.Len() - n
}
