package pulse

import (
	"context"
	"testing"
	"time"
	"unsafe"
)

// TestAcceptorTimerRestsWhileAnswering: on an idle connection whose dialer
// pings, the acceptor's PONGs are its writes, and its monitor's timer is
// moved past each (monitor.answered) instead of firing once per interval
// to find that out. (When the PINGs stop, the timer fires as before: the
// acceptor pings and judges the silence; TestBlackholeDetection.)
func TestAcceptorTimerRestsWhileAnswering(t *testing.T) {
	const interval = 100 * time.Millisecond
	srvHB := WithHeartbeat(Heartbeat{Interval: interval, Timeout: time.Second, MinInterval: 10 * time.Millisecond})
	srv, l, served := startServer(t, Empty{}, srvHB)
	defer func() {
		srv.Close()
		<-served
	}()
	c, err := Dial(context.Background(), l.Addr().String(), WithHeartbeat(Heartbeat{Interval: interval, Timeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, 5*time.Second, "the server to list the connection", func() bool { return len(srv.Peers()) == 1 })
	m := srv.Peers()[0].s.mon
	checks := func() uint32 {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.checks
	}
	// Twenty intervals of PINGs and PONGs. A timer that fired at each old
	// ping deadline would have fired about twenty times; a late PING now
	// and then (a loaded machine) may let it fire once or twice.
	before := checks()
	time.Sleep(20 * interval)
	if n := checks() - before; n >= 10 {
		t.Errorf("the acceptor's timer fired %d times in 20 intervals of answered PINGs, want few", n)
	}
	if st := c.Stats(); st.State != StateReady || st.Connects != 1 {
		t.Fatalf("client state %v after %d connects, want ready after 1", st.State, st.Connects)
	}
}

// TestMonitorSize: every connection with heartbeats allocates a monitor,
// so its size is part of an idle connection's memory. 256 bytes is a size
// class of Go's allocator; a monitor past it takes the next, 288.
func TestMonitorSize(t *testing.T) {
	if got, want := unsafe.Sizeof(monitor{}), uintptr(256); got > want {
		t.Errorf("unsafe.Sizeof(monitor{}) = %d, want <= %d", got, want)
	}
}
