package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFmtLatency(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"}, {999, "999ns"}, {1000, "1µs"}, {52345, "52.3µs"}, {999700, "1ms"},
		{1250000, "1.25ms"}, {3001200000, "3s"}, {123456789012, "123s"}, {-1500, "-1.5µs"},
	} {
		if got := fmtLatency(tt.d); got != tt.want {
			t.Errorf("fmtLatency(%d) = %q, want %q", int64(tt.d), got, tt.want)
		}
	}
}

// The command.

// benchJSON runs "pulse bench" with args and --json and decodes its
// output.
func benchJSON(t *testing.T, args ...string) (benchResult, result) {
	t.Helper()
	r := runPulse(t, append([]string{"bench", "--json"}, args...)...)
	var res benchResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("pulse bench --json %s: exit %d, output is not JSON: %v\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), r.code, err, r.stdout, r.stderr)
	}
	return res, r
}

func TestBench(t *testing.T) {
	s := startServe(t)
	r := runPulse(t, "bench", "-n", "2000", "-c", "8", s.addr)
	if r.code != 0 {
		t.Fatalf("pulse bench: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, re := range []string{`(?m)^calls\s+2000$`, `(?m)^errors\s+0$`, `(?m)^calls/s\s+\d+$`, `(?m)^\s+p99\s+\d[\d.]*(ns|µs|ms|s)$`,
		`(?m)^latency histogram \(2000 successful calls\)$`, `(?m)^\s+≤ \S+\s+\d+\s+[\d.]+%\s+#+$`} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("output lacks %s:\n%s", re, r.stdout)
		}
	}
	if r.stderr != "" {
		t.Errorf("stderr is not a terminal, yet got %q", r.stderr)
	}
}

func TestBenchJSON(t *testing.T) {
	s := startServe(t)
	res, r := benchJSON(t, "-n", "500", "-conns", "2", s.addr)
	if r.code != 0 || res.Calls != 500 || res.Errors != 0 || len(res.ErrorSamples) != 0 {
		t.Fatalf("exit %d, %d calls, %d errors %q; want 0, 500, 0\n%s", r.code, res.Calls, res.Errors, res.ErrorSamples, r.stderr)
	}
	if res.Conns != 2 || res.Concurrency != 32 || res.Size != 64 || res.Addr != s.addr || res.Method != "Echo.Echo" {
		t.Errorf("conns %d, concurrency %d, size %d, addr %q, method %q; want 2, 32, 64, %q, Echo.Echo",
			res.Conns, res.Concurrency, res.Size, res.Addr, res.Method, s.addr)
	}
	l := res.LatencyUS
	if !(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max && l.Min <= l.Mean && l.Mean <= l.Max) {
		t.Errorf("latencies out of order: %+v", l)
	}
	if res.Seconds <= 0 || res.CallsPerSec <= 0 {
		t.Errorf("seconds %v, calls/s %v; want positive", res.Seconds, res.CallsPerSec)
	}
	var total uint64
	for i, row := range res.Histogram {
		total += row.Count
		if i > 0 && row.LeUS <= res.Histogram[i-1].LeUS {
			t.Errorf("histogram bounds not increasing: %+v", res.Histogram)
		}
	}
	if total != 500 {
		t.Errorf("histogram holds %d calls, want 500: %+v", total, res.Histogram)
	}
	if len(res.Histogram) == 0 || res.Histogram[len(res.Histogram)-1].LeUS < l.Max {
		t.Errorf("histogram does not reach the max %vµs: %+v", l.Max, res.Histogram)
	}
}

func TestBenchDuration(t *testing.T) {
	s := startServe(t)
	start := time.Now()
	res, r := benchJSON(t, "-d", "300ms", "-c", "4", "-size", "1000", s.addr)
	if r.code != 0 || res.Calls == 0 || res.Errors != 0 || res.Size != 1000 {
		t.Fatalf("exit %d, %d calls, %d errors, size %d; want 0, some, 0, 1000\n%s", r.code, res.Calls, res.Errors, res.Size, r.stderr)
	}
	if res.Seconds < 0.3 || res.Seconds > 10 {
		t.Errorf("ran %vs, want about 0.3", res.Seconds)
	}
	t.Logf("-d 300ms: %d calls, %.0f calls/s, ended after %v", res.Calls, res.CallsPerSec, time.Since(start))
}

func TestBenchWarmupAndMethod(t *testing.T) {
	s := startServe(t)
	res, r := benchJSON(t, "-n", "300", "-c", "3", "-warmup", "100ms", "-method", "Arith.Add", "-args", `{"a":2,"b":3}`, s.addr)
	if r.code != 0 || res.Calls != 300 || res.Errors != 0 || res.Codec != "json" || res.Method != "Arith.Add" {
		t.Fatalf("exit %d, %d calls, %d errors, codec %q, method %q; want 0, 300, 0, json, Arith.Add\n%s",
			r.code, res.Calls, res.Errors, res.Codec, res.Method, r.stderr)
	}
}

