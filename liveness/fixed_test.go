package liveness

import (
	"testing"
	"time"
)

func TestFixedCheck(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name       string
		timeout    time.Duration
		now, last  time.Duration
		wantDead   bool
		wantNext   time.Duration
		wantReason string
	}{
		{name: "fresh", timeout: 3 * s, now: 10 * s, last: 10 * s, wantNext: 13 * s},
		{name: "below", timeout: 3 * s, now: 12*s + 999*time.Millisecond, last: 10 * s, wantNext: 13 * s},
		{name: "at", timeout: 3 * s, now: 13 * s, last: 10 * s, wantDead: true, wantNext: 13 * s,
			wantReason: "no byte for 3s (timeout 3s)"},
		{name: "above", timeout: 3 * s, now: 14*s + 500*time.Millisecond, last: 10 * s, wantDead: true, wantNext: 13 * s,
			wantReason: "no byte for 4.5s (timeout 3s)"},
		{name: "sub-ms rounding", timeout: 3 * s, now: 13*s + 1234567, last: 10 * s, wantDead: true, wantNext: 13 * s,
			wantReason: "no byte for 3.001s (timeout 3s)"},
		// A read that raced with the check and stored a time after now.
		{name: "arrival after now", timeout: 3 * s, now: 10 * s, last: 10*s + time.Millisecond, wantNext: 13*s + time.Millisecond},
		{name: "epoch", timeout: 3 * s, now: 0, last: 0, wantNext: 3 * s},
		{name: "disabled", timeout: 0, now: time.Hour, last: 0, wantNext: Never},
		{name: "negative disables", timeout: -s, now: time.Hour, last: 0, wantNext: Never},
		{name: "no overflow", timeout: Never, now: time.Hour, last: time.Minute, wantNext: Never},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Fixed{Timeout: tt.timeout}
			f.Observe(tt.now, time.Hour) // no effect
			v := f.Check(tt.now, tt.last)
			want := Verdict{Dead: tt.wantDead, Reason: tt.wantReason, NextCheck: tt.wantNext}
			if v != want {
				t.Errorf("Fixed{%v}.Check(%v, %v) = %+v, want %+v", tt.timeout, tt.now, tt.last, v, want)
			}
			if !v.Dead && v.NextCheck <= tt.now {
				t.Errorf("Fixed{%v}.Check(%v, %v).NextCheck = %v, want after now", tt.timeout, tt.now, tt.last, v.NextCheck)
			}
			if phi := f.Phi(tt.now, tt.last); phi != 0 {
				t.Errorf("Fixed.Phi() = %v, want 0", phi)
			}
		})
	}
}
