//go:build !race

package liveness

import (
	"testing"
	"time"
)

// The hot paths allocate nothing: Observe runs on every heartbeat-scale
// read and Check on every liveness timer, for every connection.
func TestPhiAllocs(t *testing.T) {
	p := newPhi(t, DefaultPhiConfig(s, 3*s))
	var now time.Duration
	if n := testing.AllocsPerRun(1000, func() {
		now += s
		p.Observe(now, s)
	}); n != 0 {
		t.Errorf("Observe() allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if v := p.Check(now+s, now); v.Dead {
			t.Fatalf("Check() = %+v, want alive", v)
		}
		p.Phi(now+s, now)
	}); n != 0 {
		t.Errorf("Check() and Phi() allocate %v times, want 0", n)
	}
}

func BenchmarkPhiObserveCheck(b *testing.B) {
	p := newPhi(b, DefaultPhiConfig(s, 3*s))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var now time.Duration
		for pb.Next() {
			now += s
			p.Observe(now, s)
			p.Check(now+s, now)
		}
	})
}
