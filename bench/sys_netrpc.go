package main

import (
	"context"
	"net"
	"net/rpc"
	"sync"
)

// netrpcSystem is the standard library's net/rpc with its gob codec over
// TCP. It has no heartbeats.
type netrpcSystem struct{}

// NetRPCEcho is the service, registered as "Echo".
type NetRPCEcho struct{}

// Echo returns its argument.
func (NetRPCEcho) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

func (netrpcSystem) Serve(l net.Listener, _ serveOptions) (func(), error) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Echo", NetRPCEcho{}); err != nil {
		return nil, err
	}
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
				srv.ServeConn(c) // closes c when done
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
	}, nil
}

func (netrpcSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	c, err := tcpDialer(o)(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return netrpcConn{rpc.NewClient(c)}, nil
}

type netrpcConn struct{ c *rpc.Client }

func (n netrpcConn) Echo(req, resp *[]byte) error {
	return n.c.Call("Echo.Echo", req, resp)
}

func (n netrpcConn) Close() error { return n.c.Close() }
