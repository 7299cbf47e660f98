package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/faults/internal/event"
)

type clientConfig struct {
	clients     int
	rate        float64
	callTimeout time.Duration
	payload     int
	inflight    bool
	big         int
	bigN        int
	maxMessage  int
	connBudget  int
	bigAfter    time.Duration
	bigTimeout  time.Duration
	statsEvery  time.Duration
	hungAfter   time.Duration
}

// client is one pulse.Client of the agent and what it saw.
type client struct {
	i  int
	pc atomic.Pointer[pulse.Client]

	mu     sync.Mutex
	ok     int
	failed int
	hung   int
	kinds  map[string]int
	maxPhi float64
	maxRTT time.Duration
}

// outstanding is a call that has not returned yet.
type outstanding struct {
	c        *client
	method   string
	start    time.Time
	deadline time.Time
	stall0   int64 // the process's stall total when the call started
	hung     bool
}

// calls tracks every call in flight, to call out the ones that hang.
type calls struct {
	probe *stallProbe
	cfg   clientConfig

	mu   sync.Mutex
	next int
	m    map[int]*outstanding
	wg   sync.WaitGroup
}

func (cs *calls) begin(c *client, method string, deadline time.Time) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.next++
	cs.m[cs.next] = &outstanding{c: c, method: method, start: time.Now(), deadline: deadline, stall0: cs.probe.total.Load()}
	cs.wg.Add(1)
	return cs.next
}

// end records the outcome of call id, which returned err.
func (cs *calls) end(id int, err error) {
	cs.mu.Lock()
	o := cs.m[id]
	delete(cs.m, id)
	cs.mu.Unlock()
	defer cs.wg.Done()
	c := o.c
	kind, sent, reason := classify(err)
	c.mu.Lock()
	switch {
	case o.hung:
		c.hung++
	case err == nil:
		c.ok++
	default:
		c.failed++
		c.kinds[kindKey(kind, reason, sent)]++
	}
	c.mu.Unlock()
	if err != nil || o.hung {
		e := event.Event{Ev: "call", C: c.i, Method: o.method, Start: o.start.UnixNano(), Outcome: "failed",
			Kind: kind, Reason: reason, Sent: sent}
		if err != nil {
			e.Err = err.Error()
		}
		if o.hung {
			e.Outcome = "hung"
		}
		out.Emit(e)
	}
}

// watch calls out, once, every call that has not returned hungAfter past
// its deadline. Time this process spent stalled (SIGSTOP) does not count.
func (cs *calls) watch(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cs.markHung(time.Now())
	}
}

func (cs *calls) markHung(now time.Time) {
	stall := cs.probe.total.Load()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, o := range cs.m {
		grace := cs.cfg.hungAfter + time.Duration(stall-o.stall0)
		if !o.hung && now.After(o.deadline.Add(grace)) {
			o.hung = true
			out.Emit(event.Event{Ev: "hung", C: o.c.i, Method: o.method, Start: o.start.UnixNano(), End: o.deadline.UnixNano()})
		}
	}
}

func kindKey(kind, reason string, sent bool) string {
	k := kind + ": " + reason
	if sent {
		k += " (sent)"
	}
	return k
}

