package main

// The hidden subcommands the driver runs as separate processes. Each
// prints JSON lines on stdout (one per request) and logs on stderr.
//
//	__server -system S [-idle] [-tls]
//	                                 serve on 127.0.0.1:0; prints {"addr","pid"}
//	                                 (and with -tls the certificate, "cert");
//	                                 then answers "stats"/"stats gc" lines on stdin
//	                                 until "quit" or end of input
//	__load -system S -addr A ...     one throughput/latency run; prints a loadResult
//	__idle -system S -addr A -n N    idle-connection client; answers "stats",
//	                                 "stats gc", "dial", "check", "quit" on stdin
//
// The server and idle processes also take "cpuprofile PATH", "cpuprofile
// stop" and "heapprofile PATH" (profile.go).

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/pulse-rpc/pulse/internal/hist"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// childStats is a process's answer to "stats".
type childStats struct {
	PID        int        `json:"pid"`
	Goroutines int        `json:"goroutines"`
	HeapInuse  uint64     `json:"heap_inuse"`
	StackInuse uint64     `json:"stack_inuse"`
	Proc       procSample `json:"proc"`
	// HeartbeatReplies is, in an idle client of a system that counts them
	// (raw), the heartbeat replies read so far over all connections.
	HeartbeatReplies uint64 `json:"heartbeat_replies,omitempty"`
	// AtNs is when the process took the sample (Unix ns, its own clock):
	// rates over the idle hold are taken per process between its own two
	// samples.
	AtNs  int64  `json:"at_ns,omitempty"`
	Error string `json:"error,omitempty"`
}

func takeStats(gc bool) childStats {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := childStats{PID: os.Getpid(), Goroutines: runtime.NumGoroutine(), HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse}
	p, err := readProc(0)
	if err != nil {
		st.Error = err.Error()
	}
	st.Proc = p
	st.AtNs = time.Now().UnixNano()
	return st
}

// jsonOut writes one JSON line to stdout.
var jsonOutMu sync.Mutex

func jsonOut(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	jsonOutMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	jsonOutMu.Unlock()
}

func childMain(name string, args []string) int {
	switch name {
	case "__server":
		return serverChild(args)
	case "__load":
		return loadChild(args)
	case "__idle":
		return idleChild(args)
	}
	fmt.Fprintf(os.Stderr, "pulse-bench: unknown subcommand %q\n", name)
	return 2
}

func lookupSystem(name string) (system, error) {
	s, ok := systems[name]
	if !ok {
		return nil, fmt.Errorf("unknown system %q", name)
	}
	return s, nil
}

// ---- server ----

type serverReady struct {
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
	// Cert is, with -tls, the server's certificate (DER; base64 in JSON),
	// which the clients are to trust.
	Cert  []byte `json:"cert,omitempty"`
	Error string `json:"error,omitempty"`
}

func serverChild(args []string) int {
	fs := flag.NewFlagSet("__server", flag.ContinueOnError)
	sysName := fs.String("system", "", "system")
	idle := fs.Bool("idle", false, "idle-test settings")
	nofile := fs.Uint64("nofile", 0, "file descriptors needed")
	interval := fs.Duration("interval", idleHeartbeat, "heartbeat interval of the idle test (timeout: four of them)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole process life here")
	useTLS := fs.Bool("tls", false, "serve TLS 1.3 with a self-signed certificate made now")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	raiseNoFile(*nofile)
	setIdleHeartbeat(*interval)
	if *cpuprofile != "" {
		if err := startCPUProfile(*cpuprofile); err != nil {
			fmt.Fprintln(os.Stderr, "pulse-bench:", err)
		}
		defer stopCPUProfile()
	}
	sys, err := lookupSystem(*sysName)
	if err != nil {
		jsonOut(serverReady{Error: err.Error()})
		return 1
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		jsonOut(serverReady{Error: err.Error()})
		return 1
	}
	o := serveOptions{Idle: *idle}
	var cert []byte
	if *useTLS {
		if o.TLS, cert, err = newTLSServerConfig(); err != nil {
			jsonOut(serverReady{Error: err.Error()})
			return 1
		}
	}
	// The server is never stopped gracefully: "quit" or the end of stdin
	// exits the process, which closes every connection.
	_, err = sys.Serve(l, o)
	if err != nil {
		jsonOut(serverReady{Error: err.Error()})
		return 1
	}
	jsonOut(serverReady{Addr: l.Addr().String(), PID: os.Getpid(), Cert: cert})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		if profileCommand(cmd) {
			continue
		}
		switch cmd {
		case "stats", "stats gc":
			jsonOut(takeStats(cmd == "stats gc"))
		case "quit":
			return 0 // exit without a graceful close: the driver is done with us
		}
	}
	return 0
}