func TestBenchFailingCalls(t *testing.T) {
	s := startServe(t)
	r := runPulse(t, "bench", "-n", "50", "-c", "5", "-method", "Arith.Divide", "-args", `{"a":1,"b":0}`, s.addr)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"calls       50\n", "errors      50\n", "  divide by zero\n", "no successful call"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "pulse bench: 50 of 50 calls failed") {
		t.Errorf("stderr = %q, want the failure count", r.stderr)
	}
	res, r := benchJSON(t, "-n", "20", "-method", "No.Such", s.addr)
	if r.code != 1 || res.Errors != 20 || len(res.ErrorSamples) != 1 || !strings.Contains(res.ErrorSamples[0], "unknown service") {
		t.Errorf("unknown method: exit %d, %d errors, samples %q; want 1, 20, one unknown service", r.code, res.Errors, res.ErrorSamples)
	}
}

func TestBenchUnreachable(t *testing.T) {
	r := runPulse(t, "bench", "-n", "10", "127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "pulse bench: cannot connect to 127.0.0.1:1: ") {
		t.Errorf("exit %d, stderr %q; want 1 and cannot connect", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-nosuchflag"}, {"-c", "0"}, {"-c", "x"}, {"-conns", "0"}, {"-conns", "3", "-c", "2"}, {"-n", "-1"},
		{"-d", "0"}, {"-n", "5", "-d", "-1s"}, {"-timeout", "0"}, {"-warmup", "-1s"}, {"-size", "-1"},
		{"-method", "Echo"}, {"-args", "{"}, {"-method", "Arith.Add", "-size", "8"}, {"-args", "{}", "-codec", "cbor"},
		{"-codec", "nosuch"}, {"-detector", "nosuch"}, {"127.0.0.1:1", "127.0.0.1:2"}, {"no-port"},
	} {
		r := runPulse(t, append([]string{"bench"}, args...)...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "pulse bench: ") && !strings.Contains(r.stderr, "Usage:") {
			t.Errorf("pulse bench %s: exit %d, stderr %q; want 2 and a message", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	r := runPulse(t, "bench", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "Usage: pulse bench [flags] [ADDR]") || !strings.Contains(r.stderr, "(default 5s)") ||
		!strings.Contains(r.stderr, "-tls-ca") || !strings.Contains(r.stderr, "-heartbeat") {
		t.Errorf("pulse bench -h: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = runPulse(t, "help")
	if !strings.Contains(r.stdout, "bench") {
		t.Errorf("pulse help does not list bench:\n%s", r.stdout)
	}
}

// TestBenchInterrupt stops a long run with SIGINT: it prints the partial
// result and exits 0, since no call failed.
func TestBenchInterrupt(t *testing.T) {
	s := startServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pulseBin, "bench", "-d", "1m", "-c", "4", s.addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(stdout)
	header, err := br.ReadString('\n') // printed once connected, signals caught
	if err != nil || !strings.HasPrefix(header, "Benchmarking ") {
		t.Fatalf("first line %q, %v", header, err)
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	rest, _ := io.ReadAll(br)
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("pulse bench did not stop after SIGINT")
	}
	if err != nil {
		t.Errorf("after SIGINT: %v, want exit 0\n%s", err, stderr.String())
	}
	out := string(rest)
	if !strings.Contains(out, "(interrupted)") || !regexp.MustCompile(`(?m)^calls\s+[1-9]\d*$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^errors\s+0$`).MatchString(out) {
		t.Errorf("partial result:\n%s", out)
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr = %q, want a note that the result is partial", stderr.String())
	}
}

// TestBenchProgress runs the command in this process with the progress
// line forced on, then off.
func TestBenchProgress(t *testing.T) {
	s := startServe(t)
	var stdout, stderr bytes.Buffer
	if err := runBench([]string{"-d", "350ms", "-c", "4", "-conns", "2", s.addr}, &stdout, &stderr, true); err != nil {
		t.Fatalf("runBench: %v\n%s", err, stderr.String())
	}
	progress := stderr.String()
	if !regexp.MustCompile(`^\r\[#*\.*\] +\d+%  \d+ calls  \d+ calls/s  0 errors  \S+/350ms\x1b\[K`).MatchString(progress) ||
		!strings.HasSuffix(progress, "\r\x1b[K") {
		t.Errorf("progress line %q, want bar redrawn in place and cleared at the end", progress)
	}
	if strings.Contains(progress, "\n") {
		t.Errorf("progress wrote a newline: %q", progress)
	}
	if !strings.Contains(stdout.String(), "calls/s") {
		t.Errorf("no result:\n%s", stdout.String())
	}

	stdout.Reset()
	stderr.Reset()
	if err := runBench([]string{"-n", "100", s.addr}, &stdout, &stderr, false); err != nil {
		t.Fatalf("runBench: %v", err)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr without a terminal = %q, want nothing", stderr.String())
	}
}
