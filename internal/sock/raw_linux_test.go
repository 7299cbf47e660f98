//go:build linux

package sock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// tcpPair returns both ends of a TCP connection over loopback.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func readerOf(t *testing.T, c *net.TCPConn) *Reader {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return NewReader(raw)
}

// withFd runs f on c's descriptor.
func withFd(t *testing.T, c *net.TCPConn, f func(fd uintptr)) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Control(f); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRawReadWrite(t *testing.T) {
	a, b := tcpPair(t)
	var buf [64]byte
	withFd(t, b, func(fd uintptr) {
		if n, err := RawRead(fd, buf[:]); n != 0 || err != syscall.EAGAIN {
			t.Errorf("read of an empty socket: %d, %v; want 0, EAGAIN", n, err)
		}
	})
	withFd(t, a, func(fd uintptr) {
		vec := []syscall.Iovec{}
		for _, s := range []string{"one,", "two,", "three"} {
			p := []byte(s)
			vec = append(vec, syscall.Iovec{Base: &p[0], Len: uint64(len(p))})
		}
		if n, err := RawWritev(fd, vec); n != 13 || err != nil {
			t.Errorf("writev: %d, %v; want 13, nil", n, err)
		}
		if n, err := RawWrite(fd, []byte("!")); n != 1 || err != nil {
			t.Errorf("write: %d, %v; want 1, nil", n, err)
		}
	})
	var got []byte
	waitFor(t, 5*time.Second, "the bytes", func() bool {
		withFd(t, b, func(fd uintptr) {
			if n, err := RawRead(fd, buf[:]); err == nil {
				got = append(got, buf[:n]...)
			}
		})
		return len(got) >= 14
	})
	if string(got) != "one,two,three!" {
		t.Fatalf("read %q", got)
	}
	a.CloseWrite()
	waitFor(t, 5*time.Second, "the end of the stream", func() bool {
		var n int
		var err error = syscall.EAGAIN
		withFd(t, b, func(fd uintptr) { n, err = RawRead(fd, buf[:]) })
		return n == 0 && err == nil
	})
}

func TestRawEpollPoll(t *testing.T) {
	a, b := tcpPair(t)
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(epfd)
	withFd(t, b, func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: 7}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			t.Fatal(err)
		}
	})
	evs := make([]syscall.EpollEvent, 4)
	if n, err := rawEpollPoll(uintptr(epfd), evs); n != 0 || err != nil {
		t.Fatalf("nothing readable: %d, %v", n, err)
	}
	a.Write([]byte("x"))
	waitFor(t, 5*time.Second, "the event", func() bool {
		n, err := rawEpollPoll(uintptr(epfd), evs)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1 && evs[0].Fd == 7
	})
}

// TestReaderLikeConnRead checks that Reader reads as net.Conn.Read does:
// it waits for bytes, honours the read deadline, and fails with errors of
// the same kinds and texts.
func TestReaderLikeConnRead(t *testing.T) {
	t.Run("waits", func(t *testing.T) {
		a, b := tcpPair(t)
		r := readerOf(t, b)
		go func() {
			// Most likely after the read began to wait (nothing tells
			// when it does); either way the read must return the bytes.
			time.Sleep(20 * time.Millisecond)
			a.Write([]byte("late"))
		}()
		buf := make([]byte, 16)
		n, err := r.Read(b, buf)
		if err != nil || string(buf[:n]) != "late" {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
		if n, err := r.Read(b, nil); n != 0 || err != nil {
			t.Fatalf("empty read: %d, %v", n, err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		_, b := tcpPair(t)
		r := readerOf(t, b)
		b.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := r.Read(b, make([]byte, 16))
		_, want := b.Read(make([]byte, 16))
		if !errors.Is(err, os.ErrDeadlineExceeded) || err.Error() != want.Error() {
			t.Fatalf("error %v; want %v", err, want)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%v is not a timeout", err)
		}
	})
	t.Run("end of stream", func(t *testing.T) {
		a, b := tcpPair(t)
		r := readerOf(t, b)
		a.Write([]byte("last"))
		a.Close()
		var got bytes.Buffer
		buf := make([]byte, 2)
		for {
			n, err := r.Read(b, buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if got.String() != "last" {
			t.Fatalf("read %q", got.String())
		}
	})
	t.Run("reset", func(t *testing.T) {
		errs := make([]error, 2)
		for i := range errs {
			a, b := tcpPair(t)
			a.SetLinger(0)
			a.Close() // RST: either read waits for it
			if i == 0 {
				_, errs[i] = readerOf(t, b).Read(b, make([]byte, 16))
			} else {
				_, errs[i] = b.Read(make([]byte, 16))
			}
		}
		if !errors.Is(errs[0], syscall.ECONNRESET) {
			t.Fatalf("error %v; want ECONNRESET", errs[0])
		}
		// The same text but for the addresses.
		addr := regexp.MustCompile(`[0-9.]+:[0-9]+`)
		cut := func(err error) string { return addr.ReplaceAllString(err.Error(), "ADDR") }
		if cut(errs[0]) != cut(errs[1]) {
			t.Fatalf("error %q; net.Conn.Read says %q", errs[0], errs[1])
		}
	})
	t.Run("closed", func(t *testing.T) {
		_, b := tcpPair(t)
		r := readerOf(t, b)
		done := make(chan error, 1)
		go func() {
			_, err := r.Read(b, make([]byte, 16))
			done <- err
		}()
		time.Sleep(10 * time.Millisecond) // most likely waiting by now; a close before the read fails it the same way
		b.Close()
		err := <-done
		if !errors.Is(err, net.ErrClosed) || !strings.HasPrefix(err.Error(), "read tcp ") {
			t.Fatalf("error %v; want a read error with net.ErrClosed", err)
		}
	})
}

// TestShardSize: each shard of the socket calls' arguments fills whole
// cache lines, so that writes on connections of different shards do not
// share one.
func TestShardSize(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got%64 != 0 {
		t.Errorf("unsafe.Sizeof(shard{}) = %d, not a multiple of 64", got)
	}
}
