//go:build !linux

package main

import (
	"context"
	"errors"
	"net"
)

// epollSystem is the idle test's floor (sys_epoll_linux.go); it needs
// Linux's epoll.
type epollSystem struct{}

func (epollSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	return rawSystem{}.Dial(ctx, addr, o)
}

func (epollSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	return nil, errors.New("the epoll floor needs Linux")
}
