package main

import (
	"context"
	"net"
	"net/rpc"
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
	return serveConns(l, func(c net.Conn) { srv.ServeConn(c) }), nil // ServeConn closes c when done
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
