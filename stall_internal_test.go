package pulse

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/wire"
)

// TestMonitorLocalStall drives a connection's monitor by hand: a check
// that runs far later than it was scheduled (this process was stalled, so
// the peer's bytes may sit unread) must not convict the peer, however long
// the silence looks; it re-checks shortly after instead. A check on time
// convicts a peer that really is silent.
func TestMonitorLocalStall(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c2.Close()
	go io.Copy(io.Discard, c2)
	o, err := newOptions([]Option{WithLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	rd := new(reads)
	peer := wire.Hello{MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: DefaultMaxMessageSize}
	s := newSession(c1, wire.NewReader(c1, readBufferSize), codec.JSON, true, o, newRegistry(), peer, rd, nil)
	hb := Heartbeat{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}.withDefaults()
	m := newMonitor(s, hb, hb.Interval, ConnLimits{})
	s.mon = m
	m.timer = time.AfterFunc(time.Hour, func() {}) // checks are made by hand
	defer m.stop()

	silentFor := func(d time.Duration) { rd.last.Store(nanotime() - int64(d)) }
	checkAt := func(late time.Duration) {
		m.mu.Lock()
		m.scheduled = nanotime() - int64(late)
		m.mu.Unlock()
		m.check()
	}

	// Silent for a second, but the check itself is half a second late.
	silentFor(time.Second)
	checkAt(500 * time.Millisecond)
	if err := s.closeErr(); err != nil {
		t.Fatalf("a late check convicted the peer: %v", err)
	}
	m.mu.Lock()
	recheck := time.Duration(m.scheduled - nanotime())
	m.mu.Unlock()
	if recheck <= 0 || recheck > time.Second {
		t.Errorf("after a late check the next one is due in %v, want shortly", recheck)
	}

	// The reader catches up: bytes were there all along.
	rd.last.Store(nanotime())
	checkAt(0)
	if err := s.closeErr(); err != nil {
		t.Fatalf("a check after fresh bytes convicted the peer: %v", err)
	}

	// Silent again, and this time the check runs on time.
	silentFor(time.Second)
	checkAt(0)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("an on-time check did not convict a peer silent for 1s (timeout 200ms)")
	}
	if err := s.closeErr(); !errors.Is(err, ErrPeerSilent) {
		t.Errorf("close reason = %v, want ErrPeerSilent", err)
	}
}

// TestMonitorSuspectRecheck: a connection whose peer sends no heartbeats
// (granted interval 0) is re-checked while suspect at a fraction of the
// suspect time, not every millisecond: a server may hold thousands.
func TestMonitorSuspectRecheck(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	o, err := newOptions([]Option{WithLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		t.Fatal(err)
	}
	rd := new(reads)
	peer := wire.Hello{MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: DefaultMaxMessageSize}
	s := newSession(c1, wire.NewReader(c1, readBufferSize), codec.JSON, false, o, newRegistry(), peer, rd, nil)
	hb := Heartbeat{Timeout: 8 * time.Second}.withDefaults()
	m := newMonitor(s, hb, 0, ConnLimits{})
	now := nanotime()
	rd.last.Store(now - int64(5*time.Second)) // silent past the suspect time (4s)
	m.mu.Lock()
	m.isSuspect = true
	next := m.nextLocked(now)
	m.mu.Unlock()
	if gap := time.Duration(next - now); gap < m.suspect/4 {
		t.Errorf("a suspect connection without heartbeats is re-checked after %v, want at least %v", gap, m.suspect/4)
	}
}
