//go:build !linux

package pulse

import (
	"net"
	"time"
)

// tuneTCP does nothing outside Linux: stuck writes are still caught by the
// session's own write watchdog, and the writer's rounds of at most 64 KiB
// bound what Pulse itself queues ahead of a heartbeat.
func tuneTCP(net.Conn, time.Duration) {}

// tcpProgress is not available outside Linux: the write watchdog then
// judges each write call by its duration, and only bytes read count as
// signs of life.
func tcpProgress(net.Conn) (func() (tcpAcks, bool), func() (tcpLoss, bool)) { return nil, nil }

// peerBytesWaiting cannot look into the socket outside Linux.
func peerBytesWaiting(net.Conn) (waiting, ok bool) { return false, false }
