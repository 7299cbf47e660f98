package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/adversary"
)

// The client role's results.
var (
	cOK, cTyped, cUntyped, cHung, cInFlight atomic.Int64
	cDone                                   atomic.Bool
	cErrMu                                  sync.Mutex
	cErrs                                   = map[string]int64{}
)

// typed reports whether err is one of Pulse's error types or a context
// error: what the issue requires of every failed call.
func typed(err error) bool {
	var ce *pulse.CallError
	var ne *pulse.ConnError
	var se pulse.ServerError
	return errors.As(err, &ce) || errors.As(err, &ne) || errors.As(err, &se) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func noteErr(err error) {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	cErrMu.Lock()
	if _, ok := cErrs[msg]; ok || len(cErrs) < 20 {
		cErrs[msg]++
	}
	cErrMu.Unlock()
}

// runClient dials cfg.addr and makes Echo calls, -calls-every apart, each
// with -call-timeout, for -duration or -calls calls, whichever ends first.
// Dialing is retried within the duration. The calls' outcomes go to the
// stats; a call still running 1 s after its deadline counts as hung.
func runClient(cfg *config, logger *slog.Logger) {
	defer cDone.Store(true)
	end := time.Now().Add(cfg.duration)
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	opts := append(commonOptions(cfg, logger), pulse.WithCodec("json"))
	var c *pulse.Client
	for {
		var err error
		dctx, dcancel := context.WithTimeout(ctx, cfg.callTimeout)
		c, err = pulse.Dial(dctx, cfg.addr, opts...)
		dcancel()
		if err == nil {
			break
		}
		noteErr(err)
		if ctx.Err() != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	payload := make([]byte, cfg.payload)
	var wg sync.WaitGroup
	t := time.NewTicker(cfg.callsEvery)
	defer t.Stop()
	for n := 0; (cfg.calls == 0 || n < cfg.calls) && ctx.Err() == nil; n++ {
		wg.Add(1)
		cInFlight.Add(1)
		go func() {
			defer wg.Done()
			oneCall(c, cfg, payload)
		}()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
}

func oneCall(c *pulse.Client, cfg *config, payload []byte) {
	hung := time.AfterFunc(cfg.callTimeout+time.Second, func() { cHung.Add(1) })
	ctx, cancel := context.WithTimeout(context.Background(), cfg.callTimeout)
	var reply []byte
	err := c.Call(ctx, "Svc.Echo", payload, &reply)
	cancel()
	hung.Stop() // a call counted as hung stays counted
	cInFlight.Add(-1)
	switch {
	case err == nil && len(reply) == len(payload):
		cOK.Add(1)
	case err == nil:
		cUntyped.Add(1)
		noteErr(errors.New("reply of the wrong length"))
	case typed(err):
		cTyped.Add(1)
		noteErr(err)
	default:
		cUntyped.Add(1)
		noteErr(err)
	}
}

func clientStats() *adversary.ClientStats {
	cErrMu.Lock()
	errs := make(map[string]int64, len(cErrs))
	for k, v := range cErrs {
		errs[k] = v
	}
	cErrMu.Unlock()
	return &adversary.ClientStats{
		OK: cOK.Load(), Typed: cTyped.Load(), Untyped: cUntyped.Load(), Hung: cHung.Load(),
		InFlight: cInFlight.Load(), Done: cDone.Load(), ErrSamples: errs,
	}
}
