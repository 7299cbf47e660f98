package liveness_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/pulse-rpc/pulse/liveness"
)

func ExampleFixed() {
	det := liveness.Fixed{Timeout: 3 * time.Second}
	last := 10 * time.Second // the last byte arrived 10s after the epoch

	v := det.Check(12*time.Second, last)
	fmt.Println(v.Dead, v.NextCheck)
	v = det.Check(v.NextCheck, last)
	fmt.Println(v.Dead, v.Reason)
	// Output:
	// false 13s
	// true no byte for 3s (timeout 3s)
}

func ExamplePhiAccrual() {
	cfg := liveness.DefaultPhiConfig(time.Second, 3*time.Second)
	fmt.Printf("floor %v, ceiling %v, pause %v\n", cfg.Floor, cfg.Ceiling, cfg.Pause)

	det, err := liveness.NewPhiAccrual(cfg)
	if err != nil {
		panic(err)
	}
	// A steady link: a heartbeat every second, give or take 20ms.
	var now time.Duration
	for i := range 100 {
		gap := time.Second + time.Duration(i%3-1)*20*time.Millisecond
		now += gap
		det.Observe(now, gap)
	}
	mean, sd, _ := det.Estimate()
	fmt.Printf("mean %v (pause included), stddev %v (MinStdDev)\n", mean, sd)

	last := now
	for _, silence := range []time.Duration{1100 * time.Millisecond, 1900 * time.Millisecond} {
		fmt.Printf("phi after %v: %.1f\n", silence, det.Phi(last+silence, last))
	}
	v := det.Check(last+1900*time.Millisecond, last)
	fmt.Println(v.Dead, v.NextCheck-last) // phi is past 8, but the floor holds
	v = det.Check(v.NextCheck, last)
	fmt.Println(v.Dead, v.Reason)
	// Output:
	// floor 2s, ceiling 3s, pause 200ms
	// mean 1.1998s (pause included), stddev 100ms (MinStdDev)
	// phi after 1.1s: 0.1
	// phi after 1.9s: 11.9
	// false 2s
	// true phi 15.2 >= threshold 8 after 2s of silence
}

func ExampleStallGuard() {
	det := liveness.Fixed{Timeout: 3 * time.Second}
	guard := liveness.StallGuard{} // slack 250ms, grace 100ms

	// The timer was armed for 13s but the process was stopped until 18s.
	scheduled, now, last := 13*time.Second, 18*time.Second, 10*time.Second
	v := guard.Review(det.Check(now, last), scheduled, now)
	fmt.Println(v.Dead, v.NextCheck)
	// Output:
	// false 18.1s
}

func ExampleBackoff() {
	b := liveness.DefaultBackoff()
	var limits []string
	for attempt := range 12 {
		limits = append(limits, b.Limit(attempt).Round(time.Millisecond).String())
	}
	fmt.Println(strings.Join(limits, " "))
	// rnd is normally rand.Float64; half of the bound here.
	fmt.Println(b.Delay(3, func() float64 { return 0.5 }))
	// Output:
	// 100ms 160ms 256ms 410ms 655ms 1.049s 1.678s 2.684s 4.295s 6.872s 10s 10s
	// 204.8ms
}
