//go:build linux && faults

package faults

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/faults/internal/event"
)

// Slack is what a detection may take beyond Timeout: the timer's own
// lateness, a GOAWAY flush of at most 50 ms, the state hook, process
// scheduling on a loaded two-core machine. A detection later than Timeout
// plus Slack fails its scenario.
const Slack = 500 * time.Millisecond

// hungAfter: a call that has not returned this long after its deadline is
// hung (the agent's -hung-after).
const hungAfter = 2 * time.Second

var (
	writeDoc    = flag.Bool("write-doc", false, "write docs/faults.md and faults/testdata/results.json from this run")
	resultsPath = flag.String("results", "", "where to write the results (JSON); default $PULSE_FAULTS_RESULTS, or pulse-faults/results.json in the temporary directory")
	deepqWindow = flag.Bool("deepq-window", false, "run TestDeepQueueWindow, a measured variant of scenario 7 that is not part of the suite")
)

// hbSetting is a heartbeat setting under test.
type hbSetting struct {
	Interval, Timeout time.Duration
}

// settings are the heartbeat settings every scenario runs with.
var settings = []hbSetting{
	{time.Second, 3 * time.Second},
	{200 * time.Millisecond, time.Second},
}

func (h hbSetting) String() string { return fmt.Sprintf("%v/%v", h.Interval, h.Timeout) }

// name is the setting as a subtest name.
func (h hbSetting) name() string { return strings.ReplaceAll(h.String(), "/", "-") }

func (h hbSetting) args(detector string) []string {
	return []string{"-interval", h.Interval.String(), "-timeout", h.Timeout.String(), "-detector", detector}
}

// Result is what one scenario measured, with one setting.
type Result struct {
	ID         string  `json:"id"`       // scenario number, "2a" for a sub-case
	Scenario   string  `json:"scenario"` // what was done
	Test       string  `json:"test"`     // the Go test that ran it
	Heartbeat  string  `json:"heartbeat"`
	Detector   string  `json:"detector"`
	IntervalMS float64 `json:"interval_ms"`
	TimeoutMS  float64 `json:"bound_ms"` // the bound: Timeout
	SlackMS    float64 `json:"slack_ms"`

	// Detection times, from the fault (the moment before the command that
	// caused it ran) and from the last byte the side read before it.
	ClientDetectMS    *float64 `json:"client_detect_ms,omitempty"`
	ClientSinceReadMS *float64 `json:"client_since_read_ms,omitempty"`
	ClientReason      string   `json:"client_reason,omitempty"`
	ServerDetectMS    *float64 `json:"server_detect_ms,omitempty"`
	ServerSinceReadMS *float64 `json:"server_since_read_ms,omitempty"`
	ServerReason      string   `json:"server_reason,omitempty"`
	InflightFailMS    *float64 `json:"inflight_fail_ms,omitempty"`
	InflightError     string   `json:"inflight_error,omitempty"`
	ReconnectMS       *float64 `json:"reconnect_ms,omitempty"` // from the heal (or resume, or restart) to ready

	FalseDetections int            `json:"false_detections"`
	CallsOK         int            `json:"calls_ok"`
	CallsFailed     int            `json:"calls_failed"`
	CallsHung       int            `json:"calls_hung"`
	FailedKinds     map[string]int `json:"failed_kinds,omitempty"`

	BackoffMS       []float64 `json:"backoff_ms,omitempty"` // each client's reconnect delay after the restart
	BackoffSpreadMS *float64  `json:"backoff_spread_ms,omitempty"`
	MaxPhiClient    *float64  `json:"max_phi_client,omitempty"`
	MaxPhiServer    *float64  `json:"max_phi_server,omitempty"`
	PhiThreshold    float64   `json:"phi_threshold,omitempty"`
	TransferBytes   int       `json:"transfer_bytes,omitempty"`
	TransferMS      *float64  `json:"transfer_ms,omitempty"`
	LinkPerTimeout  int       `json:"link_bytes_per_timeout,omitempty"` // what the shaped link carries in Timeout
	MaxRTTMS        *float64  `json:"max_rtt_ms,omitempty"`
	MaxPauseMS      *float64  `json:"max_gc_pause_ms,omitempty"`
	MaxStallMS      *float64  `json:"max_stall_ms,omitempty"` // the server process's longest late wake-up
	Dropped         int       `json:"packets_dropped,omitempty"`

	// Bytes in flight from the server toward the client (scenario 7),
	// sampled every 100 ms: the server socket's Send-Q (written, not yet
	// acknowledged by the client; the medians are over the samples taken
	// during the large reply), the unsent part of it, and the backlog of
	// the router's queue toward the client; the server socket's largest
	// smoothed TCP RTT (ss), which counts the wait in that queue.
	InflightSamples  int      `json:"inflight_samples,omitempty"`
	MaxInflight      *int     `json:"max_inflight_bytes,omitempty"`
	MedianInflight   *int     `json:"median_inflight_bytes,omitempty"`
	MaxNotsent       *int     `json:"max_notsent_bytes,omitempty"`
	MaxQueueBytes    *int     `json:"max_queue_bytes,omitempty"`
	MedianQueueBytes *int     `json:"median_queue_bytes,omitempty"`
	MaxTCPRTTMS      *float64 `json:"max_tcp_rtt_ms,omitempty"`
	Window           int      `json:"window_bytes,omitempty"` // the client's flow-control window, when set (TestDeepQueueWindow)

	Measured   string   `json:"measured"` // the scenario's own numbers, in words
	DurationMS float64  `json:"duration_ms"`
	Pass       bool     `json:"pass"`
	Problems   []string `json:"problems,omitempty"`
}

