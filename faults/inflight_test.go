//go:build linux && faults

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bytes in flight from the server toward the client, sampled from outside
// the processes: the server socket's send queue (ss's Send-Q: bytes
// written by the server and not yet acknowledged by the client, unsent
// ones included, of which ss's notsent) in the server namespace, and the
// backlog of the router's qdisc toward the client (the part of them that
// waits in the shaped link's queue). With them, the server socket's
// smoothed TCP round-trip time (ss's rtt), which counts the time its
// segments wait in the queue whether or not a PING is sent. Sampling is
// bounded in count and time; it runs ss and tc only against this
// scenario's namespaces.
const (
	inflightEvery      = 100 * time.Millisecond
	inflightMaxSamples = 3000            // 5 minutes at inflightEvery
	inflightMaxRun     = 5 * time.Minute // and never longer than this
	inflightCmdTimeout = 2 * time.Second
)

// inflightSample is one look.
type inflightSample struct {
	at      time.Time
	sendQ   int     // server sockets to the client: bytes not yet acknowledged (Send-Q)
	notsent int     // of them, not yet sent
	backlog int     // bytes in the router's qdisc toward the client
	rttMS   float64 // the server socket's smoothed TCP RTT (the largest, of several)
}

// inflightSampler samples in the background until stopped.
type inflightSampler struct {
	once    sync.Once
	stopc   chan struct{}
	done    chan struct{}
	samples []inflightSample
	errs    int
	lastErr error
}

// sampleInflight starts sampling the bytes in flight from the server
// toward the client every inflightEvery, until stopped or the test ends.
func (n *vnet) sampleInflight() *inflightSampler {
	sp := &inflightSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	n.t.Cleanup(func() { sp.stop() })
	go func() {
		defer close(sp.done)
		tick := time.NewTicker(inflightEvery)
		defer tick.Stop()
		deadline := time.After(inflightMaxRun)
		for len(sp.samples)+sp.errs < inflightMaxSamples {
			smp, err := n.inflightNow()
			if err != nil {
				sp.errs++
				sp.lastErr = err
			} else {
				sp.samples = append(sp.samples, smp)
			}
			select {
			case <-sp.stopc:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
		}
	}()
	return sp
}

// stop ends the sampling and returns the samples.
func (sp *inflightSampler) stop() []inflightSample {
	sp.once.Do(func() { close(sp.stopc) })
	<-sp.done
	return sp.samples
}

// inflightNow takes one sample.
func (n *vnet) inflightNow() (inflightSample, error) {
	smp := inflightSample{at: time.Now()}
	out, err := runQuick("ss", "-N", n.srv, "-tinH", "sport", "=", ":"+serverPort)
	if err != nil {
		return smp, err
	}
	smp.sendQ, smp.notsent, smp.rttMS, err = parseSS(out)
	if err != nil {
		return smp, err
	}
	out, err = runQuick("tc", "-n", n.rtr, "-s", "-j", "qdisc", "show", "dev", rtrCliDev)
	if err != nil {
		return smp, err
	}
	smp.backlog, err = parseBacklog(out)
	return smp, err
}

// runQuick runs a command with a short timeout and returns its standard
// output.
func runQuick(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), inflightCmdTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// parseSS adds up Send-Q and notsent over the established sockets of
// `ss -tinH` output, and returns their largest smoothed RTT: a line per
// socket (state, Recv-Q, Send-Q, addresses), each followed by an indented
// line of its TCP info.
func parseSS(out string) (sendQ, notsent int, rttMS float64, err error) {
	estab := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			estab = f[0] == "ESTAB"
			if !estab {
				continue
			}
			if len(f) < 3 {
				return 0, 0, 0, fmt.Errorf("ss: short socket line %q", line)
			}
			q, err := strconv.Atoi(f[2])
			if err != nil {
				return 0, 0, 0, fmt.Errorf("ss: Send-Q in %q: %v", line, err)
			}
			sendQ += q
			continue
		}
		if !estab {
			continue
		}
		for _, kv := range f {
			if v, ok := strings.CutPrefix(kv, "notsent:"); ok {
				if q, err := strconv.Atoi(v); err == nil {
					notsent += q
				}
			}
			if v, ok := strings.CutPrefix(kv, "rtt:"); ok { // rtt:<srtt>/<rttvar>, ms
				v, _, _ = strings.Cut(v, "/")
				if r, err := strconv.ParseFloat(v, 64); err == nil {
					rttMS = max(rttMS, r)
				}
			}
		}
	}
	return sendQ, notsent, rttMS, nil
}

