package main

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h).
const ipBindAddressNoPort = 24

// bindAddressNoPort is a net.Dialer Control function for dials from a
// chosen source address: it makes the kernel pick the source port at
// connect time, by the whole (source, destination) pair, rather than at
// bind time, when any port of the address in use for whatever destination,
// or in TIME_WAIT from an earlier run, is taken. Without it the idle
// test's clients searched ever longer for a free port as an address
// filled up, and the connections a previous run left in TIME_WAIT made the
// next run's dials many times slower.
func bindAddressNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}); err != nil {
		return err
	}
	return serr
}
