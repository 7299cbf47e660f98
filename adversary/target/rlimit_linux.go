package main

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

// limitAddressSpace caps the process's virtual memory, as ulimit -v does,
// at its current size plus headroom: an allocation past it fails, and the
// Go runtime dies with "out of memory" instead of the machine swapping or
// the OOM killer choosing a victim.
func limitAddressSpace(headroom uint64) error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	i := bytes.Index(b, []byte("VmSize:"))
	if i < 0 {
		return errors.New("no VmSize in /proc/self/status")
	}
	f := bytes.Fields(b[i+len("VmSize:"):])
	if len(f) == 0 {
		return errors.New("no VmSize in /proc/self/status")
	}
	kb, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil {
		return err
	}
	n := kb<<10 + headroom
	return syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: n, Max: n})
}
