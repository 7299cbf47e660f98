package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixedResults is a made-up result set: Pulse meets some targets and
// misses others, net/rpc has an error in one cell, raw did not run in the
// 1 MiB cell.
func fixedResults() *results {
	run := func(sys string, cps float64, p99 int64, allocs float64) loadResult {
		return loadResult{System: sys, Calls: uint64(cps * 2), WindowSec: 2, CallsPerSec: cps,
			P50Ns: p99 / 3, P99Ns: p99, P999Ns: p99 * 2, AllocsPerCall: allocs,
			ServerCPUPerCall: 5, ClientCPUPerCall: 4, ServerSysPerCall: 0.5, ClientSysPerCall: 0.7}
	}
	cell := func(spec cellSpec, pulseCPS, netCPS, grpcCPS, rawCPS float64) cellResult {
		c := cellResult{cellSpec: spec}
		for _, s := range []struct {
			name string
			cps  float64
			p99  int64
			a    float64
		}{{"pulse", pulseCPS, 400_000, 0.5}, {"netrpc", netCPS, 900_000, 6}, {"grpc", grpcCPS, 2_000_000, 80}, {"raw", rawCPS, 200_000, 0}} {
			sr := systemRuns{System: s.name}
			if s.cps > 0 {
				// Three runs around the median.
				sr.Runs = []loadResult{run(s.name, s.cps*0.9, s.p99, s.a), run(s.name, s.cps, s.p99, s.a), run(s.name, s.cps*1.05, s.p99+1000, s.a)}
			}
			c.Systems = append(c.Systems, sr)
		}
		return c
	}
	r := &results{
		Generated: "2026-01-02T03:04:05Z",
		Command:   "go -C bench run .",
		Config:    runConfig{Runs: 3, WarmupSec: 0.3, DurationSec: 2, IdleConns: 10000, IdleHoldSec: 20},
		Machine:   machineInfo{CPU: "Test CPU <&> \"quoted\"", Cores: 2, Kernel: "6.1.0", MemTotalKiB: 8 << 20, GOOS: "linux", GOARCH: "amd64"},
		Versions:  versionInfo{Go: "go1.26.0", GRPC: "v1.99.0", PulseCommit: "0123456789abcdef0123456789abcdef01234567"},
		Systems:   []string{"pulse", "netrpc", "grpc", "raw"},
		Complete:  true,
	}
	r.Cells = []cellResult{
		cell(newCell(64, 1, 1), 20000, 10000, 4000, 30000),     // 2× net/rpc: the 1.5× target is met
		cell(newCell(64, 32, 1), 100000, 40000, 10000, 250000), // 2.5× net/rpc: missed; 10× grpc: met; 0.4× raw: missed
		cell(newCell(64, 256, 1), 150000, 40000, 15000, 280000),
		cell(newCell(1<<20, 1, 1), 300, 350, 250, 0),
	}
	r.Cells[1].Systems[1].Runs[0].Errors = 2
	r.Cells[1].Systems[1].Runs[0].FirstError = "connection reset | by `peer`"
	r.Idle = []idleResult{
		{System: "pulse", Conns: 10000, Dial: idleOpResult{OK: 10000}, Check: idleOpResult{OK: 10000}, Heartbeats: idleHeartbeatDesc("pulse"), HoldSec: 20,
			ServerRSSPerConn: 6000, ClientRSSPerConn: 9000, ServerGoroutinesPerConn: 1, ClientGoroutinesPerConn: 1, ServerCPUPercent: 4.5, ServerSyscallsPerSec: 30000,
			ClientCPUPercent: 3, ClientSyscallsPerSec: 20000},
		{System: "grpc", Conns: 10000, Dial: idleOpResult{OK: 9990, Errors: 10, FirstError: "dial: too many open files"}, Check: idleOpResult{OK: 9990},
			Heartbeats: idleHeartbeatDesc("grpc"), ServerRSSPerConn: 60000, ClientRSSPerConn: 90000, ServerGoroutinesPerConn: 3, ClientGoroutinesPerConn: 6},
		{System: "raw", Conns: 10000, Dial: idleOpResult{OK: 10000}, Check: idleOpResult{OK: 10000}, Heartbeats: idleHeartbeatDesc("raw"), HoldSec: 20,
			ServerRSSPerConn: 5000, ClientRSSPerConn: 6000, ServerGoroutinesPerConn: 1, ClientGoroutinesPerConn: 1, ServerCPUPercent: 1.5, ServerSyscallsPerSec: 30000,
			ClientCPUPercent: 2, ClientSyscallsPerSec: 30000, ClientHeartbeatRepliesPerSec: 9990},
		{System: "epoll", Conns: 10000, Dial: idleOpResult{OK: 10000}, Check: idleOpResult{OK: 10000}, Heartbeats: idleHeartbeatDesc("epoll"), HoldSec: 20,
			ServerRSSPerConn: 100, ClientRSSPerConn: 6000, ClientGoroutinesPerConn: 1, ServerCPUPercent: 3, ServerSyscallsPerSec: 20000,
			ClientCPUPercent: 2, ClientSyscallsPerSec: 30000, ClientHeartbeatRepliesPerSec: 9990},
	}
	return r
}

