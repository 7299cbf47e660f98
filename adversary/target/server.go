package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/adversary"
)

// counters counts the invocations of each method of Svc, so that a test can
// tell that a call ran exactly once (or not at all).
type counters struct {
	mu sync.Mutex
	m  map[string]*atomic.Int64
}

func (c *counters) add(name string) {
	c.mu.Lock()
	v, ok := c.m[name]
	if !ok {
		v = new(atomic.Int64)
		c.m[name] = v
	}
	c.mu.Unlock()
	v.Add(1)
}

func (c *counters) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v.Load()
	}
	return out
}

var calls = &counters{m: map[string]*atomic.Int64{}}

// maxHold caps how long Hold and Slow keep a call, whatever the peer asks.
const maxHold = 30 * time.Second

// Svc is the service the attacks aim at.
type Svc struct{}

// Echo returns its argument.
func (Svc) Echo(arg []byte, reply *[]byte) error {
	calls.add("Echo")
	*reply = arg
	return nil
}

// HoldArgs are Hold's arguments: Data decodes into any, so a peer chooses
// how much the decoded value expands.
type HoldArgs struct {
	MS   int `json:"ms"`
	Data any `json:"data"`
}

// Hold keeps its decoded arguments alive for args.MS milliseconds (or until
// the call is cancelled) and returns how many it held them.
func (Svc) Hold(ctx context.Context, args *HoldArgs, reply *int) error {
	calls.add("Hold")
	start := time.Now()
	sleep(ctx, time.Duration(args.MS)*time.Millisecond)
	runtime.KeepAlive(args.Data)
	*reply = int(time.Since(start) / time.Millisecond)
	return nil
}

// HoldMap decodes into a map and keeps it for its "ms" entry's milliseconds.
func (Svc) HoldMap(ctx context.Context, args map[string]any, reply *int) error {
	calls.add("HoldMap")
	ms, _ := args["ms"].(float64)
	sleep(ctx, time.Duration(ms)*time.Millisecond)
	runtime.KeepAlive(args)
	*reply = len(args)
	return nil
}

// Slow sleeps ms milliseconds, or until the call is cancelled.
func (Svc) Slow(ctx context.Context, ms int, reply *int) error {
	calls.add("Slow")
	sleep(ctx, time.Duration(ms)*time.Millisecond)
	*reply = ms
	return nil
}

// Mark counts its invocations (the call-id tests check that nothing runs
// twice) and returns its argument.
func (Svc) Mark(arg int, reply *int) error {
	calls.add("Mark")
	*reply = arg
	return nil
}

// Sink is a notification sink: it counts what arrives.
func (Svc) Sink(arg []byte, reply *int) error {
	calls.add("Sink")
	*reply = len(arg)
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	d = min(d, maxHold)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

var conns atomic.Int64

// startServer serves Svc on addr and returns the listener's address.
func startServer(cfg *config, logger *slog.Logger) (string, *pulse.Server, error) {
	opts := append(commonOptions(cfg, logger),
		pulse.WithConnHook(func(ev pulse.ConnEvent) {
			if ev.Open {
				conns.Add(1)
			} else {
				conns.Add(-1)
			}
		}),
	)
	if cfg.maxConcurrent > 0 {
		opts = append(opts, pulse.WithMaxConcurrentCalls(cfg.maxConcurrent))
	}
	srv, err := pulse.NewServer(opts...)
	if err != nil {
		return "", nil, err
	}
	if err := srv.RegisterName("Svc", Svc{}); err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return "", nil, err
	}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, pulse.ErrServerClosed) {
			logger.Error("adversary target: serve", "err", err)
		}
	}()
	if cfg.broadcastEvery > 0 {
		go broadcastLoop(srv, cfg)
	}
	return l.Addr().String(), srv, nil
}

// The periodic Broadcasts of -broadcast-every: one at a time, each with a
// context of -broadcast-timeout.
var (
	bcast        adversary.BroadcastStats
	bcastMu      sync.Mutex
	bcastRunning atomic.Int64 // start of the running Broadcast, UnixNano; 0 if none
)

func broadcastLoop(srv *pulse.Server, cfg *config) {
	payload := make([]byte, cfg.broadcastBytes)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	t := time.NewTicker(cfg.broadcastEvery)
	defer t.Stop()
	for range t.C {
		peers := len(srv.Peers())
		ctx, cancel := context.WithTimeout(context.Background(), cfg.broadcastTimeout)
		start := time.Now()
		bcastRunning.Store(start.UnixNano())
		unreached, err := srv.Broadcast(ctx, "Push.Recv", payload)
		n := max(peers-len(unreached), 0)
		d := time.Since(start)
		bcastRunning.Store(0)
		cancel()
		bcastMu.Lock()
		bcast.Count++
		bcast.MaxMicros = max(bcast.MaxMicros, d.Microseconds())
		if d > cfg.broadcastTimeout+100*time.Millisecond {
			bcast.Late++
		}
		if err != nil {
			bcast.Errors++
		}
		bcast.Unreached += int64(len(unreached))
		bcast.Peers, bcast.Reached = int64(peers), int64(n)
		bcastMu.Unlock()
	}
}

func broadcastStats() *adversary.BroadcastStats {
	bcastMu.Lock()
	b := bcast
	bcastMu.Unlock()
	if start := bcastRunning.Load(); start != 0 {
		b.Pending = 1
		b.MaxMicros = max(b.MaxMicros, time.Since(time.Unix(0, start)).Microseconds())
	}
	return &b
}
