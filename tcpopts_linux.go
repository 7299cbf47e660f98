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
	tcpNotsentLowat = 0x19 // TCP_NOTSENT_LOWAT, bytes: how much unsent data may wait in the kernel
)

// tuneTCP sets, on a TCP connection, TCP_NOTSENT_LOWAT so that little data
// waits in the kernel ahead of a heartbeat (round trips stay meaningful
// under load, and pings are not stuck behind megabytes). Other connections
// are left alone.
//
// It does not set TCP_USER_TIMEOUT to the connection's Timeout (the second
// argument, unused): that makes the kernel kill the connection when data
// stays unacknowledged that long, and a healthy peer's acknowledgements
// can take longer. On a slow link with a deep queue, the acknowledgements
// of this side's small writes wait behind the data the peer is sending: a
// queue of 3 s killed connections with a Timeout of 1 s and of 3 s while
// their bytes were flowing (faults/TestDeepQueue). A dead peer is found by
// the detector, a stuck write by the write watchdog.
func tuneTCP(conn net.Conn, _ time.Duration) {
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
	})
}

// Offsets in struct tcp_info.
const (
	tcpInfoBytesAcked = 120 // tcpi_bytes_acked, u64, Linux 4.1 and later
	tcpInfoRcvOoopack = 224 // tcpi_rcv_ooopack, u32, Linux 5.4 and later: packets received out of order
)

// ackProgress returns a function that reports how many bytes the peer
// has acknowledged on conn, for the write watchdog: a write blocked for a
// long time on a slow link is still making progress as long as this
// grows. It returns nil when conn is not TCP or the kernel does not say.
func ackProgress(conn net.Conn) func() (uint64, bool) {
	return tcpInfoCounter(conn, tcpInfoBytesAcked, 8)
}

// oooProgress returns a function that reports how many packets the kernel
// has received out of order on conn, for the dead-peer detector: while TCP
// waits for a lost segment to be retransmitted, the data that follows it
// arrives but cannot be read. It returns nil when conn is not TCP or the
// kernel does not say.
func oooProgress(conn net.Conn) func() (uint64, bool) {
	return tcpInfoCounter(conn, tcpInfoRcvOoopack, 4)
}

// tcpInfoCounter returns a function that reads the size-byte counter at
// offset in conn's struct tcp_info, or nil when conn is not TCP or the
// kernel's tcp_info is too short to hold it.
func tcpInfoCounter(conn net.Conn, offset, size int) func() (uint64, bool) {
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
			got = errno == 0 && int(n) >= offset+size
		})
		if !got {
			return 0, false
		}
		if size == 4 {
			return uint64(binary.NativeEndian.Uint32(buf[offset:])), true
		}
		return binary.NativeEndian.Uint64(buf[offset:]), true
	}
	if _, ok := read(); !ok {
		return nil
	}
	return read
}
