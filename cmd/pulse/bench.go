package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/hist"
)

func init() {
	register(&command{name: "bench", short: "load a server with concurrent calls and report throughput and latency",
		run: func(args []string, stdout, stderr io.Writer) error {
			return runBench(args, stdout, stderr, isTerminalFile(os.Stderr))
		}})
}

// isTerminalFile reports whether f is a terminal (a character device).
func isTerminalFile(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

const (
	benchMaxErrorSamples = 5  // distinct error messages reported
	benchHistRows        = 20 // most rows in the text histogram
	benchBarWidth        = 40 // widest bar in the text histogram
)

// benchConfig is a parsed "pulse bench" command line.
type benchConfig struct {
	addr     string
	method   string
	raw      bool   // send rawArgs over the json codec instead of an Echo payload
	rawArgs  []byte // JSON arguments when raw
	payload  string // Echo.Echo's message when !raw
	size     int    // bytes of arguments: len(payload) or len(rawArgs)
	c, conns int
	n        int64         // calls to make; 0: no bound on the count
	d        time.Duration // how long to run; 0: no bound on the time
	timeout  time.Duration
	warmup   time.Duration
	json     bool
	opts     []pulse.Option
}

func runBench(args []string, stdout, stderr io.Writer, progress bool) error {
	cfg, err := parseBench(args, stderr)
	if err != nil {
		return err
	}

	// Signals first: from here on SIGINT ends the run with a partial
	// result; a second one kills as usual.
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	go func() {
		<-sigCtx.Done()
		stopSignals()
	}()

	clients, err := benchDialAll(sigCtx, cfg)
	if err != nil {
		if sigCtx.Err() != nil {
			return errors.New("interrupted while connecting")
		}
		var ce *pulse.ConnError
		if errors.As(err, &ce) && ce.Err != nil {
			err = ce.Err
		}
		return fmt.Errorf("cannot connect to %s: %v", cfg.addr, err)
	}
	defer func() {
		var wg sync.WaitGroup
		for _, cl := range clients {
			wg.Go(func() { cl.Close() })
		}
		wg.Wait()
	}()
	codecName := clients[0].Peer().Codec()
	if !cfg.json {
		fmt.Fprintf(stdout, "Benchmarking %s: %s\n\n", cfg.addr, cfg.describe(codecName))
	}

	if cfg.warmup > 0 {
		runBenchPhase(sigCtx, clients, cfg, "warmup ", 0, cfg.warmup, progress, stderr)
	}
	var p *benchPhase
	if sigCtx.Err() == nil {
		p = runBenchPhase(sigCtx, clients, cfg, "", cfg.n, cfg.d, progress, stderr)
	} else {
		p = &benchPhase{} // interrupted during the warmup: nothing measured
	}
	interrupted := sigCtx.Err() != nil

	res := p.result()
	for _, cl := range clients {
		res.Reconnects += int(cl.Stats().Connects) - 1
	}
	res.Addr, res.Method, res.Codec = cfg.addr, cfg.method, codecName
	res.Concurrency, res.Conns, res.Size = cfg.c, cfg.conns, cfg.size
	res.Interrupted = interrupted
	if cfg.json {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			return err
		}
	} else {
		res.writeText(stdout, p)
	}
	if interrupted {
		fmt.Fprintln(stderr, "pulse bench: interrupted; the result is partial")
	}
	if res.Errors > 0 {
		return fmt.Errorf("%d of %d calls failed", res.Errors, res.Calls)
	}
	return nil
}

