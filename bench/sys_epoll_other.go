//go:build !linux

package main

import (
	"errors"
	"net"
)

// Serve needs Linux's epoll (sys_epoll_linux.go).
func (epollSystem) Serve(l net.Listener, o serveOptions) (func(), error) {
	return nil, errors.New("the epoll floor needs Linux")
}
