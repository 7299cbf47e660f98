package session

import (
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/pulse-rpc/pulse/wire"
)

// TestAcceptorTimerRestsWhileAnswering: on an idle connection whose dialer
// pings, the acceptor's PONGs are its writes, and its monitor's timer is
// moved past each (monitor.answered) instead of firing once per interval
// to find that out. (When the PINGs stop, the timer fires as before: the
// acceptor pings and judges the silence; TestPingerSilentPeer.)
func TestAcceptorTimerRestsWhileAnswering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 100 * time.Millisecond
		acceptCfg := bubbleConfig(Heartbeat{Interval: interval, Timeout: time.Second, MinInterval: 10 * time.Millisecond})
		dialCfg := bubbleConfig(Heartbeat{Interval: interval, Timeout: time.Second})
		p := newPipePair(t, dialCfg, acceptCfg)
		m := p.acceptor.mon
		checks := func() uint32 {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.checks
		}
		// Twenty intervals of PINGs and PONGs. A timer that fired at each
		// old ping deadline would have fired about twenty times.
		before := checks()
		time.Sleep(20 * interval)
		n := checks() - before
		if pongs := p.acceptorTap.count(wire.TypePong); pongs < 19 {
			t.Errorf("the acceptor answered %d PINGs in 20 intervals, want 20 (else this test shows nothing)", pongs)
		}
		for _, s := range []*Session{p.dialer, p.acceptor} {
			if err := s.Err(); err != nil {
				t.Fatalf("session closed after 20 intervals of heartbeats: %v", err)
			}
		}
		if n >= 10 {
			t.Errorf("the acceptor's timer fired %d times in 20 intervals of answered PINGs, want few", n)
		}
	})
}

// TestMonitorSize: every connection with heartbeats allocates a monitor,
// so its size is part of an idle connection's memory. 256 bytes is a size
// class of Go's allocator; a monitor past it takes the next, 288.
func TestMonitorSize(t *testing.T) {
	if got, want := unsafe.Sizeof(monitor{}), uintptr(256); got > want {
		t.Errorf("unsafe.Sizeof(monitor{}) = %d, want <= %d", got, want)
	}
}

// TestSessionSize: every connection allocates a Session; 512 bytes is a
// size class of Go's allocator, the next is 576. (Flow control's counters,
// the peer-log limiter and the send queue's bound took it from 448 to
// 512: 64 bytes more per connection.)
func TestSessionSize(t *testing.T) {
	if got, want := unsafe.Sizeof(Session{}), uintptr(512); got > want {
		t.Errorf("unsafe.Sizeof(Session{}) = %d, want <= %d", got, want)
	}
}