func parseBench(args []string, stderr io.Writer) (*benchConfig, error) {
	fs := newFlagSet("bench", "[flags] [ADDR]", stderr)
	c := fs.Int("c", 32, "concurrency: goroutines calling, each one call at a time")
	conns := fs.Int("conns", 1, "client connections; the goroutines are spread over them round-robin")
	n := fs.Int64("n", 0, "number of calls to make (0: run for -d)")
	d := fs.Duration("d", 5*time.Second, "how long to run, when -n is 0; with -n as well, stop at whichever comes first")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of each call, and of each connection attempt")
	warmup := fs.Duration("warmup", 0, "first run the load this long without measuring it")
	size := fs.Int("size", 64, "bytes in the message sent to Echo.Echo")
	method := fs.String("method", "Echo.Echo", "method to call, as Service.Method")
	argsJSON := fs.String("args", "", "JSON arguments of -method, sent as they are over the json codec (default: {} for a method other than Echo.Echo)")
	codecName := fs.String("codec", "", "codec to offer (default: the binary codec, then json)")
	failFast := fs.Bool("fail-fast", false, "fail calls at once while a connection is being re-established, instead of waiting for it within -timeout")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object")
	var hb heartbeatFlags
	hb.register(fs)
	var tf tlsClientFlags
	tf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg := &benchConfig{addr: DefaultAddr, method: *method, c: *c, conns: *conns, n: *n, timeout: *timeout,
		warmup: *warmup, json: *jsonOut}
	switch fs.NArg() {
	case 0:
	case 1:
		cfg.addr = fs.Arg(0)
	default:
		return nil, usageError{fmt.Sprintf("want at most one address, got %q", fs.Args())}
	}
	if _, _, err := net.SplitHostPort(cfg.addr); err != nil {
		return nil, usageError{fmt.Sprintf("address %q: %v", cfg.addr, err)}
	}
	switch {
	case cfg.c < 1:
		return nil, usageError{fmt.Sprintf("-c must be at least 1, not %d", cfg.c)}
	case cfg.conns < 1:
		return nil, usageError{fmt.Sprintf("-conns must be at least 1, not %d", cfg.conns)}
	case cfg.conns > cfg.c:
		return nil, usageError{fmt.Sprintf("-conns (%d) must not exceed -c (%d): a connection would have no goroutine", cfg.conns, cfg.c)}
	case cfg.n < 0:
		return nil, usageError{fmt.Sprintf("-n must not be negative, not %d", cfg.n)}
	case *d <= 0 && (cfg.n == 0 || set["d"]):
		return nil, usageError{fmt.Sprintf("-d must be positive, not %v", *d)}
	case cfg.timeout <= 0:
		return nil, usageError{fmt.Sprintf("-timeout must be positive, not %v", cfg.timeout)}
	case cfg.warmup < 0:
		return nil, usageError{fmt.Sprintf("-warmup must not be negative, not %v", cfg.warmup)}
	case *size < 0:
		return nil, usageError{fmt.Sprintf("-size must not be negative, not %d", *size)}
	}
	if cfg.n == 0 || set["d"] {
		cfg.d = *d
	}
	if i := strings.IndexByte(cfg.method, '.'); i <= 0 || i == len(cfg.method)-1 {
		return nil, usageError{fmt.Sprintf("-method %q: want Service.Method", cfg.method)}
	}

	cfg.raw = set["args"] || cfg.method != "Echo.Echo"
	if cfg.raw {
		if set["size"] {
			return nil, usageError{"-size applies to Echo.Echo without -args"}
		}
		if !set["args"] {
			*argsJSON = "{}"
		}
		if !json.Valid([]byte(*argsJSON)) {
			return nil, usageError{fmt.Sprintf("-args is not valid JSON: %q", *argsJSON)}
		}
		if *codecName != "" && *codecName != codec.JSONName {
			return nil, usageError{fmt.Sprintf("-args are sent over the %s codec, not %s", codec.JSONName, *codecName)}
		}
		*codecName = codec.JSONName
		cfg.rawArgs = []byte(*argsJSON)
		cfg.size = len(cfg.rawArgs)
	} else {
		cfg.payload = strings.Repeat("x", *size)
		cfg.size = *size
	}

	heartbeat, err := hb.heartbeat()
	if err != nil {
		return nil, err
	}
	tlsOpts, err := tf.options()
	if err != nil {
		return nil, err
	}
	cfg.opts = append(tlsOpts,
		pulse.WithHeartbeat(heartbeat),
		pulse.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if *codecName != "" {
		if codec.Get(*codecName) == nil {
			return nil, usageError{fmt.Sprintf("-codec %q: want one of %v", *codecName, codec.Names())}
		}
		cfg.opts = append(cfg.opts, pulse.WithCodec(*codecName))
	}
	if *failFast {
		cfg.opts = append(cfg.opts, pulse.WithFailFast())
	}
	return cfg, nil
}

// describe says what the run does, for the line printed before it.
func (cfg *benchConfig) describe(codecName string) string {
	var b strings.Builder
	if cfg.raw {
		fmt.Fprintf(&b, "%s with %d bytes of JSON arguments", cfg.method, cfg.size)
	} else {
		fmt.Fprintf(&b, "%s with a %d-byte message", cfg.method, cfg.size)
	}
	fmt.Fprintf(&b, ", %d goroutine%s over %d connection%s (%s)", cfg.c, benchPlural(cfg.c), cfg.conns, benchPlural(cfg.conns), codecName)
	switch {
	case cfg.n > 0 && cfg.d > 0:
		fmt.Fprintf(&b, ", %d calls or %v", cfg.n, cfg.d)
	case cfg.n > 0:
		fmt.Fprintf(&b, ", %d calls", cfg.n)
	default:
		fmt.Fprintf(&b, ", for %v", cfg.d)
	}
	if cfg.warmup > 0 {
		fmt.Fprintf(&b, " after a %v warmup", cfg.warmup)
	}
	return b.String()
}

func benchPlural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// benchDialAll opens cfg.conns clients at once; on failure it closes those
// that connected and returns the first error.
func benchDialAll(ctx context.Context, cfg *benchConfig) ([]*pulse.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	clients := make([]*pulse.Client, cfg.conns)
	errs := make([]error, cfg.conns)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { clients[i], errs[i] = pulse.Dial(ctx, cfg.addr, cfg.opts...) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, cl := range clients {
			if cl != nil {
				cl.Close()
			}
		}
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
	}
	return clients, nil
}

// caller returns the function a worker calls in a loop, with its own
// reply value.
func (cfg *benchConfig) caller(cl *pulse.Client) func(ctx context.Context) error {
	if cfg.raw {
		args := codec.RawMessage(cfg.rawArgs)
		var reply codec.RawMessage
		return func(ctx context.Context) error {
			return cl.Call(ctx, cfg.method, &args, &reply)
		}
	}
	args := &EchoArgs{Msg: cfg.payload}
	var reply EchoReply
	return func(ctx context.Context) error {
		reply.Msg = ""
		if err := cl.Call(ctx, cfg.method, args, &reply); err != nil {
			return err
		}
		if len(reply.Msg) != len(args.Msg) {
			return fmt.Errorf("echo reply has %d bytes, want %d", len(reply.Msg), len(args.Msg))
		}
		return nil
	}
}

// benchWorker is the state of one calling goroutine. Only the goroutine
// touches hist and samples until the phase ends; the counters are read
// by the progress line.
type benchWorker struct {
	calls, errs atomic.Int64
	hist        hist.Histogram
	samples     []benchErrSample
}

// benchErrSample is a distinct error message and when it was first seen.
type benchErrSample struct {
	msg   string
	first time.Time
}

func (w *benchWorker) failed(err error, at time.Time) {
	w.errs.Add(1)
	if len(w.samples) >= benchMaxErrorSamples {
		return
	}
	msg := err.Error()
	for _, s := range w.samples {
		if s.msg == msg {
			return
		}
	}
	w.samples = append(w.samples, benchErrSample{msg, at})
}

// benchPhase is one run of the workers: the warmup or the measured run.
type benchPhase struct {
	workers []*benchWorker
	n       int64 // calls to make; 0: no bound
	d       time.Duration
	issued  atomic.Int64
	stop    atomic.Bool
	start   time.Time
	elapsed time.Duration
}

func (p *benchPhase) totals() (calls, errs int64) {
	for _, w := range p.workers {
		calls += w.calls.Load()
		errs += w.errs.Load()
	}
	return calls, errs
}

// runBenchPhase runs cfg.c workers over the clients until n calls were made or
// d passed (whichever bound is set and comes first) or sigCtx ends. Calls
// that the end of sigCtx cancels are not counted.
func runBenchPhase(sigCtx context.Context, clients []*pulse.Client, cfg *benchConfig, label string,
	n int64, d time.Duration, progress bool, stderr io.Writer) *benchPhase {
	p := &benchPhase{n: n, d: d, workers: make([]*benchWorker, cfg.c)}
	for i := range p.workers {
		p.workers[i] = new(benchWorker)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigCtx.Done():
			p.stop.Store(true)
		case <-done:
		}
	}()
	p.start = time.Now()
	if d > 0 {
		t := time.AfterFunc(d, func() { p.stop.Store(true) })
		defer t.Stop()
	}
	var bar *benchProgress
	if progress {
		bar = startBenchProgress(stderr, label, p)
	}
	var wg sync.WaitGroup
	for i, w := range p.workers {
		call := cfg.caller(clients[i%len(clients)])
		wg.Go(func() {
			for !p.stop.Load() {
				if p.n > 0 && p.issued.Add(1) > p.n {
					return
				}
				ctx, cancel := context.WithTimeout(sigCtx, cfg.timeout)
				t0 := time.Now()
				err := call(ctx)
				t1 := time.Now()
				cancel()
				if err != nil {
					if sigCtx.Err() != nil {
						return // cancelled by the interrupt: not a result
					}
					w.failed(err, t1)
				} else {
					w.hist.Record(t1.Sub(t0))
				}
				w.calls.Add(1)
			}
		})
	}
	wg.Wait()
	p.elapsed = time.Since(p.start)
	if bar != nil {
		bar.stop()
	}
	return p
}

