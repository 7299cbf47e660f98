package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cellSpec is one throughput/latency cell: G goroutines spread over C
// connections, each calling Echo with Payload bytes in a loop, or in the
// struct cells with a struct of Kind (structs.go), over TLS if TLS is set.
type cellSpec struct {
	Name    string `json:"name"`
	Kind    string `json:"kind,omitempty"`
	Payload int    `json:"payload"`
	G       int    `json:"goroutines"`
	C       int    `json:"conns"`
	TLS     bool   `json:"tls,omitempty"`
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

func newCell(payload, g, c int) cellSpec {
	return cellSpec{Name: fmt.Sprintf("%s/%dx%d", sizeName(payload), g, c), Payload: payload, G: g, C: c}
}

// newStructCell is a struct cell of kind k ("struct/32x1").
func newStructCell(k string, g, c int) cellSpec {
	return cellSpec{Name: fmt.Sprintf("%s/%dx%d", k, g, c), Kind: k, G: g, C: c}
}

// tlsCell is c over TLS ("tls/64B/32x1").
func tlsCell(c cellSpec) cellSpec {
	c.Name, c.TLS = "tls/"+c.Name, true
	return c
}

// allCells are the cells of a full run, in order: bytes, then structs.
var allCells = func() []cellSpec {
	var cells []cellSpec
	for _, p := range []int{64, 4 << 10} {
		for _, gc := range [][2]int{{1, 1}, {32, 1}, {256, 1}, {256, 8}} {
			cells = append(cells, newCell(p, gc[0], gc[1]))
		}
	}
	cells = append(cells, newCell(1<<20, 1, 1))
	for _, k := range []string{kindSmall, kindBig} {
		for _, gc := range [][2]int{{1, 1}, {32, 1}, {256, 1}} {
			cells = append(cells, newStructCell(k, gc[0], gc[1]))
		}
	}
	return cells
}()

// tlsCells are the cells of -tls: the 64 B cells over TLS.
var tlsCells = func() []cellSpec {
	var cells []cellSpec
	for _, c := range allCells {
		if c.Kind == kindBytes && c.Payload == 64 {
			cells = append(cells, tlsCell(c))
		}
	}
	return cells
}()

// cellSystem reports whether sys runs in cell c: every system but the
// idle test's floor, and in the struct cells not raw TCP (no codec).
func cellSystem(c cellSpec, sys string) bool {
	if idleOnlySystems[sys] {
		return false
	}
	return c.Kind == kindBytes || structSystem(sys)
}

// tlsMode is -tls: whether the TLS cells and the idle test over TLS run
// besides the plaintext ones ("on"), instead of them ("only"), or not
// ("off"). A bare -tls means "on".
type tlsMode string

func (m *tlsMode) String() string   { return string(*m) }
func (m *tlsMode) IsBoolFlag() bool { return true }

func (m *tlsMode) Set(v string) error {
	switch v {
	case "on", "true", "1":
		*m = "on"
	case "off", "false", "0":
		*m = "off"
	case "only":
		*m = "only"
	default:
		return fmt.Errorf("want on, off or only")
	}
	return nil
}

// plain and tls report whether the plaintext and the TLS tests run.
func (m tlsMode) plain() bool { return m != "only" }
func (m tlsMode) tls() bool   { return m == "on" || m == "only" }

// candidateCells are the cells -cells chooses from under -tls m.
func candidateCells(m tlsMode) []cellSpec {
	var cells []cellSpec
	if m.plain() {
		cells = append(cells, allCells...)
	}
	if m.tls() {
		cells = append(cells, tlsCells...)
	}
	return cells
}

// cellMatches reports whether the -cells pattern p names the cell called
// name: whether p's /-separated parts are a run of whole parts of name.
// "64B", "32x1", "64B/32x1" and "tls" each name tls/64B/32x1; "4KiB" names
// 4KiB/1x1 but not struct4KiB/1x1.
func cellMatches(name, p string) bool {
	n, q := strings.Split(name, "/"), strings.Split(p, "/")
	for i := 0; i+len(q) <= len(n); i++ {
		if slices.Equal(n[i:i+len(q)], q) {
			return true
		}
	}
	return false
}

// filterCells keeps the cells that a comma-separated list of patterns
// names (cellMatches: "64B", "32x1", "4KiB/256x8", "struct", "tls"). "all"
// selects all, "none" none.
func filterCells(cells []cellSpec, filter string) ([]cellSpec, error) {
	filter = strings.TrimSpace(filter)
	if filter == "" || filter == "all" {
		return cells, nil
	}
	if filter == "none" {
		return nil, nil
	}
	var out []cellSpec
	matched := map[string]bool{}
	for _, c := range cells {
		for _, p := range strings.Split(filter, ",") {
			p = strings.TrimSpace(p)
			if p != "" && cellMatches(c.Name, p) {
				out = append(out, c)
				matched[p] = true
				break
			}
		}
	}
	for _, p := range strings.Split(filter, ",") {
		if p = strings.TrimSpace(p); p != "" && !matched[p] {
			names := make([]string, len(cells))
			for i, c := range cells {
				names[i] = c.Name
			}
			return nil, fmt.Errorf("-cells: %q matches no cell (cells: %s)", p, strings.Join(names, ", "))
		}
	}
	return out, nil
}

type runConfig struct {
	Quick         bool     `json:"quick"`
	Runs          int      `json:"runs"`
	WarmupSec     float64  `json:"warmup_s"`
	DurationSec   float64  `json:"duration_s"`
	MaxCalls      int64    `json:"max_calls"`
	Systems       []string `json:"systems"`
	CellFilter    string   `json:"cells"`
	IdleConns     int      `json:"idle_conns"`
	IdleHoldSec   float64  `json:"idle_hold_s"`
	IdleSettleSec float64  `json:"idle_settle_s"`
	// IdleProcs and IdleIntervalSec: 0 in results of before these
	// settings, which used 1 and 1 s.
	IdleProcs       int     `json:"idle_procs,omitempty"`
	IdleIntervalSec float64 `json:"idle_interval_s,omitempty"`
	Page            string  `json:"page,omitempty"`
	// TLS is -tls: "on" or "only" (empty: off, or results of before it).
	TLS string `json:"tls,omitempty"`
}

type systemRuns struct {
	System string       `json:"system"`
	Runs   []loadResult `json:"runs"`
}

type cellResult struct {
	cellSpec
	Systems []systemRuns `json:"systems"`
}

func (c *cellResult) runs(sys string) []loadResult {
	for _, s := range c.Systems {
		if s.System == sys {
			return s.Runs
		}
	}
	return nil
}

// results is everything a run produced: the JSON file, and the input of
// the report.
type results struct {
	Generated string      `json:"generated"`
	Command   string      `json:"command"`
	Config    runConfig   `json:"config"`
	Machine   machineInfo `json:"machine"`
	Versions  versionInfo `json:"versions"`
	Systems   []string    `json:"systems"`
	// Cells are the plaintext cells, bytes and structs; TLSCells the
	// cells over TLS (-tls), kept apart.
	Cells    []cellResult `json:"cells"`
	TLSCells []cellResult `json:"tls_cells,omitempty"`
	Idle     []idleResult `json:"idle"`
	// IdleTLS is the idle test over TLS (-tls): every system but the
	// epoll floor.
	IdleTLS  []idleResult `json:"idle_tls,omitempty"`
	WallSec  float64      `json:"wall_s"`
	Complete bool         `json:"complete"`
}

const usageText = `pulse-bench compares Pulse with net/rpc, grpc-go and a raw-TCP reference.

Run from the repository root:

	go -C bench run .            full run (~13 min on 2 cores; -tls adds ~5): writes docs/benchmarks.md,
	                             docs/benchmarks.svg and bench/results/latest.json
	go -C bench run . -quick     ~1 min smoke run; writes to a temporary directory
	go -C bench run . -report results/latest.json
	                             regenerate the page and chart from saved results

Every run starts a fresh server process and a fresh client process over
127.0.0.1; the driver only orchestrates and collects.

Flags:
`

func driverMain(args []string) int {
	fs := flag.NewFlagSet("pulse-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	quick := fs.Bool("quick", false, "smoke run: 1 run per cell, short windows, 1000 idle connections held 3 s; output to a temporary directory unless -out/-json")
	runs := fs.Int("runs", 5, "runs per system per cell (interleaved across systems)")
	duration := fs.Duration("duration", 2*time.Second, "measured window of each run")
	warmup := fs.Duration("warmup", 300*time.Millisecond, "warm-up before each window")
	maxCalls := fs.Int64("max-calls", 20_000_000, "cap on the calls of one run (the loop is bounded by time and count)")
	sysFlag := fs.String("systems", "pulse,netrpc,grpc,raw,epoll", "systems to run, comma-separated (epoll, the floor of heartbeats, runs in the idle test only)")
	cellsFlag := fs.String("cells", "all", "cells to run: comma-separated names or /-separated parts of names (64B, 32x1, 4KiB/256x8, 1MiB, struct, struct4KiB, tls), or none")
	tlsFlag := tlsMode("off")
	fs.Var(&tlsFlag, "tls", "also run the 64 B cells and the idle test over TLS 1.3 (on), or only those (-tls=only); bare -tls means on")
	idleConns := fs.Int("idle-conns", 10000, "connections in the idle test (0 skips it)")
	idleHold := fs.Duration("idle-hold", 20*time.Second, "how long the idle connections are held and measured")
	idleSettle := fs.Duration("idle-settle", 2*time.Second, "wait after dialing before the hold starts (RSS is sampled then too)")
	idleProcs := fs.Int("idle-procs", 1, "server processes, and as many client processes, that share the idle connections (for more connections than one process may open files)")
	idleInterval := fs.Duration("idle-interval", time.Second, "heartbeat interval in the idle test; the timeout is four of them")
	page := fs.String("page", "benchmarks", "name of the page and chart in -out: NAME.md, NAME.svg")
	out := fs.String("out", "", "directory for benchmarks.md and benchmarks.svg (default ../docs from bench/; a temporary directory with -quick)")
	jsonPath := fs.String("json", "", "results file (default results/latest.json in bench/; a temporary directory with -quick)")
	report := fs.String("report", "", "only regenerate the page and chart from this results file")
	profDir := fs.String("profile", "", "write CPU profiles of every process (load runs: whole run; idle: the hold) and heap profiles of the idle processes into this directory; profiling perturbs the numbers")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "pulse-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["runs"] {
			*runs = 1
		}
		if !set["duration"] {
			*duration = 400 * time.Millisecond
		}
		if !set["warmup"] {
			*warmup = 100 * time.Millisecond
		}
		if !set["idle-conns"] {
			*idleConns = 1000
		}
		if !set["idle-hold"] {
			*idleHold = 3 * time.Second
		}
		if !set["idle-settle"] {
			*idleSettle = time.Second
		}
	}
	if *runs < 1 || *duration <= 0 || *warmup < 0 || *maxCalls < 1 || *idleConns < 0 || *idleHold <= 0 || *idleProcs < 1 || *idleInterval <= 0 {
		fmt.Fprintln(os.Stderr, "pulse-bench: -runs, -duration, -max-calls, -idle-hold, -idle-procs and -idle-interval must be positive, -warmup and -idle-conns not negative")
		return 2
	}
	if *page == "" || strings.ContainsAny(*page, `/\`) {
		fmt.Fprintln(os.Stderr, "pulse-bench: -page must be a file name without extension")
		return 2
	}
	setIdleHeartbeat(*idleInterval)

	benchDir, repoRoot := findBenchDir()
	needDefaults := (*out == "" || *jsonPath == "") && !*quick
	if needDefaults && benchDir == "" {
		fmt.Fprintln(os.Stderr, "pulse-bench: run from the repository root as `go -C bench run .`, or give -out and -json")
		return 2
	}
	if *quick && (*out == "" || (*jsonPath == "" && *report == "")) {
		tmp, err := os.MkdirTemp("", "pulse-bench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "pulse-bench:", err)
			return 1
		}
		if *out == "" {
			*out = tmp
		}
		if *jsonPath == "" {
			*jsonPath = filepath.Join(tmp, "results.json")
		}
	}
	if *out == "" {
		*out = filepath.Join(repoRoot, "docs")
	}
	if *jsonPath == "" {
		*jsonPath = filepath.Join(benchDir, "results", "latest.json")
	}

	if *report != "" {
		b, err := os.ReadFile(*report)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pulse-bench:", err)
			return 1
		}
		var res results
		if err := json.Unmarshal(b, &res); err != nil {
			fmt.Fprintf(os.Stderr, "pulse-bench: %s: %v\n", *report, err)
			return 1
		}
		if set["page"] || res.Config.Page == "" {
			res.Config.Page = *page
		}
		written, err := writeReport(&res, *out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pulse-bench:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", strings.Join(written, " and "))
		return 0
	}

	sysList, err := parseSystems(*sysFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pulse-bench:", err)
		return 2
	}
	cellSys := cellSystems(sysList)
	cells, err := filterCells(candidateCells(tlsFlag), *cellsFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pulse-bench:", err)
		return 2
	}
	if len(cellSys) == 0 {
		cells = nil // only idle-test systems were selected
	}

	if *profDir != "" {
		abs, err := filepath.Abs(*profDir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "pulse-bench:", err)
			return 1
		}
		*profDir = abs
	}
	raiseNoFile(0)
	start := time.Now()
	res := &results{
		Generated: start.UTC().Format(time.RFC3339),
		Command:   commandLine(args),
		Config: runConfig{
			Quick: *quick, Runs: *runs, WarmupSec: warmup.Seconds(), DurationSec: duration.Seconds(), MaxCalls: *maxCalls,
			Systems: sysList, CellFilter: *cellsFlag, IdleConns: *idleConns, IdleHoldSec: idleHold.Seconds(), IdleSettleSec: idleSettle.Seconds(),
			IdleProcs: *idleProcs, IdleIntervalSec: idleInterval.Seconds(), Page: *page,
		},
		Machine:  readMachine(),
		Versions: readVersions(repoRoot),
		Systems:  cellSys,
	}
	save := func() {
		res.WallSec = time.Since(start).Seconds()
		if err := writeJSON(*jsonPath, res); err != nil {
			fmt.Fprintln(os.Stderr, "pulse-bench: saving results:", err)
		}
	}

	if tlsFlag.tls() {
		res.Config.TLS = string(tlsFlag)
	}
	// The idle tests: each system in plaintext, then over TLS.
	type idleTest struct {
		sys string
		tls bool
	}
	var idleTests []idleTest
	if tlsFlag.plain() {
		for _, s := range sysList {
			idleTests = append(idleTests, idleTest{s, false})
		}
	}
	if tlsFlag.tls() {
		for _, s := range sysList {
			if s != "epoll" { // the floor speaks no TLS
				idleTests = append(idleTests, idleTest{s, true})
			}
		}
	}
	runsTotal := 0
	for _, c := range cells {
		for _, s := range cellSys {
			if cellSystem(c, s) {
				runsTotal += *runs
			}
		}
	}
	est := time.Duration(runsTotal) * (*warmup + *duration + 250*time.Millisecond)
	if *idleConns > 0 {
		est += time.Duration(len(idleTests)) * (*idleHold + *idleSettle + time.Duration(*idleConns)*400*time.Microsecond + 2*time.Second)
	}
	if *idleConns == 0 {
		idleTests = nil
	}
	logf("pulse-bench: %d cells, %d runs over %d systems, idle %d conns x %d tests; estimated %v",
		len(cells), runsTotal, len(cellSys), *idleConns, len(idleTests), est.Round(time.Second))
	logf("pulse-bench: results to %s, page and chart to %s", *jsonPath, *out)

	for ci, cell := range cells {
		cr := cellResult{cellSpec: cell}
		for _, s := range cellSys {
			if cellSystem(cell, s) {
				cr.Systems = append(cr.Systems, systemRuns{System: s})
			}
		}
		for r := 0; r < *runs; r++ {
			for si := range cr.Systems {
				s := cr.Systems[si].System
				prof := ""
				if *profDir != "" {
					prof = filepath.Join(*profDir, fmt.Sprintf("%s-%s-run%d", strings.ReplaceAll(cell.Name, "/", "_"), s, r+1))
				}
				lr := runLoadOnce(s, cell, *warmup, *duration, *maxCalls, prof)
				cr.Systems[si].Runs = append(cr.Systems[si].Runs, lr)
				status := fmt.Sprintf("%10.0f calls/s  p50 %-8s p99 %-8s p99.9 %-8s allocs/call %5.2f  cpu µs/call srv %.1f cli %.1f",
					lr.CallsPerSec, fmtDur(lr.P50Ns), fmtDur(lr.P99Ns), fmtDur(lr.P999Ns), lr.AllocsPerCall, lr.ServerCPUPerCall, lr.ClientCPUPerCall)
				if lr.FirstError != "" {
					status += fmt.Sprintf("  ERRORS %d: %s", lr.Errors, lr.FirstError)
				}
				logf("[%d/%d %s] run %d/%d %-6s %s  (%v)", ci+1, len(cells), cell.Name, r+1, *runs, s, status, time.Since(start).Round(time.Second))
			}
		}
		if cell.TLS {
			res.TLSCells = append(res.TLSCells, cr)
		} else {
			res.Cells = append(res.Cells, cr)
		}
		save()
	}

	if *idleConns > 0 {
		// addIdle files ir under the plaintext or the TLS results.
		addIdle := func(tls bool, ir idleResult) {
			if tls {
				res.IdleTLS = append(res.IdleTLS, ir)
			} else {
				res.Idle = append(res.Idle, ir)
			}
		}
		// Each process holds a descriptor per connection; both raise their
		// limit to what they need if the hard limit allows.
		need := uint64(idleShare(*idleConns, max(1, min(*idleProcs, *idleConns)), 0)) + 1024
		if lim := raiseNoFile(need); lim < need {
			msg := fmt.Sprintf("RLIMIT_NOFILE allows %d open files, %d idle connections over %d pair(s) of processes need %d per process: raise the hard limit (`ulimit -Hn %d` as root, or the container's nofile limit), raise -idle-procs or lower -idle-conns", lim, *idleConns, *idleProcs, need, need)
			logf("[idle] skipped: %s", msg)
			for _, t := range idleTests {
				addIdle(t.tls, idleResult{System: t.sys, Conns: *idleConns, Heartbeats: idleHeartbeatDesc(t.sys), TLS: t.tls, Error: msg})
			}
			idleTests = nil
		}
		for _, t := range idleTests {
			s := t.sys
			label := s
			if t.tls {
				label = s + " tls"
			}
			logf("[idle %s] %d connections, hold %v", label, *idleConns, *idleHold)
			prof := ""
			if *profDir != "" {
				prof = filepath.Join(*profDir, "idle-"+strings.ReplaceAll(label, " ", "-"))
			}
			ir := runIdle(s, t.tls, *idleConns, *idleProcs, *idleSettle, *idleHold, prof, func(msg string) { logf("[idle %s] %s", label, msg) })
			addIdle(t.tls, ir)
			if ir.Error != "" {
				logf("[idle %s] ERROR: %s", label, ir.Error)
			}
			pongs := ""
			if ir.ClientHeartbeatRepliesPerSec > 0 {
				pongs = fmt.Sprintf(", %.0f heartbeat replies/s", ir.ClientHeartbeatRepliesPerSec)
			}
			logf("[idle %s] rss/conn srv %s cli %s, goroutines/conn srv %.2f cli %.2f, server cpu %.2f%% of a core, %.0f syscalls/s%s; alive after hold %d/%d  (%v)",
				label, fmtBytes(ir.ServerRSSPerConn), fmtBytes(ir.ClientRSSPerConn), ir.ServerGoroutinesPerConn, ir.ClientGoroutinesPerConn,
				ir.ServerCPUPercent, ir.ServerSyscallsPerSec, pongs, ir.Check.OK, ir.Conns, time.Since(start).Round(time.Second))
			save()
		}
	}
	res.Complete = true
	save()
	written, err := writeReport(res, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pulse-bench:", err)
		return 1
	}
	logf("pulse-bench: done in %v; wrote %s and %s", time.Since(start).Round(time.Second), *jsonPath, strings.Join(written, " and "))
	return 0
}

func commandLine(args []string) string {
	var b strings.Builder
	b.WriteString("go -C bench run .")
	for _, a := range args {
		b.WriteByte(' ')
		if strings.ContainsAny(a, " \t'\"") {
			a = strconv.Quote(a)
		}
		b.WriteString(a)
	}
	return b.String()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// findBenchDir returns the bench module's directory and the repository
// root when the working directory is one of them.
func findBenchDir() (benchDir, repoRoot string) {
	wd, err := os.Getwd()
	if err != nil {
		return "", ""
	}
	for _, d := range []string{wd, filepath.Join(wd, "bench")} {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/pulse-rpc/pulse/bench\n") {
			return d, filepath.Dir(d)
		}
	}
	return "", ""
}

// runLoadOnce runs one system in one cell: a fresh server process, a
// fresh client process, warm-up, window, both stopped. With prof set, the
// processes write CPU profiles to prof-server.pprof and prof-client.pprof,
// and the client every allocation to prof-client-allocs.pprof.
func runLoadOnce(sys string, cell cellSpec, warmup, duration time.Duration, maxCalls int64, prof string) (lr loadResult) {
	fail := func(err error) {
		if lr.FirstError == "" {
			lr.FirstError = err.Error()
		}
	}
	lr.System = sys
	srvArgs := []string{"__server", "-system", sys}
	if prof != "" {
		srvArgs = append(srvArgs, "-cpuprofile", prof+"-server.pprof")
	}
	if cell.TLS {
		srvArgs = append(srvArgs, "-tls")
	}
	srv, err := startChild(sys+" server", srvArgs...)
	if err != nil {
		fail(err)
		return lr
	}
	defer func() {
		if err := srv.stop(10 * time.Second); err != nil {
			fail(err)
		}
	}()
	var ready serverReady
	if err := srv.readJSON(&ready, 30*time.Second); err != nil {
		fail(err)
		return lr
	}
	if ready.Error != "" {
		fail(errors.New("server: " + ready.Error))
		return lr
	}
	cliArgs := []string{"__load",
		"-system", sys, "-addr", ready.Addr, "-server-pid", strconv.Itoa(ready.PID),
		"-payload", strconv.Itoa(cell.Payload), "-g", strconv.Itoa(cell.G), "-c", strconv.Itoa(cell.C),
		"-warmup", warmup.String(), "-duration", duration.String(), "-max-calls", strconv.FormatInt(maxCalls, 10)}
	if cell.Kind != kindBytes {
		cliArgs = append(cliArgs, "-kind", cell.Kind)
	}
	if cell.TLS {
		if ready.Cert == nil {
			fail(errors.New("the TLS server sent no certificate"))
			return lr
		}
		cliArgs = append(cliArgs, "-tls-cert", base64.StdEncoding.EncodeToString(ready.Cert))
	}
	if prof != "" {
		cliArgs = append(cliArgs, "-cpuprofile", prof+"-client.pprof", "-memprofile", prof+"-client-allocs.pprof")
	}
	cli, err := startChild(sys+" client", cliArgs...)
	if err != nil {
		fail(err)
		return lr
	}
	var got loadResult
	err = cli.readJSON(&got, warmup+duration+90*time.Second)
	if err == nil {
		lr = got
		lr.System = sys
	} else {
		fail(err)
	}
	if err := cli.stop(10 * time.Second); err != nil {
		fail(err)
	}
	return lr
}

// writeJSON writes v to path through a temporary file (*.tmp, ignored by
// git) renamed into place.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
