// Package event is the JSON-lines format the fault agent writes on its
// standard output and the fault tests read: one Event per line.
package event

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Event is one thing an agent saw. T is the wall clock in Unix
// nanoseconds when it was written; every process of a run shares the
// machine's clock, so times from different namespaces compare. Fields that
// do not apply are omitted.
type Event struct {
	T  int64  `json:"t"`
	Ev string `json:"ev"`
	// C is the index of the client within a client agent (0 for the
	// first), or -1 for events of the whole process.
	C int `json:"c"`

	Addr   string `json:"addr,omitempty"`
	Remote string `json:"remote,omitempty"`
	Local  string `json:"local,omitempty"`

	// State changes (client) and closes (server).
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason,omitempty"` // ConnError.Reason, or the error kind
	Err    string `json:"err,omitempty"`
	At     int64  `json:"at,omitempty"` // when it happened (StateChange.At), Unix ns
	// LastRead is when the connection last read a byte (Unix ns), from
	// Stats().SinceRead of the closed connection; 0 when unknown.
	LastRead int64 `json:"last_read,omitempty"`

	// Calls.
	Method  string `json:"method,omitempty"`
	Start   int64  `json:"start,omitempty"`
	End     int64  `json:"end,omitempty"`
	Outcome string `json:"outcome,omitempty"` // ok, failed, hung, stopped
	Kind    string `json:"kind,omitempty"`    // typed error kind, "untyped: ..." otherwise
	Sent    bool   `json:"sent,omitempty"`
	N       int    `json:"n,omitempty"` // bytes

	// Health.
	State    string        `json:"state,omitempty"`
	Phi      float64       `json:"phi,omitempty"`
	RTT      time.Duration `json:"rtt,omitempty"`
	Interval time.Duration `json:"interval,omitempty"`
	Timeout  time.Duration `json:"timeout,omitempty"`
	Detector string        `json:"detector,omitempty"`
	Pause    time.Duration `json:"pause,omitempty"` // a GC pause or a stall of the process
	HeapMB   int           `json:"heap_mb,omitempty"`
	Info     string        `json:"info,omitempty"`

	// Summary counts.
	OK     int            `json:"ok,omitempty"`
	Failed int            `json:"failed,omitempty"`
	Hung   int            `json:"hung,omitempty"`
	Kinds  map[string]int `json:"kinds,omitempty"`
	MaxPhi float64        `json:"max_phi,omitempty"`
	MaxRTT time.Duration  `json:"max_rtt,omitempty"`
	MaxGap time.Duration  `json:"max_gap,omitempty"` // longest stall seen by the process's own probe
}

// Time returns T as a time.Time.
func (e Event) Time() time.Time { return time.Unix(0, e.T) }

// Writer writes events as JSON lines, one at a time.
type Writer struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{enc: json.NewEncoder(w)} }

// Emit stamps e with the current time unless it has one, and writes it.
func (w *Writer) Emit(e Event) {
	if e.T == 0 {
		e.T = time.Now().UnixNano()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.enc.Encode(e) // stdout of a child process: nothing to do on error
}
