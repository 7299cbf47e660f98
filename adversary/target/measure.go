package main

import (
	"bytes"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"
)

// The sampler keeps the peaks of the process's Go heap and goroutine count,
// read every few milliseconds with runtime/metrics (which does not stop the
// world and, with its samples allocated once, allocates nothing). The
// kernel keeps the peak RSS itself (VmHWM); resetPeaks clears it through
// /proc/self/clear_refs.
var (
	heapNow, heapPeak atomic.Uint64
	gorNow, gorPeak   atomic.Uint64
	logLines          atomic.Int64
	logBytes          atomic.Int64
)

const (
	metricHeap       = "/memory/classes/heap/objects:bytes"
	metricGoroutines = "/sched/goroutines:goroutines"
)

func sampler(every time.Duration) {
	samples := []metrics.Sample{{Name: metricHeap}, {Name: metricGoroutines}}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		sampleOnce(samples)
		<-t.C
	}
}

func sampleOnce(samples []metrics.Sample) {
	metrics.Read(samples)
	h := samples[0].Value.Uint64()
	g := samples[1].Value.Uint64()
	heapNow.Store(h)
	gorNow.Store(g)
	raise(&heapPeak, h)
	raise(&gorPeak, g)
}

func raise(p *atomic.Uint64, v uint64) {
	for {
		old := p.Load()
		if v <= old || p.CompareAndSwap(old, v) {
			return
		}
	}
}

// resetPeaks starts a new measurement window: the peaks become the current
// values, and the kernel's VmHWM becomes the current RSS.
func resetPeaks() {
	heapPeak.Store(heapNow.Load())
	gorPeak.Store(gorNow.Load())
	// Writing 5 to clear_refs resets the peak RSS (Linux 4.0 and later).
	// Where it is refused, hwm stays the peak since the process started.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// procStatus reads VmRSS and VmHWM, in bytes, from /proc/self/status
// (zero where there is no such file).
func procStatus() (rss, hwm uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		var dst *uint64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &rss
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &hwm
		default:
			continue
		}
		f := bytes.Fields(line)
		if len(f) >= 2 {
			kb, _ := strconv.ParseUint(string(f[1]), 10, 64)
			*dst = kb << 10
		}
	}
	return rss, hwm
}

// countingWriter counts the lines and bytes written through it: the slog
// handler's output, one Write per record.
type countingWriter struct{ w io.Writer }

func (c countingWriter) Write(p []byte) (int, error) {
	logLines.Add(int64(bytes.Count(p, []byte{'\n'})))
	logBytes.Add(int64(len(p)))
	return c.w.Write(p)
}