// benchProgress redraws one line on a terminal about ten times a second.
type benchProgress struct {
	w     io.Writer
	label string
	p     *benchPhase
	quit  chan struct{}
	done  chan struct{}
}

func startBenchProgress(w io.Writer, label string, p *benchPhase) *benchProgress {
	b := &benchProgress{w: w, label: label, p: p, quit: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

func (b *benchProgress) loop() {
	defer close(b.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			fmt.Fprintf(b.w, "\r%s\x1b[K", b.line(now))
		case <-b.quit:
			fmt.Fprint(b.w, "\r\x1b[K")
			return
		}
	}
}

// stop clears the line and waits until it is cleared.
func (b *benchProgress) stop() {
	close(b.quit)
	<-b.done
}

func (b *benchProgress) line(now time.Time) string {
	calls, errs := b.p.totals()
	elapsed := now.Sub(b.p.start)
	var frac float64
	if b.p.n > 0 {
		frac = float64(calls) / float64(b.p.n)
	}
	if b.p.d > 0 {
		frac = max(frac, elapsed.Seconds()/b.p.d.Seconds())
	}
	frac = min(max(frac, 0), 1)
	const width = 20
	filled := int(frac * width)
	times := elapsed.Truncate(100 * time.Millisecond).String()
	if b.p.d > 0 {
		times += "/" + b.p.d.String()
	}
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(calls) / s
	}
	return fmt.Sprintf("%s[%s%s] %3.0f%%  %d calls  %.0f calls/s  %d errors  %s",
		b.label, strings.Repeat("#", filled), strings.Repeat(".", width-filled), frac*100, calls, rate, errs, times)
}

