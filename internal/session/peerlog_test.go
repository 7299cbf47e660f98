package session

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// countHandler counts the records logged and keeps the last one's
// "suppressed" attribute.
type countHandler struct {
	n          atomic.Int64
	suppressed atomic.Int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.n.Add(1)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "suppressed" {
			h.suppressed.Store(a.Value.Int64())
		}
		return true
	})
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// TestPeerLogRateLimit: a peer causing a thousand lines of one reason gets
// one written, then one per peerLogEvery carrying the count left out; a
// line of another reason has its own turn; and a line left out allocates
// nothing.
func TestPeerLogRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		cfg := handConfig(Heartbeat{})
		h := new(countHandler)
		cfg.Logger = slog.New(h)
		s, _ := handSession(t, c1, false, cfg)
		for range 1000 {
			s.peerLog(logDropBudget, "dropped")
		}
		if got := h.n.Load(); got != 1 {
			t.Fatalf("%d lines for 1000 of one reason at once, want 1", got)
		}
		s.peerLog(logTooManyPings, "pings")
		if got := h.n.Load(); got != 2 {
			t.Fatalf("%d lines after a line of another reason, want 2", got)
		}
		if a := testing.AllocsPerRun(100, func() {
			if _, ok := s.peerLogTurn(logDropBudget); ok {
				t.Fatal("a line's turn came within peerLogEvery")
			}
		}); a != 0 {
			t.Errorf("a line left out allocates %v times, want 0", a)
		}
		time.Sleep(peerLogEvery)
		s.peerLog(logDropBudget, "dropped")
		if got, sup := h.n.Load(), h.suppressed.Load(); got != 3 || sup != 999+101 {
			t.Errorf("after peerLogEvery: %d lines, the last saying %d left out; want 3 and %d", got, sup, 999+101)
		}
	})
}
