// Package codec turns call arguments and replies into bytes and back.
//
// A Codec is chosen per connection during the handshake: the client offers
// the names it supports in order of preference and the server picks the first
// one it also knows. JSON is always available so that tools and programs in
// other languages can talk to a Pulse server.
//
// Codecs must be safe for concurrent use: one Codec value serves every call on
// every connection that negotiated it.
package codec

import (
	"fmt"
	"sort"
	"sync"
)

// Codec encodes and decodes values of arbitrary Go types.
type Codec interface {
	// Name is the identifier exchanged in the handshake. It must be at most
	// 255 bytes and unique among registered codecs.
	Name() string
	// Append encodes v and appends the encoding to dst, returning the
	// extended slice. Appending lets callers reuse pooled buffers.
	Append(dst []byte, v any) ([]byte, error)
	// Unmarshal decodes data into v, which must be a non-nil pointer.
	// Implementations must not retain data after returning: the caller
	// reuses the buffer.
	Unmarshal(data []byte, v any) error
}

var (
	mu       sync.RWMutex
	registry = map[string]Codec{}
)

// Register makes c available to the handshake under c.Name(). It panics if
// the name is empty, too long, or already registered, like
// database/sql.Register.
func Register(c Codec) {
	name := c.Name()
	if name == "" || len(name) > 255 {
		panic(fmt.Sprintf("codec: invalid codec name %q", name))
	}
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("codec: Register called twice for codec " + name)
	}
	registry[name] = c
}

// Get returns the codec registered under name, or nil.
func Get(name string) Codec {
	mu.RLock()
	defer mu.RUnlock()
	return registry[name]
}

// Names returns the names of all registered codecs, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
