package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The idle test: N connections from one client process to one server
// process, one call each, then held idle with heartbeats on.

// idleSourceAddrs is how many loopback source addresses the client spreads
// n connections over: each (source, destination) pair has about 28,000
// ephemeral ports (net.ipv4.ip_local_port_range 32768-60999), so 20,000
// per source leaves room, and 100,000 connections take 5 of them.
func idleSourceAddrs(n int) int {
	return min(max(4, (n+19999)/20000), 250)
}

func idleSourceAddr(i, k int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%k))}
}

// idleOpResult answers "dial" and "check".
type idleOpResult struct {
	OK         int     `json:"ok"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
}

func idleChild(args []string) int {
	fs := flag.NewFlagSet("__idle", flag.ContinueOnError)
	sysName := fs.String("system", "", "system")
	addr := fs.String("addr", "", "server address")
	n := fs.Int("n", 1000, "connections")
	conc := fs.Int("conc", 64, "dials in parallel")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	lim := raiseNoFile(uint64(*n) + 1024)
	sys, err := lookupSystem(*sysName)
	if err != nil {
		jsonOut(map[string]string{"error": err.Error()})
		return 1
	}
	if lim < uint64(*n)+64 {
		fmt.Fprintf(os.Stderr, "pulse-bench: RLIMIT_NOFILE is %d, below the %d connections asked for; dials will fail\n", lim, *n)
	}
	jsonOut(map[string]any{"pid": os.Getpid(), "nofile": lim})

	conns := make([]echoConn, *n)
	k := idleSourceAddrs(*n)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		cmd := strings.TrimSpace(sc.Text())
		if profileCommand(cmd) {
			continue
		}
		switch cmd {
		case "stats", "stats gc":
			st := takeStats(cmd == "stats gc")
			for _, c := range conns {
				if h, ok := c.(heartbeatCounter); ok {
					st.HeartbeatReplies += h.heartbeatReplies()
				}
			}
			jsonOut(st)
		case "dial":
			jsonOut(forEachConn(*n, *conc, func(i int) error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				c, err := sys.Dial(ctx, *addr, dialOptions{Idle: true, LocalAddr: idleSourceAddr(i, k)})
				if err != nil {
					return err
				}
				conns[i] = c
				return checkEcho(c, 64)
			}))
		case "check":
			jsonOut(forEachConn(*n, *conc, func(i int) error {
				if conns[i] == nil {
					return fmt.Errorf("connection %d was never dialed", i)
				}
				return checkEcho(conns[i], 64)
			}))
		case "quit":
			return 0 // the process's exit closes the connections
		}
	}
	return 0
}

// heartbeatCounter is an echoConn that counts the heartbeat replies it
// reads (raw's PONGs).
type heartbeatCounter interface {
	heartbeatReplies() uint64
}

// forEachConn runs f(0..n-1) with at most conc at once.
func forEachConn(n, conc int, f func(i int) error) idleOpResult {
	start := time.Now()
	var (
		next     atomic.Int64
		ok, bad  atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	for range max(1, min(conc, n)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("connection %d: %v", i, err))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	r := idleOpResult{OK: int(ok.Load()), Errors: int(bad.Load()), Seconds: time.Since(start).Seconds()}
	if v := firstErr.Load(); v != nil {
		r.FirstError = v.(string)
	}
	return r
}

// idleResult is the idle test of one system.
type idleResult struct {
	System     string       `json:"system"`
	Conns      int          `json:"conns"`
	Dial       idleOpResult `json:"dial"`
	Check      idleOpResult `json:"check"`
	SettleSec  float64      `json:"settle_s"`
	HoldSec    float64      `json:"hold_s"`
	Error      string       `json:"error,omitempty"`
	Heartbeats string       `json:"heartbeats"`

	// Samples of each process: before dialing (after a GC), after the
	// settle period (after a GC), at the start and end of the hold (no
	// GC: CPU and system calls), and after the hold (after a GC: memory).
	ServerBase    childStats `json:"server_base"`
	ServerSettled childStats `json:"server_settled"`
	ServerHold0   childStats `json:"server_hold_start"`
	ServerHold1   childStats `json:"server_hold_end"`
	ServerEnd     childStats `json:"server_end"`
	ClientBase    childStats `json:"client_base"`
	ClientSettled childStats `json:"client_settled"`
	ClientHold0   childStats `json:"client_hold_start"`
	ClientHold1   childStats `json:"client_hold_end"`
	ClientEnd     childStats `json:"client_end"`

	// Per connection, from the samples after the hold: the steady state,
	// once Go's scavenger has handed back the memory the dialing freed.
	ServerRSSPerConn        float64 `json:"server_rss_bytes_per_conn"`
	ClientRSSPerConn        float64 `json:"client_rss_bytes_per_conn"`
	ServerGoMemPerConn      float64 `json:"server_heap_stack_bytes_per_conn"`
	ClientGoMemPerConn      float64 `json:"client_heap_stack_bytes_per_conn"`
	ServerGoroutinesPerConn float64 `json:"server_goroutines_per_conn"`
	ClientGoroutinesPerConn float64 `json:"client_goroutines_per_conn"`
	// The same RSS right after the settle period.
	ServerRSSPerConnSettled float64 `json:"server_rss_bytes_per_conn_settled"`
	ClientRSSPerConnSettled float64 `json:"client_rss_bytes_per_conn_settled"`
	ServerCPUPercent        float64 `json:"server_cpu_percent"`
	ClientCPUPercent        float64 `json:"client_cpu_percent"`
	ServerSyscallsPerSec    float64 `json:"server_syscalls_per_s"`
	ClientSyscallsPerSec    float64 `json:"client_syscalls_per_s"`
	// Heartbeat replies the client read per second during the hold, for
	// systems that count them (raw: PONGs; about conns per second).
	ClientHeartbeatRepliesPerSec float64 `json:"client_heartbeat_replies_per_s,omitempty"`
}

func idleHeartbeatDesc(sys string) string {
	switch sys {
	case "pulse":
		return "heartbeat 1 s, timeout 4 s"
	case "grpc":
		return "keepalive: server 1 s, client 10 s (minimums), timeout 4 s"
	case "netrpc":
		return "none (net/rpc has no heartbeat)"
	case "raw":
		return "client PING every 1 s, server PONG at once; client timeout 4 s"
	}
	return ""
}

// runIdle runs the idle test of one system.
// With prof set, both processes write heap profiles after settling
// (prof-server-heap.pprof, prof-client-heap.pprof) and CPU profiles of the
// hold (prof-server-cpu.pprof, prof-client-cpu.pprof).
func runIdle(sys string, n int, settle, hold time.Duration, prof string, progress func(string)) (r idleResult) {
	r = idleResult{System: sys, Conns: n, Heartbeats: idleHeartbeatDesc(sys)}
	nofile := strconv.Itoa(n + 1024)
	srv, err := startChild(sys+" server", "__server", "-system", sys, "-idle", "-nofile", nofile)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer func() {
		if err := srv.stop(10 * time.Second); err != nil && r.Error == "" {
			r.Error = err.Error()
		}
	}()
	var ready serverReady
	if err := srv.readJSON(&ready, 30*time.Second); err != nil || ready.Error != "" {
		r.Error = fmt.Sprintf("server: %v %s", err, ready.Error)
		return r
	}
	cli, err := startChild(sys+" client", "__idle", "-system", sys, "-addr", ready.Addr, "-n", strconv.Itoa(n))
	if err != nil {
		r.Error = err.Error()
		return r
	}
	defer func() { // deferred after the server's stop: runs first
		if err := cli.stop(10 * time.Second); err != nil && r.Error == "" {
			r.Error = err.Error()
		}
	}()
	var hello map[string]any
	if err := cli.readJSON(&hello, 30*time.Second); err != nil {
		r.Error = err.Error()
		return r
	}
	stats := func(c *childProc, cmd string, into *childStats) bool {
		if err := c.request(cmd, into, 60*time.Second); err != nil {
			r.Error = err.Error()
			return false
		}
		if into.Error != "" && r.Error == "" {
			r.Error = c.name + ": reading /proc: " + into.Error
		}
		return true
	}
	if !stats(srv, "stats gc", &r.ServerBase) || !stats(cli, "stats gc", &r.ClientBase) {
		return r
	}
	progress(fmt.Sprintf("dialing %d connections", n))
	if err := cli.request("dial", &r.Dial, time.Duration(n)*10*time.Millisecond+120*time.Second); err != nil {
		r.Error = err.Error()
		return r
	}
	progress(fmt.Sprintf("dialed %d ok, %d failed in %.1fs; settling %v, holding %v", r.Dial.OK, r.Dial.Errors, r.Dial.Seconds, settle, hold))
	time.Sleep(settle)
	r.SettleSec = settle.Seconds()
	if !stats(srv, "stats gc", &r.ServerSettled) || !stats(cli, "stats gc", &r.ClientSettled) {
		return r
	}
	profCmd := func(cmd string) {
		if prof == "" {
			return
		}
		for _, c := range []struct {
			p    *childProc
			side string
		}{{srv, "server"}, {cli, "client"}} {
			var ans map[string]string
			full := strings.ReplaceAll(cmd, "SIDE", c.side)
			if err := c.p.request(full, &ans, 60*time.Second); err != nil || ans["error"] != "" {
				progress(fmt.Sprintf("%s: %s: %v %s", c.side, full, err, ans["error"]))
			}
		}
	}
	profCmd("heapprofile " + prof + "-SIDE-heap.pprof")
	profCmd("cpuprofile " + prof + "-SIDE-cpu.pprof")
	if !stats(srv, "stats", &r.ServerHold0) || !stats(cli, "stats", &r.ClientHold0) {
		return r
	}
	t0 := time.Now()
	time.Sleep(hold)
	if !stats(srv, "stats", &r.ServerHold1) || !stats(cli, "stats", &r.ClientHold1) {
		return r
	}
	profCmd("cpuprofile stop")
	held := time.Since(t0)
	r.HoldSec = held.Seconds()
	if !stats(srv, "stats gc", &r.ServerEnd) || !stats(cli, "stats gc", &r.ClientEnd) {
		return r
	}
	if err := cli.request("check", &r.Check, time.Duration(n)*10*time.Millisecond+120*time.Second); err != nil {
		r.Error = err.Error()
	}

	if k := float64(r.Dial.OK); k > 0 {
		perConn := func(base, end childStats) (rss, gomem, goroutines float64) {
			rss = float64(end.Proc.RSSKiB-base.Proc.RSSKiB) * 1024 / k
			gomem = (float64(end.HeapInuse+end.StackInuse) - float64(base.HeapInuse+base.StackInuse)) / k
			goroutines = float64(end.Goroutines-base.Goroutines) / k
			return
		}
		r.ServerRSSPerConn, r.ServerGoMemPerConn, r.ServerGoroutinesPerConn = perConn(r.ServerBase, r.ServerEnd)
		r.ClientRSSPerConn, r.ClientGoMemPerConn, r.ClientGoroutinesPerConn = perConn(r.ClientBase, r.ClientEnd)
		r.ServerRSSPerConnSettled, _, _ = perConn(r.ServerBase, r.ServerSettled)
		r.ClientRSSPerConnSettled, _, _ = perConn(r.ClientBase, r.ClientSettled)
	}
	sc, _ := cpuDelta(r.ServerHold0.Proc, r.ServerHold1.Proc)
	cc, _ := cpuDelta(r.ClientHold0.Proc, r.ClientHold1.Proc)
	r.ServerCPUPercent = float64(sc) / float64(held) * 100
	r.ClientCPUPercent = float64(cc) / float64(held) * 100
	r.ServerSyscallsPerSec = float64(syscallDelta(r.ServerHold0.Proc, r.ServerHold1.Proc)) / held.Seconds()
	r.ClientSyscallsPerSec = float64(syscallDelta(r.ClientHold0.Proc, r.ClientHold1.Proc)) / held.Seconds()
	r.ClientHeartbeatRepliesPerSec = float64(r.ClientHold1.HeartbeatReplies-r.ClientHold0.HeartbeatReplies) / held.Seconds()
	return r
}
