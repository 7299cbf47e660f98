package pulse

import (
	"crypto/tls"
	"net"
	"syscall"
	"time"
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