var (
	resultsMu sync.Mutex
	results   []Result
	suiteT0   = time.Now()
)

func record(r Result) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results = append(results, r)
	if err := writeResults(resultsFile()); err != nil {
		fmt.Fprintln(os.Stderr, "faults: writing results:", err)
	}
}

// resultsFile is where results go.
func resultsFile() string {
	switch {
	case *resultsPath != "":
		return *resultsPath
	case os.Getenv("PULSE_FAULTS_RESULTS") != "":
		return os.Getenv("PULSE_FAULTS_RESULTS")
	}
	return filepath.Join(os.TempDir(), "pulse-faults", "results.json")
}

// writeResults writes every result so far; called with resultsMu held.
func writeResults(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(struct {
		Machine machine  `json:"machine"`
		Results []Result `json:"results"`
	}{thisMachine(), results}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() == 0 {
		removeLeftovers()
	}
	dir, err := os.MkdirTemp("", "pulse-faults-agent")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentPath = filepath.Join(dir, "agent")
	code := m.Run()
	os.RemoveAll(dir)
	resultsMu.Lock()
	n := len(results)
	resultsMu.Unlock()
	if n > 0 {
		fmt.Printf("faults: %d results in %s\n", n, resultsFile())
		if *writeDoc {
			if err := writeDocs(); err != nil {
				fmt.Fprintln(os.Stderr, "faults: writing the docs:", err)
				code = 1
			}
		}
	}
	os.Exit(code)
}

// scenario is one scenario run with one setting.
type scenario struct {
	t        *testing.T
	net      *vnet
	hb       hbSetting
	detector string
	res      Result
	start    time.Time
	logDir   string
	// expected are the periods in which a connection may be lost; a
	// loss outside them is a false detection.
	expected [][2]time.Time
	stopped  time.Time // when the scenario started stopping its agents
	known    bool      // a check failed and the failure is a known one
	resumed  bool      // checkDetection judges a side that was frozen, from its resumption
}

// newScenario builds the network for one scenario and records its result
// when the test ends.
func newScenario(t *testing.T, id, title string, hb hbSetting, detector string) *scenario {
	t.Helper()
	requirePrerequisites(t)
	s := &scenario{t: t, hb: hb, detector: detector, start: time.Now()}
	s.res = Result{ID: id, Scenario: title, Test: t.Name(), Heartbeat: hb.String(), Detector: detector,
		IntervalMS: ms(hb.Interval), TimeoutMS: ms(hb.Timeout), SlackMS: ms(Slack)}
	s.logDir = filepath.Join(filepath.Dir(resultsFile()), "logs", strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.res.DurationMS = ms(time.Since(s.start))
		s.res.Pass = !t.Failed() && !s.known
		if t.Failed() && len(s.res.Problems) == 0 {
			s.res.Problems = append(s.res.Problems, "the test failed before its checks (see the test log)")
		}
		record(s.res)
		t.Logf("result: %s; events in %s", s.res.Measured, s.logDir)
	})
	s.net = newNet(t)
	s.net.start = s.start
	t.Logf("scenario %s (%s), heartbeat %s, detector %s, slack %v", id, title, hb, detector, Slack)
	return s
}

