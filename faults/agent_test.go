//go:build linux && faults

package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulse-rpc/pulse/faults/internal/event"
)

// agentPath is where TestMain has the agent built (faults/agent).
var agentPath string

// agentBuild builds the agent once, returning why it failed or "".
var agentBuild = sync.OnceValue(func() string {
	cmd := exec.Command("go", "build", "-o", agentPath, "./agent")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("building the agent: %v\n%s", err, out)
	}
	return ""
})

// agent is one running agent process in a namespace, and the events it
// wrote.
type agent struct {
	s    *scenario
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	log  *os.File

	mu      sync.Mutex
	evs     []event.Event
	partial []byte
	wake    chan struct{} // closed and replaced at each new event
	stderr  bytes.Buffer

	exited  chan struct{}
	waitErr error
}

type agentOpts struct {
	ns   string
	cpus string   // taskset -c cpus, "" for none
	env  []string // added to the environment
}

// startAgent runs the agent with args in o.ns. It is killed, if it still
// runs, when the test ends.
func (s *scenario) startAgent(name string, o agentOpts, args ...string) *agent {
	s.t.Helper()
	argv := []string{"netns", "exec", o.ns}
	if o.cpus != "" {
		argv = append(argv, "taskset", "-c", o.cpus)
	}
	argv = append(argv, agentPath)
	argv = append(argv, args...)
	a := &agent{s: s, name: name, wake: make(chan struct{}), exited: make(chan struct{})}
	a.cmd = exec.Command("ip", argv...)
	a.cmd.Env = append(os.Environ(), o.env...)
	a.cmd.Stdout = agentStdout{a}
	a.cmd.Stderr = agentStderr{a}
	var err error
	if a.in, err = a.cmd.StdinPipe(); err != nil {
		s.t.Fatal(err)
	}
	if a.log, err = os.Create(filepath.Join(s.logDir, name+".jsonl")); err != nil {
		s.t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		s.t.Fatalf("starting %s: %v", name, err)
	}
	s.t.Logf("%s: pid %d: %s %s", name, a.cmd.Process.Pid, strings.Join(o.env, " "), strings.Join(append([]string{"ip"}, argv...), " "))
	go func() {
		a.waitErr = a.cmd.Wait()
		close(a.exited)
	}()
	s.t.Cleanup(func() {
		select {
		case <-a.exited:
		default:
			a.cmd.Process.Kill()
			<-a.exited
		}
		a.log.Close()
	})
	return a
}

type agentStdout struct{ a *agent }

func (w agentStdout) Write(p []byte) (int, error) {
	a := w.a
	a.log.Write(p)
	var fresh []event.Event
	a.mu.Lock()
	a.partial = append(a.partial, p...)
	for {
		i := bytes.IndexByte(a.partial, '\n')
		if i < 0 {
			break
		}
		line := a.partial[:i]
		var e event.Event
		if err := json.Unmarshal(line, &e); err != nil {
			e = event.Event{T: time.Now().UnixNano(), Ev: "raw", C: -1, Info: string(line)}
		}
		a.partial = a.partial[i+1:]
		a.evs = append(a.evs, e)
		fresh = append(fresh, e)
	}
	if len(fresh) > 0 {
		close(a.wake)
		a.wake = make(chan struct{})
	}
	a.mu.Unlock()
	for _, e := range fresh {
		if line := a.s.describe(e); line != "" {
			a.s.t.Logf("%s %s", a.name, line)
		}
	}
	return len(p), nil
}

type agentStderr struct{ a *agent }

func (w agentStderr) Write(p []byte) (int, error) {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	if w.a.stderr.Len() < 64<<10 {
		w.a.stderr.Write(p)
	}
	return len(p), nil
}

// events returns the events so far.
func (a *agent) events() []event.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]event.Event(nil), a.evs...)
}

// waitFor waits up to timeout for an event matching match and returns the
// first one.
func (a *agent) waitFor(timeout time.Duration, match func(event.Event) bool) (event.Event, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		a.mu.Lock()
		for _, e := range a.evs {
			if match(e) {
				a.mu.Unlock()
				return e, true
			}
		}
		wake := a.wake
		a.mu.Unlock()
		select {
		case <-wake:
		case <-a.exited:
			// One last look at what it wrote before exiting.
			for _, e := range a.events() {
				if match(e) {
					return e, true
				}
			}
			return event.Event{}, false
		case <-t.C:
			return event.Event{}, false
		}
	}
}

// mustWait is waitFor that fails the test, naming what, on a timeout.
func (a *agent) mustWait(timeout time.Duration, what string, match func(event.Event) bool) event.Event {
	a.s.t.Helper()
	e, ok := a.waitFor(timeout, match)
	if !ok {
		a.s.t.Fatalf("%s: no %s within %v%s", a.name, what, timeout, a.exitNote())
	}
	return e
}

// exitNote says whether and how the agent exited, with its stderr.
func (a *agent) exitNote() string {
	select {
	case <-a.exited:
		a.mu.Lock()
		defer a.mu.Unlock()
		return fmt.Sprintf(" (it exited: %v; stderr: %s)", a.waitErr, strings.TrimSpace(a.stderr.String()))
	default:
		return ""
	}
}

// signal sends sig to the agent.
func (a *agent) signal(sig syscall.Signal) {
	a.s.t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.s.t.Fatalf("%s: %v: %v", a.name, sig, err)
	}
}

// kill kills the agent with SIGKILL and waits for it to exit.
func (a *agent) kill() {
	a.s.t.Helper()
	a.signal(syscall.SIGKILL)
	<-a.exited
}

// stop asks the agent to stop (end of its standard input) and waits for
// it to exit, at most timeout; it fails the test if the agent does not
// exit cleanly.
func (a *agent) stop(timeout time.Duration) {
	a.s.t.Helper()
	a.in.Close()
	select {
	case <-a.exited:
	case <-time.After(timeout):
		a.cmd.Process.Kill()
		<-a.exited
		a.s.fail("%s did not stop within %v after its input closed", a.name, timeout)
		return
	}
	if a.waitErr != nil {
		a.s.fail("%s exited with %v; stderr: %s", a.name, a.waitErr, strings.TrimSpace(a.stderr.String()))
	}
}

// summary returns the agent's final summary event for client c (-1 for
// the whole process).
func (a *agent) summary(c int) (event.Event, bool) {
	for _, e := range a.events() {
		if e.Ev == "summary" && e.C == c {
			return e, true
		}
	}
	return event.Event{}, false
}