func targetByWhere(rows []targetRow, target, where string) (targetRow, bool) {
	for _, r := range rows {
		if strings.HasPrefix(r.Target, target) && r.Where == where {
			return r, true
		}
	}
	return targetRow{}, false
}

func TestTargets(t *testing.T) {
	rows := fixedResults().targets()
	for _, c := range []struct{ target, where, met string }{
		{"calls/s: Pulse ≥ 1.5× net/rpc", "64B/1x1", "met"},
		{"calls/s: Pulse ≥ 3× net/rpc", "64B/32x1", "**missed**"},
		{"calls/s: Pulse ≥ 3× net/rpc", "64B/256x1", "met"},
		{"calls/s: Pulse ≥ 8× grpc-go", "64B/32x1", "met"},
		{"calls/s: Pulse ≥ 0.9× raw TCP", "64B/1x1", "**missed**"},
		{"calls/s: Pulse ≥ 0.9× raw TCP", "64B/32x1", "**missed**"},
		{"p99: Pulse ≤ 1.2× raw TCP", "64B/1x1", "**missed**"},
		{"p99: Pulse below", "64B/1x1", "met"},
		{"p99: Pulse below", "1MiB/1x1", "met"},
		{"client allocations", "64B cells", "met"},
		{"server RSS", "idle, 10000 conns", "met"},
		{"client RSS", "idle, 10000 conns", "**missed**"},
		{"server heartbeat CPU", "idle, 10000 conns", "met"},
	} {
		row, ok := targetByWhere(rows, c.target, c.where)
		if !ok {
			t.Errorf("no target row %q at %q", c.target, c.where)
			continue
		}
		if row.Met != c.met {
			t.Errorf("%s at %s: %q (%s), want %q", c.target, c.where, row.Met, row.Measured, c.met)
		}
	}
	// The targets against raw TCP cover the 64 B and 4 KiB cells only.
	if row, ok := targetByWhere(rows, "calls/s: Pulse ≥ 0.9× raw TCP", "1MiB/1x1"); ok {
		t.Errorf("a raw TCP target for the 1 MiB cell: %+v", row)
	}
	// Ratios to a peer give the raw TCP echo's own ratio to it.
	for _, c := range []struct{ target, where, measured string }{
		{"calls/s: Pulse ≥ 1.5× net/rpc", "64B/1x1", "2.00× (20,000 vs 10,000 calls/s); raw TCP itself: 3.00×"},
		{"calls/s: Pulse ≥ 8× grpc-go", "64B/32x1", "10.0× (100,000 vs 10,000 calls/s); raw TCP itself: 25.0×"},
		{"calls/s: Pulse ≥ 0.9× raw TCP", "64B/32x1", "0.40× (100,000 vs 250,000 calls/s)"},
		{"p99: Pulse ≤ 1.2× raw TCP", "64B/32x1", "2.00× (400µs vs 200µs)"},
	} {
		if row, _ := targetByWhere(rows, c.target, c.where); row.Measured != c.measured {
			t.Errorf("%s at %s: %q, want %q", c.target, c.where, row.Measured, c.measured)
		}
	}
	// With the idle test and the grpc results missing, those rows say so.
	r := fixedResults()
	r.Idle = nil
	for i := range r.Cells {
		r.Cells[i].Systems[2].Runs = nil
	}
	rows = r.targets()
	for _, c := range []struct{ target, where string }{
		{"calls/s: Pulse ≥ 8× grpc-go", "64B/32x1"},
		{"p99: Pulse below", "64B/1x1"},
		{"server RSS", "idle"},
	} {
		if row, _ := targetByWhere(rows, c.target, c.where); row.Met != notMeasured {
			t.Errorf("%s at %s: %q, want %q", c.target, c.where, row.Met, notMeasured)
		}
	}
}