// knownFailures are the scenario runs that fail for a reason understood
// but not yet fixed in the library. They run every check and record their
// numbers and problems (as failures, in docs/faults.md), and their failed
// checks are logged as KNOWN FAILURE instead of failing the suite. Every
// other failure fails it. Remove an entry once its cause is fixed.
var knownFailures = map[string]string{}

// fail records a failed check and fails the test, or, for a known
// failure, ends it as skipped.
func (s *scenario) fail(format string, args ...any) {
	s.t.Helper()
	msg := fmt.Sprintf(format, args...)
	s.res.Problems = append(s.res.Problems, msg)
	if why, ok := knownFailures[s.t.Name()]; ok {
		s.known = true
		s.t.Logf("KNOWN FAILURE (%s): %s", why, msg)
		return
	}
	s.t.Error(msg)
}

// bound is the most a detection may take.
func (s *scenario) bound() time.Duration { return s.hb.Timeout + Slack }

// rel formats a Unix-ns time relative to the scenario's start.
func (s *scenario) rel(ns int64) string {
	return fmt.Sprintf("+%.3fs", time.Unix(0, ns).Sub(s.start).Seconds())
}

// describe renders an event for the test log, or "" for routine ones.
func (s *scenario) describe(e event.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.rel(e.T), e.Ev)
	if e.C >= 0 {
		fmt.Fprintf(&b, " c%d", e.C)
	}
	switch e.Ev {
	case "stats", "call", "dialed":
		return ""
	case "state":
		if e.From == "connecting" && e.To == "connecting" {
			return "" // a failed redial
		}
		fmt.Fprintf(&b, " %s→%s", e.From, e.To)
		if e.LastRead != 0 {
			fmt.Fprintf(&b, " (%.0f ms after its last read)", ms(time.Duration(e.At-e.LastRead)))
		}
		if e.Err != "" {
			fmt.Fprintf(&b, ": %s", e.Err)
		}
	case "open":
		fmt.Fprintf(&b, " %s interval %v", e.Remote, e.Interval)
	case "closed":
		fmt.Fprintf(&b, " %s (%.0f ms after its last read): %s", e.Remote, ms(time.Duration(e.At-e.LastRead)), e.Err)
	case "inflight", "big":
		fmt.Fprintf(&b, " %s %s after %.0f ms", e.Method, e.Outcome, ms(time.Duration(e.End-e.Start)))
		if e.N > 0 {
			fmt.Fprintf(&b, ", %d bytes", e.N)
		}
		if e.Err != "" {
			fmt.Fprintf(&b, ": %s", e.Err)
		}
	case "hung":
		fmt.Fprintf(&b, " %s started %s, deadline %s", e.Method, s.rel(e.Start), s.rel(e.End))
	case "gc", "stall":
		fmt.Fprintf(&b, " %v", e.Pause.Round(time.Millisecond))
		if e.HeapMB > 0 {
			fmt.Fprintf(&b, " (heap %d MB)", e.HeapMB)
		}
	case "summary":
		if e.OK+e.Failed+e.Hung > 0 {
			fmt.Fprintf(&b, " ok %d failed %d hung %d", e.OK, e.Failed, e.Hung)
		}
		if len(e.Kinds) > 0 {
			fmt.Fprintf(&b, " %v", e.Kinds)
		}
		if e.MaxPhi > 0 {
			fmt.Fprintf(&b, " max phi %.2f", e.MaxPhi)
		}
		if e.MaxRTT > 0 {
			fmt.Fprintf(&b, " max rtt %v", e.MaxRTT.Round(time.Millisecond))
		}
		if e.MaxGap > 0 {
			fmt.Fprintf(&b, " longest stall %v", e.MaxGap.Round(time.Millisecond))
		}
	default:
		for _, f := range []string{e.Addr, e.Remote, e.Info, e.Err} {
			if f != "" {
				b.WriteString(" " + f)
			}
		}
	}
	return b.String()
}

// startServer starts a server agent in the server namespace and waits
// until it listens.
func (s *scenario) startServer(name string, o agentOpts, extra ...string) *agent {
	s.t.Helper()
	o.ns = s.net.srv
	args := append([]string{"-mode", "server", "-addr", serverAddr}, s.hb.args(s.detector)...)
	a := s.startAgent(name, o, append(args, extra...)...)
	a.mustWait(15*time.Second, "listening", func(e event.Event) bool { return e.Ev == "listening" })
	return a
}

