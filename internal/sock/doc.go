// Package sock holds everything in Pulse that touches a socket's
// descriptor: system calls made without the runtime's system-call state,
// TCP options and tcp_info, the peek for unread bytes, and the epoll set
// that idle readers park in. Every function works on a net.Conn or a
// syscall.RawConn and knows nothing of sessions.
//
// The Linux implementation is in the _linux.go files; sock_other.go
// gives every function a stub that reports "not available", so that the
// callers degrade to the runtime's own I/O.
package sock
