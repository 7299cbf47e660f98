package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo plays the whole demo at four times the speed (about 2 s) and
// checks that every expected event happened within its bound, and that
// the timeline tells each actor's part.
func TestDemo(t *testing.T) {
	start := time.Now()
	r := runPulse(t, "demo", "-speed", "4", "-color", "never")
	t.Logf("pulse demo -speed 4 took %v", time.Since(start).Round(time.Millisecond))
	if r.code != 0 {
		t.Fatalf("pulse demo -speed 4: exit %d, want 0\nstderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("-color never printed ANSI escapes:\n%q", r.stdout)
	}
	if strings.Contains(r.stdout, "FAIL") {
		t.Errorf("the output has a FAIL although the exit status is 0:\n%s", r.stdout)
	}
	_, summary, ok := strings.Cut(r.stdout, "\nSummary")
	if !ok {
		t.Fatalf("no summary:\n%s", r.stdout)
	}
	if n := len(regexp.MustCompile(`(?m) OK$`).FindAllString(summary, -1)); n != 9 {
		t.Errorf("summary has %d OK rows, want 9:\n%s", n, summary)
	}
	for _, want := range []string{
		`(?m)^ *[0-9.]+s  alice +connected: .*phi detector`,
		`(?m)^ *[0-9.]+s  alice +100 concurrent Arith\.Multiply calls over her one connection: 100 correct`,
		`(?m)^ *[0-9.]+s  alice +Echo\.Echo .*\[rtt [^,]+, phi [0-9.]+`,
		`(?m)^ *[0-9.]+s  bob +falls silent`,
		`(?m)^ *[0-9.]+s  server +declares bob dead: no byte for`,
		`(?m)^ *[0-9.]+s  bob +told by the server: GOAWAY "peer silent"`,
		`(?m)^ *[0-9.]+s  bob +reconnected: connection #2`,
		`(?m)^ *[0-9.]+s  proxy +blackhole`,
		`(?m)^ *[0-9.]+s  carol +declares the server dead`,
		`(?m)^ *[0-9.]+s  server +declares carol dead`,
		`(?m)^ *[0-9.]+s  proxy +heal`,
		`(?m)^ *[0-9.]+s  carol +reconnected: connection #2`,
		`(?m)^ *[0-9.]+s  push +server → alice: <alice> hello, everyone`,
		`(?m)^ *[0-9.]+s  push +server → bob: <alice> hello, everyone`,
		`(?m)^ *[0-9.]+s  push +server → carol: <alice> hello, everyone`,
		`(?m)^ *[0-9.]+s  server +closed$`,
		`(?m)^  server reaps silent bob .* OK$`,
		`(?m)^  carol detects the dead path .* OK$`,
		`(?m)^  server detects carol's dead path .* OK$`,
		`(?m)^  carol reconnects and calls again .* OK$`,
		`(?m)^  push reaches every client .* OK$`,
	} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("output lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}

// TestDemoColor checks -color: always paints even into a pipe, auto does
// not paint into a pipe. Only the escapes matter here, so the runs go at
// full speed and their exit status is not checked.
func TestDemoColor(t *testing.T) {
	r := runPulse(t, "demo", "-speed", "20", "-color", "always")
	for _, want := range []string{"\x1b[31m", "\x1b[32m", "\x1b[0m"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("-color always: output lacks %q (exit %d):\n%s", want, r.code, r.stdout)
		}
	}
	r = runPulse(t, "demo", "-speed", "20", "-color", "auto")
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("-color auto into a pipe printed ANSI escapes:\n%q", r.stdout)
	}
}

func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-speed", "0"},
		{"-speed", "-1"},
		{"-speed", "21"},
		{"-speed", "NaN"},
		{"-speed", "fast"},
		{"-color", "sometimes"},
		{"-calls", "0"},
		{"extra"},
	} {
		r := runPulse(t, append([]string{"demo"}, args...)...)
		if r.code != 2 || r.stderr == "" {
			t.Errorf("pulse demo %s: exit %d, stderr %q; want 2 and a message", strings.Join(args, " "), r.code, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("pulse demo %s printed to stdout: %q", strings.Join(args, " "), r.stdout)
		}
	}
	r := runPulse(t, "help", "demo")
	if r.code != 0 || !strings.Contains(r.stdout, "-speed") {
		t.Errorf("pulse help demo: exit %d, stdout %q; want 0 and the flags", r.code, r.stdout)
	}
}
