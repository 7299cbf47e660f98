package pulse

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// Linux socket options missing from package syscall.
const (
	tcpUserTimeout  = 0x12 // TCP_USER_TIMEOUT, ms: unacknowledged data older than this kills the connection
	tcpNotsentLowat = 0x19 // TCP_NOTSENT_LOWAT, bytes: how much unsent data may wait in the kernel
)

// tuneTCP sets, on a TCP connection, TCP_NOTSENT_LOWAT so that little data
// waits in the kernel ahead of a heartbeat (round trips stay meaningful
// under load, and pings are not stuck behind megabytes), and, when
// writeTimeout is positive, TCP_USER_TIMEOUT so that the kernel too gives
// up on data that goes unacknowledged that long. Other connections are
// left alone.
func tuneTCP(conn net.Conn, writeTimeout time.Duration) {
	if t, ok := conn.(*tls.Conn); ok {
		conn = t.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, notsentLowat)
		if writeTimeout > 0 {
			syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(writeTimeout/time.Millisecond))
		}
	})
}

// tcpInfoBytesAcked is the offset of tcpi_bytes_acked (a u64, Linux 4.1
// and later) in struct tcp_info.
const tcpInfoBytesAcked = 120

// ackProgress returns a function that reports how many bytes the peer
// has acknowledged on conn, for the write watchdog: a write blocked for a
// long time on a slow link is still making progress as long as this
// grows. It returns nil when conn is not TCP or the kernel does not say.
func ackProgress(conn net.Conn) func() (uint64, bool) {
	if t, ok := conn.(*tls.Conn); ok {
		conn = t.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	read := func() (uint64, bool) {
		var (
			buf [256]byte
			got bool
		)
		raw.Control(func(fd uintptr) {
			n := uint32(len(buf))
			_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
				uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
			got = errno == 0 && n >= tcpInfoBytesAcked+8
		})
		if !got {
			return 0, false
		}
		return binary.NativeEndian.Uint64(buf[tcpInfoBytesAcked:]), true
	}
	if _, ok := read(); !ok {
		return nil
	}
	return read
}
