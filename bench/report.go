package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// summary is one system in one cell over its runs: medians, and the
// spread of calls/s.
type summary struct {
	Runs       int // runs with calls
	Failed     int // runs without calls
	Errors     uint64
	FirstError string
	Capped     bool

	CPS, CPSMin, CPSMax float64
	P50, P99, P999      float64 // ns
	Allocs              float64
	SrvCPU, CliCPU      float64 // µs per call
	SrvSys, CliSys      float64 // per call
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(runs []loadResult) summary {
	var s summary
	var cps, p50, p99, p999, allocs, srv, cli, srvSys, cliSys []float64
	for _, r := range runs {
		s.Errors += r.Errors
		if r.FirstError != "" && s.FirstError == "" {
			s.FirstError = r.FirstError
		}
		if r.Calls == 0 {
			s.Failed++
			continue
		}
		s.Capped = s.Capped || r.Capped
		s.Runs++
		cps = append(cps, r.CallsPerSec)
		p50 = append(p50, float64(r.P50Ns))
		p99 = append(p99, float64(r.P99Ns))
		p999 = append(p999, float64(r.P999Ns))
		allocs = append(allocs, r.AllocsPerCall)
		srv = append(srv, r.ServerCPUPerCall)
		cli = append(cli, r.ClientCPUPerCall)
		srvSys = append(srvSys, r.ServerSysPerCall)
		cliSys = append(cliSys, r.ClientSysPerCall)
	}
	s.CPS, s.P50, s.P99, s.P999 = median(cps), median(p50), median(p99), median(p999)
	s.Allocs, s.SrvCPU, s.CliCPU, s.SrvSys, s.CliSys = median(allocs), median(srv), median(cli), median(srvSys), median(cliSys)
	s.CPSMin, s.CPSMax = math.NaN(), math.NaN()
	if len(cps) > 0 {
		s.CPSMin, s.CPSMax = slices.Min(cps), slices.Max(cps)
	}
	return s
}

func (c *cellResult) summary(sys string) (summary, bool) {
	for _, s := range c.Systems {
		if s.System == sys {
			sm := summarize(s.Runs)
			return sm, sm.Runs > 0
		}
	}
	return summary{}, false
}

func (r *results) cell(name string) *cellResult {
	for i := range r.Cells {
		if r.Cells[i].Name == name {
			return &r.Cells[i]
		}
	}
	return nil
}

// idle returns the plaintext idle test of sys, or nil.
func (r *results) idle(sys string) *idleResult { return findIdle(r.Idle, sys) }

func findIdle(list []idleResult, sys string) *idleResult {
	for i := range list {
		if list[i].System == sys {
			return &list[i]
		}
	}
	return nil
}

// ---- formatting ----

func fmtDur(ns int64) string { return fmtDurF(float64(ns)) }

func fmtDurF(ns float64) string {
	switch {
	case math.IsNaN(ns):
		return "–"
	case ns < 1e3:
		return fmt.Sprintf("%.0fns", ns)
	case ns < 1e4:
		return fmt.Sprintf("%.2fµs", ns/1e3)
	case ns < 1e5:
		return fmt.Sprintf("%.1fµs", ns/1e3)
	case ns < 1e6:
		return fmt.Sprintf("%.0fµs", ns/1e3)
	case ns < 1e7:
		return fmt.Sprintf("%.2fms", ns/1e6)
	case ns < 1e8:
		return fmt.Sprintf("%.1fms", ns/1e6)
	case ns < 1e9:
		return fmt.Sprintf("%.0fms", ns/1e6)
	}
	return fmt.Sprintf("%.2fs", ns/1e9)
}

func fmtBytes(b float64) string {
	switch {
	case math.IsNaN(b):
		return "–"
	case math.Abs(b) < 1024:
		return fmt.Sprintf("%.0f B", b)
	case math.Abs(b) < 1<<20:
		return fmt.Sprintf("%.1f KiB", b/1024)
	case math.Abs(b) < 1<<30:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", b/(1<<30))
}

// fmtRate formats calls/s with thousands separators.
func fmtRate(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	if v >= 10 {
		return fmt.Sprintf("%.1f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

var displayName = map[string]string{"pulse": "Pulse", "netrpc": "net/rpc", "grpc": "grpc-go", "raw": "raw TCP", "epoll": "epoll floor"}

func sysLabel(s string) string {
	if n, ok := displayName[s]; ok {
		return n
	}
	return s
}

func cellTitle(c cellSpec) string {
	what := sizeName(c.Payload) + " payload"
	switch c.Kind {
	case kindSmall:
		what = "small struct"
	case kindBig:
		what = "4 KiB struct"
	}
	if c.TLS {
		what += " over TLS"
	}
	g := "goroutines"
	if c.G == 1 {
		g = "goroutine"
	}
	conn := "connections"
	if c.C == 1 {
		conn = "connection"
	}
	return fmt.Sprintf("%s, %d %s over %d %s", what, c.G, g, c.C, conn)
}

// ---- targets ----

type targetRow struct {
	Target   string
	Where    string
	Measured string
	Met      string // "met", "missed", or "not measured"
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

const notMeasured = "not measured"

func (r *results) targets() []targetRow {
	var rows []targetRow
	ratio := func(cellName, other string, need float64, label string) {
		row := targetRow{Target: label, Where: cellName, Met: notMeasured, Measured: "–"}
		if c := r.cell(cellName); c != nil {
			p, okP := c.summary("pulse")
			o, okO := c.summary(other)
			if okP && okO {
				v := p.CPS / o.CPS
				row.Measured = fmt.Sprintf("%s (%s vs %s calls/s)", fmtRatio(v), fmtRate(p.CPS), fmtRate(o.CPS))
				// What the raw TCP echo itself reaches against the same
				// peer: a target above it asks more of an RPC stack than
				// an echo that does nothing else gets from the machine.
				if raw, ok := c.summary("raw"); ok && other != "raw" {
					row.Measured += fmt.Sprintf("; raw TCP itself: %s", fmtRatio(raw.CPS/o.CPS))
				}
				row.Met = metStr(v >= need)
			}
		}
		rows = append(rows, row)
	}
	for _, cn := range []string{"64B/32x1", "64B/256x1"} {
		ratio(cn, "netrpc", 3, "calls/s: Pulse ≥ 3× net/rpc")
	}
	for _, cn := range []string{"64B/32x1", "64B/256x1"} {
		ratio(cn, "grpc", 8, "calls/s: Pulse ≥ 8× grpc-go")
	}
	ratio("64B/1x1", "netrpc", 1.5, "calls/s: Pulse ≥ 1.5× net/rpc")
	// Against the raw TCP echo, the strong reference: in every 64 B and
	// 4 KiB cell, Pulse with its defaults within 10 % of its calls/s and
	// 20 % of its p99.
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Payload != 64 && c.Payload != 4<<10 {
			continue
		}
		ratio(c.Name, "raw", 0.9, "calls/s: Pulse ≥ 0.9× raw TCP")
	}
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Payload != 64 && c.Payload != 4<<10 {
			continue
		}
		row := targetRow{Target: "p99: Pulse ≤ 1.2× raw TCP", Where: c.Name, Met: notMeasured, Measured: "–"}
		p, okP := c.summary("pulse")
		w, okW := c.summary("raw")
		if okP && okW && w.P99 > 0 {
			v := p.P99 / w.P99
			row.Measured = fmt.Sprintf("%s (%s vs %s)", fmtRatio(v), fmtDurF(p.P99), fmtDurF(w.P99))
			row.Met = metStr(v <= 1.2)
		}
		rows = append(rows, row)
	}

	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Kind != kindBytes {
			continue // the targets are set for the byte cells
		}
		row := targetRow{Target: "p99: Pulse below net/rpc and grpc-go", Where: c.Name, Met: notMeasured, Measured: "–"}
		p, okP := c.summary("pulse")
		n, okN := c.summary("netrpc")
		g, okG := c.summary("grpc")
		if okP && okN && okG {
			row.Measured = fmt.Sprintf("%s vs %s, %s", fmtDurF(p.P99), fmtDurF(n.P99), fmtDurF(g.P99))
			row.Met = metStr(p.P99 < n.P99 && p.P99 < g.P99)
		}
		rows = append(rows, row)
	}

	{
		row := targetRow{Target: "client allocations per 64 B call ≤ 2", Where: "64B cells", Met: notMeasured, Measured: "–"}
		worst, where := math.NaN(), ""
		for i := range r.Cells {
			c := &r.Cells[i]
			if c.Payload != 64 {
				continue
			}
			if p, ok := c.summary("pulse"); ok && (math.IsNaN(worst) || p.Allocs > worst) {
				worst, where = p.Allocs, c.Name
			}
		}
		if !math.IsNaN(worst) {
			row.Measured = fmt.Sprintf("%.2f at most (%s)", worst, where)
			row.Met = metStr(worst <= 2)
		}
		rows = append(rows, row)
	}

	ir := r.idle("pulse")
	okIdle := ir != nil && ir.Error == "" && ir.Dial.OK > 0
	where := "idle"
	if ir != nil {
		where = fmt.Sprintf("idle, %d conns", ir.Conns)
	}
	for _, side := range []string{"server", "client"} {
		row := targetRow{Target: fmt.Sprintf("%s RSS per idle connection ≤ 8 KiB (heartbeats on)", side), Where: where, Met: notMeasured, Measured: "–"}
		if okIdle {
			v := ir.ServerRSSPerConn
			if side == "client" {
				v = ir.ClientRSSPerConn
			}
			row.Measured = fmtBytes(v)
			row.Met = metStr(v <= 8*1024)
		}
		rows = append(rows, row)
	}
	{
		row := targetRow{Target: "server heartbeat CPU ≤ 10 % of a core for 10,000 conns at 1 s", Where: where, Met: notMeasured, Measured: "–"}
		if okIdle {
			v := r.serverCPUAt10k(ir)
			if interval := r.idleInterval(); ir.Dial.OK != 10000 || interval != 1 {
				row.Measured = fmt.Sprintf("%.2f %% at %d conns and %s, %.2f %% scaled linearly to 10,000 at 1s", ir.ServerCPUPercent, ir.Dial.OK, secs(interval), v)
			} else {
				row.Measured = fmt.Sprintf("%.2f %%", v)
			}
			if f := r.idle("epoll"); idleUsable(f) {
				fv := r.serverCPUAt10k(f)
				row.Measured += fmt.Sprintf("; the epoll floor: %.2f %%", fv)
				if fv > 10 {
					row.Measured += ", over the target itself"
				}
			}
			row.Met = metStr(v <= 10)
		}
		rows = append(rows, row)
	}
	return rows
}

// ---- the page ----

const (
	notesBegin = "<!-- notes -->"
	notesEnd   = "<!-- /notes -->"
)

const defaultNotes = `
_Hand-written notes go here: explanations of missed targets, with profiles.
The generator keeps everything between the two markers when it rewrites this
page._
`

// existingNotes returns the hand-written section of a page, or "".
func existingNotes(page string) string {
	i := strings.Index(page, notesBegin)
	j := strings.Index(page, notesEnd)
	if i < 0 || j < i {
		return ""
	}
	return page[i+len(notesBegin) : j]
}

// serverCPUAt10k is ir's server CPU in % of a core, scaled linearly to
// 10,000 connections at a 1 s interval: heartbeats cost in proportion to
// connections ÷ interval.
func (r *results) serverCPUAt10k(ir *idleResult) float64 {
	return ir.ServerCPUPercent * 10000 / float64(ir.Dial.OK) * r.idleInterval()
}

// hasCells reports whether r holds cells, plaintext or TLS.
func (r *results) hasCells() bool { return len(r.Cells) > 0 || len(r.TLSCells) > 0 }

// chartCells are the cells of the chart: all of them.
func (r *results) chartCells() []cellResult {
	return append(slices.Clip(r.Cells), r.TLSCells...)
}

// idleInterval is the heartbeat interval of the idle test in seconds.
func (r *results) idleInterval() float64 {
	if r.Config.IdleIntervalSec > 0 {
		return r.Config.IdleIntervalSec
	}
	return 1
}

// idleProcs is how many pairs of processes the idle test used.
func (r *results) idleProcs() int { return max(1, r.Config.IdleProcs) }

// pageName is the name of the page and chart (-page).
func (r *results) pageName() string {
	if r.Config.Page != "" {
		return r.Config.Page
	}
	return "benchmarks"
}

// writeReport writes the page (NAME.md) and, when cells were run, the
// chart (NAME.svg) into dir, keeping the notes section of an existing
// page, and returns the paths written.
func writeReport(r *results, dir string) ([]string, error) {
	mdPath := filepath.Join(dir, r.pageName()+".md")
	notes := ""
	if b, err := os.ReadFile(mdPath); err == nil {
		notes = existingNotes(string(b))
	}
	md := renderMarkdown(r, notes)
	if err := writeFileAtomic(mdPath, []byte(md)); err != nil {
		return nil, err
	}
	if !r.hasCells() {
		return []string{mdPath}, nil
	}
	svgPath := filepath.Join(dir, r.pageName()+".svg")
	return []string{mdPath, svgPath}, writeFileAtomic(svgPath, renderSVG(r))
}

func renderMarkdown(r *results, notes string) string {
	if strings.TrimSpace(notes) == "" {
		notes = defaultNotes
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	if !r.hasCells() && (len(r.Idle) > 0 || len(r.IdleTLS) > 0) {
		return renderIdlePage(r, notes)
	}
	w("# Benchmarks: Pulse, net/rpc, grpc-go and raw TCP\n\n")
	w("%s\n\n", generatedComment)
	if r.Config.Quick {
		w("> **Quick run** (`-quick`): %d run(s) of %s per system and cell, idle test with %d connections held %s. Numbers from such a run are noisy, all the more on a shared machine; they show that every system and measurement works. Run the full benchmark for numbers to quote.\n\n",
			r.Config.Runs, secs(r.Config.DurationSec), r.Config.IdleConns, secs(r.Config.IdleHoldSec))
	}
	if !r.Complete {
		w("> **Incomplete run**: the run stopped before the end; only the cells below were measured.\n\n")
	}
	w("Generated %s.\n\n", r.generatedBy())

	w("## Regenerating\n\n")
	w("From the repository root:\n\n")
	w("```sh\n")
	w("go -C bench run .                # full run (~13 min on 2 cores): this page, benchmarks.svg, bench/results/latest.json\n")
	w("go -C bench run . -tls           # the same with the TLS cells and the idle test over TLS (~18 min)\n")
	w("go -C bench run . -quick         # ~1 min smoke run, written to a temporary directory\n")
	w("go -C bench run . -report results/latest.json   # redraw this page and the chart from saved results\n")
	w("go -C bench test ./...           # the harness's own tests\n")
	w("```\n\n")
	w("`-tls` adds the TLS cells and the idle test over TLS. `-runs`, `-duration`, `-warmup`, `-systems`, `-cells`, `-idle-conns`, `-idle-hold`, `-idle-procs`, `-idle-interval`, `-out`, `-page` and `-json` change what is run and where it goes (`go -C bench run . -h`). See [bench/README.md](../bench/README.md) for a 100,000-connection idle run.\n\n")

	writeMachine(w, r)

	w("## What is measured\n\n")
	w("- **Systems.** In the byte cells: Pulse with the `raw` codec (`[]byte` in, `*[]byte` out, reply buffer reused) and default heartbeats; net/rpc with gob; grpc-go unary calls with a raw-bytes `encoding.CodecV2` and a hand-written `ServiceDesc`, keepalive on; **raw TCP**, a minimal framed echo (length, id, payload) whose client multiplexes callers on one connection and coalesces writes (the caller that becomes the writer yields once so that runnable callers join its write), and whose server answers inline through 32 KiB buffers and flushes replies only when no further complete request is buffered. It is the strong reference for what the machine allows one RPC connection: the obvious design with no spinning, no parking and no heartbeats. The struct cells and the TLS cells say how they differ in their own sections.\n")
	w("- **Processes.** Every run starts a fresh server process and a fresh client process (the benchmark binary re-executed), talking over 127.0.0.1. Within a cell the systems take turns (Pulse, net/rpc, grpc-go, raw, Pulse, ...). Each run warms up, then measures a window; G goroutines spread over C connections call Echo synchronously in a loop bounded by time and by a call count.\n")
	w("- **Columns.** calls/s: median over runs [min–max]. Latency: p50/p99/p99.9 of calls started and finished inside the window, from per-goroutine log-linear histograms (≤ 3.1 %% bucket width), medians over runs. Allocations: the client's `runtime.MemStats.Mallocs` over the window ÷ calls (the harness allocates nothing inside it). CPU: on-CPU time of all threads of each process over the window from `/proc/PID/task/*/schedstat` (nanoseconds; `/proc/PID/stat` ticks as a fallback) ÷ calls, server + client. System calls: `syscr + syscw` from `/proc/PID/io` ÷ calls, server + client: read-like and write-like calls (read, readv, write, writev, ... including those that return EAGAIN), not epoll_wait, futex or nanosleep.\n")
	w("- **Ratios.** Pulse's median divided by the other system's median from the same invocation: above 1 is better for calls/s, below 1 is better for p99.\n")
	w("- **Idle.** %s\n\n", idleMethod(r))

	w("## Targets\n\n")
	w("| target | where | measured | |\n|---|---|---|---|\n")
	for _, t := range r.targets() {
		w("| %s | %s | %s | %s |\n", t.Target, t.Where, t.Measured, t.Met)
	}
	w("\n")

	w("## Throughput and latency\n\n")
	if r.hasCells() {
		w("![calls/s and p99 latency per cell](%s.svg)\n\n", r.pageName())
	} else {
		w("No cells were run.\n\n")
	}
	for i := range r.Cells {
		if r.Cells[i].Kind == kindBytes {
			writeCell(w, r, &r.Cells[i])
		}
	}
	if r.hasStructCells() {
		w("## Structs\n\n")
		w("%s\n\n", structMethod)
		for i := range r.Cells {
			if r.Cells[i].Kind != kindBytes {
				writeCell(w, r, &r.Cells[i])
			}
		}
	}
	if len(r.TLSCells) > 0 {
		w("## TLS\n\n")
		w("%s\n\n", tlsMethod)
		for i := range r.TLSCells {
			writeCell(w, r, &r.TLSCells[i])
		}
	}

	writeIdleSection(w, r, r.Idle, false)
	writeIdleSection(w, r, r.IdleTLS, true)

	w("## Notes\n\n")
	w("%s%s%s\n", notesBegin, notes, notesEnd)
	return b.String()
}

// cellSystems returns the systems of r that ran in c, in r's order.
func (r *results) cellSystems(c *cellResult) []string {
	var out []string
	for _, s := range r.Systems {
		for _, cs := range c.Systems {
			if cs.System == s {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// hasStructCells reports whether r has struct cells.
func (r *results) hasStructCells() bool {
	for i := range r.Cells {
		if r.Cells[i].Kind != kindBytes {
			return true
		}
	}
	return false
}

// structMethod introduces the struct cells on the page.
const structMethod = "What users send: a struct through each system's default codec, the request built once per goroutine and passed by pointer with its `Seq` field set for each call, the reply a fresh value per call. " +
	"**Small struct**: `ID int64`, `Seq int32`, `Name string` (16 characters), `Tags []string` (3 short strings), `Score float64`. " +
	"**4 KiB struct**: the same fields and `Items []Item` of 100 items (`ID int64`, `Name string` of 21 characters, `Qty int32`, `Price float64`). " +
	"Pulse: `var out Small; client.Call(ctx, \"Echo.Small\", &in, &out)` with its default codec, CBOR (no `WithCodec`), which keys fields by name; net/rpc: the same call, gob; grpc-go: the generated client of `bench.proto` (protoc-gen-go, protoc-gen-go-grpc), `client.EchoSmall(ctx, in)`, protobuf. " +
	"Each handler returns the struct it got. Raw TCP has no codec and does not take part. Under each table: the request's encoded size in each system's codec."

// tlsMethod introduces the TLS cells on the page.
const tlsMethod = "The 64 B cells with TLS 1.3 on every connection (`-tls`): a self-signed ECDSA P-256 certificate made in memory by the server process, which each client trusts alone and verifies. " +
	"Pulse with `WithTLS` on both ends; net/rpc and raw TCP over crypto/tls's `tls.Conn`; grpc-go with `credentials.NewTLS`. Everything else as in the plaintext cells."

// writeCell writes the table of one cell and what goes with it.
func writeCell(w func(string, ...any), r *results, c *cellResult) {
	w("### %s: %s\n\n", c.Name, cellTitle(c.cellSpec))
	w("| system | calls/s median [min–max] | p50 | p99 | p99.9 | allocs/call (client) | CPU µs/call server + client | syscalls/call server + client | runs |\n")
	w("|---|---|---|---|---|---|---|---|---|\n")
	var problems []string
	for _, s := range r.cellSystems(c) {
		sm, ok := c.summary(s)
		name := sysLabel(s)
		if s == "pulse" {
			name = "**" + name + "**"
		}
		if !ok {
			w("| %s | no result | | | | | | | %d failed |\n", name, sm.Failed)
		} else {
			runs := fmt.Sprintf("%d", sm.Runs)
			if sm.Failed > 0 {
				runs += fmt.Sprintf(" (+%d failed)", sm.Failed)
			}
			w("| %s | %s [%s–%s] | %s | %s | %s | %s | %s + %s | %s + %s | %s |\n", name,
				fmtRate(sm.CPS), fmtRate(sm.CPSMin), fmtRate(sm.CPSMax),
				fmtDurF(sm.P50), fmtDurF(sm.P99), fmtDurF(sm.P999), fmtNum(sm.Allocs, 2),
				fmtNum(sm.SrvCPU, 1), fmtNum(sm.CliCPU, 1), fmtNum(sm.SrvSys, 2), fmtNum(sm.CliSys, 2), runs)
		}
		if sm.Errors > 0 || sm.FirstError != "" {
			problems = append(problems, fmt.Sprintf("%s: %d error(s), first: `%s`", sysLabel(s), sm.Errors, oneLine(sm.FirstError)))
		}
		if sm.Capped {
			problems = append(problems, fmt.Sprintf("%s: a run reached the call cap before its window ended", sysLabel(s)))
		}
	}
	w("\n")
	if p, ok := c.summary("pulse"); ok {
		var parts []string
		for _, s := range r.cellSystems(c) {
			if s == "pulse" {
				continue
			}
			if o, ok := c.summary(s); ok {
				parts = append(parts, fmt.Sprintf("Pulse ÷ %s: calls/s %s, p99 %s", sysLabel(s), fmtRatio(p.CPS/o.CPS), fmtRatio(p.P99/o.P99)))
			}
		}
		if len(parts) > 0 {
			w("%s.\n\n", strings.Join(parts, "; "))
		}
	}
	for _, p := range problems {
		w("- %s\n", p)
	}
	if len(problems) > 0 {
		w("\n")
	}
	var sizes []string
	for _, s := range r.cellSystems(c) {
		for _, lr := range c.runs(s) {
			if lr.RequestBytes > 0 {
				sizes = append(sizes, fmt.Sprintf("%s (%s) %d B", sysLabel(s), codecLabel[s], lr.RequestBytes))
				break
			}
		}
	}
	if len(sizes) > 0 {
		w("Request encoded: %s.\n\n", strings.Join(sizes, ", "))
	}
}

// codecLabel names each system's codec in the struct cells.
var codecLabel = map[string]string{"pulse": "CBOR", "netrpc": "gob", "grpc": "protobuf"}

// idleFloorLine compares Pulse's CPU and system calls during the hold with
// raw TCP's from the same run, raw being the floor of one PING and one
// PONG per connection per interval. Per connection, in case the two dialed
// different numbers. "" unless both have results.
func idleFloorLine(r *results, list []idleResult) string {
	p, raw := findIdle(list, "pulse"), findIdle(list, "raw")
	if !idleUsable(p) || !idleUsable(raw) {
		return ""
	}
	ratio, conns := perConn(p, raw)
	pongs := ""
	if raw.ClientHeartbeatRepliesPerSec > 0 {
		pongs = fmt.Sprintf(", %s PONGs/s read by its client", fmtRate(raw.ClientHeartbeatRepliesPerSec))
	}
	return fmt.Sprintf("**Heartbeats against the raw TCP floor** (same run, %s; raw: one PING and one PONG per connection every %s%s): "+
		"Pulse's server uses **%s** the CPU of raw's (%.2f %% vs %.2f %% of a core) and %s its system calls (%s vs %s /s); "+
		"Pulse's client %s the CPU (%.2f %% vs %.2f %%) and %s the system calls (%s vs %s /s).",
		conns, secs(r.idleInterval()), pongs,
		ratio(p.ServerCPUPercent, raw.ServerCPUPercent), p.ServerCPUPercent, raw.ServerCPUPercent,
		ratio(p.ServerSyscallsPerSec, raw.ServerSyscallsPerSec), fmtRate(p.ServerSyscallsPerSec), fmtRate(raw.ServerSyscallsPerSec),
		ratio(p.ClientCPUPercent, raw.ClientCPUPercent), p.ClientCPUPercent, raw.ClientCPUPercent,
		ratio(p.ClientSyscallsPerSec, raw.ClientSyscallsPerSec), fmtRate(p.ClientSyscallsPerSec), fmtRate(raw.ClientSyscallsPerSec))
}

// idleEpollLine compares Pulse's CPU and system calls during the hold
// with the epoll floor's from the same run: the least that one PING and
// one PONG per connection per interval costs this machine. Per
// connection, in case the two dialed different numbers. "" unless both
// have results.
func idleEpollLine(r *results, list []idleResult) string {
	p, f := findIdle(list, "pulse"), findIdle(list, "epoll")
	if !idleUsable(p) || !idleUsable(f) {
		return ""
	}
	ratio, conns := perConn(p, f)
	return fmt.Sprintf("**Heartbeats against the epoll floor** (same run, %s; raw TCP's client against a server that is one epoll loop making one read and one write per PING, directly, and nothing else: "+
		"what the same heartbeats cost this machine at the least): Pulse's server uses **%s** the CPU of the floor's (%.2f %% vs %.2f %% of a core) and %s its system calls (%s vs %s /s).",
		conns, ratio(p.ServerCPUPercent, f.ServerCPUPercent), p.ServerCPUPercent, f.ServerCPUPercent,
		ratio(p.ServerSyscallsPerSec, f.ServerSyscallsPerSec), fmtRate(p.ServerSyscallsPerSec), fmtRate(f.ServerSyscallsPerSec))
}

// perConn returns how to compare a figure of Pulse's idle test p with
// the same figure of another system's o, per connection in case the two
// dialed different numbers, and the phrase that says which was done.
func perConn(p, o *idleResult) (ratio func(pv, ov float64) string, conns string) {
	pn, on := float64(p.Dial.OK), float64(o.Dial.OK)
	ratio = func(pv, ov float64) string { return fmtRatio((pv / pn) / (ov / on)) }
	conns = fmt.Sprintf("%s connections each", fmtRate(pn))
	if p.Dial.OK != o.Dial.OK {
		conns = fmt.Sprintf("%s and %s connections, compared per connection", fmtRate(pn), fmtRate(on))
	}
	return ratio, conns
}

// idleUsable reports whether ir holds the figures of a hold.
func idleUsable(ir *idleResult) bool {
	return ir != nil && ir.Error == "" && ir.Dial.OK > 0 && ir.HoldSec > 0
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).String()
}

// oneLine makes an error message safe inside a table cell or code span.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "`", "'")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// writeMachine writes the machine, versions and settings table.
func writeMachine(w func(string, ...any), r *results) {
	w("## Machine and versions\n\n")
	w("| | |\n|---|---|\n")
	w("| CPU | %s, %d cores |\n", orDash(r.Machine.CPU), r.Machine.Cores)
	w("| memory | %s |\n", fmtBytes(float64(r.Machine.MemTotalKiB)*1024))
	w("| kernel | Linux %s (%s/%s) |\n", orDash(r.Machine.Kernel), r.Machine.GOOS, r.Machine.GOARCH)
	w("| Go | %s |\n", orDash(r.Versions.Go))
	w("| grpc-go | %s |\n", orDash(r.Versions.GRPC))
	pulseV := "this repository"
	if r.Versions.PulseCommit != "" {
		pulseV = "the working tree at commit `" + r.Versions.PulseCommit + "` (uncommitted changes, if any, included)"
	}
	w("| Pulse | %s |\n", pulseV)
	idle := fmt.Sprintf("idle: %d connections held %s, heartbeat interval %s", r.Config.IdleConns, secs(r.Config.IdleHoldSec), secs(r.idleInterval()))
	if n := r.idleProcs(); n > 1 {
		idle += fmt.Sprintf(", over %d server and %d client processes", n, n)
	}
	if r.Config.TLS != "" {
		idle += "; `-tls=" + r.Config.TLS + "`"
	}
	if !r.hasCells() {
		w("| settings | %s |\n\n", idle)
	} else {
		w("| settings | %d run(s) per system per cell, interleaved; warm-up %s; window %s; %s |\n\n",
			r.Config.Runs, secs(r.Config.WarmupSec), secs(r.Config.DurationSec), idle)
	}
}

// idleMethod describes how the idle test measures.
func idleMethod(r *results) string {
	iv := secs(r.idleInterval())
	procs := "One client process dials N connections to one server process"
	if n := r.idleProcs(); n > 1 {
		procs = fmt.Sprintf("%d client processes dial N connections, N/%d each, to %d server processes, one each (a pair of processes per share, since one process may hold only so many open files); the figures below are those of the %d servers and of the %d clients added up. Each client dials", n, n, n, n, n)
		procs += " its share"
	}
	return procs + " from several loopback source addresses, makes one call on each, and holds them idle. " +
		"During the hold: CPU of each process as % of one core and `syscr + syscw` per second. " +
		"After it: RSS per connection, `VmRSS` minus `VmRSS` before dialing, ÷ N, each process having run `runtime.GC()` at both points (nothing is handed back to the kernel forcibly); the Go runtime's own view, `HeapInuse + StackInuse`, the same way; goroutines per connection from `runtime.NumGoroutine`. " +
		"Then every connection makes one more call (\"alive after hold\"). " +
		"Raw TCP is the floor for heartbeats in the plain design, a goroutine per connection blocked in a read: each of its client connections sends a 12-byte PING frame every " + iv + " (the first at a random point of the first interval) on a timer of its own, and the server answers each at once with a PONG frame from its reading goroutine, with no timer and no dead-peer detection on the server; the client fails a connection that has read nothing for " + secs(4*r.idleInterval()) + ". " +
		"Pulse exchanges the same frames (its dialer pings after " + iv + " without writing; its server's PONG counts as its write). " +
		"The epoll floor is the least those frames can cost: raw TCP's client against a server that is a single epoll loop over every socket, level-triggered, making one `read(2)` per readable socket and one `write(2)` of the frames read, directly (`syscall.RawSyscall`), with no goroutine, buffer or timer per connection and no dead-peer detection. " +
		"On loopback a `write(2)` also runs the receiving socket's TCP processing and the wake-up of its reader, inside the writer's system call, so each server's CPU includes its client's share of every PONG."
}

// writeIdleSection writes the table of the idle test, plaintext (list is
// r.Idle) or over TLS (r.IdleTLS), and what goes with it. The section over
// TLS is left out when that test was not run.
func writeIdleSection(w func(string, ...any), r *results, list []idleResult, overTLS bool) {
	if overTLS {
		if len(list) == 0 {
			return
		}
		w("## Idle connections over TLS\n\n")
		w("%s\n\n", idleTLSMethod)
	} else {
		w("## Idle connections\n\n")
	}
	if len(list) == 0 && len(r.IdleTLS) > 0 {
		w("Not run in plaintext (`-tls=only`); over TLS below.\n\n")
	} else if len(list) == 0 {
		w("The idle test was not run.\n\n")
	} else {
		w("| system | keepalive | conns dialed | alive after hold | RSS/conn server | RSS/conn client | Go heap+stacks/conn server | Go heap+stacks/conn client | goroutines/conn server | goroutines/conn client | CPU server, %% of a core | syscalls/s server | CPU client, %% of a core | syscalls/s client |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		var problems []string
		for _, ir := range list {
			name := sysLabel(ir.System)
			if ir.System == "pulse" {
				name = "**" + name + "**"
			}
			w("| %s | %s | %d/%d | %d | %s | %s | %s | %s | %.2f | %.2f | %.2f | %s | %.2f | %s |\n", name, ir.Heartbeats,
				ir.Dial.OK, ir.Conns, ir.Check.OK, fmtBytes(ir.ServerRSSPerConn), fmtBytes(ir.ClientRSSPerConn),
				fmtBytes(ir.ServerGoMemPerConn), fmtBytes(ir.ClientGoMemPerConn),
				ir.ServerGoroutinesPerConn, ir.ClientGoroutinesPerConn, ir.ServerCPUPercent, fmtRate(ir.ServerSyscallsPerSec),
				ir.ClientCPUPercent, fmtRate(ir.ClientSyscallsPerSec))
			if ir.Error != "" {
				problems = append(problems, fmt.Sprintf("%s: `%s`", sysLabel(ir.System), oneLine(ir.Error)))
			}
			if ir.Dial.FirstError != "" {
				problems = append(problems, fmt.Sprintf("%s: %d dial(s) failed, first: `%s`", sysLabel(ir.System), ir.Dial.Errors, oneLine(ir.Dial.FirstError)))
			}
			if ir.Check.FirstError != "" {
				problems = append(problems, fmt.Sprintf("%s: %d call(s) failed after the hold, first: `%s`", sysLabel(ir.System), ir.Check.Errors, oneLine(ir.Check.FirstError)))
			}
		}
		w("\n")
		if line := idleFloorLine(r, list); line != "" {
			w("%s\n\n", line)
		}
		if line := idleEpollLine(r, list); line != "" {
			w("%s\n\n", line)
		}
		w("Memory is measured after the hold, after a `runtime.GC()`. RSS includes memory the Go runtime freed but has not yet handed back to the kernel (it does so gradually); Go heap+stacks is what the runtime has in use, and can exceed RSS when in-use spans include pages never touched. Right after dialing and a %s settle period, RSS per connection (server / client) was: ", secs(r.Config.IdleSettleSec))
		var settled []string
		for _, ir := range list {
			settled = append(settled, fmt.Sprintf("%s %s / %s", sysLabel(ir.System), fmtBytes(ir.ServerRSSPerConnSettled), fmtBytes(ir.ClientRSSPerConnSettled)))
		}
		w("%s. Dialing took ", strings.Join(settled, "; "))
		var dials []string
		for _, ir := range list {
			dials = append(dials, fmt.Sprintf("%s %.1f s", sysLabel(ir.System), ir.Dial.Seconds))
		}
		w("%s (64 dials in parallel per client process, one call each).\n\n", strings.Join(dials, ", "))
		for _, p := range problems {
			w("- %s\n", p)
		}
		if len(problems) > 0 {
			w("\n")
		}
	}
}

// idleTLSMethod introduces the idle test over TLS on the page.
const idleTLSMethod = "The same test with every connection a TLS 1.3 connection (`-tls`; certificate as in the TLS cells), made and measured the same way, for every system but the epoll floor: what TLS adds to an idle connection, on each side, as RSS and as the CPU of its heartbeats (each encrypted)."

// generatedComment heads every page.
const generatedComment = "<!-- Generated by pulse-bench (bench/report.go) from a real run. Everything outside the notes markers is rewritten on each run; edit only between them. -->"

// generatedBy says when, by which command and in how long the results
// were made.
func (r *results) generatedBy() string {
	gen := r.Generated
	if t, err := time.Parse(time.RFC3339, r.Generated); err == nil {
		gen = t.UTC().Format("2006-01-02 15:04 UTC")
	}
	return fmt.Sprintf("%s by `%s`, in %s", gen, r.Command, (time.Duration(r.WallSec) * time.Second).String())
}

// renderIdlePage is the page of a run of the idle test alone (-cells
// none), such as one with more connections than the full run's.
func renderIdlePage(r *results, notes string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Idle connections: %s over %s, heartbeats every %s\n\n", fmtRate(float64(r.Config.IdleConns)), plural(r.idleProcs(), "pair of processes", "pairs of processes"), secs(r.idleInterval()))
	w("%s\n\n", generatedComment)
	if !r.Complete {
		w("> **Incomplete run**: the run stopped before the end.\n\n")
	}
	w("Generated %s; the command, run again from the repository root, regenerates this page. The full comparison, with the 10,000-connection idle test at 1 s, is in [benchmarks.md](benchmarks.md).\n\n", r.generatedBy())
	writeMachine(w, r)
	w("## What is measured\n\n")
	w("%s\n\n", idleMethod(r))
	writeIdleSection(w, r, r.Idle, false)
	writeIdleSection(w, r, r.IdleTLS, true)
	w("## Notes\n\n")
	w("%s%s%s\n", notesBegin, notes, notesEnd)
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
