// Command target is the process the adversarial tests (package adversary)
// attack: a Pulse server, or a Pulse client, embedding the library as an
// application would, and reporting what the attack made it hold. It is
// built by the tests; it is not meant for anything else.
//
//	target -role server -addr 127.0.0.1:0 [limits]
//	target -role client -addr 127.0.0.1:7000 -duration 5s [limits]
//
// It prints one JSON line when it is ready ({"ready":true,"addr":...}),
// then answers commands read from standard input, one per line, with one
// JSON line each on standard output:
//
//	stats   the Stats (current and peak Go heap, peak goroutines, RSS and
//	        peak RSS, log lines and bytes, calls, broadcasts, client results)
//	reset   start a new measurement window: peaks := current values
//	gc      run a garbage collection and return freed memory to the OS
//
// It exits when its standard input ends. Its log (log/slog, text) goes to
// standard error; every line of it is counted.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/adversary"
)

type config struct {
	role          string
	addr          string
	maxMessage    int
	maxFrame      int
	maxConcurrent int
	handshake     time.Duration
	interval      time.Duration
	timeout       time.Duration
	asLimitMB     int
	memLimitMB    int
	logLevel      string

	// Server: periodic broadcasts.
	broadcastEvery   time.Duration
	broadcastTimeout time.Duration
	broadcastBytes   int

	// Client: the calls it makes.
	duration    time.Duration
	calls       int
	callsEvery  time.Duration
	callTimeout time.Duration
	payload     int

	limits limits
}

// limits are the budgets and limits of issue 19, each passed to its
// option by limitOptions (0: the library's default).
type limits struct {
	connBudget     int           // per-connection budget for inbound message bytes
	processBudget  int           // process-wide budget for inbound message bytes (all connections)
	maxConns       int           // server: connections at once
	maxPending     int           // server: handshakes in progress at once
	maxHandlers    int           // server: handlers running at once, all connections
	messageTimeout time.Duration // how long a started frame or message may go without progress
	outQueue       int           // bytes queued for writing per connection
	slowConsumer   string        // policy for pushes to a peer that does not read: wait, drop or close
}

func parseFlags() *config {
	c := &config{}
	flag.StringVar(&c.role, "role", "", "server or client")
	flag.StringVar(&c.addr, "addr", "127.0.0.1:0", "server: address to listen on (loopback); client: address to dial")
	flag.IntVar(&c.maxMessage, "max-message", 0, "WithMaxMessageSize, bytes (0: the default)")
	flag.IntVar(&c.maxFrame, "max-frame", 0, "WithMaxFrameSize, bytes (0: the default)")
	flag.IntVar(&c.maxConcurrent, "max-concurrent", 0, "server: WithMaxConcurrentCalls (0: the default)")
	flag.DurationVar(&c.handshake, "handshake-timeout", 0, "WithHandshakeTimeout (0: the default)")
	flag.DurationVar(&c.interval, "interval", 0, "Heartbeat.Interval (0: the default)")
	flag.DurationVar(&c.timeout, "timeout", 0, "Heartbeat.Timeout (0: the default)")
	flag.IntVar(&c.asLimitMB, "as-headroom-mb", 0, "cap the process's address space (RLIMIT_AS) at its size at start (VmSize, mostly the Go runtime's reservations) plus this many MiB, so that an unbounded library dies instead of eating the machine (0: no cap)")
	flag.IntVar(&c.memLimitMB, "mem-limit-mb", 0, "debug.SetMemoryLimit, MiB (0: none)")
	flag.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")

	flag.DurationVar(&c.broadcastEvery, "broadcast-every", 0, "server: Broadcast Push.Recv this often (0: never)")
	flag.DurationVar(&c.broadcastTimeout, "broadcast-timeout", 200*time.Millisecond, "server: the context deadline of each Broadcast")
	flag.IntVar(&c.broadcastBytes, "broadcast-bytes", 1024, "server: bytes of each Broadcast's argument")

	flag.DurationVar(&c.duration, "duration", 5*time.Second, "client: how long to make calls")
	flag.IntVar(&c.calls, "calls", 0, "client: most calls to make (0: no limit)")
	flag.DurationVar(&c.callsEvery, "calls-every", 10*time.Millisecond, "client: time between the starts of two calls")
	flag.DurationVar(&c.callTimeout, "call-timeout", time.Second, "client: deadline of each call")
	flag.IntVar(&c.payload, "payload", 64, "client: Echo argument bytes")

	// ---- Budgets and limits (issue 19). -------------------------------
	flag.IntVar(&c.limits.connBudget, "conn-budget", 0, "per-connection budget for inbound message bytes (WithConnBudget)")
	flag.IntVar(&c.limits.processBudget, "process-budget", 0, "process-wide budget for inbound message bytes (WithSharedBudget)")
	flag.IntVar(&c.limits.maxConns, "max-conns", 0, "server: most connections (ServerLimits.MaxConns)")
	flag.IntVar(&c.limits.maxPending, "max-pending-handshakes", 0, "server: most handshakes in progress (ServerLimits.MaxPendingHandshakes)")
	flag.IntVar(&c.limits.maxHandlers, "max-handlers", 0, "server: most handlers running, all connections (ServerLimits.MaxHandlers)")
	flag.DurationVar(&c.limits.messageTimeout, "message-timeout", 0, "most time a started frame or message may go without progress (WithMessageTimeout)")
	flag.IntVar(&c.limits.outQueue, "out-queue", 0, "bytes queued for writing per connection (WithMaxQueued)")
	flag.StringVar(&c.limits.slowConsumer, "slow-consumer", "", "wait, drop or close (WithSlowConsumer)")
	flag.Parse()
	return c
}

