package liveness

import (
	"encoding/binary"
	"math"
	"testing"
	"time"
)

// FuzzPhi feeds a detector gaps from the input and checks, for two
// silences a <= b under the same history: phi is finite and in [0, MaxPhi],
// phi(a) <= phi(b), Check agrees with its own NextCheck, and the running
// sums match a recomputation.
func FuzzPhi(f *testing.F) {
	f.Add([]byte{}, uint8(0), uint8(0), int64(0), int64(s))
	f.Add([]byte{0xe8, 0x03, 0xe8, 0x03, 0xe8, 0x03}, uint8(3), uint8(8), int64(1500*ms), int64(2*s))
	f.Add([]byte{0x01, 0x00, 0xff, 0xff, 0x10, 0x27}, uint8(200), uint8(1), int64(-5), int64(math.MaxInt64))
	f.Add([]byte{0xf4, 0x01, 0xdc, 0x05, 0xe8, 0x03, 0x20, 0x03}, uint8(0), uint8(255), int64(2600*ms), int64(2601*ms))

	f.Fuzz(func(t *testing.T, data []byte, window, threshold uint8, a, b int64) {
		cfg := PhiConfig{
			Threshold: float64(threshold)/8 + 0.125, // 0.125 .. 32
			Window:    2 + int(window)%64,
			MinStdDev: time.Duration(threshold%16) * ms, // 0 means FirstGap/10
			Floor:     time.Duration(window%4) * s / 2,
			Ceiling:   10 * s,
			FirstGap:  s,
		}
		p, err := NewPhiAccrual(cfg)
		if err != nil {
			t.Fatalf("NewPhiAccrual(%+v) failed: %v", cfg, err)
		}
		ref := &naive{}
		ref.add(s-s/4, cfg.Window)
		ref.add(s+s/4, cfg.Window)
		for len(data) >= 2 {
			// Gaps from 0 (ignored) to 65.535s (capped at Ceiling), in ms.
			gap := time.Duration(binary.LittleEndian.Uint16(data)) * ms
			data = data[2:]
			p.Observe(0, gap)
			if gap > 0 {
				ref.add(min(gap, cfg.Ceiling), cfg.Window)
			}
		}
		checkAgainstNaive(t, p, ref)

		// Silences from 0 to 20s, nanosecond-grained.
		sa := time.Duration(uint64(a) % uint64(20*s))
		sb := time.Duration(uint64(b) % uint64(20*s))
		if sa > sb {
			sa, sb = sb, sa
		}
		const last = time.Hour
		pa, pb := p.Phi(last+sa, last), p.Phi(last+sb, last)
		for _, phi := range []float64{pa, pb} {
			if math.IsNaN(phi) || math.IsInf(phi, 0) || phi < 0 || phi > MaxPhi {
				t.Fatalf("Phi() = %v, want finite in [0, %v]", phi, MaxPhi)
			}
		}
		if pa > pb+1e-12*max(1, pb) {
			t.Fatalf("Phi() after %v = %v > Phi() after %v = %v, want monotone in silence", sa, pa, sb, pb)
		}
		for _, sil := range []time.Duration{sa, sb} {
			v := p.Check(last+sil, last)
			if v.Dead != (sil >= v.NextCheck-last) {
				t.Fatalf("Check() after %v = %+v, want Dead exactly when silence >= NextCheck", sil, v)
			}
			if v.NextCheck < last+cfg.Floor || v.NextCheck > last+cfg.Ceiling {
				t.Fatalf("Check() NextCheck after %v, want in [Floor %v, Ceiling %v]", v.NextCheck-last, cfg.Floor, cfg.Ceiling)
			}
		}
		if va, vb := p.Check(last+sa, last), p.Check(last+sb, last); va.Dead && !vb.Dead {
			t.Fatalf("Check() dead after %v but alive after %v", sa, sb)
		}
		// phiOfZ is monotone on its own, for any two z.
		za, zb := float64(a)/float64(1<<58), float64(b)/float64(1<<58) // about ±32
		if za > zb {
			za, zb = zb, za
		}
		if phiOfZ(za) > phiOfZ(zb)+1e-12*max(1, phiOfZ(zb)) {
			t.Fatalf("phiOfZ(%v) = %v > phiOfZ(%v) = %v", za, phiOfZ(za), zb, phiOfZ(zb))
		}
	})
}
