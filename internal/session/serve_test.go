package session

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/pulse-rpc/pulse/internal/service"
)

// PanicArgs is the argument of FastPanics.Panics.
type PanicArgs struct{ A int }

// FastPanics has a method of a shape the registry calls directly (a
// pointer receiver, a pointer argument and a pointer reply), which
// panics.
type FastPanics struct{ base int }

func (p *FastPanics) Panics(a *PanicArgs, r *int) error {
	var m map[string]int
	m["boom"] = a.A + p.base // nil map
	return nil
}

// stackLog is a slog.Handler that keeps the "stack" attribute of the
// records logged through it.
type stackLog struct {
	mu     sync.Mutex
	stacks []string
}

func (h *stackLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *stackLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *stackLog) WithGroup(string) slog.Handler            { return h }

func (h *stackLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "stack" {
			h.mu.Lock()
			h.stacks = append(h.stacks, a.Value.String())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

// TestFastCallPanic: a panic in a directly called method is recovered
// like one in a method called through reflect, and named in the error.
func TestFastCallPanic(t *testing.T) {
	r := service.NewRegistry()
	if err := r.Register(&FastPanics{}, "S", true); err != nil {
		t.Fatal(err)
	}
	svc, mt, _ := r.Lookup([]byte("S.Panics"))
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c1.Close(); c2.Close() })
	logs := new(stackLog)
	s := &Session{conn: c1, log: slog.New(logs)}
	_, argv := mt.NewArgs()
	err, panicked := s.invoke(context.Background(), svc, mt, argv, mt.NewReply())
	if !panicked || err == nil || !strings.Contains(err.Error(), "panic in S.Panics") || !strings.Contains(err.Error(), "nil map") {
		t.Fatalf("invoke = %v, panicked %v; want the panic as an error", err, panicked)
	}
	// The method's own Method.fast is not visible from here: the stack
	// that invoke logged tells whether the panicking method was called
	// directly or through reflect.
	logs.mu.Lock()
	defer logs.mu.Unlock()
	if len(logs.stacks) != 1 {
		t.Fatalf("invoke logged %d stacks, want 1", len(logs.stacks))
	}
	stack := logs.stacks[0]
	if !strings.Contains(stack, "(*FastPanics).Panics") {
		t.Fatalf("the logged stack does not hold the method's frame:\n%s", stack)
	}
	if strings.Contains(stack, "reflect.Value.call") {
		t.Fatalf("S.Panics is not called directly (reflect in its stack):\n%s", stack)
	}
}
