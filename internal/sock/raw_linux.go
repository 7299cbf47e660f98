//go:build linux

package sock

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// System calls that return at once, made without the runtime's
// system-call state.
//
// syscall.Read, syscall.Write and syscall.EpollWait, and net.Conn's reads
// and writes through them, tell the Go runtime that the thread enters a
// system call (entersyscall) and leaves it, so that a call that blocks
// does not hold its P. When every P of the process was idle, that entry
// also wakes the runtime's monitor thread (sysmon), which then runs every
// 20 µs until the process is idle again. A process that is idle most of
// the time but woken often (a gateway answering thousands of heartbeats a
// second) pays that on every wake. The socket is nonblocking and epoll is
// asked not to wait, so these calls cannot block: they are made directly
// (syscall.RawSyscall), as syscall.EpollCtl already is
// (docs/benchmarks.md has the profiles that led here).
//
// Each function below converts its pointer to a uintptr in the call to
// syscall.RawSyscall itself, which keeps the memory in place for the call;
// a uintptr handed to a shared helper would not (a goroutine's stack can
// move), hence the few lines they repeat.

// RawRead reads from the nonblocking descriptor fd into b.
func RawRead(fd uintptr, b []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, b) }

// RawWrite writes b to the nonblocking descriptor fd.
func RawWrite(fd uintptr, b []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, b) }

// rawIO makes the read or write system call trap on fd with b.
func rawIO(trap, fd uintptr, b []byte) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// rawEpollPoll returns the events ready in the epoll set epfd without
// waiting for any.
func rawEpollPoll(epfd uintptr, evs []syscall.EpollEvent) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, epfd, uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// RawWritev writes the buffers of vec to the nonblocking descriptor fd in
// one system call.
func RawWritev(fd uintptr, vec []syscall.Iovec) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&vec[0])), uintptr(len(vec)))
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// DirectReads counts the reads made by Reader, for tests.
var DirectReads atomic.Int64

// Reader reads a TCP or Unix socket for its connection's reader with
// RawRead, waiting for bytes in the runtime's poller as net.Conn.Read
// does (and so with the same read deadline). Its callback is made once
// with it (one made per read would be allocated per read); it is used
// only by whichever goroutine is the connection's reader.
type Reader struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool
	b   []byte
	n   int
	err error
}

// NewReader returns a Reader of the socket raw.
func NewReader(raw syscall.RawConn) *Reader {
	r := &Reader{raw: raw}
	r.fn = r.readSome
	return r
}

func (r *Reader) readSome(fd uintptr) bool {
	n, err := RawRead(fd, r.b)
	if err == syscall.EAGAIN {
		return false // wait until the socket is readable
	}
	r.n, r.err = n, err
	return true
}

// Read reads into p as conn.Read would, with errors of the same kinds: a
// *net.OpError for a failed read, a deadline or a closed connection, and
// io.EOF at the end of the stream.
func (r *Reader) Read(conn net.Conn, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	DirectReads.Add(1)
	r.b = p
	err := r.raw.Read(r.fn)
	n, rerr := r.n, r.err
	r.b, r.n, r.err = nil, 0, nil
	if err != nil {
		// A deadline or a closed connection, seen by the poller.
		var oe *net.OpError
		if errors.As(err, &oe) {
			e := *oe
			e.Op, e.Source = "read", conn.LocalAddr()
			return 0, &e
		}
		return 0, err
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: conn.LocalAddr().Network(), Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}
