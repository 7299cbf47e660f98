package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
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
// process, one call each, then held idle with heartbeats on. With
// -idle-procs P, the N connections are spread over P such pairs of
// processes (for more connections than one process may hold descriptors
// for), and the figures are those of the P servers and the P clients
// added up.

// idleSourceAddrs is how many loopback source addresses a client process
// spreads n connections over. Each (source, destination) pair has about
// 28,000 ephemeral ports (net.ipv4.ip_local_port_range 32768-60999), so
// 20,000 per address leaves room, and 100,000 connections to one server
// take 5 addresses. The ports are picked at connect time
// (bindAddressNoPort); client processes that share the connections
// (-idle-procs) still use addresses of their own (-src), so that the
// idle test's ports never depend on how the kernel shares them.
func idleSourceAddrs(n int) int {
	return min(max(4, (n+19999)/20000), 250)
}

// idleSourceAddr is the source address of connection i of a client
// process whose k addresses start at the base-th: 127.0.0.(2+base+i%k).
func idleSourceAddr(base, i, k int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+(base+i%k)%250))}
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
	interval := fs.Duration("interval", idleHeartbeat, "heartbeat interval (timeout: four of them)")
	src := fs.Int("src", 0, "index of this process's first source address (idleSourceAddr)")
	var cert []byte
	fs.Func("tls-cert", "dial TLS, trusting this certificate (DER, base64)", func(v string) (err error) {
		cert, err = base64.StdEncoding.DecodeString(v)
		return err
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	setIdleHeartbeat(*interval)
	lim := raiseNoFile(uint64(*n) + 1024)
	sys, err := lookupSystem(*sysName)
	if err != nil {
		jsonOut(map[string]string{"error": err.Error()})
		return 1
	}
	if lim < uint64(*n)+64 {
		fmt.Fprintf(os.Stderr, "pulse-bench: RLIMIT_NOFILE is %d, below the %d connections asked for; dials will fail\n", lim, *n)
	}
	var tlsConfig *tls.Config
	if cert != nil {
		if tlsConfig, err = newTLSClientConfig(cert); err != nil {
			jsonOut(map[string]string{"error": err.Error()})
			return 1
		}
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
				c, err := sys.Dial(ctx, *addr, dialOptions{Idle: true, LocalAddr: idleSourceAddr(*src, i, k), TLS: tlsConfig})
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
	// Procs is how many server processes (and as many client processes)
	// shared the connections; 0 in results of before -idle-procs means 1.
	Procs int `json:"procs,omitempty"`
	// TLS: the connections were TLS 1.3 connections (-tls).
	TLS bool `json:"tls,omitempty"`

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

// idleHeartbeatDesc describes sys's heartbeats in the idle test, at the
// interval set (setIdleHeartbeat).
func idleHeartbeatDesc(sys string) string {
	d := func(t time.Duration) string { return strconv.FormatFloat(t.Seconds(), 'f', -1, 64) + " s" }
	switch sys {
	case "pulse":
		return "heartbeat " + d(idleHeartbeat) + ", timeout " + d(idleHeartbeatTimeout)
	case "grpc":
		client := max(grpcMinClientKeepalive, idleHeartbeat)
		note := "" // grpc-go's minimums: 1 s for a server, 10 s for a client
		switch {
		case idleHeartbeat <= time.Second:
			note = " (minimums)"
		case idleHeartbeat < grpcMinClientKeepalive:
			note = " (the client's minimum)"
		}
		return "keepalive: server " + d(idleHeartbeat) + ", client " + d(client) + note + ", timeout " + d(idleHeartbeatTimeout)
	case "netrpc":
		return "none (net/rpc has no heartbeat)"
	case "raw":
		return "client PING every " + d(idleHeartbeat) + ", server PONG at once; client timeout " + d(idleHeartbeatTimeout)
	case "epoll":
		return "raw TCP's client; server: one epoll loop, one read and one write per PING"
	}
	return ""
}

// runIdle runs the idle test of one system, over TLS if useTLS: n
// connections over procs pairs of processes.
// With prof set, the processes of the first pair write heap profiles after
// settling (prof-server-heap.pprof, prof-client-heap.pprof) and CPU
// profiles of the hold (prof-server-cpu.pprof, prof-client-cpu.pprof).
func runIdle(sys string, useTLS bool, n, procs int, settle, hold time.Duration, prof string, progress func(string)) (r idleResult) {
	procs = max(1, min(procs, n))
	r = idleResult{System: sys, Conns: n, Heartbeats: idleHeartbeatDesc(sys), Procs: procs, TLS: useTLS}
	interval := idleHeartbeat.String()
	var srvs, clis []*childProc
	defer func() {
		// Clients first: a server that goes first would make every
		// client connection fail at once.
		for _, group := range [][]*childProc{clis, srvs} {
			for _, c := range group {
				if err := c.stop(10 * time.Second); err != nil && r.Error == "" {
					r.Error = err.Error()
				}
			}
		}
	}()
	name := func(side string, i int) string {
		if procs == 1 {
			return sys + " " + side
		}
		return fmt.Sprintf("%s %s %d/%d", sys, side, i+1, procs)
	}
	src := 0 // the first source address of the next client process
	for i := range procs {
		k := idleShare(n, procs, i)
		srvArgs := []string{"__server", "-system", sys, "-idle", "-interval", interval, "-nofile", strconv.Itoa(k + 1024)}
		if useTLS {
			srvArgs = append(srvArgs, "-tls")
		}
		srv, err := startChild(name("server", i), srvArgs...)
		if err != nil {
			r.Error = err.Error()
			return r
		}
		srvs = append(srvs, srv)
		var ready serverReady
		if err := srv.readJSON(&ready, 30*time.Second); err != nil || ready.Error != "" {
			r.Error = fmt.Sprintf("%s: %v %s", srv.name, err, ready.Error)
			return r
		}
		cliArgs := []string{"__idle", "-system", sys, "-interval", interval, "-src", strconv.Itoa(src), "-addr", ready.Addr, "-n", strconv.Itoa(k)}
		if useTLS {
			cliArgs = append(cliArgs, "-tls-cert", base64.StdEncoding.EncodeToString(ready.Cert))
		}
		cli, err := startChild(name("client", i), cliArgs...)
		src += idleSourceAddrs(k)
		if err != nil {
			r.Error = err.Error()
			return r
		}
		clis = append(clis, cli)
		var hello map[string]any
		if err := cli.readJSON(&hello, 30*time.Second); err != nil {
			r.Error = err.Error()
			return r
		}
	}
	// stats samples every process of both sides, at once, and adds up
	// each side's samples; each process's own sample goes to last.
	var last []childStats
	stats := func(cmd string, srvInto, cliInto *childStats) bool {
		all := append(append([]*childProc(nil), srvs...), clis...)
		got := make([]childStats, len(all))
		errs := make([]error, len(all))
		var wg sync.WaitGroup
		for i, c := range all {
			wg.Go(func() { errs[i] = c.request(cmd, &got[i], 60*time.Second) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				r.Error = err.Error()
				return false
			}
			if got[i].Error != "" && r.Error == "" {
				r.Error = all[i].name + ": reading /proc: " + got[i].Error
			}
		}
		*srvInto = sumStats(got[:len(srvs)])
		*cliInto = sumStats(got[len(srvs):])
		last = got
		return true
	}
	// op runs "dial" or "check" on every client at once.
	op := func(cmd string, into *idleOpResult) bool {
		got := make([]idleOpResult, len(clis))
		errs := make([]error, len(clis))
		var wg sync.WaitGroup
		for i, c := range clis {
			wg.Go(func() {
				errs[i] = c.request(cmd, &got[i], time.Duration(idleShare(n, procs, i))*10*time.Millisecond+120*time.Second)
			})
		}
		wg.Wait()
		for _, g := range got {
			into.OK += g.OK
			into.Errors += g.Errors
			into.Seconds = max(into.Seconds, g.Seconds)
			if into.FirstError == "" {
				into.FirstError = g.FirstError
			}
		}
		for _, err := range errs {
			if err != nil {
				r.Error = err.Error()
				return false
			}
		}
		return true
	}
	if !stats("stats gc", &r.ServerBase, &r.ClientBase) {
		return r
	}
	progress(fmt.Sprintf("dialing %d connections from %d client process(es) to %d server process(es)", n, procs, procs))
	if !op("dial", &r.Dial) {
		return r
	}
	progress(fmt.Sprintf("dialed %d ok, %d failed in %.1fs; settling %v, holding %v", r.Dial.OK, r.Dial.Errors, r.Dial.Seconds, settle, hold))
	time.Sleep(settle)
	r.SettleSec = settle.Seconds()
	if !stats("stats gc", &r.ServerSettled, &r.ClientSettled) {
		return r
	}
	profCmd := func(cmd string) {
		if prof == "" {
			return
		}
		for _, c := range []struct {
			p    *childProc
			side string
		}{{srvs[0], "server"}, {clis[0], "client"}} {
			var ans map[string]string
			full := strings.ReplaceAll(cmd, "SIDE", c.side)
			if err := c.p.request(full, &ans, 60*time.Second); err != nil || ans["error"] != "" {
				progress(fmt.Sprintf("%s: %s: %v %s", c.side, full, err, ans["error"]))
			}
		}
	}
	profCmd("heapprofile " + prof + "-SIDE-heap.pprof")
	profCmd("cpuprofile " + prof + "-SIDE-cpu.pprof")
	if !stats("stats", &r.ServerHold0, &r.ClientHold0) {
		return r
	}
	hold0 := last
	t0 := time.Now()
	time.Sleep(hold)
	if !stats("stats", &r.ServerHold1, &r.ClientHold1) {
		return r
	}
	hold1 := last
	profCmd("cpuprofile stop")
	held := time.Since(t0)
	r.HoldSec = held.Seconds()
	if !stats("stats gc", &r.ServerEnd, &r.ClientEnd) {
		return r
	}
	op("check", &r.Check)

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
	np := len(srvs)
	r.ServerCPUPercent, r.ServerSyscallsPerSec, _ = holdRates(hold0[:np], hold1[:np], held)
	r.ClientCPUPercent, r.ClientSyscallsPerSec, r.ClientHeartbeatRepliesPerSec = holdRates(hold0[np:], hold1[np:], held)
	return r
}

// holdRates adds up, over processes, the CPU (% of one core), system calls
// per second and heartbeat replies per second between samples a[i] and
// b[i] of each, each over the time between its own two samples (held when
// a sample lacks its time). An overloaded process may answer seconds after
// the others: over the driver's window instead, the CPU it used before the
// window opened would count, as once made four client processes appear to
// use 391 % of a 2-core machine.
func holdRates(a, b []childStats, held time.Duration) (cpuPercent, syscallsPerSec, repliesPerSec float64) {
	for i := range a {
		d := held
		if a[i].AtNs > 0 && b[i].AtNs > a[i].AtNs {
			d = time.Duration(b[i].AtNs - a[i].AtNs)
		}
		c, _ := cpuDelta(a[i].Proc, b[i].Proc)
		cpuPercent += float64(c) / float64(d) * 100
		syscallsPerSec += float64(syscallDelta(a[i].Proc, b[i].Proc)) / d.Seconds()
		repliesPerSec += float64(b[i].HeartbeatReplies-a[i].HeartbeatReplies) / d.Seconds()
	}
	return cpuPercent, syscallsPerSec, repliesPerSec
}

// idleShare is how many of n connections pair i of procs holds.
func idleShare(n, procs, i int) int {
	k := n / procs
	if i < n%procs {
		k++
	}
	return k
}

// sumStats adds up samples of several processes of one side: memory,
// goroutines, CPU and system calls. PID is the first one's; SchedNs is -1
// when any process lacks it (cpuDelta then uses the ticks).
func sumStats(all []childStats) childStats {
	var t childStats
	for i, s := range all {
		if i == 0 {
			t.PID = s.PID
		}
		t.Goroutines += s.Goroutines
		t.HeapInuse += s.HeapInuse
		t.StackInuse += s.StackInuse
		t.HeartbeatReplies += s.HeartbeatReplies
		if s.Proc.SchedNs < 0 || t.Proc.SchedNs < 0 {
			t.Proc.SchedNs = -1
		} else {
			t.Proc.SchedNs += s.Proc.SchedNs
		}
		t.Proc.TickNs += s.Proc.TickNs
		t.Proc.SysR += s.Proc.SysR
		t.Proc.SysW += s.Proc.SysW
		t.Proc.RSSKiB += s.Proc.RSSKiB
		if t.Error == "" {
			t.Error = s.Error
		}
	}
	return t
}
