package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// childProc is a child process of the driver: this same binary run with a
// hidden subcommand, talking JSON lines on stdout and taking commands on
// stdin.
type childProc struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{} // closed when the process has exited and been waited for

	mu      sync.Mutex
	waitErr error
}

// selfExe is the binary the driver runs its children from.
var selfExe = func() string {
	exe, err := os.Executable()
	if err != nil {
		return os.Args[0]
	}
	return exe
}()

func startChild(name string, args ...string) (*childProc, error) {
	cmd := exec.Command(selfExe, args...)
	cmd.Stderr = &prefixWriter{prefix: "  [" + name + "] ", w: os.Stderr}
	cmd.Env = os.Environ()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &childProc{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *childProc) pid() int { return c.cmd.Process.Pid }

// readJSON decodes the child's next stdout line into v, waiting at most
// timeout (then the child is killed).
func (c *childProc) readJSON(v any, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			<-c.done
			c.mu.Lock()
			err := c.waitErr
			c.mu.Unlock()
			return fmt.Errorf("%s exited without answering (%v)", c.name, err)
		}
		if err := json.Unmarshal([]byte(line), v); err != nil {
			return fmt.Errorf("%s: bad answer %q: %v", c.name, line, err)
		}
		return nil
	case <-t.C:
		c.kill()
		return fmt.Errorf("%s: no answer within %v; killed", c.name, timeout)
	}
}

// request sends one command line and decodes the answer.
func (c *childProc) request(cmd string, v any, timeout time.Duration) error {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("%s: %s: %v", c.name, cmd, err)
	}
	return c.readJSON(v, timeout)
}

// stop asks the child to quit (and closes its stdin), then kills it if it
// has not exited within timeout. It returns the child's failure: a
// non-zero exit status (66 is the race detector's) or the kill.
func (c *childProc) stop(timeout time.Duration) error {
	io.WriteString(c.stdin, "quit\n")
	c.stdin.Close()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.kill()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waitErr != nil {
		return fmt.Errorf("%s process: %v", c.name, c.waitErr)
	}
	return nil
}

func (c *childProc) kill() {
	c.cmd.Process.Kill()
	// Drain stdout so the waiting goroutine can finish.
	go func() {
		for range c.lines {
		}
	}()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
	}
}

// prefixWriter prefixes each line a child writes on stderr with its name.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	mid    bool // in the middle of a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !p.mid {
			out.WriteString(p.prefix)
		}
		out.Write(line)
		p.mid = line[len(line)-1] != '\n'
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
