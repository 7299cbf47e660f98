// Command loadcheck measures Pulse against net/rpc and a minimal framed
// TCP echo, with the server in a child process and the client in this
// one, over loopback. Each system gets its own server process, started
// once; the cells (payload size, goroutines, connections) run one after
// the other, and within a cell the systems take turns for -rounds rounds,
// so that noise from other work on the machine spreads over all of them.
//
//	go run ./internal/loadcheck                       # every cell, 3 rounds
//	go run ./internal/loadcheck -cells 64:32:1 -d 2s -rounds 6 -bench out.txt
//
// For each run it prints calls/s, p50 and p99 latency, and the client
// process's allocations per call (runtime.MemStats.Mallocs over the run,
// every goroutine of the client process included). -bench writes every
// round in the benchmark format, for benchstat. -cpuprofile profiles the
// client; -srvprofile DIR makes each server write DIR/server-SYSTEM.pprof.
//
// Every run is bounded by -d and by -n calls; the whole program by the
// cells × rounds × systems runs and a watchdog (-deadline).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/internal/hist"
)

func main() {
	var (
		serve    = flag.String("serve", "", "internal: run as the server of this system")
		systems  = flag.String("systems", "pulse,netrpc,raw", "systems to measure: pulse, netrpc, raw")
		cellsArg = flag.String("cells", "64:1:1,64:32:1,64:256:1,4096:1:1,4096:32:1,1048576:1:1", "cells, as size:goroutines:connections")
		dur      = flag.Duration("d", time.Second, "measured duration of one run")
		maxCalls = flag.Int("n", 2_000_000, "most calls in one run")
		warm     = flag.Duration("warm", 200*time.Millisecond, "warm-up before each run")
		rounds   = flag.Int("rounds", 3, "runs of each system per cell")
		benchOut = flag.String("bench", "", "write every run in the benchmark format to this file")
		cpuprof  = flag.String("cpuprofile", "", "write the client's CPU profile to this file")
		srvprof  = flag.String("srvprofile", "", "directory where each server writes its CPU profile")
		deadline = flag.Duration("deadline", 10*time.Minute, "give up after this long")
		procs    = flag.Int("srvprocs", 0, "GOMAXPROCS of the servers (0: the default)")
		frame    = flag.Int("framesize", 0, "Pulse max frame size on both ends (0: the default)")
		memprof  = flag.String("memprofile", "", "write the client's allocation profile (every allocation) to this file")
		connect  = flag.String("connect", "", "use the server at this address (started with -serve) instead of a child; one system only")
	)
	flag.Parse()
	if *frame > 0 {
		pulseOpts = append(pulseOpts, pulse.WithMaxFrameSize(*frame))
	}
	if *serve != "" {
		runServer(*serve, *srvprof)
		return
	}
	time.AfterFunc(*deadline, func() { log.Fatalf("loadcheck: still running after %v", *deadline) })

	cells, err := parseCells(*cellsArg)
	if err != nil {
		log.Fatal(err)
	}
	names := strings.Split(*systems, ",")
	servers := map[string]*server{}
	for _, name := range names {
		if *connect != "" {
			if len(names) != 1 {
				log.Fatal("-connect takes one system")
			}
			servers[name] = &server{addr: *connect}
			break
		}
		s, err := startServer(name, *srvprof, *procs)
		if err != nil {
			log.Fatal(err)
		}
		defer s.stop()
		servers[name] = s
	}
	var bench *os.File
	if *benchOut != "" {
		if bench, err = os.Create(*benchOut); err != nil {
			log.Fatal(err)
		}
		defer bench.Close()
		fmt.Fprintf(bench, "goos: %s\ngoarch: %s\npkg: github.com/pulse-rpc/pulse/internal/loadcheck\ncpu: %d cores\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	}
	if *memprof != "" {
		runtime.MemProfileRate = 1
		defer func() {
			f, err := os.Create(*memprof)
			if err != nil {
				log.Fatal(err)
			}
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}()
	}
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	fmt.Printf("%-18s %-7s %10s %10s %10s %10s %9s\n", "cell", "system", "calls/s", "p50", "p99", "p99.9", "allocs")
	for _, cell := range cells {
		results := map[string][]result{}
		for r := 0; r < *rounds; r++ {
			for _, name := range names {
				res, err := runCell(name, servers[name].addr, cell, *warm, *dur, *maxCalls)
				if err != nil {
					log.Fatalf("%s %v: %v", name, cell, err)
				}
				results[name] = append(results[name], res)
				if bench != nil {
					fmt.Fprintf(bench, "BenchmarkLoad/%s/%s %d %.0f ns/op %.0f calls/s %.0f p50-ns %.0f p99-ns %.2f allocs/op\n",
						cell, name, res.calls, float64(res.elapsed)/float64(res.calls), res.rate(), float64(res.p50), float64(res.p99), res.allocs)
				}
			}
		}
		for _, name := range names {
			rs := results[name]
			med := func(f func(result) float64) float64 {
				v := make([]float64, len(rs))
				for i, r := range rs {
					v[i] = f(r)
				}
				slices.Sort(v)
				return v[len(v)/2]
			}
			fmt.Printf("%-18s %-7s %10.0f %10v %10v %10v %9.2f\n", cell, name,
				med(result.rate),
				time.Duration(med(func(r result) float64 { return float64(r.p50) })).Round(100*time.Nanosecond),
				time.Duration(med(func(r result) float64 { return float64(r.p99) })).Round(100*time.Nanosecond),
				time.Duration(med(func(r result) float64 { return float64(r.p999) })).Round(100*time.Nanosecond),
				med(func(r result) float64 { return r.allocs }))
		}
	}
}

// pulseOpts are options for both ends of Pulse connections.
var pulseOpts []pulse.Option

type cell struct{ size, g, c int }

func (c cell) String() string {
	sz := strconv.Itoa(c.size) + "B"
	switch {
	case c.size >= 1<<20 && c.size%(1<<20) == 0:
		sz = strconv.Itoa(c.size>>20) + "MiB"
	case c.size >= 1<<10 && c.size%(1<<10) == 0:
		sz = strconv.Itoa(c.size>>10) + "KiB"
	}
	return fmt.Sprintf("%s_%dx%d", sz, c.g, c.c)
}

func parseCells(s string) ([]cell, error) {
	var cells []cell
	for _, f := range strings.Split(s, ",") {
		p := strings.Split(f, ":")
		if len(p) != 3 {
			return nil, fmt.Errorf("cell %q: want size:goroutines:connections", f)
		}
		var v [3]int
		for i := range p {
			n, err := strconv.Atoi(p[i])
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("cell %q: bad number %q", f, p[i])
			}
			v[i] = n
		}
		if v[1] < v[2] {
			return nil, fmt.Errorf("cell %q: fewer goroutines than connections", f)
		}
		cells = append(cells, cell{v[0], v[1], v[2]})
	}
	return cells, nil
}

// ---- Results ----

type result struct {
	calls          int64
	elapsed        time.Duration
	p50, p99, p999 time.Duration
	allocs         float64
}

func (r result) rate() float64 { return float64(r.calls) / r.elapsed.Seconds() }

// quantiles merges hs and returns their qs-quantiles.
func quantiles(hs []*hist.Histogram, qs ...float64) []time.Duration {
	var total hist.Histogram
	for _, h := range hs {
		total.Merge(h)
	}
	out := make([]time.Duration, len(qs))
	for k, q := range qs {
		out[k] = total.Quantile(q)
	}
	return out
}

// ---- Client side ----

// caller makes calls on one connection; each goroutine has its own.
type caller interface {
	call(payload []byte) error
}

type conn interface {
	// caller returns the caller for goroutine slot i of this connection.
	caller(i int) caller
	close()
}

func dial(system, addr string) (conn, error) {
	switch system {
	case "pulse":
		c, err := pulse.Dial(context.Background(), addr, append([]pulse.Option{pulse.WithCodec("raw")}, pulseOpts...)...)
		if err != nil {
			return nil, err
		}
		return pulseConn{c}, nil
	case "netrpc":
		c, err := rpc.Dial("tcp", addr)
		if err != nil {
			return nil, err
		}
		return netrpcConn{c}, nil
	case "raw":
		return dialRaw(addr)
	}
	return nil, fmt.Errorf("unknown system %q", system)
}

type pulseConn struct{ c *pulse.Client }

func (p pulseConn) caller(int) caller { return &pulseCaller{c: p.c} }
func (p pulseConn) close()            { p.c.Close() }

type pulseCaller struct {
	c     *pulse.Client
	reply []byte
}

func (p *pulseCaller) call(payload []byte) error {
	if err := p.c.Call(context.Background(), "Echo.Echo", payload, &p.reply); err != nil {
		return err
	}
	if len(p.reply) != len(payload) {
		return fmt.Errorf("reply of %d bytes to %d", len(p.reply), len(payload))
	}
	return nil
}

type netrpcConn struct{ c *rpc.Client }

func (n netrpcConn) caller(int) caller { return &netrpcCaller{c: n.c} }
func (n netrpcConn) close()            { n.c.Close() }

type netrpcCaller struct {
	c     *rpc.Client
	reply []byte
}

func (n *netrpcCaller) call(payload []byte) error {
	if err := n.c.Call("Echo.Echo", payload, &n.reply); err != nil {
		return err
	}
	if len(n.reply) != len(payload) {
		return fmt.Errorf("reply of %d bytes to %d", len(n.reply), len(payload))
	}
	return nil
}

// runCell runs one system on one cell: a warm-up, then the measured run.
func runCell(system, addr string, c cell, warm, d time.Duration, maxCalls int) (result, error) {
	conns := make([]conn, c.c)
	for i := range conns {
		cn, err := dial(system, addr)
		if err != nil {
			return result{}, err
		}
		conns[i] = cn
		defer cn.close()
	}
	callers := make([]caller, c.g)
	hists := make([]*hist.Histogram, c.g)
	payloads := make([][]byte, c.g)
	for i := range callers {
		callers[i] = conns[i%c.c].caller(i / c.c)
		hists[i] = new(hist.Histogram)
		payloads[i] = make([]byte, c.size)
		for j := range payloads[i] {
			payloads[i][j] = byte(i + j)
		}
	}
	run := func(d time.Duration, quota int, record bool) (int64, time.Duration, error) {
		var (
			stop  atomic.Bool
			calls atomic.Int64
			wg    sync.WaitGroup
			errMu sync.Mutex
			first error
		)
		start := time.Now()
		t := time.AfterFunc(d, func() { stop.Store(true) })
		defer t.Stop()
		for i := range callers {
			wg.Add(1)
			go func(cl caller, h *hist.Histogram, p []byte) {
				defer wg.Done()
				n := 0
				for n < quota && !stop.Load() {
					t0 := time.Now()
					if err := cl.call(p); err != nil {
						errMu.Lock()
						if first == nil {
							first = err
						}
						errMu.Unlock()
						stop.Store(true)
						break
					}
					if record {
						h.Record(time.Since(t0))
					}
					n++
				}
				calls.Add(int64(n))
			}(callers[i], hists[i], payloads[i])
		}
		wg.Wait()
		return calls.Load(), time.Since(start), first
	}
	quota := (maxCalls + c.g - 1) / c.g
	if _, _, err := run(warm, quota, false); err != nil {
		return result{}, err
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	calls, elapsed, err := run(d, quota, true)
	runtime.ReadMemStats(&m1)
	if err != nil {
		return result{}, err
	}
	if calls == 0 {
		return result{}, errors.New("no call completed")
	}
	q := quantiles(hists, 0.5, 0.99, 0.999)
	return result{
		calls: calls, elapsed: elapsed,
		p50: q[0], p99: q[1], p999: q[2],
		allocs: float64(m1.Mallocs-m0.Mallocs) / float64(calls),
	}, nil
}

// ---- Server processes ----

type server struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// startServer starts this program as the server of system in a child
// process. The child serves until its standard input closes.
func startServer(system, profDir string, procs int) (*server, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-serve", system}
	if f := flag.Lookup("framesize").Value.String(); f != "0" {
		args = append(args, "-framesize", f)
	}
	if profDir != "" {
		args = append(args, "-srvprofile", profDir)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	if procs > 0 {
		cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(procs))
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("server %s: %v", system, err)
	}
	return &server{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}, nil
}

func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	s.stdin.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

// Echo is the service every RPC server registers.
type Echo struct{}

// Echo replies with its argument.
func (Echo) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

func runServer(system, profDir string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	if profDir != "" {
		f, err := os.Create(profDir + "/server-" + system + ".pprof")
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	switch system {
	case "pulse":
		srv, err := pulse.NewServer(pulseOpts...)
		if err != nil {
			log.Fatal(err)
		}
		if err := srv.Register(Echo{}); err != nil {
			log.Fatal(err)
		}
		go srv.Serve(l)
		defer srv.Close()
	case "netrpc":
		srv := rpc.NewServer()
		if err := srv.Register(Echo{}); err != nil {
			log.Fatal(err)
		}
		go srv.Accept(l)
		defer l.Close()
	case "raw":
		go serveRaw(l)
		defer l.Close()
	default:
		log.Fatalf("unknown system %q", system)
	}
	fmt.Println(l.Addr())
	io.Copy(io.Discard, os.Stdin) // until the parent closes our input
	if profDir != "" {
		pprof.StopCPUProfile()
	}
	os.Exit(0) // without closing the servers: nothing of theirs to report
}

// ---- The raw framed echo ----
//
// Frames are a u32 length, a u32 call id and the payload. The server
// echoes each frame from the connection's one goroutine, flushing its
// buffered writer only when no more input is buffered (write coalescing);
// the client's goroutines append their frames under a mutex and the first
// of a burst writes for all.

const rawHeader = 8

func serveRaw(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReaderSize(c, 64<<10)
			bw := bufio.NewWriterSize(c, 64<<10)
			var hdr [rawHeader]byte
			var body []byte
			for {
				if _, err := io.ReadFull(br, hdr[:]); err != nil {
					return
				}
				n := int(binary.BigEndian.Uint32(hdr[:4]))
				if cap(body) < n {
					body = make([]byte, n)
				}
				body = body[:n]
				if _, err := io.ReadFull(br, body); err != nil {
					return
				}
				bw.Write(hdr[:])
				bw.Write(body)
				if br.Buffered() == 0 {
					if err := bw.Flush(); err != nil {
						return
					}
				}
			}
		}()
	}
}

type rawConn struct {
	c       net.Conn
	mu      sync.Mutex
	buf     []byte
	spare   []byte
	writing bool
	werr    error
	slotsMu sync.Mutex
	slots   map[uint32]*rawCaller
}

func dialRaw(addr string) (*rawConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{c: c, slots: map[uint32]*rawCaller{}}
	go rc.readLoop()
	return rc, nil
}

func (rc *rawConn) caller(i int) caller {
	cl := &rawCaller{rc: rc, id: uint32(i), done: make(chan error, 1)}
	rc.slotsMu.Lock()
	rc.slots[cl.id] = cl
	rc.slotsMu.Unlock()
	return cl
}

func (rc *rawConn) close() { rc.c.Close() }

func (rc *rawConn) readLoop() {
	br := bufio.NewReaderSize(rc.c, 64<<10)
	var hdr [rawHeader]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			rc.slotsMu.Lock()
			for _, cl := range rc.slots {
				select {
				case cl.done <- err:
				default:
				}
			}
			rc.slotsMu.Unlock()
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		rc.slotsMu.Lock()
		cl := rc.slots[binary.BigEndian.Uint32(hdr[4:])]
		rc.slotsMu.Unlock()
		if cap(cl.reply) < n {
			cl.reply = make([]byte, n)
		}
		cl.reply = cl.reply[:n]
		_, err := io.ReadFull(br, cl.reply)
		cl.done <- err
		if err != nil {
			return
		}
	}
}

