package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// procSample is what /proc tells about a process at one moment.
type procSample struct {
	// SchedNs is the sum over the process's threads of the first field of
	// /proc/PID/task/TID/schedstat: nanoseconds on a CPU, exact. It misses
	// threads that exited, which Go rarely does; -1 when unavailable.
	SchedNs int64 `json:"sched_ns"`
	// TickNs is utime+stime from /proc/PID/stat, in clock ticks (10 ms
	// granularity here) converted to ns.
	TickNs int64 `json:"tick_ns"`
	// SysR and SysW are syscr and syscw from /proc/PID/io: the number of
	// read-like (read, readv, pread, ...) and write-like (write, writev,
	// pwrite, ...) system calls. They do not count epoll_wait, futex,
	// nanosleep, recvmsg/sendmsg and the like.
	SysR uint64 `json:"syscr"`
	SysW uint64 `json:"syscw"`
	// RSSKiB is VmRSS from /proc/PID/status.
	RSSKiB int64 `json:"rss_kib"`
}

// clockTick is USER_HZ; 100 on every Linux that Go supports in practice.
const clockTick = 100

func procPath(pid int, name string) string {
	if pid == 0 {
		return filepath.Join("/proc/self", name)
	}
	return filepath.Join("/proc", strconv.Itoa(pid), name)
}

// readProc samples process pid (0 for this process).
func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return s, err
	}
	// The command name is in parentheses and may hold spaces: fields are
	// counted from the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("malformed %s", procPath(pid, "stat"))
	}
	f := bytes.Fields(stat[i+1:])
	// After ")": state is field 3 of stat(5), so utime (14) is f[11], stime f[12].
	if len(f) < 13 {
		return s, fmt.Errorf("short %s", procPath(pid, "stat"))
	}
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	st, _ := strconv.ParseInt(string(f[12]), 10, 64)
	s.TickNs = (ut + st) * (1e9 / clockTick)

	s.SchedNs = -1
	if ents, err := os.ReadDir(procPath(pid, "task")); err == nil {
		var sum int64
		ok := true
		for _, e := range ents {
			b, err := os.ReadFile(procPath(pid, "task/"+e.Name()+"/schedstat"))
			if err != nil {
				continue // the thread exited meanwhile
			}
			fs := bytes.Fields(b)
			if len(fs) < 1 {
				ok = false
				break
			}
			v, err := strconv.ParseInt(string(fs[0]), 10, 64)
			if err != nil {
				ok = false
				break
			}
			sum += v
		}
		if ok && sum > 0 {
			s.SchedNs = sum
		}
	}

	if io, err := os.ReadFile(procPath(pid, "io")); err == nil {
		s.SysR = procField(io, "syscr:")
		s.SysW = procField(io, "syscw:")
	}
	if status, err := os.ReadFile(procPath(pid, "status")); err == nil {
		s.RSSKiB = int64(procField(status, "VmRSS:"))
	}
	return s, nil
}

// procField returns the number after key at the start of a line.
func procField(b []byte, key string) uint64 {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
			fs := bytes.Fields(rest)
			if len(fs) > 0 {
				v, _ := strconv.ParseUint(string(fs[0]), 10, 64)
				return v
			}
		}
	}
	return 0
}

// cpuDelta returns the CPU time between two samples and which source it
// came from: schedstat when both samples have it and it did not go
// backwards (a thread exited), clock ticks otherwise.
func cpuDelta(a, b procSample) (int64, string) {
	if a.SchedNs >= 0 && b.SchedNs >= 0 && b.SchedNs >= a.SchedNs {
		return b.SchedNs - a.SchedNs, "schedstat"
	}
	return b.TickNs - a.TickNs, "stat-ticks"
}

func syscallDelta(a, b procSample) uint64 {
	return (b.SysR + b.SysW) - (a.SysR + a.SysW)
}

// raiseNoFile raises RLIMIT_NOFILE's soft limit to the hard limit, and
// both to need when the hard limit is lower and the process may raise it
// (root, within fs.nr_open). It returns the soft limit in force.
func raiseNoFile(need uint64) uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	if need > r.Max {
		want := syscall.Rlimit{Cur: need, Max: need}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			return need
		}
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	return r.Cur
}

// hardNoFile returns RLIMIT_NOFILE's hard limit.
func hardNoFile() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Max
}
