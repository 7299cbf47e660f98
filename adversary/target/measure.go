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

// Stats is the line printed for the command "stats". The adversarial tests
// decode it (adversary/harness_test.go keeps a copy of its shape).
type Stats struct {
	Role           string `json:"role"`
	UptimeMS       int64  `json:"uptime_ms"`
	HeapBytes      uint64 `json:"heap_bytes"`
	PeakHeapBytes  uint64 `json:"peak_heap_bytes"`
	Goroutines     uint64 `json:"goroutines"`
	PeakGoroutines uint64 `json:"peak_goroutines"`
	RSSBytes       uint64 `json:"rss_bytes"`
	HWMBytes       uint64 `json:"hwm_bytes"`
	LogLines       int64  `json:"log_lines"`
	LogBytes       int64  `json:"log_bytes"`

	// Server.
	Conns     int64            `json:"conns"`
	Calls     map[string]int64 `json:"calls,omitempty"`
	Broadcast *BroadcastStats  `json:"broadcast,omitempty"`

	// Client.
	Client *ClientStats `json:"client,omitempty"`
}

// BroadcastStats describes the periodic Broadcasts of a server run with
// -broadcast-every.
type BroadcastStats struct {
	Count     int64 `json:"count"`      // Broadcasts that returned
	Pending   int64 `json:"pending"`    // 1 while one is running
	MaxMicros int64 `json:"max_micros"` // the longest one, including a running one
	Late      int64 `json:"late"`       // returned more than -broadcast-timeout + 100 ms after they started
	Errors    int64 `json:"errors"`     // returned an error
	Unreached int64 `json:"unreached"`  // peers, summed over Broadcasts, that the Broadcast said it could not reach
	Peers     int64 `json:"peers"`      // peers connected at the last Broadcast
	Reached   int64 `json:"reached"`    // peers the last Broadcast reached
}

// ClientStats describes the calls of a client run with -role client.
type ClientStats struct {
	OK         int64            `json:"ok"`
	Typed      int64            `json:"typed"`   // failed with a Pulse error type or a context error
	Untyped    int64            `json:"untyped"` // failed with anything else
	Hung       int64            `json:"hung"`    // returned more than 1 s after their deadline, or not at all
	InFlight   int64            `json:"in_flight"`
	Done       bool             `json:"done"`
	ErrSamples map[string]int64 `json:"err_samples,omitempty"` // error text (cut to 200 bytes) -> count, at most 20 texts
}
