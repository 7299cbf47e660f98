//go:build linux

package main

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// epollFloorBuf is the floor's one read buffer, shared by every socket.
const epollFloorBuf = rawIdleBufSize

// epollFloorWaitMs bounds one wait of the floor's loop.
const epollFloorWaitMs = 100

func (epollSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	if !o.Idle {
		return nil, errEpollIdleOnly
	}
	f, err := newEpollFloor()
	if err != nil {
		return nil, err
	}
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		f.loop()
	}()
	// Each accepted connection is handed to the set and closed (add):
	// serveConns's goroutine for it ends at once.
	stopAccepting := serveConns(l, f.add)
	return func() {
		stopAccepting()
		f.stop()
		<-loopDone
		f.closeAll()
	}, nil
}

type epollFloor struct {
	epfd   int
	wakefd int // an eventfd that tells the loop to return

	// partial holds the bytes of an incomplete frame, by socket (rare).
	// Only the loop touches it, and closeAll once the loop has returned.
	partial map[int32][]byte

	mu  sync.Mutex
	fds map[int32]struct{} // the sockets in the set
}

func newEpollFloor() (*epollFloor, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, errno
	}
	f := &epollFloor{epfd: epfd, wakefd: int(r), fds: map[int32]struct{}{}, partial: map[int32][]byte{}}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(f.wakefd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, f.wakefd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(f.wakefd)
		return nil, err
	}
	return f, nil
}

// add takes c's socket out of the Go runtime's hands (a duplicate of its
// descriptor, still nonblocking; c itself is closed) and puts it in the
// set.
func (f *epollFloor) add(c net.Conn) {
	defer c.Close()
	sc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	raw.Control(func(s uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if errno == 0 {
			fd = int(r)
		}
	})
	if fd < 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(f.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return
	}
	f.fds[int32(fd)] = struct{}{}
}

// loop answers the sockets of the set until stop.
func (f *epollFloor) loop() {
	var evs [256]syscall.EpollEvent
	buf := make([]byte, epollFloorBuf)
	for {
		n, errno := epollWaitRaw(f.epfd, evs[:])
		switch errno {
		case 0:
		case syscall.EINTR:
			n = 0 // a signal; the runtime may want the P back (below)
		default:
			return
		}
		for _, ev := range evs[:n] {
			if int(ev.Fd) == f.wakefd {
				return
			}
			f.serve(ev.Fd, buf)
		}
		// Give the runtime its chance to take the P (a collection's
		// stop, a preemption): seen from the runtime, this goroutine
		// never stops running, and without a yield it would be
		// interrupted with a signal every 10 ms.
		runtime.Gosched()
	}
}

// serve reads what socket fd has, once, and echoes the complete frames.
func (f *epollFloor) serve(fd int32, buf []byte) {
	got, err := rawSockIO(syscall.SYS_READ, uintptr(fd), buf)
	if err == syscall.EAGAIN {
		return
	}
	if err != nil || got == 0 {
		f.drop(fd) // the end of the stream, or a failed socket
		return
	}
	data := buf[:got]
	prev, held := f.partial[fd]
	if held {
		data = append(prev, data...)
	}
	done := 0
	for len(data)-done >= rawHeader {
		size := rawHeader + int(binary.BigEndian.Uint32(data[done:]))
		if size > epollFloorBuf {
			f.drop(fd)
			return
		}
		if len(data)-done < size {
			break
		}
		done += size
	}
	if done > 0 {
		// An echo frame is the request frame: write the complete ones
		// back as they are, in one call.
		if wrote, err := rawSockIO(syscall.SYS_WRITE, uintptr(fd), data[:done]); err != nil || wrote != done {
			f.drop(fd)
			return
		}
	}
	if done < len(data) {
		f.partial[fd] = append([]byte(nil), data[done:]...)
	} else if held {
		delete(f.partial, fd)
	}
}

// drop closes socket fd, which leaves the set with it. Called by the
// loop.
func (f *epollFloor) drop(fd int32) {
	delete(f.partial, fd)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.fds[fd]; !ok {
		return
	}
	delete(f.fds, fd)
	syscall.Close(int(fd))
}

// stop makes the loop return.
func (f *epollFloor) stop() {
	one := [8]byte{1}
	syscall.Write(f.wakefd, one[:])
}

// closeAll closes every socket and the set, after the loop returned.
func (f *epollFloor) closeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for fd := range f.fds {
		syscall.Close(int(fd))
	}
	clear(f.fds)
	clear(f.partial)
	syscall.Close(f.epfd)
	syscall.Close(f.wakefd)
}

// epollWaitRaw waits for events of the set epfd, at most
// epollFloorWaitMs, without the runtime's system-call state: the loop's
// thread blocks in the kernel holding its P, which on an otherwise idle
// process keeps the runtime's monitor thread and poller out of every
// wake-up. A signal (the runtime's preemption, for one) ends the wait with
// EINTR; the bound makes sure the loop comes back to the runtime even if
// such a signal came just before the wait began.
func epollWaitRaw(epfd int, evs []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), epollFloorWaitMs, 0, 0)
	return int(n), errno
}

// rawSockIO makes the read or write system call trap on the nonblocking
// socket fd with b, directly.
func rawSockIO(trap, fd uintptr, b []byte) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return 0, errno
	}
}
