package codec

import (
	"bytes"
	"encoding/json"
	"sync"
)

// JSONName is the handshake name of the JSON codec.
const JSONName = "json"

// JSON encodes values with encoding/json. It is always registered.
var JSON Codec = jsonCodec{}

func init() {
	Register(JSON)
	Register(Raw)
}

type jsonCodec struct{}

func (jsonCodec) Name() string { return JSONName }

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (jsonCodec) Append(dst []byte, v any) ([]byte, error) {
	if out, ok := appendRaw(dst, v); ok {
		return out, nil
	}
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	defer bufPool.Put(b)
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false) // RPC bodies are not embedded in HTML
	if err := enc.Encode(v); err != nil {
		return dst, err
	}
	out := b.Bytes()
	out = out[:len(out)-1] // Encode adds a newline
	return append(dst, out...), nil
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	if unmarshalRaw(data, v) {
		return nil
	}
	return json.Unmarshal(data, v)
}