func TestSummaryMedians(t *testing.T) {
	s := summarize([]loadResult{
		{Calls: 10, CallsPerSec: 300, P99Ns: 30},
		{Calls: 10, CallsPerSec: 100, P99Ns: 10},
		{Calls: 0, FirstError: "server: boom"},
		{Calls: 10, CallsPerSec: 200, P99Ns: 20},
	})
	if s.Runs != 3 || s.Failed != 1 || s.CPS != 200 || s.CPSMin != 100 || s.CPSMax != 300 || s.P99 != 20 || s.FirstError != "server: boom" {
		t.Errorf("summary = %+v", s)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of an even count = %v, want 2.5", got)
	}
}

func TestReportFiles(t *testing.T) {
	dir := t.TempDir()
	r := fixedResults()
	if _, err := writeReport(r, dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(md)
	for _, want := range []string{
		"go -C bench run .",
		"Test CPU <&> \"quoted\", 2 cores",
		"v1.99.0",
		"0123456789abcdef0123456789abcdef01234567",
		"### 64B/32x1: 64B payload, 32 goroutines over 1 connection",
		"| **Pulse** | 100,000 [90,000–105,000] | 133µs | 400µs | 800µs | 0.50 | 5.0 + 4.0 | 0.50 + 0.70 | 3 |",
		"Pulse ÷ net/rpc: calls/s 2.50×, p99 0.44×",
		"Pulse ÷ raw TCP: calls/s 0.40×",
		"net/rpc: 2 error(s), first: `connection reset / by 'peer'`",
		"| raw TCP | no result |",
		"grpc-go: 10 dial(s) failed",
		"![calls/s and p99 latency per cell](benchmarks.svg)",
		notesBegin, notesEnd,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "Quick run") {
		t.Error("a full run is labelled quick")
	}

	// The notes survive a regeneration; the rest is rewritten.
	edited := strings.Replace(page, notesBegin+defaultNotes+notesEnd, notesBegin+"\nA hand-written explanation.\n"+notesEnd, 1)
	if edited == page {
		t.Fatal("could not find the default notes to replace")
	}
	if err := os.WriteFile(filepath.Join(dir, "benchmarks.md"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Config.Quick = true
	if _, err := writeReport(r, dir); err != nil {
		t.Fatal(err)
	}
	md, _ = os.ReadFile(filepath.Join(dir, "benchmarks.md"))
	if !strings.Contains(string(md), notesBegin+"\nA hand-written explanation.\n"+notesEnd) {
		t.Error("the hand-written notes were not kept")
	}
	if !strings.Contains(string(md), "Quick run") {
		t.Error("a quick run is not labelled")
	}

	svg, err := os.ReadFile(filepath.Join(dir, "benchmarks.svg"))
	if err != nil {
		t.Fatal(err)
	}
	checkXML(t, svg)
	for _, want := range []string{"<svg", "Pulse", "64B/256x1", "1MiB/1x1", "calls/s", "p99"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("svg lacks %q", want)
		}
	}
}

// checkXML decodes the whole document and checks its root element.
func checkXML(t *testing.T, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(doc)))
	var root string
	depth := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if root != "" {
					t.Fatalf("second root element %q", e.Name.Local)
				}
				root = e.Name.Local
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
	if root != "svg" || depth != 0 {
		t.Fatalf("root %q, depth at end %d", root, depth)
	}
}

