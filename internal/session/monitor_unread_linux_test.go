package session

import (
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/internal/sock"
	"github.com/pulse-rpc/pulse/wire"
)

// TestMonitorPeerBytesUnread: when the detector would convict a silent
// peer but the peer's bytes wait in the kernel, read by nobody yet (this
// process's readers are behind, as on a machine asked for more CPU than it
// has), those bytes are signs of life: the monitor looks again shortly
// instead. If they stay unread for another Timeout, it convicts all the
// same, saying so, so that calls still fail within a bound.
func TestMonitorPeerBytesUnread(t *testing.T) {
	peer, conn := unreadTCPPair(t)
	// No reader runs: what the peer sends stays in the kernel.
	s, m, rd := newHandMonitorOn(t, conn, Heartbeat{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}, nil)

	if waiting, ok := sock.PeerBytesWaiting(conn); !ok || waiting {
		t.Fatalf("PeerBytesWaiting before the peer wrote = %v, %v; want false, true", waiting, ok)
	}
	if _, err := peer.Write(wire.AppendPing(nil, wire.TypePing, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the PING to reach the socket", func() bool { w, _ := sock.PeerBytesWaiting(conn); return w })

	rd.last.Store(s.now() - int64(time.Second)) // silent for 1 s, Timeout 200 ms
	checkNow(m)
	if err := s.closeErr(); err != nil {
		t.Fatalf("the peer was convicted while its bytes waited unread: %v", err)
	}
	checkDueSoon(t, m, "with the peer's bytes unread,")
	if waiting, _ := sock.PeerBytesWaiting(conn); !waiting {
		t.Fatal("the look at the socket took the peer's bytes")
	}

	// Still unread after another Timeout: this process is not reading.
	m.mu.Lock()
	m.unreadSince = s.now() - int64(time.Second)
	m.mu.Unlock()
	checkNow(m)
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the peer was not convicted after its bytes waited unread for 1 s (timeout 200 ms)")
	}
	if err := s.closeErr(); err == nil || !strings.Contains(err.Error(), "waited unread") {
		t.Errorf("close error = %v, want it to say the peer's bytes waited unread", err)
	}
}
