//go:build linux

package sock

import (
	"crypto/tls"
	"net"
	"syscall"
	"unsafe"
)

// Linux socket options missing from package syscall.
const (
	tcpNotsentLowat = 0x19 // TCP_NOTSENT_LOWAT, bytes: how much unsent data may wait in the kernel
)

// Tune sets TCP_NOTSENT_LOWAT to lowat on a TCP connection (under its
// TLS, if any), so that little data waits in the kernel ahead of a
// heartbeat: round trips stay meaningful under load, and pings are not
// stuck behind megabytes. Other connections are left alone.
//
// It does not set TCP_USER_TIMEOUT: that makes the kernel kill the
// connection when data stays unacknowledged that long, and a healthy
// peer's acknowledgements can take longer. On a slow link with a deep
// queue, the acknowledgements of this side's small writes wait behind the
// data the peer is sending (faults/TestDeepQueue; docs/liveness.md). A
// dead peer is found by the detector, a stuck write by the write watchdog.
func Tune(conn net.Conn, lowat int) {
	raw, ok := tcpSocketOf(conn)
	if !ok {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpNotsentLowat, lowat)
	})
}

// Offsets in struct tcp_info.
const (
	tcpInfoSndMss       = 16  // tcpi_snd_mss, u32: the connection's segment size
	tcpInfoUnacked      = 24  // tcpi_unacked, u32: packets sent and not yet acknowledged
	tcpInfoRTT          = 68  // tcpi_rtt, u32, µs: smoothed round-trip time
	tcpInfoTotalRetrans = 100 // tcpi_total_retrans, u32: packets retransmitted over the connection's life
	tcpInfoBytesAcked   = 120 // tcpi_bytes_acked, u64, Linux 4.1 and later: bytes cumulatively acknowledged
	tcpInfoDelivered    = 192 // tcpi_delivered, u32, Linux 4.18 and later: packets delivered, selectively acknowledged ones included
	tcpInfoRcvOoopack   = 224 // tcpi_rcv_ooopack, u32, Linux 5.4 and later: packets received out of order
	tcpInfoSndWnd       = 228 // tcpi_snd_wnd, u32, Linux 5.4 and later: the peer's receive window, bytes
)

// Progress returns functions that report, for the write watchdog and the
// dead-peer detector, on the peer's acknowledgements of conn's data (see
// Acks) and on the packets conn lost (see Loss). Each is nil when conn is
// not TCP or the kernel does not say. They read tcp_info through shard
// (see now_linux.go), so that a call allocates nothing; the closures are
// made once per connection.
func Progress(conn net.Conn, shard int) (acks func() (Acks, bool), loss func() (Loss, bool)) {
	raw, ok := tcpSocketOf(conn)
	if !ok {
		return nil, nil
	}
	n := infoLen(raw, shard)
	if n >= tcpInfoDelivered+4 {
		acks = func() (Acks, bool) { return readAcks(raw, shard) }
	}
	if n >= tcpInfoRcvOoopack+4 {
		loss = func() (Loss, bool) { return readLoss(raw, shard) }
	}
	return acks, loss
}

// tcpInfoLen is more than the struct tcp_info of any kernel so far.
const tcpInfoLen = 256

// getTCPInfo reads the struct tcp_info of socket fd into buf and returns
// how many bytes the kernel filled, 0 on failure.
func getTCPInfo(fd uintptr, buf *[tcpInfoLen]byte) int {
	n := uint32(len(buf))
	_, _, errno := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 {
		return 0
	}
	return int(n)
}

// PeerBytesWaiting reports whether bytes from the peer sit in conn's
// receive queue, read by nobody yet: a look with MSG_PEEK that takes
// nothing. ok is false when conn's socket cannot be reached.
func PeerBytesWaiting(conn net.Conn) (waiting, ok bool) {
	raw, ok := socketOf(conn)
	if !ok {
		return false, false
	}
	var b [1]byte
	cerr := raw.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting, ok = err == nil && n > 0, err == nil || err == syscall.EAGAIN
	})
	return waiting, ok && cerr == nil
}

// socketOf returns the socket under conn (under its TLS, if any), when
// conn has one.
func socketOf(conn net.Conn) (syscall.RawConn, bool) {
	sc, ok := underTLS(conn).(syscall.Conn)
	if !ok {
		return nil, false
	}
	raw, err := sc.SyscallConn()
	return raw, err == nil
}

// tcpSocketOf is socketOf for TCP connections only.
func tcpSocketOf(conn net.Conn) (syscall.RawConn, bool) {
	if _, ok := underTLS(conn).(*net.TCPConn); !ok {
		return nil, false
	}
	return socketOf(conn)
}

// underTLS returns the connection under conn's TLS, or conn.
func underTLS(conn net.Conn) net.Conn {
	if t, ok := conn.(*tls.Conn); ok {
		return t.NetConn()
	}
	return conn
}

// Parkable returns the socket of conn when conn is a plain TCP or Unix
// socket (not TLS, not a wrapper): one whose reader can park and whose
// writes can be made directly.
func Parkable(conn net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := conn.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}
