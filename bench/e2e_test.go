package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEndToEnd runs the driver as a user would, shrunk: one cell with
// every system and a 20-connection idle test, each in its own server and
// client processes (this test binary, re-executed).
// startsProcesses prepares a test that starts the benchmark's processes:
// it skips in -short mode, and returns the leak check to defer.
func startsProcesses(t *testing.T) (done func()) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts processes")
	}
	// Race-enabled children would each sleep a second at exit, waiting
	// for late reports; a race still makes a child exit with status 66,
	// which the driver reports as a failed run.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	return checkLeaks(t)
}

// runDriver runs the driver with args, writing into dir, and returns the
// results it saved.
func runDriver(t *testing.T, dir string, args ...string) results {
	t.Helper()
	jsonPath := filepath.Join(dir, "results.json")
	if code := driverMain(append(args, "-out", dir, "-json", jsonPath)); code != 0 {
		t.Fatalf("driver exited with %d", code)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r results
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEndToEnd(t *testing.T) {
	done := startsProcesses(t)
	defer done()
	dir := t.TempDir()
	r := runDriver(t, dir, "-quick", "-cells", "64B/32x1", "-warmup", "50ms", "-duration", "150ms",
		"-idle-conns", "20", "-idle-hold", "300ms", "-idle-settle", "100ms")
	if !r.Complete || len(r.Cells) != 1 || r.Cells[0].Name != "64B/32x1" {
		t.Fatalf("results: complete %v, %d cells", r.Complete, len(r.Cells))
	}
	if got, want := len(r.Cells[0].Systems), len(cellSystems(systemNames)); got != want {
		t.Fatalf("the cell ran %d systems, want %d (the epoll floor runs in the idle test only)", got, want)
	}
	for _, s := range r.Cells[0].Systems {
		if len(s.Runs) != 1 {
			t.Fatalf("%s: %d runs", s.System, len(s.Runs))
		}
		lr := s.Runs[0]
		if lr.Calls == 0 || lr.Errors != 0 || lr.FirstError != "" {
			t.Errorf("%s: %d calls, %d errors, %q", s.System, lr.Calls, lr.Errors, lr.FirstError)
		}
		if lr.P50Ns <= 0 || lr.P99Ns < lr.P50Ns || lr.ServerCPUNs <= 0 || lr.ClientCPUNs <= 0 || lr.ServerSyscalls == 0 {
			t.Errorf("%s: implausible measurements %+v", s.System, lr)
		}
	}
	if len(r.Idle) != len(systemNames) {
		t.Fatalf("%d idle results, want one for each of %v", len(r.Idle), systemNames)
	}
	for _, ir := range r.Idle {
		if ir.Error != "" || ir.Dial.OK != 20 || ir.Check.OK != 20 {
			t.Errorf("idle %s: error %q, dialed %d, alive %d", ir.System, ir.Error, ir.Dial.OK, ir.Check.OK)
		}
		// Every server holds goroutines for its connections but the
		// floor's, which holds none.
		serverHolds := ir.ServerGoroutinesPerConn > 0
		if serverHolds == (ir.System == "epoll") || ir.ClientGoroutinesPerConn <= 0 {
			t.Errorf("idle %s: goroutines per connection %v / %v", ir.System, ir.ServerGoroutinesPerConn, ir.ClientGoroutinesPerConn)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "### 64B/32x1") || !strings.Contains(string(md), "Quick run") {
		t.Error("the page lacks the cell or the quick-run label")
	}
	if !strings.Contains(string(md), "| raw TCP | "+idleHeartbeatDesc("raw")+" | 20/20 | 20 |") || !strings.Contains(string(md), "Heartbeats against the raw TCP floor") {
		t.Error("the page lacks raw TCP's idle row or the comparison with it")
	}
	if !strings.Contains(string(md), "| epoll floor | "+idleHeartbeatDesc("epoll")+" | 20/20 | 20 |") || !strings.Contains(string(md), "Heartbeats against the epoll floor") {
		t.Error("the page lacks the epoll floor's idle row or the comparison with it")
	}
	svg, err := os.ReadFile(filepath.Join(dir, "benchmarks.svg"))
	if err != nil {
		t.Fatal(err)
	}
	checkXML(t, svg)
}

// TestIdleOnlySystems checks that a run of idle-test-only systems runs no
// cell, whatever -cells says, and still runs the idle test.
func TestIdleOnlySystems(t *testing.T) {
	done := startsProcesses(t)
	defer done()
	r := runDriver(t, t.TempDir(), "-quick", "-systems", "epoll", "-cells", "64B/1x1",
		"-idle-conns", "4", "-idle-hold", "300ms", "-idle-settle", "100ms")
	if len(r.Cells) != 0 || len(r.Systems) != 0 {
		t.Errorf("%d cells over systems %v, want none", len(r.Cells), r.Systems)
	}
	if len(r.Idle) != 1 || r.Idle[0].System != "epoll" || r.Idle[0].Check.OK != 4 {
		t.Errorf("idle results %+v, want the epoll floor's, 4 connections alive", r.Idle)
	}
}

// TestEndToEndStructs runs two struct cells: every system with a codec,
// raw TCP left out, the request sizes recorded, and the struct section on
// the page.
func TestEndToEndStructs(t *testing.T) {
	done := startsProcesses(t)
	defer done()
	dir := t.TempDir()
	r := runDriver(t, dir, "-quick", "-cells", "struct/32x1,struct4KiB/1x1", "-warmup", "50ms", "-duration", "150ms", "-idle-conns", "0")
	if !r.Complete || len(r.Cells) != 2 || r.Cells[0].Kind != kindSmall || r.Cells[1].Name != "struct4KiB/1x1" || len(r.TLSCells) != 0 {
		t.Fatalf("results: complete %v, cells %+v", r.Complete, r.Cells)
	}
	for _, c := range r.Cells {
		var got []string
		for _, s := range c.Systems {
			got = append(got, s.System)
			lr := s.Runs[0]
			if lr.Calls == 0 || lr.Errors != 0 || lr.FirstError != "" || lr.RequestBytes <= 0 || lr.AllocsPerCall <= 0 || lr.ServerCPUNs <= 0 {
				t.Errorf("%s %s: %d calls, %d errors %q, request %d B, %.1f allocs/call", c.Name, s.System, lr.Calls, lr.Errors, lr.FirstError, lr.RequestBytes, lr.AllocsPerCall)
			}
		}
		if strings.Join(got, ",") != "pulse,netrpc,grpc" {
			t.Errorf("%s ran %v, want pulse, netrpc and grpc", c.Name, got)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "## Structs") || !strings.Contains(string(md), "### struct4KiB/1x1: 4 KiB struct") || !strings.Contains(string(md), "Request encoded: Pulse (CBOR)") {
		t.Error("the page lacks the struct section")
	}
}

// TestEndToEndTLS runs a TLS cell and the idle test over TLS alone
// (-tls=only): every system over TLS in the cell, every one but the epoll
// floor in the idle test, filed apart from the plaintext results.
func TestEndToEndTLS(t *testing.T) {
	done := startsProcesses(t)
	defer done()
	dir := t.TempDir()
	r := runDriver(t, dir, "-quick", "-tls=only", "-cells", "64B/32x1", "-warmup", "50ms", "-duration", "150ms",
		"-idle-conns", "10", "-idle-hold", "300ms", "-idle-settle", "100ms")
	if !r.Complete || len(r.Cells) != 0 || len(r.TLSCells) != 1 || r.TLSCells[0].Name != "tls/64B/32x1" || !r.TLSCells[0].TLS || r.Config.TLS != "only" {
		t.Fatalf("results: complete %v, %d cells, TLS cells %+v", r.Complete, len(r.Cells), r.TLSCells)
	}
	if got, want := len(r.TLSCells[0].Systems), len(cellSystems(systemNames)); got != want {
		t.Errorf("the TLS cell ran %d systems, want %d", got, want)
	}
	for _, s := range r.TLSCells[0].Systems {
		lr := s.Runs[0]
		if lr.Calls == 0 || lr.Errors != 0 || lr.FirstError != "" {
			t.Errorf("%s: %d calls, %d errors, %q", s.System, lr.Calls, lr.Errors, lr.FirstError)
		}
	}
	if len(r.Idle) != 0 || len(r.IdleTLS) != len(systemNames)-1 {
		t.Fatalf("%d plaintext and %d TLS idle results, want 0 and %d", len(r.Idle), len(r.IdleTLS), len(systemNames)-1)
	}
	for _, ir := range r.IdleTLS {
		if ir.Error != "" || !ir.TLS || ir.System == "epoll" || ir.Dial.OK != 10 || ir.Check.OK != 10 {
			t.Errorf("idle over TLS %s: error %q, tls %v, dialed %d, alive %d", ir.System, ir.Error, ir.TLS, ir.Dial.OK, ir.Check.OK)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "benchmarks.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## TLS", "### tls/64B/32x1: 64B payload over TLS", "## Idle connections over TLS", "| raw TCP | " + idleHeartbeatDesc("raw") + " | 10/10 | 10 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}
