package sock

import "time"

// Loss is what TCP knows of the packets a connection lost.
type Loss struct {
	OOO     uint64 // packets received out of order: the peer's, after one of its packets was lost (or reordered)
	Retrans uint64 // packets this side retransmitted
}

// Acks is what TCP knows of the peer's acknowledgements of this side's
// data.
type Acks struct {
	// Progress grows whenever the peer acknowledges data: the bytes
	// cumulatively acknowledged plus the packets delivered. After a loss
	// the cumulative acknowledgement waits for the retransmission, which
	// behind a deep queue takes as long as the queue, while the selective
	// acknowledgements of what follows keep arriving.
	Progress uint64
	Unacked  uint32        // packets sent and not yet acknowledged
	RTT      time.Duration // TCP's smoothed round-trip time
}