// ---- load ----

// loadResult is one run of one system in one cell, measured by the client
// over the measured window.
type loadResult struct {
	System     string `json:"system"`
	Calls      uint64 `json:"calls"`
	Errors     uint64 `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	Capped     bool   `json:"capped,omitempty"`

	// RequestBytes is, in the struct cells, the size of one request's
	// arguments in the system's codec (without its framing).
	RequestBytes int `json:"request_bytes,omitempty"`

	WindowSec   float64 `json:"window_s"`
	CallsPerSec float64 `json:"calls_per_s"`

	P50Ns  int64 `json:"p50_ns"`
	P99Ns  int64 `json:"p99_ns"`
	P999Ns int64 `json:"p999_ns"`
	MeanNs int64 `json:"mean_ns"`
	MaxNs  int64 `json:"max_ns"`

	Mallocs       uint64  `json:"mallocs"`
	AllocsPerCall float64 `json:"allocs_per_call"`

	ClientCPUNs      int64   `json:"client_cpu_ns"`
	ServerCPUNs      int64   `json:"server_cpu_ns"`
	CPUSource        string  `json:"cpu_source"`
	ClientCPUPerCall float64 `json:"client_cpu_us_per_call"`
	ServerCPUPerCall float64 `json:"server_cpu_us_per_call"`
	ClientSyscalls   uint64  `json:"client_syscalls"`
	ServerSyscalls   uint64  `json:"server_syscalls"`
	ClientSysPerCall float64 `json:"client_syscalls_per_call"`
	ServerSysPerCall float64 `json:"server_syscalls_per_call"`
	// ClientWrites and ServerWrites are the write-like system calls
	// (syscw) among them: how well each side batches its frames.
	ClientWrites      uint64 `json:"client_writes"`
	ServerWrites      uint64 `json:"server_writes"`
	ClientGoroutines  int    `json:"client_goroutines"`
	ServerRSSKiBAtEnd int64  `json:"server_rss_kib"`
	ClientRSSKiBAtEnd int64  `json:"client_rss_kib"`
}

type loadConfig struct {
	System    string
	Addr      string
	ServerPID int
	Payload   int
	// Kind is the cell's kind (structs.go): "" for Payload bytes.
	Kind string
	// TLSCert, when set, makes the connections TLS connections that
	// trust this certificate (DER) alone.
	TLSCert  []byte
	G, C     int
	Warmup   time.Duration
	Duration time.Duration
	MaxCalls int64
	// CPUProfile, when set, is where a CPU profile of the warm-up and
	// the window is written.
	CPUProfile string
}

func loadChild(args []string) int {
	fs := flag.NewFlagSet("__load", flag.ContinueOnError)
	var cfg loadConfig
	fs.StringVar(&cfg.System, "system", "", "system")
	fs.StringVar(&cfg.Addr, "addr", "", "server address")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server pid, for /proc")
	fs.IntVar(&cfg.Payload, "payload", 64, "payload bytes")
	fs.StringVar(&cfg.Kind, "kind", kindBytes, "cell kind: empty for bytes, "+kindSmall+" or "+kindBig)
	fs.Func("tls-cert", "dial TLS, trusting this certificate (DER, base64)", func(v string) (err error) {
		cfg.TLSCert, err = base64.StdEncoding.DecodeString(v)
		return err
	})
	fs.IntVar(&cfg.G, "g", 1, "goroutines")
	fs.IntVar(&cfg.C, "c", 1, "connections")
	fs.DurationVar(&cfg.Warmup, "warmup", 300*time.Millisecond, "warm-up")
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Second, "measured window")
	fs.Int64Var(&cfg.MaxCalls, "max-calls", 20_000_000, "cap on calls per run")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of warm-up and window here")
	memprofile := fs.String("memprofile", "", "record every allocation and write the allocation profile here at the end")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 1
		defer func() {
			runtime.GC() // the profile shows allocations as of the last GC
			if f, err := os.Create(*memprofile); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	raiseNoFile(0)
	// A run that hangs (a server that stopped answering) must not hang
	// the driver: give up well after the run should have ended.
	time.AfterFunc(cfg.Warmup+cfg.Duration+60*time.Second, func() {
		fmt.Fprintln(os.Stderr, "pulse-bench: load run did not finish in time; exiting")
		os.Exit(3)
	})
	res, err := runLoad(cfg)
	if err != nil {
		res.FirstError = err.Error()
		jsonOut(res)
		return 1
	}
	jsonOut(res)
	return 0
}

// Phases of a load run, in loadState.phase.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// loadWorker is one calling goroutine's state. Padded so that workers do
// not share cache lines.
type loadWorker struct {
	h        hist.Histogram
	errors   uint64
	firstErr error
	_        [64]byte
}

func runLoad(cfg loadConfig) (loadResult, error) {
	res := loadResult{System: cfg.System}
	sys, err := lookupSystem(cfg.System)
	if err != nil {
		return res, err
	}
	if cfg.G < 1 || cfg.C < 1 || cfg.C > cfg.G {
		return res, fmt.Errorf("need 1 <= connections <= goroutines, got %d goroutines over %d connections", cfg.G, cfg.C)
	}
	do := dialOptions{Structs: cfg.Kind != kindBytes}
	if cfg.TLSCert != nil {
		if do.TLS, err = newTLSClientConfig(cfg.TLSCert); err != nil {
			return res, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conns := make([]echoConn, cfg.C)
	for i := range conns {
		c, err := sys.Dial(ctx, cfg.Addr, do)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return res, fmt.Errorf("dial: %w", err)
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	// One checked call per connection before anything is timed.
	check := func(c echoConn) error { return checkEcho(c, cfg.Payload) }
	if do.Structs {
		check = func(c echoConn) error { return checkStructEcho(c, cfg.Kind) }
	}
	for _, c := range conns {
		if err := check(c); err != nil {
			return res, err
		}
	}
	// The callers of the struct cells, made before the workers start.
	var callers []structCaller
	if do.Structs {
		callers = make([]structCaller, cfg.G)
		for i := range callers {
			sc, ok := conns[i%cfg.C].(structConn)
			if !ok {
				return res, fmt.Errorf("%s does not take part in the struct cells", cfg.System)
			}
			if callers[i], res.RequestBytes, err = sc.structCaller(cfg.Kind, i); err != nil {
				return res, err
			}
		}
	}

	var (
		phase    atomic.Int32
		capHit   = make(chan struct{})
		capOnce  sync.Once
		wg       sync.WaitGroup
		workers  = make([]loadWorker, cfg.G)
		perG     = cfg.MaxCalls/int64(cfg.G) + 1
		badEcho  atomic.Value
		workerWG sync.WaitGroup
	)
	workerWG.Add(cfg.G)
	wg.Add(cfg.G)
	for i := range workers {
		go func(w *loadWorker, c echoConn, seed int) {
			defer wg.Done()
			req := make([]byte, cfg.Payload)
			fillPayload(req, seed)
			resp := make([]byte, 0, cfg.Payload)
			var call structCaller
			if callers != nil {
				call = callers[seed]
			}
			workerWG.Done()
			for n := int64(0); ; n++ {
				if n >= perG {
					capOnce.Do(func() { close(capHit) })
					return
				}
				ph := phase.Load()
				if ph == phaseStop {
					return
				}
				start := time.Now()
				var err error
				if call != nil {
					err = call(int32(n), false)
				} else {
					err = c.Echo(&req, &resp)
				}
				d := time.Since(start)
				if bad, ok := err.(errBadEcho); ok {
					badEcho.CompareAndSwap(nil, bad.Error())
					err = nil // counted once, as a wrong echo of bytes is
				}
				if err != nil {
					w.errors++
					if w.firstErr == nil {
						w.firstErr = err
					}
					if w.errors > 1000 {
						return
					}
					time.Sleep(time.Millisecond)
					continue
				}
				if call == nil && len(resp) != len(req) {
					badEcho.CompareAndSwap(nil, fmt.Sprintf("echo of %d bytes came back as %d", len(req), len(resp)))
				}
				if ph == phaseMeasure && phase.Load() == phaseMeasure {
					w.h.Record(d)
				}
			}
		}(&workers[i], conns[i%cfg.C], i)
	}
	workerWG.Wait()

	if cfg.CPUProfile != "" {
		if err := startCPUProfile(cfg.CPUProfile); err != nil {
			fmt.Fprintln(os.Stderr, "pulse-bench:", err)
		}
	}
	time.Sleep(cfg.Warmup)

	// The window. What the harness does inside it allocates nothing:
	// /proc is read before the first MemStats and after the second.
	timer := time.NewTimer(cfg.Duration)
	self0, _ := readProc(0)
	srv0, _ := readProc(cfg.ServerPID)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	t0 := time.Now()
	phase.Store(phaseMeasure)
	timer.Reset(cfg.Duration)
	select {
	case <-timer.C:
	case <-capHit:
		res.Capped = true
	}
	phase.Store(phaseStop)
	t1 := time.Now()
	runtime.ReadMemStats(&ms1)
	self1, _ := readProc(0)
	srv1, _ := readProc(cfg.ServerPID)
	stopCPUProfile()
	res.ClientGoroutines = runtime.NumGoroutine()
	wg.Wait()

	var total hist.Histogram
	for i := range workers {
		w := &workers[i]
		total.Merge(&w.h)
		res.Errors += w.errors
		if w.firstErr != nil && res.FirstError == "" {
			res.FirstError = w.firstErr.Error()
		}
	}
	if v := badEcho.Load(); v != nil && res.FirstError == "" {
		res.FirstError = v.(string)
		res.Errors++
	}
	window := t1.Sub(t0)
	res.WindowSec = window.Seconds()
	res.Calls = total.Count()
	res.CallsPerSec = float64(total.Count()) / window.Seconds()
	res.P50Ns = int64(total.Quantile(0.50))
	res.P99Ns = int64(total.Quantile(0.99))
	res.P999Ns = int64(total.Quantile(0.999))
	res.MeanNs = int64(total.Mean())
	res.MaxNs = int64(total.Max())
	res.Mallocs = ms1.Mallocs - ms0.Mallocs
	var src string
	res.ClientCPUNs, src = cpuDelta(self0, self1)
	var srcS string
	res.ServerCPUNs, srcS = cpuDelta(srv0, srv1)
	res.CPUSource = src
	if srcS != src {
		res.CPUSource = src + "/" + srcS
	}
	res.ClientSyscalls = syscallDelta(self0, self1)
	res.ServerSyscalls = syscallDelta(srv0, srv1)
	res.ClientWrites = self1.SysW - self0.SysW
	res.ServerWrites = srv1.SysW - srv0.SysW
	res.ServerRSSKiBAtEnd = srv1.RSSKiB
	res.ClientRSSKiBAtEnd = self1.RSSKiB
	if n := float64(total.Count()); n > 0 {
		res.AllocsPerCall = float64(res.Mallocs) / n
		res.ClientCPUPerCall = float64(res.ClientCPUNs) / n / 1e3
		res.ServerCPUPerCall = float64(res.ServerCPUNs) / n / 1e3
		res.ClientSysPerCall = float64(res.ClientSyscalls) / n
		res.ServerSysPerCall = float64(res.ServerSyscalls) / n
	}
	// The last call of each connection is checked byte for byte too.
	for _, c := range conns {
		if err := check(c); err != nil && res.FirstError == "" {
			res.FirstError = "after the window: " + err.Error()
			res.Errors++
		}
	}
	return res, nil
}

// checkStructEcho makes one call of kind k and compares the whole echo.
func checkStructEcho(c echoConn, k string) error {
	sc, ok := c.(structConn)
	if !ok {
		return fmt.Errorf("%T does not take part in the struct cells", c)
	}
	call, _, err := sc.structCaller(k, 7)
	if err != nil {
		return err
	}
	if err := call(1, true); err != nil {
		return fmt.Errorf("echo of %s: %w", k, err)
	}
	return nil
}

// fillPayload fills b with a pattern that differs per seed.
func fillPayload(b []byte, seed int) {
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
}

// checkEcho makes one call of size bytes and compares the echo.
func checkEcho(c echoConn, size int) error {
	req := make([]byte, size)
	fillPayload(req, size+7)
	var resp []byte
	if err := c.Echo(&req, &resp); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if string(resp) != string(req) {
		return fmt.Errorf("echo of %d bytes came back different (%d bytes)", size, len(resp))
	}
	return nil
}
