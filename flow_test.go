package pulse_test

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
	"github.com/pulse-rpc/pulse/wire"
)

// Hold is a service whose method holds its argument until released.
type Hold struct {
	entered atomic.Int32
	release chan struct{}
}

func newHold() *Hold { return &Hold{release: make(chan struct{})} }

func (h *Hold) Take(args []byte, reply *int) error {
	h.entered.Add(1)
	<-h.release
	*reply = len(args)
	return nil
}

// TestConnBudgetHoldsSender: a server whose handlers hold their arguments
// grants no more credit once a connection's budget is held; the client's
// further calls wait on its side, unsent, while heartbeats keep the
// connection alive for many times its Timeout, and they all complete once
// the handlers let go.
func TestConnBudgetHoldsSender(t *testing.T) {
	checkLeaks(t)
	const budget, arg = 64 << 10, 8 << 10
	hb := pulse.WithHeartbeat(pulse.Heartbeat{Interval: 50 * time.Millisecond, Timeout: 400 * time.Millisecond})
	ts := newTestServer(t, transportTCP, pulse.WithConnBudget(budget), pulse.WithMaxMessageSize(16<<10), hb)
	h := newHold()
	ts.register(t, h)
	c := ts.dial(t, hb)

	const calls = 40
	done := make(chan *pulse.Call, calls)
	replies := make([]int, calls)
	for i := range calls {
		c.Go(testContext(t), "Hold.Take", make([]byte, arg), &replies[i], done)
	}
	// Quiet: the client's credit is less than a call, and it and what
	// the server holds add up to the window (nothing in flight); every
	// call the server holds has entered its handler.
	waitFor(t, "the client to spend its credit on held calls", func() bool {
		st := c.Stats()
		peers := ts.Peers()
		return st.Credit < arg && st.Credit+int(pulse.BudgetUsed(ts.Server)) == budget &&
			len(peers) == 1 && int(h.entered.Load()) == peers[0].Stats().Running
	})
	entered := int(h.entered.Load())
	if max := budget / arg; entered == 0 || entered > max {
		t.Errorf("%d handlers hold their arguments, want 1 to %d (the budget's worth)", entered, max)
	}
	// Many Timeouts pass while the client waits for credit: heartbeats
	// are not held back, so neither side takes the other for dead.
	time.Sleep(time.Second)
	if st := c.Stats(); st.State != pulse.StateReady || st.Credit >= arg {
		t.Errorf("client state %v with %d bytes of credit, want ready with less than one call's %d", st.State, st.Credit, arg)
	}
	select {
	case call := <-done:
		t.Fatalf("a call completed while the server held its budget: %v", call.Error)
	default:
	}
	close(h.release)
	for range calls {
		if call := recv(t, done, "a call's completion"); call.Error != nil {
			t.Errorf("call failed: %v", call.Error)
		}
	}
	for i, n := range replies {
		if n != arg {
			t.Errorf("reply %d = %d, want %d", i, n, arg)
		}
	}
	// A handler lets go of its argument just after its reply is queued.
	waitFor(t, "the server to let go of every argument", func() bool { return pulse.BudgetUsed(ts.Server) == 0 })
}

// TestSharedBudgetRefuses: connections sharing a server's budget cannot
// make it hold more than the budget together; calls that do not fit are
// refused with ErrBusy, unexecuted, and the rest complete.
func TestSharedBudgetRefuses(t *testing.T) {
	checkLeaks(t)
	const conn, shared, arg = 64 << 10, 96 << 10, 8 << 10
	ts := newTestServer(t, transportTCP, pulse.WithConnBudget(conn), pulse.WithSharedBudget(shared), pulse.WithMaxMessageSize(16<<10))
	h := newHold()
	ts.register(t, h)
	const perClient = 12
	done := make(chan *pulse.Call, 2*perClient)
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			peak.Store(max(peak.Load(), pulse.BudgetUsed(ts.Server)))
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	for range 2 {
		c := ts.dial(t)
		for range perClient {
			c.Go(testContext(t), "Hold.Take", make([]byte, arg), new(int), done)
		}
	}
	// Two connections' budgets are more than the shared one: it fills,
	// and a call that does not fit is refused.
	refused := 0
	waitFor(t, "the shared budget to fill and refuse a call", func() bool {
		for len(done) > 0 {
			call := <-done
			if !errors.Is(call.Error, pulse.ErrBusy) {
				t.Errorf("call completed with %v before the handlers let go, want %v", call.Error, pulse.ErrBusy)
			}
			refused++
		}
		return refused > 0 && pulse.BudgetUsed(ts.Server) > shared-2*arg
	})
	if refused == 0 || pulse.BudgetRefused(ts.Server) == 0 {
		t.Errorf("%d calls refused (server counts %d), want some: two connections' budgets exceed the shared one", refused, pulse.BudgetRefused(ts.Server))
	}
	close(h.release)
	for range 2*perClient - refused {
		if call := recv(t, done, "a call's completion"); call.Error != nil && !errors.Is(call.Error, pulse.ErrBusy) {
			t.Errorf("call failed: %v", call.Error)
		}
	}
	close(stop)
	wg.Wait()
	if p := peak.Load(); p > shared {
		t.Errorf("the server held up to %d bytes, over its shared budget of %d", p, shared)
	}
}

