//go:build !linux

package main

import "syscall"

// bindAddressNoPort: see bindport_linux.go. Elsewhere the kernel picks the
// port at bind time.
var bindAddressNoPort func(network, address string, c syscall.RawConn) error