// parseBacklog returns the backlog bytes of the root qdisc in
// `tc -s -j qdisc show` output.
func parseBacklog(out string) (int, error) {
	var qs []struct {
		Root    bool `json:"root"`
		Backlog int  `json:"backlog"`
	}
	if err := json.Unmarshal([]byte(out), &qs); err != nil {
		return 0, fmt.Errorf("tc: %v", err)
	}
	for _, q := range qs {
		if q.Root {
			return q.Backlog, nil
		}
	}
	return 0, fmt.Errorf("tc: no root qdisc in %q", out)
}

// inflightStats are the numbers of a sampling.
type inflightStats struct {
	samples, errs             int
	lastErr                   error
	maxSendQ, medianSendQ     int // the medians are over the samples within the transfer
	maxBacklog, medianBacklog int
	maxNotsent                int
	maxRTTMS                  float64
}

// summarize computes the maxima over every sample and the medians over
// those taken between from and till (the transfer).
func summarize(sp *inflightSampler, samples []inflightSample, from, till time.Time) inflightStats {
	st := inflightStats{samples: len(samples), errs: sp.errs, lastErr: sp.lastErr}
	var qs, bs []int
	for _, smp := range samples {
		st.maxSendQ = max(st.maxSendQ, smp.sendQ)
		st.maxNotsent = max(st.maxNotsent, smp.notsent)
		st.maxBacklog = max(st.maxBacklog, smp.backlog)
		st.maxRTTMS = max(st.maxRTTMS, smp.rttMS)
		if !smp.at.Before(from) && !smp.at.After(till) {
			qs, bs = append(qs, smp.sendQ), append(bs, smp.backlog)
		}
	}
	st.medianSendQ, st.medianBacklog = median(qs), median(bs)
	return st
}

func median(v []int) int {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// recordInflight puts a sampling's numbers in the scenario's result and
// returns them in words for its Measured line.
func (s *scenario) recordInflight(st inflightStats) string {
	s.t.Logf("bytes in flight: %d samples (%d failed), Send-Q max %d median %d, notsent max %d, queue max %d median %d, TCP srtt max %.0f ms",
		st.samples, st.errs, st.maxSendQ, st.medianSendQ, st.maxNotsent, st.maxBacklog, st.medianBacklog, st.maxRTTMS)
	if st.lastErr != nil {
		s.t.Logf("bytes in flight: last failed sample: %v", st.lastErr)
	}
	if st.samples == 0 {
		return "bytes in flight not measured"
	}
	s.res.InflightSamples = st.samples
	s.res.MaxInflight, s.res.MedianInflight = ptr(st.maxSendQ), ptr(st.medianSendQ)
	s.res.MaxNotsent = ptr(st.maxNotsent)
	s.res.MaxQueueBytes, s.res.MedianQueueBytes = ptr(st.maxBacklog), ptr(st.medianBacklog)
	s.res.MaxTCPRTTMS = ptr(st.maxRTTMS)
	return fmt.Sprintf("bytes in flight up to %s (median %s), of them in the link's queue up to %s; server's TCP RTT up to %s",
		kib(st.maxSendQ), kib(st.medianSendQ), kib(st.maxBacklog), secs(st.maxRTTMS))
}

// kib formats bytes as KiB.
func kib(n int) string { return fmt.Sprintf("%.0f KiB", float64(n)/1024) }
