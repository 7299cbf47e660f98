package session

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// TestPingerIdlePair: on an idle connection the dialer pings once per
// interval and the acceptor answers each PING with a PONG, and pings
// neither itself nor more often: one PING and one PONG per interval.
func TestPingerIdlePair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		hb := Heartbeat{Interval: interval, Timeout: 4 * interval}
		p := newPipePair(t, bubbleConfig(hb), bubbleConfig(hb))
		for i := 1; i <= 10; i++ {
			time.Sleep(interval)
			synctest.Wait() // the PING of this interval answered
			if n := p.dialerTap.count(wire.TypePing); n != i {
				t.Fatalf("after %d intervals the dialer sent %d PINGs, want %d", i, n, i)
			}
			if n := p.acceptorTap.count(wire.TypePong); n != i {
				t.Fatalf("after %d intervals the acceptor sent %d PONGs, want %d", i, n, i)
			}
		}
		if n := p.acceptorTap.count(wire.TypePing); n != 0 {
			t.Errorf("the acceptor, answering the dialer's PINGs, sent %d PINGs of its own", n)
		}
		if n := p.dialerTap.count(wire.TypePong); n != 0 {
			t.Errorf("the dialer sent %d PONGs, for PINGs nobody sent", n)
		}
		for _, typ := range []wire.FrameType{wire.TypeCall, wire.TypeReply, wire.TypeNotify, wire.TypeGoAway} {
			if n := p.dialerTap.count(typ) + p.acceptorTap.count(typ); n != 0 {
				t.Errorf("%d %v frames on an idle connection", n, typ)
			}
		}
		rtt := p.dialer.Stats().RTT
		if rtt < 0 || rtt >= interval {
			t.Errorf("the dialer's round trip from its heartbeats is %v", rtt)
		}
		for _, s := range []*Session{p.dialer, p.acceptor} {
			if err := s.Err(); err != nil {
				t.Fatalf("session closed on an idle connection with heartbeats: %v", err)
			}
		}
	})
}

// TestPingerSilentPeer: a peer that falls silent (it still reads, but
// nothing it writes arrives) is declared dead within the Timeout of its
// silence, not before, by either side's monitor.
func TestPingerSilentPeer(t *testing.T) {
	for _, tt := range []struct {
		name   string
		silent func(*pipePair) (judge *Session, tap *tapConn)
	}{
		{"acceptor silent", func(p *pipePair) (*Session, *tapConn) { return p.dialer, p.acceptorTap }},
		{"dialer silent", func(p *pipePair) (*Session, *tapConn) { return p.acceptor, p.dialerTap }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const interval, timeout = time.Second, 4 * time.Second
				hb := Heartbeat{Interval: interval, Timeout: timeout}
				p := newPipePair(t, bubbleConfig(hb), bubbleConfig(hb))
				judge, tap := tt.silent(p)
				time.Sleep(3*interval + interval/2) // heartbeats flow
				synctest.Wait()
				tap.mute()
				muted := time.Now()
				lastHeard := time.Duration(judge.now() - judge.rd.last.Load())
				<-judge.Done()
				after := time.Since(muted)
				if err := judge.Err(); err == nil || err.Reason != ReasonSilent {
					t.Fatalf("close reason = %v, want %v", err, ReasonSilent)
				}
				if after > timeout {
					t.Errorf("a peer was declared dead %v after it fell silent, want within the Timeout (%v)", after, timeout)
				}
				if silence := lastHeard + after; silence < timeout {
					t.Errorf("the peer was declared dead after %v of silence, less than the Timeout (%v)", silence, timeout)
				}
			})
		})
	}
}

// TestPingRoundTrip: Session.Ping gets its PONG, also when several Pings
// are made at the same instant (the clock has not moved: a synctest
// bubble, or a coarse clock), the first at the clock's epoch, and fails
// with the context or the session.
func TestPingRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hb := Heartbeat{Interval: time.Second, Timeout: 4 * time.Second}
		p := newPipePair(t, bubbleConfig(hb), bubbleConfig(hb))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, s := range []*Session{p.dialer, p.dialer, p.acceptor, p.acceptor} {
			wg.Go(func() {
				if rtt, err := s.Ping(ctx); err != nil || rtt != 0 {
					t.Errorf("Ping over a pipe in a bubble = %v, %v; want 0, nil", rtt, err)
				}
			})
		}
		wg.Wait()

		// A PING that is never answered: the context ends the wait.
		p.acceptorTap.mute()
		ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel2()
		if _, err := p.dialer.Ping(ctx2); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Ping of a muted peer = %v, want %v", err, context.DeadlineExceeded)
		}
		p.dialer.mu.Lock()
		left := len(p.dialer.pings)
		p.dialer.mu.Unlock()
		if left != 0 {
			t.Errorf("%d Pings still wait for their PONG after their contexts ended", left)
		}

		p.dialer.Close()
		if _, err := p.dialer.Ping(context.Background()); !isReason(err, ReasonShutdown) {
			t.Errorf("Ping of a closed session = %v, want %v", err, ReasonShutdown)
		}
	})
}