// startClients starts a client agent with n clients in the client
// namespace, dialing addr, and waits until every client is connected.
func (s *scenario) startClients(name, addr string, n int, o agentOpts, extra ...string) *agent {
	s.t.Helper()
	o.ns = s.net.cli
	args := append([]string{"-mode", "client", "-addr", addr, "-clients", fmt.Sprint(n),
		"-hung-after", hungAfter.String()}, s.hb.args(s.detector)...)
	a := s.startAgent(name, o, append(args, extra...)...)
	for c := range n {
		a.mustWait(30*time.Second, fmt.Sprintf("client %d connected", c), func(e event.Event) bool { return e.Ev == "dialed" && e.C == c })
	}
	return a
}

// startRelay starts the delaying relay in the router namespace.
func (s *scenario) startRelay(delay, jitter time.Duration) *agent {
	s.t.Helper()
	a := s.startAgent("relay", agentOpts{ns: s.net.rtr}, "-mode", "relay", "-listen", relayAddr, "-target", serverAddr,
		"-delay", delay.String(), "-jitter", jitter.String())
	a.mustWait(15*time.Second, "listening", func(e event.Event) bool { return e.Ev == "listening" })
	return a
}

// settle lets the connections run undisturbed: at least a second and
// three heartbeat intervals.
func (s *scenario) settle() { time.Sleep(max(time.Second, 3*s.hb.Interval)) }

// expect declares that connections may be lost between from and to.
func (s *scenario) expect(from, to time.Time) {
	s.expected = append(s.expected, [2]time.Time{from, to})
}

// isLoss reports whether e is a client losing its connection.
func isLoss(e event.Event) bool {
	return e.Ev == "state" && (e.From == "ready" || e.From == "suspect") &&
		(e.To == "connecting" || e.To == "draining" || e.To == "closed" || e.To == "idle")
}

// lossOf matches client c losing its connection at or after t.
func lossOf(c int, t time.Time) func(event.Event) bool {
	return func(e event.Event) bool { return isLoss(e) && e.C == c && e.At >= t.UnixNano() }
}

// readyOf matches client c becoming ready at or after t.
func readyOf(c int, t time.Time) func(event.Event) bool {
	return func(e event.Event) bool {
		return e.Ev == "state" && e.To == "ready" && e.C == c && e.At >= t.UnixNano()
	}
}

// closedAfter matches the server closing a connection at or after t.
func closedAfter(t time.Time) func(event.Event) bool {
	return func(e event.Event) bool { return e.Ev == "closed" && e.At >= t.UnixNano() }
}

// stopAll stops the agents, clients first, so that their summaries are
// written, and marks the end of the period in which losses count.
func (s *scenario) stopAll(agents ...*agent) {
	s.t.Helper()
	s.stopped = time.Now()
	for _, a := range agents {
		a.stop(30 * time.Second)
	}
}

// checkDetection records one side's detection of the fault at fault: the
// time from the fault and, when the side knows it, from the last byte it
// read. The guarantee (docs/liveness.md) is the latter: within Timeout of
// the last byte read, plus slack. With fromFault, the detection must also
// come within Timeout + Slack of the fault itself: where the fault
// silences the peer at once, its last byte came before the fault.
func (s *scenario) checkDetection(side string, e event.Event, fault time.Time, fromFault bool) {
	s.t.Helper()
	at := time.Unix(0, e.At)
	v := ms(at.Sub(fault))
	reason := e.Reason
	if reason == "" {
		reason = e.Err
	}
	var sinceRead *float64
	if e.LastRead != 0 {
		sinceRead = ptr(ms(time.Duration(e.At - e.LastRead)))
	}
	switch side {
	case "client":
		s.res.ClientDetectMS, s.res.ClientSinceReadMS, s.res.ClientReason = &v, sinceRead, reason
	default:
		s.res.ServerDetectMS, s.res.ServerSinceReadMS, s.res.ServerReason = &v, sinceRead, reason
	}
	s.t.Logf("%s detected %.0f ms after the fault, %s after its last read (bound %v + %v): %s",
		side, v, secsPtr(sinceRead), s.hb.Timeout, Slack, e.Err)
	if fromFault && v > ms(s.bound()) {
		s.fail("%s detected %.0f ms after the fault, over Timeout %v + slack %v", side, v, s.hb.Timeout, Slack)
	}
	switch {
	case s.resumed:
		// The side was stopped (SIGSTOP): its last read came before it
		// froze, so only the time from its resumption says anything.
	case sinceRead != nil && *sinceRead > ms(s.bound()):
		s.fail("%s detected %.0f ms after the last byte it read, over Timeout %v + slack %v", side, *sinceRead, s.hb.Timeout, Slack)
	case sinceRead == nil && !fromFault:
		s.fail("%s detected without saying when it last read a byte", side)
	}
}

