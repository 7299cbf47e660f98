// Command agent is the program the fault tests (package faults) run inside
// their network namespaces. It is built from the repository by the tests;
// it is not meant for anything else.
//
//	agent -mode server -addr 10.231.2.2:7000 -interval 1s -timeout 3s
//	agent -mode client -addr 10.231.2.2:7000 -clients 4 -rate 10 -inflight
//	agent -mode relay  -listen 10.231.1.1:7001 -target 10.231.2.2:7000 -delay 100ms -jitter 50ms
//	agent -mode burn   -spin 2
//
// Every mode writes JSON lines (package faults/internal/event) on standard
// output and runs until its standard input reaches end of file or it gets
// SIGTERM or SIGINT; then it stops what it does, writes a "summary" event
// where it has one, and exits. A test that dies takes the agents' standard
// input with it, so no agent outlives its test for long.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/faults/internal/event"
)

var out = event.NewWriter(os.Stdout)

func main() {
	var (
		mode     = flag.String("mode", "", "server, client, relay or burn")
		addr     = flag.String("addr", "", "server: address to listen on; client: server address to dial")
		interval = flag.Duration("interval", time.Second, "Heartbeat.Interval")
		timeout  = flag.Duration("timeout", 3*time.Second, "Heartbeat.Timeout")
		detector = flag.String("detector", "fixed", "fixed or phi")
	)
	var sc serverConfig
	flag.DurationVar(&sc.gcTarget, "gc-pause", 0, "server: force garbage collections whose pause is about this long (run with GODEBUG=gcstoptheworld=1 for a stop-the-world collection; the pause is measured as the longest stall of the process during the collection); 0 for none")
	flag.DurationVar(&sc.gcEvery, "gc-every", 3*time.Second, "server: time between forced collections")
	flag.IntVar(&sc.gcMaxMB, "gc-max-mb", 1024, "server: most heap kept for -gc-pause")
	var cc clientConfig
	flag.IntVar(&cc.clients, "clients", 1, "client: independent pulse.Clients in this process")
	flag.Float64Var(&cc.rate, "rate", 10, "client: Echo calls per second per client (0 for none)")
	flag.DurationVar(&cc.callTimeout, "call-timeout", 5*time.Second, "client: deadline of each Echo call")
	flag.IntVar(&cc.payload, "payload", 64, "client: Echo payload bytes")
	flag.BoolVar(&cc.inflight, "inflight", false, "client: keep one long Slow call in flight per client")
	flag.IntVar(&cc.big, "big", 0, "client: bytes of one Big call made by client 0 after it is ready (0 for none)")
	flag.IntVar(&cc.bigN, "big-n", 1, "client: split -big into this many Big calls of equal size, made at once")
	flag.IntVar(&cc.maxMessage, "max-message", 0, "client: WithMaxMessageSize (0 for the default)")
	flag.IntVar(&cc.connBudget, "conn-budget", 0, "client: WithConnBudget, the flow-control window it grants the server (0 for the default)")
	flag.DurationVar(&cc.bigAfter, "big-after", time.Second, "client: wait this long after ready before the Big call")
	flag.DurationVar(&cc.bigTimeout, "big-timeout", time.Minute, "client: deadline of the Big call")
	flag.DurationVar(&cc.statsEvery, "stats-every", 50*time.Millisecond, "client: how often Stats() is sampled")
	flag.DurationVar(&cc.hungAfter, "hung-after", 2*time.Second, "client: a call that has not returned this long after its deadline is hung")
	var rc relayConfig
	flag.StringVar(&rc.listen, "listen", "", "relay: address to listen on")
	flag.StringVar(&rc.target, "target", "", "relay: address to forward to")
	flag.DurationVar(&rc.delay, "delay", 100*time.Millisecond, "relay: mean delay of each chunk, each direction")
	flag.DurationVar(&rc.jitter, "jitter", 50*time.Millisecond, "relay: each chunk's delay is uniform in delay±jitter (order is kept)")
	spin := flag.Int("spin", 1, "burn: spinning goroutines")
	flag.Parse()
	if cc.bigN < 1 || cc.big%cc.bigN != 0 {
		fatalf("-big-n must be positive and divide -big, not %d for %d", cc.bigN, cc.big)
	}

	hb := pulse.Heartbeat{Interval: *interval, Timeout: *timeout, MinInterval: 10 * time.Millisecond}
	switch *detector {
	case "fixed":
	case "phi":
		hb.Detector = pulse.DetectorPhi
	default:
		fatalf("-detector must be fixed or phi, not %q", *detector)
	}

	ctx, stop := stopContext()
	defer stop()
	var err error
	switch *mode {
	case "server":
		err = runServer(ctx, *addr, hb, *detector, sc)
	case "client":
		err = runClient(ctx, *addr, hb, cc)
	case "relay":
		err = runRelay(ctx, rc)
	case "burn":
		runBurn(ctx, *spin)
	default:
		fatalf("-mode must be server, client, relay or burn, not %q", *mode)
	}
	if err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	out.Emit(event.Event{Ev: "fatal", C: -1, Err: msg})
	fmt.Fprintln(os.Stderr, "agent:", msg)
	os.Exit(1)
}

// stopContext returns a context that ends when standard input reaches end
// of file or a SIGTERM or SIGINT arrives.
func stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, cancel
}

// stallProbe measures how late this process's goroutines run: it sleeps
// for a few milliseconds again and again and records how much longer each
// sleep took. A long GC pause, CPU starvation or SIGSTOP shows up as one
// long late wake-up.
type stallProbe struct {
	max   atomic.Int64 // ns, the longest lateness seen
	total atomic.Int64 // ns, lateness of late wake-ups (over 200 ms) added up
	win   atomic.Int64 // ns, the longest lateness since the last reset
}

const probeTick = 5 * time.Millisecond

func (p *stallProbe) run(ctx context.Context, report func(time.Duration)) {
	for ctx.Err() == nil {
		start := time.Now()
		time.Sleep(probeTick)
		late := time.Since(start) - probeTick
		if late > time.Duration(p.max.Load()) {
			p.max.Store(int64(late))
		}
		if late > time.Duration(p.win.Load()) {
			p.win.Store(int64(late))
		}
		if late > 200*time.Millisecond {
			p.total.Add(int64(late))
			if report != nil {
				report(late)
			}
		}
	}
}
