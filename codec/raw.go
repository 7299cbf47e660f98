package codec

import "fmt"

// RawName is the handshake name of the raw codec.
const RawName = "raw"

// RawMessage is an already-encoded body. Every codec passes a *RawMessage
// through unchanged, in both directions, so a program can forward bytes
// without decoding them (a proxy, or the pulse command's JSON calls).
type RawMessage []byte

// Raw is a codec for []byte bodies only: arguments and replies must be
// []byte, *[]byte or *RawMessage. It adds no framing or copying beyond
// what the connection needs and is the fastest way to move opaque payloads.
var Raw Codec = rawCodec{}

type rawCodec struct{}

func (rawCodec) Name() string { return RawName }

func (rawCodec) Append(dst []byte, v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return append(dst, b...), nil
	case *[]byte:
		if b == nil {
			return dst, nil
		}
		return append(dst, (*b)...), nil
	case RawMessage:
		return append(dst, b...), nil
	case *RawMessage:
		if b == nil {
			return dst, nil
		}
		return append(dst, (*b)...), nil
	case nil:
		return dst, nil
	}
	return dst, fmt.Errorf("codec: raw codec cannot encode %T; use []byte", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	switch b := v.(type) {
	case *[]byte:
		*b = append((*b)[:0], data...)
		return nil
	case *RawMessage:
		*b = append((*b)[:0], data...)
		return nil
	}
	return fmt.Errorf("codec: raw codec cannot decode into %T; use *[]byte", v)
}

// appendRaw appends v to dst when v is an already-encoded RawMessage,
// which every codec passes through unchanged.
func appendRaw(dst []byte, v any) ([]byte, bool) {
	switch r := v.(type) {
	case *RawMessage:
		if r != nil {
			return append(dst, *r...), true
		}
	case RawMessage:
		return append(dst, r...), true
	}
	return dst, false
}

// unmarshalRaw stores a copy of data in v when v is a *RawMessage.
func unmarshalRaw(data []byte, v any) bool {
	r, ok := v.(*RawMessage)
	if !ok || r == nil {
		return false
	}
	*r = append((*r)[:0], data...)
	return true
}