// checkOutcomes takes the calls' outcomes from the clients' summary and
// checks that none hung and every failure was a typed error. allowConn
// says whether connection errors are expected (the scenario breaks the
// connection).
func (s *scenario) checkOutcomes(cli *agent, allowConn bool) {
	s.t.Helper()
	sum, ok := cli.summary(-1)
	if !ok {
		s.fail("%s wrote no summary", cli.name)
		return
	}
	s.res.CallsOK, s.res.CallsFailed, s.res.CallsHung, s.res.FailedKinds = sum.OK, sum.Failed, sum.Hung, sum.Kinds
	if sum.OK == 0 {
		s.fail("no call succeeded")
	}
	if sum.Hung > 0 {
		s.fail("%d calls hung (no return within their deadline + %v)", sum.Hung, hungAfter)
	}
	for kind, n := range sum.Kinds {
		switch {
		case strings.HasPrefix(kind, "untyped"):
			s.fail("%d calls failed with an untyped error: %s", n, kind)
		case strings.HasPrefix(kind, "ConnError") && !allowConn:
			s.fail("%d calls failed with a connection error on a healthy path: %s", n, kind)
		}
	}
	if sum.MaxPhi > 0 || s.detector == "phi" {
		s.res.MaxPhiClient = ptr(sum.MaxPhi)
	}
	if sum.MaxRTT > 0 {
		s.res.MaxRTTMS = ptr(ms(sum.MaxRTT))
	}
}

// countFalse counts connection losses, on either side, outside the
// expected periods and before the agents were stopped.
func (s *scenario) countFalse(clients []*agent, servers []*agent) {
	s.t.Helper()
	expected := func(at int64) bool {
		if !s.stopped.IsZero() && at >= s.stopped.UnixNano() {
			return true
		}
		for _, w := range s.expected {
			if at >= w[0].UnixNano() && at <= w[1].UnixNano() {
				return true
			}
		}
		return false
	}
	n := 0
	for _, a := range clients {
		for _, e := range a.events() {
			if isLoss(e) && !expected(e.At) {
				n++
				s.fail("false detection: %s: client %d lost its connection at %s: %s", a.name, e.C, s.rel(e.At), e.Err)
			}
		}
	}
	for _, a := range servers {
		for _, e := range a.events() {
			if e.Ev == "closed" && !expected(e.At) {
				n++
				s.fail("false detection: %s: closed %s at %s: %s", a.name, e.Remote, s.rel(e.At), e.Err)
			}
		}
	}
	s.res.FalseDetections = n
}

// serverSummary records the server's largest phi and longest stall.
func (s *scenario) serverSummary(srv *agent) {
	if sum, ok := srv.summary(-1); ok {
		if sum.MaxPhi > 0 || s.detector == "phi" {
			s.res.MaxPhiServer = ptr(sum.MaxPhi)
		}
		s.res.MaxStallMS = ptr(ms(sum.MaxGap))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func ptr[T any](v T) *T { return &v }

// secs formats milliseconds as seconds.
func secs(v float64) string { return fmt.Sprintf("%.2f s", v/1000) }

// machine describes where the results come from.
type machine struct {
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	CPUs   int    `json:"cpus"`
	CPU    string `json:"cpu"`
	Date   string `json:"date"`
}

var thisMachine = sync.OnceValue(func() machine {
	m := machine{Go: runtime.Version(), CPUs: runtime.NumCPU(), Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
})

// sortedResults returns the results in scenario order, then the slower
// setting first.
func sortedResults() []Result {
	resultsMu.Lock()
	rs := slices.Clone(results)
	resultsMu.Unlock()
	slices.SortStableFunc(rs, func(a, b Result) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		if a.TimeoutMS != b.TimeoutMS {
			if a.TimeoutMS > b.TimeoutMS {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Detector, b.Detector)
	})
	return rs
}
