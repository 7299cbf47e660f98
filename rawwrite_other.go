//go:build !linux

package pulse

import (
	"net"
	"syscall"
)

// iovecs is empty: writeRaw is used on Linux only.
type iovecs struct{}

// rawConnOf returns nil: connections are written with their Write.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func rawWritev(syscall.RawConn, [][]byte, *iovecs) (int64, error) {
	return 0, syscall.EINVAL
}
