package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The command's tests run the real binary, as a user would: TestMain
// builds it once, tests start "pulse serve" on an ephemeral loopback port
// and run the other commands against it.

const cliTimeout = 60 * time.Second

var pulseBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pulse-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pulseBin = filepath.Join(dir, "pulse")
	build := exec.Command("go", "build", "-o", pulseBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building pulse:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what a finished command printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// runPulse runs the binary with args and waits for it (at most
// cliTimeout).
func runPulse(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pulseBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running pulse %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("pulse %s did not finish within %v; stderr:\n%s", strings.Join(args, " "), cliTimeout, r.stderr)
	}
	return r
}

// server is a running "pulse serve".
type server struct {
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{} // closed when its stderr ends

	stopOnce sync.Once
	stopErr  error
}

// logText returns what the server logged so far.
func (s *server) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// waitLog waits until the server's log matches re.
func (s *server) waitLog(t *testing.T, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(cliTimeout)
	for !rx.MatchString(s.logText()) {
		if time.Now().After(deadline) {
			t.Fatalf("server log never matched %q:\n%s", re, s.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listeningRE finds the listening address in the text or JSON log.
var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)|"msg":"listening","addr":"([^"]+)"`)

// startServe starts "pulse serve" on an ephemeral port with extra args and
// stops it with SIGINT in the test's cleanup, checking that it drains and
// exits 0.
func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	s := &server{done: make(chan struct{})}
	s.cmd = exec.Command(pulseBin, append([]string{"serve", "-addr", "127.0.0.1:0"}, args...)...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1] + m[2]:
				default:
				}
			}
		}
	}()
	select {
	case s.addr = <-addrc:
	case <-s.done:
		t.Fatalf("pulse serve exited early:\n%s", s.logText())
	case <-time.After(cliTimeout):
		s.cmd.Process.Kill()
		t.Fatalf("pulse serve did not start listening:\n%s", s.logText())
	}
	t.Cleanup(func() {
		if err := s.stop(syscall.SIGINT); err != nil {
			t.Errorf("pulse serve after SIGINT: %v\n%s", err, s.logText())
		}
	})
	return s
}

// stop sends sig to the server, once, and waits for it to exit.
func (s *server) stop(sig os.Signal) error {
	s.stopOnce.Do(func() {
		s.cmd.Process.Signal(sig)
		select {
		case <-s.done:
			s.stopErr = s.cmd.Wait()
		case <-time.After(cliTimeout):
			s.cmd.Process.Kill()
			s.cmd.Wait()
			s.stopErr = fmt.Errorf("did not exit within %v", cliTimeout)
		}
	})
	return s.stopErr
}

func TestServeDrainsOnSignal(t *testing.T) {
	s := startServe(t, "-log-format", "json")
	if err := s.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("pulse serve after SIGTERM: %v\n%s", err, s.logText())
	}
	for _, want := range []string{`"msg":"draining"`, `"msg":"stopped"`} {
		if !strings.Contains(s.logText(), want) {
			t.Errorf("log lacks %s:\n%s", want, s.logText())
		}
	}
}

func TestUsage(t *testing.T) {
	r := runPulse(t)
	if r.code != 2 || !strings.Contains(r.stderr, "Usage:") {
		t.Errorf("pulse with no command: exit %d, stderr %q; want 2 and usage", r.code, r.stderr)
	}
	r = runPulse(t, "help")
	if r.code != 0 || !strings.Contains(r.stdout, "serve") {
		t.Errorf("pulse help: exit %d, stdout %q; want 0 and the command list", r.code, r.stdout)
	}
	r = runPulse(t, "nosuch")
	if r.code != 2 || !strings.Contains(r.stderr, "unknown command") {
		t.Errorf("pulse nosuch: exit %d, stderr %q; want 2", r.code, r.stderr)
	}
	r = runPulse(t, "serve", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "-heartbeat") {
		t.Errorf("pulse serve -h: exit %d, stderr %q; want 0 and the flags", r.code, r.stderr)
	}
	r = runPulse(t, "serve", "-nosuchflag")
	if r.code != 2 {
		t.Errorf("pulse serve -nosuchflag: exit %d, want 2", r.code)
	}
	// Bounds the library refuses are usage errors naming them.
	for _, bad := range [][]string{
		{"-slow-consumer", "sometimes", "-slow-consumer"},
		{"-message-timeout", "0s", "message timeout"},
		{"-conn-budget", "1000", "connection budget"},
		{"-max-queued", "0", "max queued"},
	} {
		r = runPulse(t, "serve", "-addr", "127.0.0.1:0", bad[0], bad[1])
		if r.code != 2 || !strings.Contains(r.stderr, bad[2]) {
			t.Errorf("pulse serve %s %s: exit %d, stderr %q; want 2 and an error naming %s", bad[0], bad[1], r.code, r.stderr, bad[2])
		}
	}
}
