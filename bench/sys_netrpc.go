package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/rpc"
)

// netrpcSystem is the standard library's net/rpc with its gob codec over
// TCP, or over crypto/tls's tls.Conn. It has no heartbeats.
type netrpcSystem struct{}

// NetRPCEcho is the service, registered as "Echo".
type NetRPCEcho struct{}

// Echo returns its argument.
func (NetRPCEcho) Echo(args []byte, reply *[]byte) error {
	*reply = args
	return nil
}

// Small returns its argument.
func (NetRPCEcho) Small(args *Small, reply *Small) error {
	*reply = *args
	return nil
}

// Big returns its argument.
func (NetRPCEcho) Big(args *Big, reply *Big) error {
	*reply = *args
	return nil
}

func (netrpcSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Echo", NetRPCEcho{}); err != nil {
		return nil, err
	}
	if o.TLS != nil {
		l = tls.NewListener(l, o.TLS)
	}
	return serveConns(l, func(c net.Conn) { srv.ServeConn(c) }), nil // ServeConn closes c when done
}

func (netrpcSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	c, err := dialTLS(ctx, tcpDialer(o), addr, o.TLS)
	if err != nil {
		return nil, err
	}
	return netrpcConn{rpc.NewClient(c)}, nil
}

type netrpcConn struct{ c *rpc.Client }

func (n netrpcConn) Echo(req, resp *[]byte) error {
	return n.c.Call("Echo.Echo", req, resp)
}

func (n netrpcConn) structCaller(k string, seed int) (structCaller, int, error) {
	return goStructCaller(k, seed, n.c.Call, gobSize)
}

func (n netrpcConn) Close() error { return n.c.Close() }
