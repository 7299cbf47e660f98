//go:build linux

package session

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"unsafe"

	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/internal/sock"
)

func TestReadsBursts(t *testing.T) {
	var r reads
	read := func(frames int32) bool {
		r.frames = frames
		return r.readsBursts()
	}
	for i := range 100 {
		if read(1) {
			t.Fatalf("one frame a read: bursty at read %d (average %d/16)", i, r.perRead)
		}
	}
	bursty := 0
	for range 100 {
		if read(2) {
			bursty++
		}
	}
	if bursty < 90 {
		t.Fatalf("two frames a read: bursty at %d reads of 100", bursty)
	}
	// A burst-minded connection whose reads now bring a frame or none
	// goes back to the runtime's reads within some twenty reads.
	for i := range 100 {
		if !read(int32(i % 2)) {
			if i > 24 {
				t.Fatalf("still bursty after %d reads of a frame or none", i)
			}
			return
		}
	}
	t.Fatal("reads of a frame or none stayed bursty")
}

// TestReadsSize: the reader's state stays within 80 bytes, the size class
// every connection pays for it.
func TestReadsSize(t *testing.T) {
	if got, want := unsafe.Sizeof(reads{}), uintptr(80); got > want {
		t.Errorf("unsafe.Sizeof(reads{}) = %d, want <= %d", got, want)
	}
}

// TestDirectReads: over TCP and over a Unix socket, calls that arrive in
// bursts are read with sock.Reader and calls one at a time through the
// connection, and every reply comes back whole either way.
func TestDirectReads(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "pulse.sock")
			}
			l, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			serveDirect(t, l, testConfig(Heartbeat{}), Echo{})
			conn, err := net.Dial(network, l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), defaultTestTimeout)
			defer cancel()
			s, err := Start(ctx, conn, true, testConfig(Heartbeat{}), service.NewRegistry(), func(*Session) Hooks { return Hooks{} })
			if err != nil {
				t.Fatal(err)
			}
			go s.ReadLoop()
			defer func() { s.Close(); <-s.ReaderDone() }()
			echo := func(a string) error {
				var r string
				if err := call(ctx, s, "Echo.Echo", a, &r); err != nil {
					return err
				}
				if r != a {
					return fmt.Errorf("reply %q to %q", r, a)
				}
				return nil
			}

			before := sock.DirectReads.Load()
			for i := range 200 {
				if err := echo(strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
			}
			if n := sock.DirectReads.Load() - before; n != 0 {
				t.Errorf("%d direct reads for calls one at a time, want 0", n)
			}

			before = sock.DirectReads.Load()
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for g := range 32 {
				wg.Go(func() {
					for i := range 300 {
						if err := echo(fmt.Sprintf("%d-%d", g, i)); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if sock.DirectReads.Load() == before {
				t.Error("no direct read for 32 goroutines' calls")
			}
		})
	}
}

// serveDirect serves the connections of l, of any network, with sessions
// of cfg over rcvrs, as startTestServer does on TCP. The listener and
// every session are closed when t ends.
func serveDirect(t *testing.T, l net.Listener, cfg *Config, rcvrs ...any) {
	t.Helper()
	reg := service.NewRegistry()
	for _, r := range rcvrs {
		if err := reg.Register(r, "", false); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu       sync.Mutex
		sessions []*Session
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				Tune(conn)
				s, err := Start(context.Background(), conn, false, cfg, reg, func(*Session) Hooks { return Hooks{} })
				if err != nil {
					return
				}
				mu.Lock()
				sessions = append(sessions, s)
				mu.Unlock()
				s.ReadLoop()
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		all := sessions
		mu.Unlock()
		for _, s := range all {
			s.Fail(&ConnError{Reason: ReasonShutdown})
			<-s.ReaderDone()
		}
		wg.Wait()
	})
}
