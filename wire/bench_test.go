package wire

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Micro-benchmarks of the hot paths: a small call encoded into a reused
// buffer, parsed back, and read off a stream of frames.

func BenchmarkAppendCall(b *testing.B) {
	args := bytes.Repeat([]byte{'x'}, 64)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendHeader(buf[:0], TypeCall, FlagEnd, 7, 0)
		buf = AppendCallHead(buf, "Service.Method", 5*time.Second)
		buf = append(buf, args...)
		PutLength(buf, len(buf)-HeaderSize)
	}
}

func BenchmarkParseCall(b *testing.B) {
	msg := AppendCallHead(nil, "Service.Method", 5*time.Second)
	msg = append(msg, bytes.Repeat([]byte{'x'}, 64)...)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := ParseCall(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadFrame reads 64-byte frames from an in-memory stream, with
// and without a buffer pool.
func BenchmarkReadFrame(b *testing.B) {
	const frames = 1024
	var stream []byte
	for i := 0; i < frames; i++ {
		stream = AppendFrame(stream, TypeReply, FlagEnd, uint32(2*i+1), bytes.Repeat([]byte{'x'}, 64))
	}
	for _, pooled := range []bool{false, true} {
		name := "buffered"
		if pooled {
			name = "pooled"
		}
		b.Run(name, func(b *testing.B) {
			pool := &sync.Pool{New: func() any { buf := make([]byte, 32<<10); return &buf }}
			r := bytes.NewReader(stream)
			b.SetBytes(int64(len(stream) / frames))
			b.ReportAllocs()
			var fr *Reader
			n := 0
			for b.Loop() {
				if n%frames == 0 {
					r.Reset(stream)
					fr = NewReader(r, 32<<10)
					fr.SetMaxPayload(DefaultMaxFrameSize)
					if pooled {
						fr.SetBufferPool(pool)
					}
				}
				if _, _, err := fr.ReadFrame(); err != nil && err != io.EOF {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}

// oneFrameReader returns one frame per Read, as a socket does when each
// frame arrives on its own (a request-response exchange).
type oneFrameReader struct {
	frame []byte
	off   int
}

func (r *oneFrameReader) Read(p []byte) (int, error) {
	n := copy(p, r.frame[r.off:])
	r.off += n
	if r.off == len(r.frame) {
		r.off = 0
	}
	return n, nil
}

// BenchmarkReadFrameIdle reads frames that each arrive after the Reader
// has drained its buffer, with a buffer pool: every frame is read into
// the small inline array, moved to a pooled buffer when it does not fit,
// and the buffer is given back once the frame is consumed.
func BenchmarkReadFrameIdle(b *testing.B) {
	for _, size := range []int{64, 4 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			pool := &sync.Pool{New: func() any { buf := make([]byte, 32<<10); return &buf }}
			src := &oneFrameReader{frame: AppendFrame(nil, TypeReply, FlagEnd, 1, bytes.Repeat([]byte{'x'}, size))}
			fr := NewReader(src, 32<<10)
			fr.SetMaxPayload(DefaultMaxFrameSize)
			fr.SetBufferPool(pool)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := fr.ReadFrame(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
