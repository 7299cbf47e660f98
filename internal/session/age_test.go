package session

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// TestMaxConnAgeExact: without jitter, the age GOAWAY goes out exactly at
// MaxConnAge, and with no grace the connection closes then, even with a
// call running (the short-connection mode's absolute deadline).
func TestMaxConnAgeExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age = 10 * time.Second
		acfg := bubbleConfig(Heartbeat{})
		acfg.Limits = Limits{MaxConnAge: age}
		start := time.Now()
		p := newPipePair(t, bubbleConfig(Heartbeat{}), acfg, Sleeper{})
		var reply time.Duration
		_, done := startSleep(p.dialer, time.Minute, &reply)

		time.Sleep(age - time.Since(start) - time.Nanosecond)
		synctest.Wait()
		if n := p.acceptorTap.count(wire.TypeGoAway); n != 0 {
			t.Fatalf("%d GOAWAYs 1ns before MaxConnAge, want 0", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if n := p.acceptorTap.count(wire.TypeGoAway); n != 1 {
			t.Fatalf("%d GOAWAYs at MaxConnAge, want 1", n)
		}
		select {
		case <-p.acceptor.Done():
		default:
			t.Errorf("the connection is open at MaxConnAge with no grace")
		}
		if err := <-done; err == nil {
			t.Errorf("a call running at MaxConnAge with no grace succeeded")
		}
		if d := time.Since(start); d != age {
			t.Errorf("closed %v after the start, want exactly %v", d, age)
		}
	})
}

// TestMaxConnAgeJitter: with jitter, each connection's GOAWAY comes within
// MaxConnAge ± the fraction, and not all at the same moment.
func TestMaxConnAgeJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const age, jitter, n = 10 * time.Second, 0.1, 8
		start := time.Now()
		pairs := make([]*pipePair, n)
		for i := range pairs {
			acfg := bubbleConfig(Heartbeat{})
			acfg.Limits = Limits{MaxConnAge: age, MaxConnAgeGrace: time.Second, MaxConnAgeJitter: jitter}
			pairs[i] = newPipePair(t, bubbleConfig(Heartbeat{}), acfg)
		}
		at := map[time.Duration]bool{} // the moments new GOAWAYs were seen
		seen := 0
		for step := time.Duration(0); seen < n && step <= 2*age; step += 10 * time.Millisecond {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			seen = 0
			for _, p := range pairs {
				if p.acceptorTap.count(wire.TypeGoAway) > 0 {
					seen++
				}
			}
			if seen > len(at) {
				at[time.Since(start)] = true
			}
		}
		if seen != n {
			t.Fatalf("%d of %d connections got their age GOAWAY within %v", seen, n, 2*age)
		}
		lo, hi := time.Duration(float64(age)*(1-jitter)), time.Duration(float64(age)*(1+jitter))
		for d := range at {
			if d < lo-10*time.Millisecond || d > hi+10*time.Millisecond {
				t.Errorf("an age GOAWAY at %v, want within [%v, %v]", d, lo, hi)
			}
		}
		if len(at) < 2 {
			t.Errorf("all %d connections went away at the same moment with jitter %v", n, jitter)
		}
	})
}