// TestReportIdleFloor checks the line comparing Pulse's heartbeat costs
// with raw TCP's, and that it is left out when either is missing.
func TestReportIdleFloor(t *testing.T) {
	r := fixedResults()
	want := "**Heartbeats against the raw TCP floor** (same run, 10,000 connections each; raw: one PING and one PONG per connection every 1s, 9,990 PONGs/s read by its client): " +
		"Pulse's server uses **3.00×** the CPU of raw's (4.50 % vs 1.50 % of a core) and 1.00× its system calls (30,000 vs 30,000 /s); " +
		"Pulse's client 1.50× the CPU (3.00 % vs 2.00 %) and 0.67× the system calls (20,000 vs 30,000 /s)."
	if got := idleFloorLine(r, r.Idle); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if md := renderMarkdown(r, ""); !strings.Contains(md, "\n\n"+want+"\n\n") {
		t.Error("the page lacks the line as a paragraph of its own")
	}
	// Different connection counts are compared per connection.
	r.Idle[2].Dial.OK = 5000
	if got := idleFloorLine(r, r.Idle); !strings.Contains(got, "10,000 and 5,000 connections, compared per connection") || !strings.Contains(got, "**1.50×** the CPU") {
		t.Errorf("per connection: %s", got)
	}
	for name, change := range map[string]func(r *results){
		"raw failed":  func(r *results) { r.Idle[2].Error = "server: boom" },
		"raw not run": func(r *results) { r.Idle = r.Idle[:2] },
		"no pulse":    func(r *results) { r.Idle = r.Idle[1:] },
		"no dials":    func(r *results) { r.Idle[0].Dial.OK = 0 },
	} {
		r := fixedResults()
		change(r)
		if got := idleFloorLine(r, r.Idle); got != "" {
			t.Errorf("%s: %s", name, got)
		}
		if md := renderMarkdown(r, ""); strings.Contains(md, "raw TCP floor**") {
			t.Errorf("%s: the page has the comparison", name)
		}
	}
}

// TestReportEpollFloor checks the line comparing Pulse's heartbeat costs
// with the epoll floor's, the floor in the heartbeat target's row, and
// that both are left out when the floor is missing.
func TestReportEpollFloor(t *testing.T) {
	r := fixedResults()
	want := "**Heartbeats against the epoll floor** (same run, 10,000 connections each; raw TCP's client against a server that is one epoll loop making one read and one write per PING, directly, and nothing else: " +
		"what the same heartbeats cost this machine at the least): Pulse's server uses **1.50×** the CPU of the floor's (4.50 % vs 3.00 % of a core) and 1.50× its system calls (30,000 vs 20,000 /s)."
	if got := idleEpollLine(r, r.Idle); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if md := renderMarkdown(r, ""); !strings.Contains(md, "\n\n"+want+"\n\n") {
		t.Error("the page lacks the line as a paragraph of its own")
	}
	row, _ := targetByWhere(r.targets(), "server heartbeat CPU", "idle, 10000 conns")
	if row.Measured != "4.50 %; the epoll floor: 3.00 %" || row.Met != "met" {
		t.Errorf("heartbeat target: %q, %q", row.Measured, row.Met)
	}
	// A floor over the target says so; Pulse's own figure decides.
	r.Idle[3].ServerCPUPercent = 12
	r.Idle[0].ServerCPUPercent = 15
	row, _ = targetByWhere(r.targets(), "server heartbeat CPU", "idle, 10000 conns")
	if row.Measured != "15.00 %; the epoll floor: 12.00 %, over the target itself" || row.Met != "**missed**" {
		t.Errorf("heartbeat target over the floor: %q, %q", row.Measured, row.Met)
	}
	// Different connection counts are compared per connection.
	r = fixedResults()
	r.Idle[3].Dial.OK = 5000
	if got := idleEpollLine(r, r.Idle); !strings.Contains(got, "10,000 and 5,000 connections, compared per connection") || !strings.Contains(got, "**0.75×** the CPU") {
		t.Errorf("per connection: %s", got)
	}
	row, _ = targetByWhere(r.targets(), "server heartbeat CPU", "idle, 10000 conns")
	if !strings.HasSuffix(row.Measured, "the epoll floor: 6.00 %") {
		t.Errorf("floor scaled to 10,000 connections: %q", row.Measured)
	}
	for name, change := range map[string]func(r *results){
		"floor failed":  func(r *results) { r.Idle[3].Error = "server: boom" },
		"floor not run": func(r *results) { r.Idle = r.Idle[:3] },
	} {
		r := fixedResults()
		change(r)
		if got := idleEpollLine(r, r.Idle); got != "" {
			t.Errorf("%s: %s", name, got)
		}
		if md := renderMarkdown(r, ""); strings.Contains(md, "epoll floor**") || strings.Contains(md, "the epoll floor: ") {
			t.Errorf("%s: the page has the comparison", name)
		}
	}
}

