package pulse

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

// iovecs is writeRaw's scratch for one writev, with the function it
// hands to RawConn.Write, made once so that a write allocates nothing.
type iovecs struct {
	v     [3 + 2*maxRoundFrames]syscall.Iovec
	n     int // entries of v in use
	wrote uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// writev is fn: one writev, again when interrupted; false (wait until
// the socket takes bytes, then again) when the socket is full.
func (iov *iovecs) writev(fd uintptr) bool {
	for {
		iov.wrote, _, iov.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov.v[0])), uintptr(iov.n))
		if iov.errno != syscall.EINTR {
			return iov.errno != syscall.EAGAIN
		}
	}
}

// rawConnOf returns the socket under conn for writeRaw, or nil when
// conn is not a plain TCP or Unix connection (TLS encrypts in Write).
func rawConnOf(conn net.Conn) syscall.RawConn {
	var (
		rc  syscall.RawConn
		err error
	)
	switch c := conn.(type) {
	case *net.TCPConn:
		rc, err = c.SyscallConn()
	case *net.UnixConn:
		rc, err = c.SyscallConn()
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	return rc
}

// rawWritev makes one writev of bufs (as many as iov holds) on rc,
// waiting first for the socket to take bytes if it takes none, and
// returns how many it took.
func rawWritev(rc syscall.RawConn, bufs [][]byte, iov *iovecs) (int64, error) {
	iov.n = 0
	for _, b := range bufs {
		if iov.n == len(iov.v) {
			break
		}
		if len(b) > 0 {
			iov.v[iov.n] = syscall.Iovec{Base: &b[0]}
			iov.v[iov.n].SetLen(len(b))
			iov.n++
		}
	}
	if iov.n == 0 {
		return 0, nil
	}
	if iov.fn == nil {
		iov.fn = iov.writev
	}
	err := rc.Write(iov.fn)
	clear(iov.v[:iov.n]) // do not keep the buffers alive
	if err != nil {
		return 0, &net.OpError{Op: "write", Err: err}
	}
	if iov.errno != 0 {
		return 0, &net.OpError{Op: "write", Err: os.NewSyscallError("writev", iov.errno)}
	}
	return int64(iov.wrote), nil
}