// runClient runs cfg.clients clients against addr, each making steady
// calls, and reports their state changes, the calls that fail or hang,
// and their health.
func runClient(ctx context.Context, addr string, hb pulse.Heartbeat, cfg clientConfig) error {
	probe := new(stallProbe)
	// root bounds every call; it ends only after the calls in flight at
	// the stop had their chance to finish.
	root, cancelRoot := context.WithCancel(context.Background())
	defer cancelRoot()
	go probe.run(root, func(late time.Duration) {
		out.Emit(event.Event{Ev: "stall", C: -1, Pause: late})
	})
	cs := &calls{probe: probe, cfg: cfg, m: make(map[int]*outstanding)}
	go cs.watch(root)

	clients := make([]*client, cfg.clients)
	for i := range clients {
		c := &client{i: i, kinds: make(map[string]int)}
		clients[i] = c
		opts := []pulse.Option{
			pulse.WithHeartbeat(hb),
			pulse.WithLogger(discardLogger()),
			pulse.WithStateHook(func(sc pulse.StateChange) { c.stateChanged(sc) }),
		}
		if cfg.maxMessage > 0 {
			opts = append(opts, pulse.WithMaxMessageSize(cfg.maxMessage))
		}
		if cfg.connBudget > 0 {
			opts = append(opts, pulse.WithConnBudget(cfg.connBudget))
		}
		var (
			pc  *pulse.Client
			err error
		)
		for deadline := time.Now().Add(20 * time.Second); ; {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			pc, err = pulse.Dial(dctx, addr, opts...)
			cancel()
			if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("client %d: dial %s: %v", i, addr, err)
		}
		c.pc.Store(pc)
		out.Emit(event.Event{Ev: "dialed", C: i, Local: pc.Peer().LocalAddr().String(), Remote: pc.Peer().RemoteAddr().String(),
			Interval: pc.Stats().Interval, Timeout: pc.Stats().Timeout, Detector: hb.Detector.String()})
	}

	var loops sync.WaitGroup
	for _, c := range clients {
		pc := c.pc.Load()
		loops.Add(1)
		go func() {
			defer loops.Done()
			c.sample(ctx, cfg.statsEvery)
		}()
		if cfg.rate > 0 {
			loops.Add(1)
			go func() {
				defer loops.Done()
				c.steady(ctx, root, cs, pc, cfg)
			}()
		}
		if cfg.inflight {
			loops.Add(1)
			go func() {
				defer loops.Done()
				c.inflight(ctx, pc)
			}()
		}
		if cfg.big > 0 && c.i == 0 {
			loops.Add(1)
			go func() {
				defer loops.Done()
				c.bigCall(ctx, root, cs, pc, cfg)
			}()
		}
	}
	<-ctx.Done()
	loops.Wait()
	// Calls in flight at the stop may take until their deadline, and the
	// hung margin, to return.
	waited := make(chan struct{})
	go func() {
		cs.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(max(cfg.callTimeout, cfg.bigTimeout) + cfg.hungAfter + 500*time.Millisecond):
		cs.markHung(time.Now().Add(time.Hour))
	}
	total := event.Event{Ev: "summary", C: -1, Kinds: map[string]int{}, MaxGap: time.Duration(probe.max.Load()), Pause: time.Duration(probe.total.Load())}
	cs.mu.Lock()
	for _, o := range cs.m { // never returned
		o.c.mu.Lock()
		o.c.hung++
		o.c.mu.Unlock()
	}
	cs.mu.Unlock()
	for _, c := range clients {
		c.mu.Lock()
		e := event.Event{Ev: "summary", C: c.i, OK: c.ok, Failed: c.failed, Hung: c.hung, Kinds: maps.Clone(c.kinds), MaxPhi: c.maxPhi, MaxRTT: c.maxRTT}
		c.mu.Unlock()
		out.Emit(e)
		total.OK += e.OK
		total.Failed += e.Failed
		total.Hung += e.Hung
		for k, v := range e.Kinds {
			total.Kinds[k] += v
		}
		total.MaxPhi = max(total.MaxPhi, e.MaxPhi)
		total.MaxRTT = max(total.MaxRTT, e.MaxRTT)
	}
	out.Emit(total)
	cancelRoot()
	for _, c := range clients {
		c.pc.Load().Close()
	}
	return nil
}

// stateChanged reports a state change, with, for a lost connection, when
// it last read a byte.
func (c *client) stateChanged(sc pulse.StateChange) {
	now := time.Now()
	e := event.Event{Ev: "state", C: c.i, From: sc.From.String(), To: sc.To.String(), At: sc.At.UnixNano()}
	if sc.Err != nil {
		e.Kind, _, e.Reason = classify(sc.Err)
		e.Err = sc.Err.Error()
	}
	if pc := c.pc.Load(); pc != nil {
		st := pc.Stats()
		lost := sc.From == pulse.StateReady || sc.From == pulse.StateSuspect || sc.From == pulse.StateDraining
		if lost && (st.Closed || sc.To == pulse.StateDraining) {
			// The latest connection is the one that was lost: its last
			// read is final.
			e.LastRead = now.Add(-st.SinceRead).UnixNano()
		}
		if sc.To == pulse.StateReady && !st.Closed {
			if p := pc.Peer(); p != nil {
				e.Local = p.LocalAddr().String()
			}
		}
		e.RTT, e.Phi = st.RTT, st.Phi
	}
	out.Emit(e)
}

// sample keeps the largest phi and RTT of the client's live connections,
// and reports them every second.
func (c *client) sample(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st := c.pc.Load().Stats()
		live := !st.Closed && (st.State == pulse.StateReady || st.State == pulse.StateSuspect)
		c.mu.Lock()
		if live {
			if !math.IsNaN(st.Phi) {
				c.maxPhi = max(c.maxPhi, st.Phi)
			}
			c.maxRTT = max(c.maxRTT, st.RTT)
		}
		c.mu.Unlock()
		if time.Since(last) >= time.Second {
			last = time.Now()
			out.Emit(event.Event{Ev: "stats", C: c.i, State: st.State.String(), Phi: st.Phi, RTT: st.RTT,
				Info: "since_read " + st.SinceRead.Round(time.Millisecond).String()})
		}
	}
}