// send appends a frame and writes, unless another goroutine is writing:
// that one writes this frame too.
func (rc *rawConn) send(id uint32, p []byte) error {
	rc.mu.Lock()
	rc.buf = binary.BigEndian.AppendUint32(rc.buf, uint32(len(p)))
	rc.buf = binary.BigEndian.AppendUint32(rc.buf, id)
	rc.buf = append(rc.buf, p...)
	if rc.writing {
		rc.mu.Unlock()
		return nil
	}
	rc.writing = true
	for len(rc.buf) > 0 && rc.werr == nil {
		b := rc.buf
		rc.buf = rc.spare[:0]
		rc.mu.Unlock()
		_, err := rc.c.Write(b)
		rc.mu.Lock()
		rc.spare = b[:0]
		rc.werr = err
	}
	rc.writing = false
	err := rc.werr
	rc.mu.Unlock()
	return err
}

type rawCaller struct {
	rc    *rawConn
	id    uint32
	done  chan error
	reply []byte
}

func (r *rawCaller) call(p []byte) error {
	if err := r.rc.send(r.id, p); err != nil {
		return err
	}
	if err := <-r.done; err != nil {
		return err
	}
	if len(r.reply) != len(p) {
		return fmt.Errorf("reply of %d bytes to %d", len(r.reply), len(p))
	}
	return nil
}
