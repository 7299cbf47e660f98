//go:build linux

package sock

import (
	"encoding/binary"
	"io"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The system calls on a socket that return at once run in callbacks
// (syscall.RawConn.Control) that hold the descriptor open. A closure that
// captures its arguments is allocated on every call: on an idle
// connection, once per heartbeat on each side, which was most of what an
// idle process allocated. The callbacks are made once instead, and take
// their arguments from a shard guarded by a mutex held across the call,
// one of a few so that calls on different connections do not wait on one
// lock. The caller names its shard (any int; connections should spread).

// shard is the argument (b) and results (n, err, info) of its callbacks,
// guarded by mu.
type shard struct {
	mu     sync.Mutex
	b      []byte
	n      int
	err    error
	fn     func(fd uintptr)      // writes b, sets n
	readFn func(fd uintptr) bool // reads into b without waiting, sets n and err
	infoFn func(fd uintptr)      // reads tcp_info into info, sets n to its length
	info   [tcpInfoLen]byte
	_      [48]byte // six cache lines per shard (384 bytes)
}

// tcpInfo locks the shard and reads raw's tcp_info into it, returning
// the shard and how many bytes the kernel filled (0 on failure). The
// caller reads sh.info and calls sh.unlock.
func tcpInfo(raw syscall.RawConn, shard int) (sh *shard, n int) {
	sh = &shards[shard%Shards]
	sh.mu.Lock()
	sh.n = 0
	raw.Control(sh.infoFn)
	return sh, sh.n
}

// unlock clears the shard's result and unlocks it: every callback that
// sets n finds it zero.
func (sh *shard) unlock() {
	sh.n = 0
	sh.mu.Unlock()
}

// infoLen returns how many bytes of tcp_info the kernel fills for raw, 0
// when it fills none.
func infoLen(raw syscall.RawConn, shard int) int {
	sh, n := tcpInfo(raw, shard)
	sh.unlock()
	return n
}

// readAcks reads the peer's acknowledgements from raw's tcp_info.
func readAcks(raw syscall.RawConn, shard int) (Acks, bool) {
	sh, n := tcpInfo(raw, shard)
	defer sh.unlock()
	if n < tcpInfoDelivered+4 {
		return Acks{}, false
	}
	return Acks{
		Progress: binary.NativeEndian.Uint64(sh.info[tcpInfoBytesAcked:]) +
			uint64(binary.NativeEndian.Uint32(sh.info[tcpInfoDelivered:])),
		Unacked: binary.NativeEndian.Uint32(sh.info[tcpInfoUnacked:]),
		RTT:     time.Duration(binary.NativeEndian.Uint32(sh.info[tcpInfoRTT:])) * time.Microsecond,
	}, true
}

// readLoss reads the packets lost on raw's connection from its tcp_info.
func readLoss(raw syscall.RawConn, shard int) (Loss, bool) {
	sh, n := tcpInfo(raw, shard)
	defer sh.unlock()
	if n < tcpInfoRcvOoopack+4 {
		return Loss{}, false
	}
	return Loss{
		OOO:     uint64(binary.NativeEndian.Uint32(sh.info[tcpInfoRcvOoopack:])),
		Retrans: uint64(binary.NativeEndian.Uint32(sh.info[tcpInfoTotalRetrans:])),
	}, true
}

// SegmentAndWindow returns the socket's TCP segment size and its peer's
// receive window, from tcp_info; ok is false when the kernel does not say
// (not TCP, or a kernel before 5.4). One system call.
func SegmentAndWindow(raw syscall.RawConn, shard int) (mss, wnd int, ok bool) {
	sh, n := tcpInfo(raw, shard)
	defer sh.unlock()
	if n < tcpInfoSndWnd+4 {
		return 0, 0, false
	}
	return int(binary.NativeEndian.Uint32(sh.info[tcpInfoSndMss:])), int(binary.NativeEndian.Uint32(sh.info[tcpInfoSndWnd:])), true
}

// Shards is how many shards there are; callers pick one below it.
const Shards = 16

var shards [Shards]shard

func init() {
	for i := range shards {
		sh := &shards[i]
		sh.fn = func(fd uintptr) {
			if k, err := RawWrite(fd, sh.b); err == nil {
				sh.n = k
			}
		}
		sh.infoFn = func(fd uintptr) { sh.n = getTCPInfo(fd, &sh.info) }
		sh.readFn = func(fd uintptr) bool {
			n, err := RawRead(fd, sh.b)
			sh.n, sh.err = n, err
			return true
		}
	}
}

// WriteNow writes b to the socket raw without waiting and returns how much
// of it the socket took (0 when it took nothing or the write failed: the
// caller then writes through the connection, which waits and reports the
// error).
func WriteNow(raw syscall.RawConn, shard int, b []byte) int {
	sh := &shards[shard%Shards]
	sh.mu.Lock()
	sh.b, sh.n = b, 0
	raw.Control(sh.fn)
	n := sh.n
	sh.b, sh.n = nil, 0
	sh.mu.Unlock()
	return n
}

// ReadNow reads the socket raw into p without waiting: a read that finds
// nothing returns 0 and no error; the end of the stream is io.EOF.
func ReadNow(raw syscall.RawConn, shard int, p []byte) (int, error) {
	sh := &shards[shard%Shards]
	sh.mu.Lock()
	sh.b = p
	cerr := raw.Read(sh.readFn)
	n, err := sh.n, sh.err
	sh.b, sh.n, sh.err = nil, 0, nil
	sh.mu.Unlock()
	switch {
	case cerr != nil:
		err = cerr
	case err == syscall.EAGAIN:
		err = nil
	case err == nil && n == 0 && len(p) > 0:
		err = io.EOF
	}
	return n, err
}

// MaxWritev is the most buffers WritevNow takes.
const MaxWritev = 3

// vecWrite is the argument and result of WritevNow's callback, made once
// with it. Unlike the shards, whose lock is held across the call, they
// are pooled: the writes of busy connections do not wait for each other.
type vecWrite struct {
	vec  [MaxWritev]syscall.Iovec
	nvec int
	n    int
	fn   func(fd uintptr)
}

var vecWrites = sync.Pool{New: func() any {
	w := new(vecWrite)
	w.fn = func(fd uintptr) {
		if k, err := RawWritev(fd, w.vec[:w.nvec]); err == nil {
			w.n = k
		}
	}
	return w
}}

// WritevNow writes the buffers of iov (at most MaxWritev of them) to the
// socket raw without waiting and returns how many bytes it took: 0 when
// it took nothing or the write failed (the caller then writes through the
// connection, which waits and reports the error).
func WritevNow(raw syscall.RawConn, iov [][]byte) int {
	if len(iov) == 0 || len(iov) > MaxWritev {
		return 0
	}
	w := vecWrites.Get().(*vecWrite)
	for i, b := range iov {
		w.vec[i] = syscall.Iovec{Base: unsafe.SliceData(b), Len: uint64(len(b))}
	}
	w.nvec = len(iov)
	raw.Control(w.fn)
	n := w.n
	clear(w.vec[:])
	w.nvec, w.n = 0, 0
	vecWrites.Put(w)
	return n
}