// benchResult is the outcome of a run, as printed by --json.
type benchResult struct {
	Addr         string             `json:"addr"`
	Method       string             `json:"method"`
	Codec        string             `json:"codec"`
	Calls        int64              `json:"calls"`
	Errors       int64              `json:"errors"`
	ErrorSamples []string           `json:"error_samples"`
	Seconds      float64            `json:"seconds"`
	CallsPerSec  float64            `json:"calls_per_sec"`
	LatencyUS    benchLatencyJSON   `json:"latency_us"`
	Histogram    []benchHistRowJSON `json:"histogram"`
	Concurrency  int                `json:"concurrency"`
	Conns        int                `json:"conns"`
	Size         int                `json:"size"`
	Reconnects   int                `json:"reconnects"`
	Interrupted  bool               `json:"interrupted"`

	hist *hist.Histogram
}

// benchLatencyJSON holds the latencies of the successful calls, in
// microseconds.
type benchLatencyJSON struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// benchHistRowJSON is a row of the histogram: Count calls took more than the
// previous row's LeUS and at most LeUS microseconds.
type benchHistRowJSON struct {
	LeUS  float64 `json:"le_us"`
	Count uint64  `json:"count"`
}

func benchMicros(d time.Duration) float64 { return math.Round(float64(d)) / 1e3 }

