//go:build !linux

package sock

import (
	"errors"
	"net"
	"syscall"
)

// Outside Linux none of this package is available: connections keep their
// reader goroutines, write through net.Conn, and judge liveness from
// bytes read and write durations alone.

// Shards is how many shards there are (see the Linux implementation).
const Shards = 16

// MaxWritev is the most buffers WritevNow takes.
const MaxWritev = 3

var errUnavailable = errors.New("pulse: epoll is not available on this platform")

// Tune does nothing outside Linux.
func Tune(net.Conn, int) {}

// Progress is not available outside Linux.
func Progress(net.Conn, int) (func() (Acks, bool), func() (Loss, bool)) { return nil, nil }

// PeerBytesWaiting cannot look into the socket outside Linux.
func PeerBytesWaiting(net.Conn) (waiting, ok bool) { return false, false }

// Parkable returns nil: no socket parks outside Linux.
func Parkable(net.Conn) syscall.RawConn { return nil }

// Reader is never made outside Linux (Parkable returns nil).
type Reader struct{}

// NewReader returns nil.
func NewReader(syscall.RawConn) *Reader { return nil }

// Read is never called.
func (*Reader) Read(conn net.Conn, p []byte) (int, error) { return conn.Read(p) }

// WriteNow takes nothing.
func WriteNow(syscall.RawConn, int, []byte) int { return 0 }

// WritevNow takes nothing.
func WritevNow(syscall.RawConn, [][]byte) int { return 0 }

// ReadNow reads nothing.
func ReadNow(syscall.RawConn, int, []byte) (int, error) { return 0, errUnavailable }

// SegmentAndWindow does not know.
func SegmentAndWindow(syscall.RawConn, int) (int, int, bool) { return 0, 0, false }

// Poller is not available outside Linux.
type Poller struct{}

// NewPoller fails.
func NewPoller() (*Poller, error) { return nil, errUnavailable }

// Arm fails.
func (*Poller) Arm(syscall.RawConn, int32, uint32, bool) error { return errUnavailable }

// Wake does nothing.
func (*Poller) Wake() {}

// Run returns at once.
func (*Poller) Run(func() bool, func(int32, uint32, int)) bool { return false }
