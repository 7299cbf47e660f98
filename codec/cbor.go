package codec

import (
	"bytes"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// CBORName is the handshake name of the CBOR codec.
const CBORName = "cbor"

// CBOR encodes values as CBOR (RFC 8949) with github.com/fxamacker/cbor/v2.
// It is the fast binary codec: it needs no code generation or registration,
// encodes structs as maps keyed by field name (honouring `cbor` tags, else
// `json` tags), so that added or removed fields are tolerated like in JSON,
// and every other language has a CBOR library. It is always registered.
//
// time.Time is encoded as an RFC 3339 text time (tag 0) with nanoseconds
// and its UTC offset, so it round-trips like it does through JSON. Decoding
// into an interface value produces map[string]any for maps, int64 or uint64
// for integers and time.Time for tagged times.
//
// Decoding is hardened against hostile input: the whole data item is
// checked to be well-formed before anything is allocated, so a length
// prefix can never claim more than the message holds; nesting is limited to
// CBORMaxDepth levels and a single array or map to CBORMaxElements
// elements; text must be valid UTF-8; trailing bytes after the value are an
// error. Decoded []byte and strings never alias the input.
var CBOR Codec = cborCodec{}

// Limits the CBOR codec enforces when decoding.
const (
	// CBORMaxDepth bounds the nesting of arrays, maps and tags, and so the
	// decoder's recursion.
	CBORMaxDepth = 128
	// CBORMaxElements bounds the length of one array and the number of
	// pairs in one map. Since every element takes at least one byte of the
	// message, allocation is already bounded by the message size; this
	// caps how far a run of one-byte elements may expand into large Go
	// values in one allocation.
	CBORMaxElements = 1 << 20
)

var (
	cborEnc cbor.UserBufferEncMode
	cborDec cbor.DecMode
)

func init() {
	var err error
	cborEnc, err = cbor.EncOptions{
		Time:    cbor.TimeRFC3339Nano, // nanoseconds and the UTC offset, like JSON
		TimeTag: cbor.EncTagRequired,  // tag 0, so other decoders know it is a time
	}.UserBufferEncMode()
	if err != nil {
		panic("codec: cbor encoder options: " + err.Error())
	}
	cborDec, err = cbor.DecOptions{
		MaxNestedLevels:  CBORMaxDepth,
		MaxArrayElements: CBORMaxElements,
		MaxMapPairs:      CBORMaxElements,
		UTF8:             cbor.UTF8RejectInvalid,
		DefaultMapType:   reflect.TypeFor[map[string]any](),
	}.DecMode()
	if err != nil {
		panic("codec: cbor decoder options: " + err.Error())
	}
	Register(CBOR)
}

type cborCodec struct{}

func (cborCodec) Name() string { return CBORName }

// cborBufPool recycles the bytes.Buffer headers that MarshalToBuffer needs;
// the buffer's storage is always the caller's dst.
var cborBufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (cborCodec) Append(dst []byte, v any) ([]byte, error) {
	if out, ok := appendRaw(dst, v); ok {
		return out, nil
	}
	b := cborBufPool.Get().(*bytes.Buffer)
	*b = *bytes.NewBuffer(dst) // encode straight onto the end of dst
	err := cborEnc.MarshalToBuffer(v, b)
	out := b.Bytes()
	*b = bytes.Buffer{} // do not keep the caller's memory alive in the pool
	cborBufPool.Put(b)
	if err != nil {
		return dst, err
	}
	return out, nil
}

func (cborCodec) Unmarshal(data []byte, v any) error {
	if unmarshalRaw(data, v) {
		return nil
	}
	return cborDec.Unmarshal(data, v)
}