func TestReportEmptyResults(t *testing.T) {
	r := &results{Systems: []string{"pulse"}, Config: runConfig{Quick: true}}
	md := renderMarkdown(r, "")
	if !strings.Contains(md, "No cells were run.") || !strings.Contains(md, "The idle test was not run.") {
		t.Errorf("empty page:\n%s", md)
	}
	checkXML(t, renderSVG(r))
}

func TestResultsJSONRoundTrip(t *testing.T) {
	r := fixedResults()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if renderMarkdown(&back, "") != renderMarkdown(r, "") {
		t.Error("the page from decoded results differs")
	}
}

func TestFilterCells(t *testing.T) {
	names := func(cs []cellSpec) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.Name)
		}
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		tls          tlsMode
		filter, want string
	}{
		{"off", "all", names(allCells)},
		{"off", "none", ""},
		{"off", "64B/32x1", "64B/32x1"},
		{"off", "1MiB", "1MiB/1x1"},
		{"off", "256x8", "64B/256x8,4KiB/256x8"},
		{"off", "4KiB/1x1, 64B/1x1", "64B/1x1,4KiB/1x1"},
		// Whole parts of names: 4KiB is not struct4KiB.
		{"off", "4KiB", "4KiB/1x1,4KiB/32x1,4KiB/256x1,4KiB/256x8"},
		{"off", "struct", "struct/1x1,struct/32x1,struct/256x1"},
		{"off", "struct4KiB/256x1,struct/1x1", "struct/1x1,struct4KiB/256x1"},
		{"on", "64B/32x1", "64B/32x1,tls/64B/32x1"},
		{"on", "tls", "tls/64B/1x1,tls/64B/32x1,tls/64B/256x1,tls/64B/256x8"},
		{"on", "all", names(allCells) + "," + names(tlsCells)},
		{"only", "64B/32x1", "tls/64B/32x1"},
		{"only", "all", names(tlsCells)},
	} {
		got, err := filterCells(candidateCells(c.tls), c.filter)
		if err != nil || names(got) != c.want {
			t.Errorf("-tls=%s: filterCells(%q) = %q, %v; want %q", c.tls, c.filter, names(got), err, c.want)
		}
	}
	for _, c := range []struct {
		tls    tlsMode
		filter string
	}{{"off", "64B/3x3"}, {"off", "tls"}, {"only", "struct"}, {"off", "4Ki"}} {
		if _, err := filterCells(candidateCells(c.tls), c.filter); err == nil {
			t.Errorf("-tls=%s: pattern %q matching nothing is accepted", c.tls, c.filter)
		}
	}
	if len(allCells) != 15 || len(tlsCells) != 4 {
		t.Errorf("%d cells and %d TLS cells, want 15 and 4", len(allCells), len(tlsCells))
	}
	for _, c := range append(slices.Clone(allCells), tlsCells...) {
		var want []string
		for _, s := range cellSystems(systemNames) {
			if c.Kind == kindBytes || s != "raw" {
				want = append(want, s)
			}
		}
		var got []string
		for _, s := range systemNames {
			if cellSystem(c, s) {
				got = append(got, s)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("cell %s runs %v, want %v", c.Name, got, want)
		}
	}
}

