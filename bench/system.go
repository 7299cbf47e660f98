package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// A system is one RPC stack under test. Each has an adapter file:
// sys_pulse.go, sys_netrpc.go, sys_grpc.go, sys_raw.go, and for the idle
// test's floor sys_epoll.go with sys_epoll_linux.go.
type system interface {
	// Serve serves the Echo method on l until stop is called. stop closes
	// l and every connection, and waits for the server's goroutines.
	Serve(l net.Listener, o serveOptions) (stop func(), err error)
	// Dial opens one connection to addr and returns it ready for calls.
	Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error)
}

// serveOptions and dialOptions select the settings of a test. Idle
// selects the idle-connection settings: heartbeats at 1 s for Pulse,
// keepalive as tight as grpc-go permits. TLS, when set, is the TLS
// configuration of every connection (tls.go), each system taking it its
// own way.
type serveOptions struct {
	Idle bool
	TLS  *tls.Config
}

type dialOptions struct {
	Idle bool
	// LocalAddr, when set, is the source address to dial from (the idle
	// test spreads connections over 127.0.0.2, 127.0.0.3, ...).
	LocalAddr *net.TCPAddr
	TLS       *tls.Config
	// Structs dials a connection for the struct cells (structs.go): a
	// system with a choice of codec uses its default one (Pulse: no
	// WithCodec, so CBOR). The connection is then a structConn.
	Structs bool
}

// echoConn is one client connection. Echo may be called by many
// goroutines at once.
type echoConn interface {
	// Echo sends *req and waits for the echoed payload, which it stores
	// in *resp, reusing *resp's memory where the system allows. Pointers
	// are passed so that no system pays for boxing a slice header into an
	// interface on each call.
	Echo(req, resp *[]byte) error
	Close() error
}

// The order is the order of the runs within a round and of the tables.
// The systems of idleOnlySystems take part in the idle test alone.
var (
	systemNames     = []string{"pulse", "netrpc", "grpc", "raw", "epoll"}
	idleOnlySystems = map[string]bool{"epoll": true}
)

// cellSystems returns the systems of list that run the cells.
func cellSystems(list []string) []string {
	var out []string
	for _, s := range list {
		if !idleOnlySystems[s] {
			out = append(out, s)
		}
	}
	return out
}

var systems = map[string]system{
	"pulse":  pulseSystem{},
	"netrpc": netrpcSystem{},
	"grpc":   grpcSystem{},
	"raw":    rawSystem{},
	"epoll":  epollSystem{},
}

// Heartbeat settings of the idle test: 1 s and 4 s unless -idle-interval
// (the driver) or -interval (its child processes) sets them.
var (
	idleHeartbeat        = time.Second
	idleHeartbeatTimeout = 4 * time.Second
)

// setIdleHeartbeat sets the idle test's heartbeat interval to d and its
// timeout to four intervals, as at the default 1 s.
func setIdleHeartbeat(d time.Duration) {
	idleHeartbeat, idleHeartbeatTimeout = d, 4*d
}

// grpcMinClientKeepalive is the shortest keepalive time grpc-go lets a
// client use.
const grpcMinClientKeepalive = 10 * time.Second

// benchLogger is the logger given to the systems: warnings and errors to
// stderr, nothing at the info level (a connection closing at the end of
// a run is not news).
var benchLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// tcpDialer returns a dial function honouring o.LocalAddr.
func tcpDialer(o dialOptions) func(ctx context.Context, network, addr string) (net.Conn, error) {
	key := ""
	if o.LocalAddr != nil {
		key = o.LocalAddr.String()
	}
	// One dial function per source address, shared by every connection
	// from it: a system that keeps its dialer for reconnecting (Pulse)
	// should not be charged for the harness's dialer in the idle test.
	if f, ok := dialers.Load(key); ok {
		return f.(func(context.Context, string, string) (net.Conn, error))
	}
	d := &net.Dialer{}
	if o.LocalAddr != nil {
		d.LocalAddr = o.LocalAddr
		d.Control = bindAddressNoPort
	}
	f := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if network == "" {
			network = "tcp"
		}
		return d.DialContext(ctx, network, addr)
	}
	actual, _ := dialers.LoadOrStore(key, f)
	return actual.(func(context.Context, string, string) (net.Conn, error))
}

// dialers holds tcpDialer's dial functions by source address.
var dialers sync.Map

func parseSystems(s string) ([]string, error) {
	if s == "" || s == "all" {
		return append([]string(nil), systemNames...), nil
	}
	want := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := systems[n]; !ok {
			return nil, fmt.Errorf("unknown system %q (known: %s)", n, strings.Join(systemNames, ", "))
		}
		want[n] = true
	}
	var out []string
	for _, n := range systemNames {
		if want[n] {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no system selected")
	}
	return out, nil
}

// serveConns accepts connections on l and serves each with serve on a
// goroutine of its own (serve closes its connection). The returned stop
// closes the listener and every open connection, and waits for the serve
// calls to return.
func serveConns(l net.Listener, serve func(net.Conn)) func() {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serve(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return func() {
		l.Close()
		<-done
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}
