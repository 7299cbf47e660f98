package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
)

// Profiles for explaining results (driver flag -profile DIR). Profiling
// costs CPU and allocates: numbers from a profiled run are not the ones
// to quote.

var (
	cpuProfMu   sync.Mutex
	cpuProfFile *os.File
)

func startCPUProfile(path string) error {
	cpuProfMu.Lock()
	defer cpuProfMu.Unlock()
	if cpuProfFile != nil {
		return fmt.Errorf("a CPU profile is already being written")
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	cpuProfFile = f
	return nil
}

func stopCPUProfile() {
	cpuProfMu.Lock()
	defer cpuProfMu.Unlock()
	if cpuProfFile == nil {
		return
	}
	pprof.StopCPUProfile()
	cpuProfFile.Close()
	cpuProfFile = nil
}

func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// profileCommand handles the stdin commands "cpuprofile PATH",
// "cpuprofile stop" and "heapprofile PATH", answering with a JSON line.
// It reports whether cmd was one of them.
func profileCommand(cmd string) bool {
	verb, arg, _ := strings.Cut(cmd, " ")
	var err error
	switch {
	case verb == "cpuprofile" && arg == "stop":
		stopCPUProfile()
	case verb == "cpuprofile" && arg != "":
		err = startCPUProfile(arg)
	case verb == "heapprofile" && arg != "":
		err = writeHeapProfile(arg)
	default:
		return false
	}
	ans := map[string]string{}
	if err != nil {
		ans["error"] = err.Error()
	}
	jsonOut(ans)
	return true
}
