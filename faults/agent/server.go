package main

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/faults/internal/event"
)

// Svc is the service the fault tests call.
type Svc struct{}

// Echo returns its argument.
func (Svc) Echo(arg []byte, reply *[]byte) error {
	*reply = arg
	return nil
}

// Big returns n bytes.
func (Svc) Big(n int, reply *[]byte) error {
	if n < 0 || n > 64<<20 {
		return errors.New("Big: n out of range")
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	*reply = b
	return nil
}

// Slow sleeps ms milliseconds, or until the call is cancelled, and returns
// how long it slept.
func (Svc) Slow(ctx context.Context, ms int, reply *int) error {
	start := time.Now()
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	*reply = int(time.Since(start) / time.Millisecond)
	return nil
}

type serverConfig struct {
	gcTarget time.Duration
	gcEvery  time.Duration
	gcMaxMB  int
}

// runServer serves Svc on addr and reports connections opening and
// closing, with the reason and the time of the last byte read.
func runServer(ctx context.Context, addr string, hb pulse.Heartbeat, detector string, cfg serverConfig) error {
	var (
		mu     sync.Mutex
		maxPhi float64
	)
	srv, err := pulse.NewServer(
		pulse.WithHeartbeat(hb),
		pulse.WithLogger(discardLogger()),
		pulse.WithConnHook(func(ev pulse.ConnEvent) {
			now := time.Now()
			st := ev.Peer.Stats()
			e := event.Event{T: now.UnixNano(), C: -1, Remote: ev.Peer.RemoteAddr().String(), Local: ev.Peer.LocalAddr().String(),
				Interval: st.Interval, Timeout: st.Timeout}
			if ev.Open {
				e.Ev = "open"
			} else {
				e.Ev = "closed"
				e.At = now.UnixNano()
				e.LastRead = now.Add(-st.SinceRead).UnixNano()
				e.Phi = st.Phi
				e.Kind, _, e.Reason = classify(ev.Err)
				if ev.Err != nil {
					e.Err = ev.Err.Error()
				}
			}
			out.Emit(e)
		}),
	)
	if err != nil {
		return err
	}
	if err := srv.Register(Svc{}); err != nil {
		return err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var probe stallProbe
	go probe.run(ctx, func(late time.Duration) {
		out.Emit(event.Event{Ev: "stall", C: -1, Pause: late})
	})
	if cfg.gcTarget > 0 {
		go gcPauses(ctx, cfg, &probe)
	}
	// Sample the peers' health: the largest phi any connection reached.
	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, p := range srv.Peers() {
				if phi := p.Stats().Phi; !math.IsNaN(phi) {
					mu.Lock()
					maxPhi = max(maxPhi, phi)
					mu.Unlock()
				}
			}
		}
	}()
	out.Emit(event.Event{Ev: "listening", C: -1, Addr: l.Addr().String(), Interval: hb.Interval, Timeout: hb.Timeout,
		Detector: detector, Info: "pid " + itoa(os.Getpid()) + " GOMAXPROCS " + itoa(runtime.GOMAXPROCS(0)) + " GODEBUG " + os.Getenv("GODEBUG")})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	mu.Lock()
	phi := maxPhi
	mu.Unlock()
	out.Emit(event.Event{Ev: "summary", C: -1, MaxPhi: phi, MaxGap: time.Duration(probe.max.Load()), Pause: time.Duration(probe.total.Load())})
	srv.Close()
	return nil
}

// burn spins until ctx ends.
func burn(ctx context.Context) {
	x := uint64(1)
	for i := 0; ; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		if i&0xffff == 0 && ctx.Err() != nil {
			sink = x
			return
		}
	}
}

var sink uint64

// runBurn spins n goroutines until ctx ends: a CPU hog to pin beside a
// server with taskset.
func runBurn(ctx context.Context, n int) {
	out.Emit(event.Event{Ev: "burning", C: -1, Info: "pid " + itoa(os.Getpid()) + " spinners " + itoa(n)})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			burn(ctx)
		}()
	}
	wg.Wait()
}

// node is one cell of a pointer-heavy heap: the collector must follow
// every pointer.
type node struct {
	next *node
	a, b *node
	pad  [2]uintptr
}

const nodesPerMB = (1 << 20) / 48

// gcPauses keeps a pointer-heavy heap and collects it every cfg.gcEvery,
// resizing the heap after each collection so that its pause is about
// cfg.gcTarget. Run with GODEBUG=gcstoptheworld=1, the marking stops the
// world: a long GC pause. The pause reported is the longest stall the
// probe saw during the collection (runtime.GC also sweeps, concurrently,
// which takes longer but stops nothing).
func gcPauses(ctx context.Context, cfg serverConfig, probe *stallProbe) {
	var chunks []*node // one linked list of 1 MB per element
	grow := func(mb int) {
		for len(chunks) < mb {
			var head *node
			for i := range nodesPerMB {
				n := &node{next: head}
				if i%3 == 0 {
					n.a = head
				}
				head = n
			}
			chunks = append(chunks, head)
		}
		for i := mb; i < len(chunks); i++ {
			chunks[i] = nil
		}
		chunks = chunks[:mb]
	}
	// Only the forced collections run, so that each pause is one this
	// loop measured and sized.
	debug.SetGCPercent(-1)
	// The first collection is sized before any pause per MB is known:
	// small, so that it cannot overshoot the target by much (a large
	// first heap can pause the starved server for about its clients'
	// Timeout with the short settings); the collections after it grow the
	// heap by at most half each toward the target.
	mb := 16
	var recent []float64 // pause per MB of heap, ns, of the last collections
	grow(mb)
	t := time.NewTicker(cfg.gcEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			runtime.KeepAlive(chunks)
			return
		case <-t.C:
		}
		probe.win.Store(0)
		start := time.Now()
		runtime.GC()
		took := time.Since(start)
		time.Sleep(2 * probeTick) // the probe wakes up late from the pause
		pause := time.Duration(probe.win.Swap(0))
		out.Emit(event.Event{Ev: "gc", C: -1, Pause: pause, HeapMB: mb, Info: "runtime.GC took " + took.Round(time.Millisecond).String()})
		// Aim the next collection at the target, from the longest pause
		// per MB of the last few: under CPU starvation it varies, and a
		// pause much longer than aimed at would silence the server for
		// longer than its clients' Timeout.
		recent = append(recent, float64(pause)/float64(mb))
		if len(recent) > 3 {
			recent = recent[1:]
		}
		next := int(float64(cfg.gcTarget) / max(slices.Max(recent), 1))
		mb = min(max(next, mb*2/3, 16), mb*3/2, cfg.gcMaxMB)
		grow(mb)
	}
}
