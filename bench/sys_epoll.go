package main

import (
	"context"
	"errors"
)

// epollSystem is the floor of the idle test: the least CPU that answering
// one PING with one PONG per connection per interval can cost on this
// machine, whatever the design. Its client is raw TCP's (the same PINGs
// on the same timers); its server is one goroutine that waits in an epoll
// set of every connection's socket and, for each socket that is readable,
// makes one read(2) and echoes the complete frames it read with one
// write(2). There is nothing else: no goroutine, buffer or timer per
// connection, no dead-peer detection, no bookkeeping of any kind. The
// sockets are level-triggered, so a socket is re-armed by nothing; the
// system calls are made directly (syscall.RawSyscall), so that they do not
// go through the Go runtime's system-call state and its poller at all.
// What is left is the kernel's own cost of the three calls and of the TCP
// segments, and one wake-up of the waiting thread per batch of readable
// sockets.
//
// The server needs Linux (sys_epoll_linux.go). It serves the idle test
// only (Serve refuses otherwise): a frame that does not fit its small
// read buffer, or a PONG that the socket does not take whole at once,
// closes the connection rather than being queued. The idle test's frames
// are 12 bytes (PINGs) and 76 bytes (the one call of each connection),
// and a PONG always fits an idle socket's send buffer.
type epollSystem struct{}

var errEpollIdleOnly = errors.New("the epoll floor serves the idle test only")

func (epollSystem) Dial(ctx context.Context, addr string, o dialOptions) (echoConn, error) {
	return rawSystem{}.Dial(ctx, addr, o)
}
