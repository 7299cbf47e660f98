package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"time"

	"github.com/pulse-rpc/pulse"
)

func init() {
	register(&command{name: "ping", short: "heartbeat a server like ping(8) and report round-trip times", run: runPing})
}

func runPing(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ping", "[flags] [ADDR]", stderr)
	count := fs.Int("c", 0, "stop after this many pings (0: until interrupted)")
	interval := fs.Duration("i", time.Second, "wait this long between pings")
	wait := fs.Duration("W", 2*time.Second, "wait this long for each PONG")
	asJSON := fs.Bool("json", false, "print one JSON object with the statistics instead of text")
	var tf tlsClientFlags
	tf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	addr, err := optionalAddr(fs)
	if err != nil {
		return err
	}
	if *count < 0 || *interval < 10*time.Millisecond || *wait <= 0 {
		return usageError{"-c must be >= 0, -i at least 10ms, -W positive"}
	}
	opts, err := tf.options()
	if err != nil {
		return err
	}
	// Propose a heartbeat interval of twice the ping interval: the pings
	// sent here count as this side's writes, so no heartbeat of its own
	// goes between them, and the server, which tolerates pings half a
	// granted interval apart, accepts one per ping interval.
	hb := pulse.Heartbeat{Interval: 2 * *interval}
	hb.Timeout = max(pulse.DefaultTimeout, 4*hb.Interval)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, *wait+5*time.Second)
	c, err := dialForCommand(dctx, addr, append(opts, pulse.WithHeartbeat(hb))...)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	out := stdout
	if *asJSON {
		out = io.Discard
	}
	fmt.Fprintf(out, "PING %s (%s, heartbeat interval %v)\n", addr, c.Peer().RemoteAddr(), c.Stats().Interval)

	var (
		sent, received int
		rtts           []time.Duration
		start          = time.Now()
	)
	for seq := 1; *count == 0 || seq <= *count; seq++ {
		if seq > 1 {
			select {
			case <-time.After(*interval):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		pctx, cancel := context.WithTimeout(ctx, *wait)
		rtt, err := c.Ping(pctx)
		cancel()
		switch {
		case err == nil:
			received++
			rtts = append(rtts, rtt)
			fmt.Fprintf(out, "pong from %s: seq=%d time=%.3f ms\n", addr, seq, ms(rtt))
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Fprintf(out, "no pong from %s: seq=%d timeout after %v\n", addr, seq, *wait)
		case ctx.Err() != nil:
			sent--
		default:
			fmt.Fprintf(out, "no pong from %s: seq=%d: %v\n", addr, seq, err)
		}
	}
	fmt.Fprintf(out, "\n--- %s pulse ping statistics ---\n", addr)
	loss := 0.0
	if sent > 0 {
		loss = 100 * float64(sent-received) / float64(sent)
	}
	fmt.Fprintf(out, "%d pings transmitted, %d received, %.1f%% loss, time %v\n", sent, received, loss, time.Since(start).Round(time.Millisecond))
	stats := pingStats{Addr: addr, Transmitted: sent, Received: received, LossPercent: loss, Seconds: time.Since(start).Seconds()}
	if received > 0 {
		lo, hi, sum := rtts[0], rtts[0], time.Duration(0)
		for _, r := range rtts {
			lo, hi, sum = min(lo, r), max(hi, r), sum+r
		}
		mean := float64(sum) / float64(len(rtts))
		var variance float64
		for _, r := range rtts {
			variance += (float64(r) - mean) * (float64(r) - mean)
		}
		sd := time.Duration(math.Sqrt(variance / float64(len(rtts))))
		fmt.Fprintf(out, "rtt min/avg/max/stddev = %.3f/%.3f/%.3f/%.3f ms\n", ms(lo), mean/1e6, ms(hi), ms(sd))
		stats.RTTms = &rttStats{Min: ms(lo), Avg: mean / 1e6, Max: ms(hi), Stddev: ms(sd)}
	}
	if *asJSON {
		if err := json.NewEncoder(stdout).Encode(stats); err != nil {
			return err
		}
	}
	if received == 0 {
		return fmt.Errorf("no pong from %s", addr)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// pingStats is the JSON output of "pulse ping -json".
type pingStats struct {
	Addr        string    `json:"addr"`
	Transmitted int       `json:"transmitted"`
	Received    int       `json:"received"`
	LossPercent float64   `json:"loss_percent"`
	Seconds     float64   `json:"seconds"`
	RTTms       *rttStats `json:"rtt_ms,omitempty"`
}

type rttStats struct {
	Min    float64 `json:"min"`
	Avg    float64 `json:"avg"`
	Max    float64 `json:"max"`
	Stddev float64 `json:"stddev"`
}
