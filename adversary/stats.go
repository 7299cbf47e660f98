package adversary

// Stats is the line the target prints for the command "stats", which the
// tests decode.
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
