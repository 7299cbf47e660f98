package compare

import (
	"testing"

	"github.com/pulse-rpc/pulse/codec"
)

// benchRoundTrip encodes msg into a reused buffer and decodes it into a
// reused target that is zeroed first, as an RPC server decodes each call's
// arguments into a fresh value. The encoded size is reported as bytes/msg.
func benchRoundTrip[T any](b *testing.B, c codec.Codec, msg T) {
	enc, err := c.Append(nil, &msg)
	if err != nil {
		b.Fatal(err)
	}
	var out T
	if err := c.Unmarshal(enc, &out); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 2*len(enc)+64)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf, err = c.Append(buf[:0], &msg)
		if err != nil {
			b.Fatal(err)
		}
		var zero T
		out = zero
		if err := c.Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "bytes/msg")
}

func BenchmarkRoundTrip(b *testing.B) {
	small, medium, large := NewSmall(), NewMedium(), NewLarge()
	for _, c := range Candidates {
		b.Run("msg=small/codec="+c.Name(), func(b *testing.B) { benchRoundTrip(b, c, small) })
	}
	for _, c := range Candidates {
		b.Run("msg=4KiB/codec="+c.Name(), func(b *testing.B) { benchRoundTrip(b, c, medium) })
	}
	for _, c := range Candidates {
		b.Run("msg=1MiB/codec="+c.Name(), func(b *testing.B) { benchRoundTrip(b, c, large) })
	}
}
