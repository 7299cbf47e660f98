//go:build linux

package sock

import (
	"os"
	"syscall"
)

// Poller is an epoll set that parked sockets wait in, with an eventfd that
// wakes it on request.
//
// Its set is itself watched by the Go runtime's poller (epoll sets nest):
// Run is an ordinary goroutine that sleeps until the set has events, not a
// thread blocked in epoll_wait, so that bytes arriving on a parked socket
// wake one thread of the process, the runtime's, which sees both the
// socket and the set in one wake.
//
// Sockets are registered level-triggered and one-shot: bytes that arrived
// before the registration wake the set at once, so nothing is missed, and
// each registration wakes it at most once. Each registration carries a
// slot and a generation chosen by the caller, returned with its event, so
// that a late event for a socket whose slot was reused can be told apart.
type Poller struct {
	epf    *os.File        // the epoll set
	rc     syscall.RawConn // of epf
	epfd   int             // epf's descriptor
	wakefd int             // an eventfd that wakes Run

	// arm is Arm's argument and result, made once with its callback (a
	// closure per call would be allocated once per park); Arm's callers
	// serialize their calls.
	arm struct {
		op  int
		ev  syscall.EpollEvent
		err error
	}
	armFn func(fd uintptr)
}

// NewPoller makes an epoll set and its wake-up eventfd.
func NewPoller() (*Poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, errno
	}
	wakefd := int(r)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: -1}
	err = syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, wakefd, &ev)
	if err == nil {
		err = syscall.SetNonblock(epfd, true)
	}
	if err != nil {
		syscall.Close(epfd)
		syscall.Close(wakefd)
		return nil, err
	}
	epf := os.NewFile(uintptr(epfd), "pulse-parker")
	rc, err := epf.SyscallConn()
	if err != nil {
		epf.Close()
		syscall.Close(wakefd)
		return nil, err
	}
	p := &Poller{epf: epf, rc: rc, epfd: epfd, wakefd: wakefd}
	p.armFn = p.armSocket
	return p, nil
}

// Arm registers the socket raw for one readable event carrying slot and
// gen. added says the socket is in the set already (disarmed since its
// last event). Calls must not overlap.
func (p *Poller) Arm(raw syscall.RawConn, slot int32, gen uint32, added bool) error {
	p.arm.op = syscall.EPOLL_CTL_ADD
	if added {
		p.arm.op = syscall.EPOLL_CTL_MOD
	}
	p.arm.ev = syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: slot, Pad: int32(gen)}
	cerr := raw.Control(p.armFn)
	err := p.arm.err
	p.arm.err = nil
	if cerr != nil {
		return cerr
	}
	return err
}

// armSocket registers fd as p.arm says. The socket stays in the set
// between parks; ENOENT and EEXIST cover a registration that the kernel
// dropped or that survived.
func (p *Poller) armSocket(fd uintptr) {
	r := &p.arm
	err := syscall.EpollCtl(p.epfd, r.op, int(fd), &r.ev)
	switch {
	case err == syscall.ENOENT && r.op == syscall.EPOLL_CTL_MOD:
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &r.ev)
	case err == syscall.EEXIST && r.op == syscall.EPOLL_CTL_ADD:
		err = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &r.ev)
	}
	r.err = err
}

// Wake makes Run call its onWake.
func (p *Poller) Wake() {
	one := [8]byte{1}
	syscall.Write(p.wakefd, one[:])
}

// pollBatch is how many events Run takes from the set at once.
const pollBatch = 64

// Run waits for events and calls onReady for each readable socket, with
// the number of rounds in a row, this one included, that brought a full
// batch of events (how far behind the caller is), and onWake for each
// Wake. It returns true when onWake asked it to stop, false if epoll
// failed. It closes the set before it returns.
func (p *Poller) Run(onWake func() (stop bool), onReady func(slot int32, gen uint32, fullRounds int)) bool {
	var evs [pollBatch]syscall.EpollEvent
	stopped := false
	full := 0
	p.rc.Read(func(fd uintptr) bool {
		for {
			n, err := rawEpollPoll(fd, evs[:])
			if err != nil {
				return true
			}
			if n == 0 {
				full = 0
				return false // nothing ready: sleep until the set is
			}
			if n == len(evs) {
				full++
			} else {
				full = 0
			}
			for _, ev := range evs[:n] {
				if ev.Fd < 0 {
					var b [8]byte
					syscall.Read(p.wakefd, b[:])
					if onWake() {
						stopped = true
						return true
					}
					continue
				}
				onReady(ev.Fd, uint32(ev.Pad), full)
			}
		}
	})
	p.epf.Close()
	syscall.Close(p.wakefd)
	return stopped
}