func TestTLSFlag(t *testing.T) {
	for _, c := range []struct {
		args        []string
		want        tlsMode
		plain, tlsT bool
	}{
		{nil, "off", true, false},
		{[]string{"-tls"}, "on", true, true},
		{[]string{"-tls=only"}, "only", false, true},
		{[]string{"-tls=off"}, "off", true, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		m := tlsMode("off")
		fs.Var(&m, "tls", "")
		if err := fs.Parse(c.args); err != nil || m != c.want || m.plain() != c.plain || m.tls() != c.tlsT {
			t.Errorf("%q: -tls = %q (plain %v, tls %v), %v; want %q", c.args, m, m.plain(), m.tls(), err, c.want)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	m := tlsMode("off")
	fs.Var(&m, "tls", "")
	if err := fs.Parse([]string{"-tls=maybe"}); err == nil {
		t.Error("-tls=maybe accepted")
	}
}

func TestProcSelf(t *testing.T) {
	s, err := readProc(0)
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if s.RSSKiB <= 0 || s.TickNs < 0 || s.SysR == 0 {
		t.Errorf("implausible sample of this process: %+v", s)
	}
	// Burn a little CPU and do some reads: both counters move.
	x := 0
	for i := range 20_000_000 {
		x += i ^ x>>3
	}
	_ = x
	for range 10 {
		os.ReadFile("/proc/self/stat")
	}
	s2, _ := readProc(0)
	if d, _ := cpuDelta(s, s2); d <= 0 {
		t.Errorf("CPU did not advance: %+v then %+v", s, s2)
	}
	if syscallDelta(s, s2) < 10 {
		t.Errorf("read system calls did not advance: %+v then %+v", s, s2)
	}
}

// TestIdleOnlyPage renders a run of the idle test alone, over several
// pairs of processes at a longer interval: its own page, named by -page,
// with no chart, and the heartbeat target scaled to 10,000 connections at
// 1 s in the full page's targets.
func TestIdleOnlyPage(t *testing.T) {
	dir := t.TempDir()
	r := fixedResults()
	r.Cells = nil
	r.Config.IdleConns, r.Config.IdleProcs, r.Config.IdleIntervalSec, r.Config.Page = 100000, 5, 10, "idle-100k"
	r.Idle = r.Idle[:1]
	r.Idle[0].Conns, r.Idle[0].Dial.OK, r.Idle[0].Check.OK, r.Idle[0].Procs = 100000, 100000, 100000, 5
	written, err := writeReport(r, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 1 || filepath.Base(written[0]) != "idle-100k.md" {
		t.Fatalf("wrote %v, want idle-100k.md alone", written)
	}
	md, err := os.ReadFile(written[0])
	if err != nil {
		t.Fatal(err)
	}
	page := string(md)
	for _, want := range []string{
		"# Idle connections: 100,000 over 5 pairs of processes, heartbeats every 10s",
		"idle: 100000 connections held 20s, heartbeat interval 10s, over 5 server and 5 client processes",
		"5 client processes dial N connections, N/5 each, to 5 server processes",
		"| **Pulse** | " + r.Idle[0].Heartbeats + " | 100000/100000 | 100000 |",
		"[benchmarks.md](benchmarks.md)",
		notesBegin, notesEnd,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, not := range []string{"## Targets", "## Throughput and latency", ".svg"} {
		if strings.Contains(page, not) {
			t.Errorf("an idle-only page has %q", not)
		}
	}
	// 4.5 % of a core for 100,000 connections at 10 s is 4.5 % for
	// 10,000 at 1 s.
	row, ok := targetByWhere(r.targets(), "server heartbeat CPU", "idle, 100000 conns")
	if !ok || row.Met != "met" || !strings.Contains(row.Measured, "4.50 % scaled linearly to 10,000 at 1s") {
		t.Errorf("heartbeat CPU target = %+v", row)
	}
}

// withStructsAndTLS adds to fixedResults struct cells (no raw TCP), a TLS
// cell and the idle test over TLS.
func withStructsAndTLS() *results {
	r := fixedResults()
	run := func(sys string, cps float64, reqBytes int) loadResult {
		return loadResult{System: sys, Calls: uint64(cps * 2), WindowSec: 2, CallsPerSec: cps, P50Ns: 100_000, P99Ns: 300_000, P999Ns: 600_000,
			AllocsPerCall: 12, ServerCPUPerCall: 8, ClientCPUPerCall: 7, RequestBytes: reqBytes}
	}
	for _, spec := range []cellSpec{newStructCell(kindSmall, 32, 1), newStructCell(kindBig, 1, 1)} {
		c := cellResult{cellSpec: spec}
		for _, s := range []struct {
			name  string
			bytes int
		}{{"pulse", 80}, {"netrpc", 54}, {"grpc", 55}} {
			c.Systems = append(c.Systems, systemRuns{System: s.name, Runs: []loadResult{run(s.name, 50000, s.bytes)}})
		}
		r.Cells = append(r.Cells, c)
	}
	tc := cellResult{cellSpec: tlsCell(newCell(64, 32, 1))}
	for _, s := range []string{"pulse", "netrpc", "grpc", "raw"} {
		tc.Systems = append(tc.Systems, systemRuns{System: s, Runs: []loadResult{run(s, 70000, 0)}})
	}
	r.TLSCells = []cellResult{tc}
	r.Config.TLS = "on"
	for _, s := range []string{"pulse", "raw"} {
		ir := *r.idle(s)
		ir.TLS = true
		ir.ServerRSSPerConn += 10 << 10
		r.IdleTLS = append(r.IdleTLS, ir)
	}
	return r
}

func TestReportStructsAndTLS(t *testing.T) {
	r := withStructsAndTLS()
	page := renderMarkdown(r, "")
	section := func(from, to string) string {
		i := strings.Index(page, from)
		if i < 0 {
			t.Fatalf("page lacks %q", from)
		}
		rest := page[i:]
		if j := strings.Index(rest[len(from):], to); j >= 0 {
			return rest[:len(from)+j]
		}
		return rest
	}
	structs := section("## Structs\n", "\n## ")
	for _, want := range []string{
		"### struct/32x1: small struct, 32 goroutines over 1 connection",
		"### struct4KiB/1x1: 4 KiB struct, 1 goroutine over 1 connection",
		"| **Pulse** | 50,000 [50,000–50,000] | 100µs | 300µs | 600µs | 12.00 | 8.0 + 7.0 |",
		"Request encoded: Pulse (CBOR) 80 B, net/rpc (gob) 54 B, grpc-go (protobuf) 55 B.",
		"Pulse ÷ grpc-go: calls/s 1.00×",
	} {
		if !strings.Contains(structs, want) {
			t.Errorf("the struct section lacks %q", want)
		}
	}
	if strings.Contains(structs, "raw TCP |") {
		t.Error("the struct section has a row for raw TCP")
	}
	tlsSec := section("## TLS\n", "\n## ")
	for _, want := range []string{
		"### tls/64B/32x1: 64B payload over TLS, 32 goroutines over 1 connection",
		"| raw TCP | 70,000 [70,000–70,000] |",
	} {
		if !strings.Contains(tlsSec, want) {
			t.Errorf("the TLS section lacks %q", want)
		}
	}
	idleTLS := section("## Idle connections over TLS\n", "\n## ")
	for _, want := range []string{
		"| **Pulse** | " + idleHeartbeatDesc("pulse") + " | 10000/10000 | 10000 | 15.9 KiB |",
		"| raw TCP | ",
		"**Heartbeats against the raw TCP floor**",
	} {
		if !strings.Contains(idleTLS, want) {
			t.Errorf("the TLS idle section lacks %q", want)
		}
	}
	if strings.Contains(idleTLS, "grpc-go") || strings.Contains(idleTLS, "epoll floor |") {
		t.Error("the TLS idle section has systems that did not run over TLS")
	}
	// Order: bytes, structs, TLS, idle, idle over TLS.
	last := -1
	for _, h := range []string{"### 64B/32x1:", "## Structs\n", "## TLS\n", "## Idle connections\n", "## Idle connections over TLS\n", "## Notes"} {
		i := strings.Index(page, h)
		if i <= last {
			t.Errorf("%q is out of order (at %d, after %d)", h, i, last)
		}
		last = i
	}
	// The targets stay those of the plaintext byte cells.
	for _, row := range r.targets() {
		if strings.Contains(row.Where, "struct") || strings.Contains(row.Where, "tls") {
			t.Errorf("target row for %s: %+v", row.Where, row)
		}
	}
	if got, want := page, renderMarkdown(fixedResults(), ""); strings.Contains(want, "## Structs") || strings.Contains(want, "## TLS") || strings.Contains(want, "## Idle connections over TLS") || got == want {
		t.Error("a run without struct and TLS cells has their sections, or one with them has not")
	}

	// The results file keeps the TLS cells and idle test apart.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Cells    []cellSpec   `json:"cells"`
		TLSCells []cellSpec   `json:"tls_cells"`
		Idle     []idleResult `json:"idle"`
		IdleTLS  []idleResult `json:"idle_tls"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, c := range raw.Cells {
		if c.TLS {
			t.Errorf("TLS cell %s among the cells", c.Name)
		}
	}
	if len(raw.TLSCells) != 1 || !raw.TLSCells[0].TLS || len(raw.IdleTLS) != 2 || !raw.IdleTLS[0].TLS || raw.Idle[0].TLS {
		t.Errorf("results file: %d TLS cells, %d idle over TLS", len(raw.TLSCells), len(raw.IdleTLS))
	}
	var back results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if renderMarkdown(&back, "") != page {
		t.Error("the page from decoded results differs")
	}

	svg := renderSVG(r)
	checkXML(t, svg)
	for _, want := range []string{">struct4KiB<", ">tls/64B<", ">32x1<", "grpc-go tls/64B/32x1: 70,000 calls/s"} {
		if !strings.Contains(string(svg), want) {
			t.Errorf("svg lacks %q", want)
		}
	}
}

// TestReportIdleTLSOnly renders a run of -tls=only -cells none: the idle
// page, with the idle test over TLS alone.
func TestReportIdleTLSOnly(t *testing.T) {
	r := withStructsAndTLS()
	r.Cells, r.TLSCells, r.Idle, r.Config.TLS = nil, nil, nil, "only"
	page := renderMarkdown(r, "")
	for _, want := range []string{"# Idle connections:", "Not run in plaintext (`-tls=only`)", "## Idle connections over TLS", "`-tls=only`"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestReportOldResults reads a results file of before the struct and TLS
// cells (no kind, tls, tls_cells or idle_tls): it renders as before.
func TestReportOldResults(t *testing.T) {
	const old = `{"generated":"2026-12-07T12:50:04Z","command":"go -C bench run .","config":{"runs":1,"warmup_s":0.3,"duration_s":2,"idle_conns":20,"idle_hold_s":1},
"systems":["pulse","raw"],
"cells":[{"name":"64B/1x1","payload":64,"goroutines":1,"conns":1,"systems":[
 {"system":"pulse","runs":[{"system":"pulse","calls":100,"window_s":2,"calls_per_s":50,"p50_ns":1000,"p99_ns":2000,"p999_ns":3000}]},
 {"system":"raw","runs":[{"system":"raw","calls":200,"window_s":2,"calls_per_s":100,"p50_ns":500,"p99_ns":900,"p999_ns":1000}]}]}],
"idle":[{"system":"pulse","conns":20,"dial":{"ok":20},"check":{"ok":20},"hold_s":1}],"complete":true}`
	var r results
	if err := json.Unmarshal([]byte(old), &r); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	written, err := writeReport(&r, dir)
	if err != nil || len(written) != 2 {
		t.Fatalf("writeReport() = %v, %v", written, err)
	}
	md, _ := os.ReadFile(written[0])
	page := string(md)
	if !strings.Contains(page, "### 64B/1x1: 64B payload, 1 goroutine over 1 connection") || !strings.Contains(page, "| raw TCP | 100 [100–100] |") {
		t.Error("the page lacks the old cell")
	}
	for _, not := range []string{"## Structs", "## TLS", "## Idle connections over TLS", "Request encoded"} {
		if strings.Contains(page, not) {
			t.Errorf("the page of old results has %q", not)
		}
	}
}
