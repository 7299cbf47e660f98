package benchpb

import (
	"bytes"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestGoldenBytes checks the generated code's encoding against bytes
// written field by field with protowire from bench.proto's field numbers
// and types, and the round trip.
func TestGoldenBytes(t *testing.T) {
	m := &Big{
		Id: 1 << 40, Seq: 7, Name: "sixteen-chars-ab", Tags: []string{"red", "green", "blue"}, Score: 0.5,
		Items: []*Item{{Id: 3, Name: "item-3", Qty: 2, Price: 9.99}, {Id: 4}},
	}
	var want []byte
	want = protowire.AppendTag(want, 1, protowire.VarintType)
	want = protowire.AppendVarint(want, 1<<40)
	want = protowire.AppendTag(want, 2, protowire.VarintType)
	want = protowire.AppendVarint(want, 7)
	want = protowire.AppendTag(want, 3, protowire.BytesType)
	want = protowire.AppendString(want, "sixteen-chars-ab")
	for _, s := range []string{"red", "green", "blue"} {
		want = protowire.AppendTag(want, 4, protowire.BytesType)
		want = protowire.AppendString(want, s)
	}
	want = protowire.AppendTag(want, 5, protowire.Fixed64Type)
	want = protowire.AppendFixed64(want, math.Float64bits(0.5))
	var item []byte
	item = protowire.AppendTag(item, 1, protowire.VarintType)
	item = protowire.AppendVarint(item, 3)
	item = protowire.AppendTag(item, 2, protowire.BytesType)
	item = protowire.AppendString(item, "item-3")
	item = protowire.AppendTag(item, 3, protowire.VarintType)
	item = protowire.AppendVarint(item, 2)
	item = protowire.AppendTag(item, 4, protowire.Fixed64Type)
	item = protowire.AppendFixed64(item, math.Float64bits(9.99))
	want = protowire.AppendTag(want, 6, protowire.BytesType)
	want = protowire.AppendBytes(want, item)
	want = protowire.AppendTag(want, 6, protowire.BytesType)
	want = protowire.AppendBytes(want, []byte{1 << 3, 4})

	got, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatalf("Marshal() failed: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Marshal() = %x, want %x", got, want)
	}
	var back Big
	if err := proto.Unmarshal(want, &back); err != nil {
		t.Fatalf("Unmarshal() failed: %v", err)
	}
	if !proto.Equal(&back, m) {
		t.Errorf("Unmarshal() = %v, want %v", &back, m)
	}
}