// limitOptions returns the library options for the limit flags.
func limitOptions(role string, l limits) []pulse.Option {
	var opts []pulse.Option
	if role == "server" {
		sl := pulse.ServerLimits{MaxConns: l.maxConns, MaxPendingHandshakes: l.maxPending, MaxHandlers: l.maxHandlers}
		if sl != (pulse.ServerLimits{}) {
			opts = append(opts, pulse.WithServerLimits(sl))
		}
	}
	if l.messageTimeout > 0 {
		opts = append(opts, pulse.WithMessageTimeout(l.messageTimeout))
	}
	if l.connBudget > 0 {
		opts = append(opts, pulse.WithConnBudget(l.connBudget))
	}
	if l.processBudget > 0 {
		opts = append(opts, pulse.WithSharedBudget(int64(l.processBudget)))
	}
	if l.outQueue > 0 {
		opts = append(opts, pulse.WithMaxQueued(l.outQueue))
	}
	switch l.slowConsumer {
	case "wait":
		opts = append(opts, pulse.WithSlowConsumer(pulse.SlowConsumerWait))
	case "drop":
		opts = append(opts, pulse.WithSlowConsumer(pulse.SlowConsumerDrop))
	case "close":
		opts = append(opts, pulse.WithSlowConsumer(pulse.SlowConsumerClose))
	}
	return opts
}

// commonOptions are the options of both roles.
func commonOptions(c *config, logger *slog.Logger) []pulse.Option {
	opts := []pulse.Option{pulse.WithLogger(logger)}
	if c.maxMessage > 0 {
		opts = append(opts, pulse.WithMaxMessageSize(c.maxMessage))
	}
	if c.maxFrame > 0 {
		opts = append(opts, pulse.WithMaxFrameSize(c.maxFrame))
	}
	if c.handshake > 0 {
		opts = append(opts, pulse.WithHandshakeTimeout(c.handshake))
	}
	if c.interval != 0 || c.timeout != 0 {
		hb := pulse.Heartbeat{Interval: c.interval, Timeout: c.timeout}
		if c.interval > 0 && c.interval < pulse.DefaultMinInterval {
			hb.MinInterval = c.interval
		}
		opts = append(opts, pulse.WithHeartbeat(hb))
	}
	return append(opts, limitOptions(c.role, c.limits)...)
}

var started = time.Now()

func main() {
	cfg := parseFlags()
	if cfg.asLimitMB > 0 {
		if err := limitAddressSpace(uint64(cfg.asLimitMB) << 20); err != nil {
			fatalf("-as-headroom-mb: %v", err)
		}
	}
	if cfg.memLimitMB > 0 {
		debug.SetMemoryLimit(int64(cfg.memLimitMB) << 20)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		fatalf("-log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(countingWriter{os.Stderr}, &slog.HandlerOptions{Level: level}))
	go sampler(5 * time.Millisecond)

	ready := map[string]any{"ready": true, "role": cfg.role, "pid": os.Getpid()}
	switch cfg.role {
	case "server":
		addr, _, err := startServer(cfg, logger)
		if err != nil {
			fatalf("server: %v", err)
		}
		ready["addr"] = addr
	case "client":
		go runClient(cfg, logger)
	default:
		fatalf("-role must be server or client, not %q", cfg.role)
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(ready); err != nil {
		os.Exit(1)
	}
	commands(cfg, out)
}

// commands answers the commands on standard input until it ends.
func commands(cfg *config, out *json.Encoder) {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var v any
		switch strings.TrimSpace(sc.Text()) {
		case "stats":
			v = stats(cfg)
		case "reset":
			resetPeaks()
			v = map[string]bool{"ok": true}
		case "gc":
			runtime.GC()
			debug.FreeOSMemory()
			v = map[string]bool{"ok": true}
		default:
			v = map[string]string{"error": "unknown command " + sc.Text()}
		}
		if err := out.Encode(v); err != nil {
			os.Exit(1)
		}
	}
	os.Exit(0)
}

func stats(cfg *config) *adversary.Stats {
	rss, hwm := procStatus()
	st := &adversary.Stats{
		Role:          cfg.role,
		UptimeMS:      time.Since(started).Milliseconds(),
		HeapBytes:     heapNow.Load(),
		PeakHeapBytes: heapPeak.Load(),
		Goroutines:    gorNow.Load(), PeakGoroutines: gorPeak.Load(),
		RSSBytes: rss, HWMBytes: hwm,
		LogLines: logLines.Load(), LogBytes: logBytes.Load(),
	}
	if cfg.role == "server" {
		st.Conns = conns.Load()
		st.Calls = calls.snapshot()
		if cfg.broadcastEvery > 0 {
			st.Broadcast = broadcastStats()
		}
	} else {
		st.Client = clientStats()
	}
	return st
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "target: "+format+"\n", args...)
	os.Exit(2)
}