// steady makes Echo calls at cfg.rate until ctx ends, each on its own
// goroutine with its own deadline.
func (c *client) steady(ctx, root context.Context, cs *calls, pc *pulse.Client, cfg clientConfig) {
	t := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
	defer t.Stop()
	payload := make([]byte, cfg.payload)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(root, cfg.callTimeout)
		dl, _ := cctx.Deadline()
		id := cs.begin(c, "Svc.Echo", dl)
		go func() {
			defer cancel()
			var reply []byte
			err := pc.Call(cctx, "Svc.Echo", payload, &reply)
			if err == nil && len(reply) != len(payload) {
				err = fmt.Errorf("Echo returned %d bytes, sent %d", len(reply), len(payload))
			}
			cs.end(id, err)
		}()
	}
}

// inflight keeps one long Slow call in flight: when it ends (the
// connection died), it reports how and starts the next. The call is not
// counted with the steady calls.
func (c *client) inflight(ctx context.Context, pc *pulse.Client) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		start := time.Now()
		var slept int
		err := pc.Call(cctx, "Svc.Slow", 600_000, &slept)
		cancel()
		end := time.Now()
		e := event.Event{Ev: "inflight", C: c.i, Method: "Svc.Slow", Start: start.UnixNano(), End: end.UnixNano(), Outcome: "ok"}
		switch {
		case ctx.Err() != nil:
			e.Outcome = "stopped"
		case err != nil:
			e.Outcome = "failed"
			e.Kind, e.Sent, e.Reason = classify(err)
			e.Err = err.Error()
		}
		out.Emit(e)
		if err != nil && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// bigCall makes cfg.bigN Big calls at once, of cfg.big/cfg.bigN bytes
// each, once the client has been ready for cfg.bigAfter, and reports them
// in one "big" event: from the first call's start to the last one's end,
// with the bytes received and the first error.
func (c *client) bigCall(ctx, root context.Context, cs *calls, pc *pulse.Client, cfg clientConfig) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(cfg.bigAfter):
	}
	cctx, cancel := context.WithTimeout(root, cfg.bigTimeout)
	defer cancel()
	dl, _ := cctx.Deadline()
	size := cfg.big / cfg.bigN
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		got   int
		first error
	)
	start := time.Now()
	for range cfg.bigN {
		id := cs.begin(c, "Svc.Big", dl)
		wg.Go(func() {
			var reply []byte
			err := pc.Call(cctx, "Svc.Big", size, &reply)
			if err == nil && len(reply) != size {
				err = fmt.Errorf("Big returned %d bytes, want %d", len(reply), size)
			}
			mu.Lock()
			got += len(reply)
			if first == nil {
				first = err
			}
			mu.Unlock()
			cs.end(id, err)
		})
	}
	wg.Wait()
	end := time.Now()
	e := event.Event{Ev: "big", C: c.i, Method: "Svc.Big", Start: start.UnixNano(), End: end.UnixNano(), N: got, Outcome: "ok"}
	if first != nil {
		e.Outcome = "failed"
		e.Kind, e.Sent, e.Reason = classify(first)
		e.Err = first.Error()
	}
	out.Emit(e)
}

// classify names the type of err: "ConnError", "CallError",
// "ServerError", or "untyped", with the reason (the connection's close
// reason, the call's status) and, for a ConnError, whether the request was
// sent.
func classify(err error) (kind string, sent bool, reason string) {
	var (
		connErr *pulse.ConnError
		callErr *pulse.CallError
		srvErr  pulse.ServerError
	)
	switch {
	case err == nil:
		return "", false, ""
	case errors.As(err, &connErr):
		reason = connErr.Reason.String()
		if connErr.Reason == pulse.ReasonGoAway {
			reason += " (" + connErr.Code.String() + ")"
		}
		return "ConnError", connErr.Sent, reason
	case errors.As(err, &callErr):
		reason = callErr.Status.String()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			reason += " deadline"
		case errors.Is(err, context.Canceled):
			reason += " canceled"
		}
		return "CallError", false, reason
	case errors.As(err, &srvErr):
		return "ServerError", false, string(srvErr)
	}
	return "untyped", false, err.Error()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func itoa(n int) string { return strconv.Itoa(n) }
