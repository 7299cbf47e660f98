package session

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// Sleeper is a service whose method runs for the time it is given, or
// until its context ends.
type Sleeper struct{}

func (Sleeper) Sleep(ctx context.Context, d time.Duration, r *time.Duration) error {
	start := time.Now()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	*r = time.Since(start)
	return nil
}

// startSleep starts a call of Sleeper.Sleep for d on s and returns it with
// the channel that its completion signals.
func startSleep(s *Session, d time.Duration, reply *time.Duration) (*Call, doneChan) {
	done := make(doneChan, 1)
	c := &Call{Reply: reply, Owner: done}
	s.Send(context.Background(), c, "Sleeper.Sleep", d, false)
	return c, done
}

// TestDrainWaitsForHandler: a drain (StartDrain, WaitSettled) sends
// GOAWAY at once, refuses nothing already admitted, waits for the handler
// that runs, and the session closes once it has settled, within its
// grace, with the handler's reply delivered.
func TestDrainWaitsForHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const run, grace = 2 * time.Second, 5 * time.Second
		p := newPipePair(t, bubbleConfig(Heartbeat{}), bubbleConfig(Heartbeat{}), Sleeper{})
		var reply time.Duration
		c, done := startSleep(p.dialer, run, &reply)
		synctest.Wait() // the handler runs
		if n := p.acceptor.running.Load(); n != 1 {
			t.Fatalf("%d handlers run on the acceptor, want 1", n)
		}

		start := time.Now()
		if !p.acceptor.StartDrain(wire.GoAwayNormal, "draining") {
			t.Fatal("StartDrain did not start the drain")
		}
		if p.acceptor.StartDrain(wire.GoAwayNormal, "again") {
			t.Error("a second StartDrain started another drain")
		}
		select {
		case <-p.acceptor.Draining():
		default:
			t.Error("Draining is not closed after StartDrain")
		}
		synctest.Wait() // the GOAWAY read by the dialer
		if n := p.acceptorTap.count(wire.TypeGoAway); n != 1 {
			t.Errorf("the acceptor sent %d GOAWAYs, want 1", n)
		}
		var r2 time.Duration
		if err := waitCall(startSleep(p.dialer, run, &r2)); !isReason(err, ReasonGoAway) {
			t.Errorf("a call after the GOAWAY = %v, want it refused with %v", err, ReasonGoAway)
		}

		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		if !p.acceptor.WaitSettled(ctx.Done()) {
			t.Fatalf("WaitSettled gave up after %v; the handler runs for %v, the grace is %v", time.Since(start), run, grace)
		}
		if d := time.Since(start); d != run {
			t.Errorf("the drain settled after %v, want when the handler returned (%v)", d, run)
		}
		p.acceptor.LingerClose(&ConnError{Reason: ReasonShutdown, Code: wire.GoAwayNormal, Message: "draining"}, time.Second)
		if d := time.Since(start); d > grace {
			t.Errorf("the drained session closed after %v, past its grace (%v)", d, grace)
		}
		select {
		case <-p.acceptor.Done():
		default:
			t.Error("the session is open after LingerClose")
		}
		if err := waitCall(c, done); err != nil || reply != run {
			t.Errorf("the call that ran during the drain = %v, %v; want %v, nil", reply, err, run)
		}
		<-p.dialer.Done()
		if err := p.dialer.Err(); err == nil || err.Reason != ReasonPeerClose {
			t.Errorf("the dialer closed with %v, want %v", err, ReasonPeerClose)
		}
	})
}

// TestDrainGrace: a handler that outlasts the grace does not hold the
// drain: the session closes when the grace ends, the handler's context is
// cancelled, and the caller learns that the connection closed under its
// call.
func TestDrainGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const run, grace = time.Minute, 3 * time.Second
		p := newPipePair(t, bubbleConfig(Heartbeat{}), bubbleConfig(Heartbeat{}), Sleeper{})
		var reply time.Duration
		c, done := startSleep(p.dialer, run, &reply)
		synctest.Wait() // the handler runs

		start := time.Now()
		p.acceptor.drain(wire.GoAwayMaxAge, "connection reached its maximum age", grace)
		if d := time.Since(start); d != grace {
			t.Errorf("the drain closed the session after %v, want at the end of its grace (%v)", d, grace)
		}
		if err := p.acceptor.Err(); err == nil || err.Reason != ReasonShutdown || err.Code != wire.GoAwayMaxAge {
			t.Errorf("the drained session closed with %v, want %v with %v", err, ReasonShutdown, wire.GoAwayMaxAge)
		}
		err := waitCall(c, done)
		var ce *ConnError
		if !errors.As(err, &ce) || ce.Reason != ReasonGoAway || ce.Code != wire.GoAwayMaxAge || !ce.Sent {
			t.Errorf("the call cut off by the drain = %v; want the GOAWAY's %v, sent", err, wire.GoAwayMaxAge)
		}
		synctest.Wait() // the handler sees its context end
		if n := p.acceptor.running.Load(); n != 0 {
			t.Errorf("%d handlers still run after the session closed", n)
		}
		if d := time.Since(start); d != grace {
			t.Errorf("the handler ended %v after the drain began, want when the session closed (%v)", d, grace)
		}
	})
}

// waitCall waits for a call started with startSleep and returns its error.
func waitCall(_ *Call, done doneChan) error { return <-done }
