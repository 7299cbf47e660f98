// Package compare measures candidate binary codecs for Pulse against each
// other and against the JSON baseline. It is a separate module so that the
// candidates that lose never enter the core module's go.mod.
//
// Every candidate is wrapped as a codec.Codec and given the best Append and
// Unmarshal its library allows (pooled encoders and decoders where the
// library can reset them), so that the comparison is of the libraries and
// not of careless wrappers. The CBOR candidate is the core module's
// codec.CBOR itself, so the numbers are those of the shipped code. Structs are encoded as maps keyed by field name
// in every candidate, since an RPC codec must tolerate added fields.
//
// See docs/codecs.md in the core module for the results.
package compare

import (
	"bytes"
	"encoding/gob"
	"sync"

	shamaton "github.com/shamaton/msgpack/v2"
	vmihailenco "github.com/vmihailenco/msgpack/v5"

	"github.com/pulse-rpc/pulse/codec"
)

// Candidates lists the codecs under comparison, baseline first.
var Candidates = []codec.Codec{
	codec.JSON,
	codec.CBOR, // fxamacker/cbor/v2, as shipped in the core module
	vmihailencoCodec{},
	shamatonCodec{},
	gobCodec{},
}

// byName returns the candidate called name, or nil.
func byName(name string) codec.Codec {
	for _, c := range Candidates {
		if c.Name() == name {
			return c
		}
	}
	return nil
}

// ---- vmihailenco/msgpack/v5 ----

// appendWriter is the io.Writer + io.ByteWriter the msgpack encoder needs,
// appending to a slice so that the encoding lands in the caller's buffer.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *appendWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }

type vmEncoder struct {
	w   appendWriter
	enc *vmihailenco.Encoder
}

type vmDecoder struct {
	r   bytes.Reader
	dec *vmihailenco.Decoder
}

var (
	vmEncPool = sync.Pool{New: func() any {
		e := new(vmEncoder)
		e.enc = vmihailenco.NewEncoder(&e.w)
		return e
	}}
	vmDecPool = sync.Pool{New: func() any {
		d := new(vmDecoder)
		d.dec = vmihailenco.NewDecoder(&d.r)
		return d
	}}
)

type vmihailencoCodec struct{}

func (vmihailencoCodec) Name() string { return "vmihailenco-msgpack" }

func (vmihailencoCodec) Append(dst []byte, v any) ([]byte, error) {
	if r, ok := v.(*codec.RawMessage); ok && r != nil {
		return append(dst, *r...), nil
	}
	e := vmEncPool.Get().(*vmEncoder)
	e.w.b = dst
	err := e.enc.Encode(v)
	out := e.w.b
	e.w.b = nil
	vmEncPool.Put(e)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func (vmihailencoCodec) Unmarshal(data []byte, v any) error {
	if r, ok := v.(*codec.RawMessage); ok && r != nil {
		*r = append((*r)[:0], data...)
		return nil
	}
	d := vmDecPool.Get().(*vmDecoder)
	d.r.Reset(data)
	err := d.dec.Decode(v)
	d.r.Reset(nil)
	vmDecPool.Put(d)
	return err
}

// ---- shamaton/msgpack/v2 ----

// shamatonCodec has no API to encode into a caller's buffer, so Append
// copies the freshly allocated encoding unless dst is empty.
type shamatonCodec struct{}

func (shamatonCodec) Name() string { return "shamaton-msgpack" }

func (shamatonCodec) Append(dst []byte, v any) ([]byte, error) {
	if r, ok := v.(*codec.RawMessage); ok && r != nil {
		return append(dst, *r...), nil
	}
	b, err := shamaton.Marshal(v)
	if err != nil {
		return dst, err
	}
	if len(dst) == 0 && cap(dst) < len(b) {
		return b, nil
	}
	return append(dst, b...), nil
}

func (shamatonCodec) Unmarshal(data []byte, v any) error {
	if r, ok := v.(*codec.RawMessage); ok && r != nil {
		*r = append((*r)[:0], data...)
		return nil
	}
	return shamaton.Unmarshal(data, v)
}

// ---- encoding/gob, one encoder and decoder per message ----

// gobCodec uses a fresh gob.Encoder and gob.Decoder for every message,
// because every RPC message must decode on its own; each message therefore
// carries its type descriptions.
type gobCodec struct{}

func (gobCodec) Name() string { return "gob" }

func (gobCodec) Append(dst []byte, v any) ([]byte, error) {
	if r, ok := v.(*codec.RawMessage); ok && r != nil {
		return append(dst, *r...), nil
	}
	w := &appendWriter{b: dst}
	if err := gob.NewEncoder(w).Encode(v); err != nil {
		return dst, err
	}
	return w.b, nil
}

func (gobCodec) Unmarshal(data []byte, v any) error {
	if r, ok := v.(*codec.RawMessage); ok && r != nil {
		*r = append((*r)[:0], data...)
		return nil
	}
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}