// result merges the workers' histograms and errors.
func (p *benchPhase) result() *benchResult {
	h := new(hist.Histogram)
	var samples []benchErrSample
	r := &benchResult{hist: h, ErrorSamples: []string{}, Histogram: []benchHistRowJSON{}}
	for _, w := range p.workers {
		h.Merge(&w.hist)
		samples = append(samples, w.samples...)
		r.Calls += w.calls.Load()
		r.Errors += w.errs.Load()
	}
	slices.SortStableFunc(samples, func(a, b benchErrSample) int { return a.first.Compare(b.first) })
	for _, s := range samples {
		if len(r.ErrorSamples) < benchMaxErrorSamples && !slices.Contains(r.ErrorSamples, s.msg) {
			r.ErrorSamples = append(r.ErrorSamples, s.msg)
		}
	}
	r.Seconds = p.elapsed.Seconds()
	if r.Seconds > 0 {
		r.CallsPerSec = math.Round(10*float64(r.Calls)/r.Seconds) / 10
	}
	r.LatencyUS = benchLatencyJSON{
		Min: benchMicros(h.Min()), Mean: benchMicros(h.Mean()),
		P50: benchMicros(h.Quantile(0.5)), P90: benchMicros(h.Quantile(0.9)), P99: benchMicros(h.Quantile(0.99)),
		P999: benchMicros(h.Quantile(0.999)), Max: benchMicros(h.Max()),
	}
	for _, row := range h.Rows(benchHistRows) {
		r.Histogram = append(r.Histogram, benchHistRowJSON{LeUS: benchMicros(row.Le), Count: row.Count})
	}
	return r
}

func (r *benchResult) writeText(w io.Writer, p *benchPhase) {
	h := r.hist
	fmt.Fprintf(w, "calls       %d\n", r.Calls)
	fmt.Fprintf(w, "errors      %d\n", r.Errors)
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "  %s\n", s)
	}
	if r.Reconnects > 0 {
		fmt.Fprintf(w, "reconnects  %d\n", r.Reconnects)
	}
	note := ""
	if r.Interrupted {
		note = " (interrupted)"
	}
	fmt.Fprintf(w, "elapsed     %v%s\n", p.elapsed.Round(time.Millisecond), note)
	fmt.Fprintf(w, "calls/s     %.0f\n", r.CallsPerSec)
	if h.Count() == 0 {
		fmt.Fprintln(w, "latency     no successful call")
		return
	}
	fmt.Fprintf(w, "latency     min %s  mean %s  max %s\n", fmtLatency(h.Min()), fmtLatency(h.Mean()), fmtLatency(h.Max()))
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p99.9", 0.999}} {
		fmt.Fprintf(w, "  %-9s %s\n", q.name, fmtLatency(h.Quantile(q.q)))
	}
	rows := h.Rows(benchHistRows)
	var most uint64
	labels := make([]string, len(rows))
	width := 0
	for i, row := range rows {
		most = max(most, row.Count)
		labels[i] = "≤ " + fmtLatency(row.Le)
		width = max(width, len([]rune(labels[i])))
	}
	countWidth := len(strconv.FormatUint(most, 10))
	fmt.Fprintf(w, "\nlatency histogram (%d successful calls)\n", h.Count())
	for i, row := range rows {
		bar := 0
		if row.Count > 0 {
			bar = max(1, int(float64(row.Count)/float64(most)*benchBarWidth+0.5))
		}
		pad := strings.Repeat(" ", width-len([]rune(labels[i])))
		fmt.Fprintf(w, "  %s%s  %*d %5.1f%%  %s\n", pad, labels[i], countWidth, row.Count,
			100*float64(row.Count)/float64(h.Count()), strings.Repeat("#", bar))
	}
}

// fmtLatency formats d with three significant digits: 52.3µs, 1.25ms, 3.01s.
func fmtLatency(d time.Duration) string {
	if d < 0 {
		return "-" + fmtLatency(-d)
	}
	if d < 1000 {
		return strconv.FormatInt(int64(d), 10) + "ns"
	}
	p := time.Duration(1)
	for v := d; v >= 1000; v /= 10 {
		p *= 10
	}
	d = (d + p/2) / p * p
	unit, div := "s", float64(time.Second)
	switch {
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		unit, div = "µs", float64(time.Microsecond)
	case d < time.Second:
		unit, div = "ms", float64(time.Millisecond)
	}
	return strconv.FormatFloat(float64(d)/div, 'f', -1, 64) + unit
}
