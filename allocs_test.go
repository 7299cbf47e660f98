package pulse_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pulse-rpc/pulse"
)

// The allocation counts of a call are the client's own: the server runs in
// a process of its own (the test binary run again as TestEchoServerProcess),
// so that what it allocates to serve the call is not counted, as
// testing.AllocsPerRun and -benchmem count every allocation of the process.

// echoServerEnv makes TestEchoServerProcess serve instead of skip; its
// value is the codec the server offers.
const echoServerEnv = "PULSE_TEST_ECHO_SERVER"

// Echo is the service of the allocation tests and benchmarks.
type Echo struct{}

// Echo returns its argument (raw codec).
func (Echo) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

// EchoArgs is a small struct argument, for the default codec.
type EchoArgs struct {
	ID   int64
	Name string
	Data []byte
}

// EchoReply is the reply of Echo.Struct.
type EchoReply struct {
	ID   int64
	Data []byte
}

// Struct returns the ID and data of its argument (default codec).
func (Echo) Struct(args *EchoArgs, reply *EchoReply) error {
	reply.ID, reply.Data = args.ID, args.Data
	return nil
}

// TestEchoServerProcess is not a test: run by startEchoServer in a child
// process, it serves Echo on loopback, prints the address, and exits when
// its standard input closes (when the parent exits or kills it).
func TestEchoServerProcess(t *testing.T) {
	codecName := os.Getenv(echoServerEnv)
	if codecName == "" {
		t.Skip("run by startEchoServer in a child process")
	}
	var opts []pulse.Option
	if codecName != "default" {
		opts = append(opts, pulse.WithCodec(codecName))
	}
	srv, err := pulse.NewServer(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Register(Echo{}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	fmt.Printf("addr %s\n", l.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

// startEchoServer runs the Echo server in a child process with the codec
// codecName ("default" for the default one) and returns its address. The
// child ends with the test.
func startEchoServer(tb testing.TB, codecName string) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEchoServerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), echoServerEnv+"="+codecName)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting the server process failed: %v", err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
			drained := make(chan struct{})
			go func() {
				io.Copy(io.Discard, stdout)
				close(drained)
			}()
			tb.Cleanup(func() {
				stdin.Close()
				<-drained
				cmd.Wait()
			})
			return addr
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	tb.Fatalf("the server process exited without its address: %v", sc.Err())
	return ""
}

// dialEcho dials the Echo server at addr with opts; the client is closed
// with the test.
func dialEcho(tb testing.TB, addr string, opts ...pulse.Option) *pulse.Client {
	tb.Helper()
	c, err := pulse.Dial(context.Background(), addr, opts...)
	if err != nil {
		tb.Fatalf("Dial(%s) failed: %v", addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// naturalCalls are the calls whose allocations are measured: the way a
// program naturally writes them, and the ways that allocate less. loop
// returns the body of the caller's loop; p is the 64-byte payload, made
// once before the loop, as the caller's own variables are. max is the
// most allocations a call may make, all of them counted in the client's
// process (TestNaturalCallAllocs).
//
// Client.Call allocates nothing of its own per call; what remains is what
// the caller's values cost. Its args and reply are interfaces that it
// hands to the connection's codec, which may be any registered codec and
// may keep them, so they escape (go build -gcflags=-m: "leaking param:
// args", "leaking param: reply"): a []byte passed as args is copied into
// the heap to make the interface (24 B), and a reply variable declared in
// the loop is allocated on each turn (&out).
var naturalCalls = []struct {
	name  string
	codec string
	max   float64
	loop  func(c *pulse.Client, ctx context.Context, p []byte) func() error
}{
	// The caller's []byte in an interface, its reply variable, and the
	// reply's bytes.
	{"raw/natural", "raw", 3, func(c *pulse.Client, ctx context.Context, p []byte) func() error {
		return func() error {
			var out []byte
			err := c.Call(ctx, "Echo.Echo", p, &out)
			return checkLen(err, len(out), len(p))
		}
	}},
	// The reply variable and the reply's bytes: a *[]byte needs no copy
	// to become an interface.
	{"raw/ptr-args", "raw", 2, func(c *pulse.Client, ctx context.Context, p []byte) func() error {
		return func() error {
			var out []byte
			err := c.Call(ctx, "Echo.Echo", &p, &out)
			return checkLen(err, len(out), len(p))
		}
	}},
	// The reply's bytes only: the reply variable is declared once.
	{"raw/ptr-args-hoisted", "raw", 1, func(c *pulse.Client, ctx context.Context, p []byte) func() error {
		var out []byte
		return func() error {
			out = nil
			err := c.Call(ctx, "Echo.Echo", &p, &out)
			return checkLen(err, len(out), len(p))
		}
	}},
	// Nothing: the reply goes into the room of the reply slice.
	{"raw/ptr-args-reuse", "raw", 0, func(c *pulse.Client, ctx context.Context, p []byte) func() error {
		out := make([]byte, 0, 64)
		return func() error {
			out = out[:0]
			err := c.Call(ctx, "Echo.Echo", &p, &out)
			return checkLen(err, len(out), len(p))
		}
	}},
	// The arguments (&args escapes), the reply variable, and the reply's
	// Data, which the CBOR codec decodes into a new slice.
	{"default/natural", "default", 3, func(c *pulse.Client, ctx context.Context, p []byte) func() error {
		return func() error {
			args := EchoArgs{ID: 7, Name: "seven", Data: p}
			var out EchoReply
			err := c.Call(ctx, "Echo.Struct", &args, &out)
			if err == nil && out.ID != 7 {
				err = fmt.Errorf("reply ID %d, want 7", out.ID)
			}
			return checkLen(err, len(out.Data), len(p))
		}
	}},
	// The reply's Data only (the CBOR codec does not reuse its room).
	{"default/reuse", "default", 1, func(c *pulse.Client, ctx context.Context, p []byte) func() error {
		args := &EchoArgs{ID: 7, Name: "seven", Data: p}
		out := &EchoReply{Data: make([]byte, 0, 64)}
		return func() error {
			out.Data = out.Data[:0]
			err := c.Call(ctx, "Echo.Struct", args, out)
			return checkLen(err, len(out.Data), len(p))
		}
	}},
}

func checkLen(err error, got, want int) error {
	if err == nil && got != want {
		err = fmt.Errorf("reply of %d bytes, want %d", got, want)
	}
	return err
}

// TestNaturalCallAllocs: a call with a 64-byte payload over loopback TCP
// makes no more allocations in the client's process than naturalCalls
// says: with the raw codec, only the reply's own bytes once the caller
// passes its payload as a *[]byte and declares its reply variable outside
// its loop, and none when the reply slice has room.
func TestNaturalCallAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items: allocation counts do not hold")
	}
	for _, nc := range naturalCalls {
		t.Run(nc.name, func(t *testing.T) {
			addr := startEchoServer(t, nc.codec)
			var opts []pulse.Option
			if nc.codec != "default" {
				opts = append(opts, pulse.WithCodec(nc.codec))
			}
			c := dialEcho(t, addr, opts...)
			call := nc.loop(c, testContext(t), make([]byte, 64))
			var err error
			n := testing.AllocsPerRun(1000, func() {
				if e := call(); e != nil && err == nil {
					err = e
				}
			})
			if err != nil {
				t.Fatalf("Call() failed: %v", err)
			}
			if n > nc.max {
				t.Errorf("%s: %v allocations per call, want at most %v", nc.name, n, nc.max)
			}
		})
	}
}