// TestAnnouncedSizeIsNotAllocated: a peer announcing a thousand messages
// of almost 4 MiB and sending 16 bytes of each makes the server hold its
// connection window and a few KiB a message, not the 4 GiB announced.
func TestAnnouncedSizeIsNotAllocated(t *testing.T) {
	checkLeaks(t)
	ts := newTestServer(t, transportTCP)
	ts.register(t, new(Arith))
	conn := dialRaw(t, ts.addr)
	fr := rawHandshake(t, conn)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 1000
	var b []byte
	for i := range uint32(n) {
		p := wire.AppendMessageLen(nil, pulse.DefaultMaxMessageSize-1)
		p = wire.AppendCallHead(p, "Arith.Add", 0)
		b = wire.AppendFrame(b, wire.TypeCall, 0, 2*i+1, append(p, "0123456789abcdef"...))
	}
	b = wire.AppendPing(b, wire.TypePing, 42)
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	readPong(t, fr, 42) // after the server has read every frame before it
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d bytes for %d messages announced at %d bytes", grew, n, pulse.DefaultMaxMessageSize-1)
	if limit := int64(pulse.DefaultConnBudget + n*16<<10); grew > limit {
		t.Errorf("heap grew by %d bytes, want at most %d (the window and 16 KiB a message)", grew, limit)
	}
	conn.Close()
}

// TestAnnouncedSizeWithinSharedBudget: the buffers made at a message's
// announced size are charged to the shared budget in advance, so that
// connections announcing large messages together make the server hold its
// shared budget, not one window per connection.
func TestAnnouncedSizeWithinSharedBudget(t *testing.T) {
	checkLeaks(t)
	const shared, conns = 16 << 20, 6
	ts := newTestServer(t, transportTCP, pulse.WithSharedBudget(shared))
	ts.register(t, new(Arith))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range conns {
		conn := dialRaw(t, ts.addr)
		fr := rawHandshake(t, conn)
		var b []byte
		for i := range uint32(2) { // two messages: one connection window
			p := wire.AppendMessageLen(nil, pulse.DefaultMaxMessageSize-1)
			p = wire.AppendCallHead(p, "Arith.Add", 0)
			b = wire.AppendFrame(b, wire.TypeCall, 0, 2*i+1, append(p, "0123456789abcdef"...))
		}
		b = wire.AppendPing(b, wire.TypePing, 7)
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
		readPong(t, fr, 7)
		defer conn.Close()
	}
	if used := pulse.BudgetUsed(ts.Server); used > shared {
		t.Errorf("the shared budget holds %d bytes, over its %d", used, shared)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d bytes for %d connections announcing %d bytes each", grew, conns, 2*pulse.DefaultMaxMessageSize)
	if limit := int64(shared + 8<<20); grew > limit {
		t.Errorf("heap grew by %d bytes, want at most %d (the shared budget and 8 MiB)", grew, limit)
	}
}

// readPong reads frames from fr until the PONG for data.
func readPong(t *testing.T, fr *wire.Reader, data uint64) {
	t.Helper()
	for {
		h, p, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the PONG: %v", err)
		}
		if h.Type == wire.TypePong {
			if v, _ := wire.ParsePing(p); v == data {
				return
			}
		}
	}
}
