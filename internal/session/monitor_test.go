package session

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/service"
	"github.com/pulse-rpc/pulse/internal/sock"
	"github.com/pulse-rpc/pulse/liveness"
	"github.com/pulse-rpc/pulse/wire"
)

// The monitor's checks are driven by hand here, inside synctest bubbles:
// the session's clock reads the bubble's time, so that the silences and
// delays below are exact and cost no real time.

// TestMonitorLocalStall drives a connection's monitor by hand: a check
// that runs far later than it was scheduled (this process was stalled, so
// the peer's bytes may sit unread) must not convict the peer, however long
// the silence looks; it re-checks shortly after instead. A check on time
// convicts a peer that really is silent.
func TestMonitorLocalStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, m, rd := newHandMonitor(t, Heartbeat{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}, nil)
		now := s.now

		silentFor := func(d time.Duration) { rd.last.Store(now() - int64(d)) }
		checkAt := func(late time.Duration) {
			m.mu.Lock()
			m.scheduled = now() - int64(late)
			m.mu.Unlock()
			m.check()
		}

		// Silent for a second, but the check itself is half a second late.
		silentFor(time.Second)
		checkAt(500 * time.Millisecond)
		if err := s.closeErr(); err != nil {
			t.Fatalf("a late check convicted the peer: %v", err)
		}
		checkDueSoon(t, m, "after a late check")

		// The reader catches up: bytes were there all along.
		rd.last.Store(now())
		checkAt(0)
		if err := s.closeErr(); err != nil {
			t.Fatalf("a check after fresh bytes convicted the peer: %v", err)
		}

		// Silent again, and this time the check runs on time.
		silentFor(time.Second)
		checkAt(0)
		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("an on-time check did not convict a peer silent for 1s (timeout 200ms)")
		}
		if err := s.closeErr(); !isReason(err, ReasonSilent) {
			t.Errorf("close reason = %v, want %v", err, ReasonSilent)
		}
	})
}

// TestMonitorSuspectRecheck: a connection whose peer sends no heartbeats
// (granted interval 0) is re-checked while suspect at a fraction of the
// suspect time, not every millisecond: a server may hold thousands.
func TestMonitorSuspectRecheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c1, c2 := net.Pipe()
		defer c1.Close()
		defer c2.Close()
		cfg := handConfig(Heartbeat{Timeout: 8 * time.Second})
		s, rd := handSession(t, c1, false, cfg)
		m := newMonitor(s, cfg.Heartbeat, 0, Limits{})
		now := s.now()
		rd.last.Store(now - int64(5*time.Second)) // silent past the suspect time (4s)
		m.mu.Lock()
		m.isSuspect = true
		next := m.nextLocked(now)
		m.mu.Unlock()
		if gap := time.Duration(next - now); gap < m.suspect/4 {
			t.Errorf("a suspect connection without heartbeats is re-checked after %v, want at least %v", gap, m.suspect/4)
		}
	})
}

// handConfig is testConfig(hb) for a session whose monitor is driven by
// hand. Its clock reads the time of the goroutine that made it (a
// synctest bubble's, when made in one), but its epoch is an hour back: a
// test sets times before the session began (a silence of a second), and
// the monitor takes times of 0 or less for "none".
func handConfig(hb Heartbeat) *Config {
	cfg := testConfig(hb)
	cfg.Clock = Clock{epoch: time.Now().Add(-time.Hour)}
	return cfg
}

// handSession returns a session over c1 whose handshake is taken as done
// and whose reader does not run, and the reads its monitor judges.
func handSession(t *testing.T, c1 net.Conn, dialer bool, cfg *Config) (*Session, *reads) {
	t.Helper()
	rd := &reads{clock: &cfg.Clock}
	peer := wire.Hello{MaxFrameSize: wire.DefaultMaxFrameSize, MaxMessageSize: cfg.MaxMessageSize, InitialWindow: cfg.Window}
	s := newSession(c1, newFrameReader(c1), codec.JSON, dialer, cfg, service.NewRegistry(), peer, rd)
	return s, rd
}

// newHandMonitor returns a dialer session over a pipe whose monitor is
// driven by hand, with TCP's view of acknowledgements replaced by acks
// (when not nil). Made in a synctest bubble, it reads the bubble's time.
func newHandMonitor(t *testing.T, hb Heartbeat, acks *sock.Acks) (*Session, *monitor, *reads) {
	t.Helper()
	c1, c2 := net.Pipe()
	t.Cleanup(func() { c2.Close() })
	go io.Copy(io.Discard, c2)
	return newHandMonitorOn(t, c1, hb, acks)
}

// newHandMonitorOn is newHandMonitor on a connection of the test's.
func newHandMonitorOn(t *testing.T, c1 net.Conn, hb Heartbeat, acks *sock.Acks) (*Session, *monitor, *reads) {
	t.Helper()
	cfg := handConfig(hb)
	s, rd := handSession(t, c1, true, cfg)
	m := newMonitor(s, cfg.Heartbeat, cfg.Heartbeat.Interval, Limits{})
	if acks != nil {
		m.acked = func() (sock.Acks, bool) { return *acks, true }
	}
	s.mon = m
	m.timer = time.AfterFunc(time.Hour, func() {}) // checks are made by hand
	t.Cleanup(m.stop)
	return s, m, rd
}

// checkDueSoon fails the test unless m's next check is due shortly (a
// recheck), not an interval or a Timeout away.
func checkDueSoon(t *testing.T, m *monitor, after string) {
	t.Helper()
	m.mu.Lock()
	due := time.Duration(m.scheduled - m.s.now())
	m.mu.Unlock()
	if due <= 0 || due > time.Second {
		t.Errorf("%s the next check is due in %v, want shortly", after, due)
	}
}

// checkNow runs one on-time check.
func checkNow(m *monitor) {
	m.mu.Lock()
	m.scheduled = m.s.now()
	m.mu.Unlock()
	m.check()
}

// isReason reports whether err is a *ConnError for reason.
func isReason(err error, reason Reason) bool {
	var ce *ConnError
	return errors.As(err, &ce) && ce.Reason == reason
}

// TestMonitorAcksOfBulk: behind a deep queue, the peer's own bytes can be
// held back for longer than the Timeout while its kernel acknowledges this
// side's bulk data, also after this side's last write returned. Those
// acknowledgements are signs of life; a trickle of them, as a
// TCP-terminating proxy in front of a dead peer gives for heartbeats, is
// not.
func TestMonitorAcksOfBulk(t *testing.T) {
	for _, tt := range []struct {
		name    string
		unacked uint32
		alive   bool
	}{
		{"bulk in flight", 4 * bulkInFlight, true},
		{"heartbeats only", 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				acks := &sock.Acks{Unacked: tt.unacked}
				s, m, rd := newHandMonitor(t, Heartbeat{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}, acks)
				now := s.now
				start := now()
				rd.last.Store(start - int64(150*time.Millisecond)) // suspect (100ms), not yet dead
				// The peer acknowledges between looks (at least half an
				// interval apart), until the silence is twice the Timeout.
				for now()-start < int64(250*time.Millisecond) {
					acks.Progress += 10
					checkNow(m)
					time.Sleep(30 * time.Millisecond)
				}
				err := s.closeErr()
				if tt.alive && err != nil {
					t.Fatalf("acknowledgements of a bulk in flight did not count as life: %v", err)
				}
				if !tt.alive && !isReason(err, ReasonSilent) {
					t.Fatalf("close reason = %v, want %v: a trickle of acknowledgements hid a silent peer", err, ReasonSilent)
				}
			})
		})
	}
}

// TestMonitorAcksSeenByBothLooks: the write watchdog and the look for
// signs of life ask TCP the same question, whether the peer acknowledged
// data since they last looked. When both look in the same check, the
// watchdog must not use up the news: behind a deep queue, a write blocked
// for longer than the Timeout and a peer heard only through its
// acknowledgements are the same moment (faults/TestDeepQueue).
func TestMonitorAcksSeenByBothLooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		acks := &sock.Acks{Unacked: 4 * bulkInFlight}
		s, m, rd := newHandMonitor(t, Heartbeat{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}, acks)
		now := s.now
		rd.last.Store(now() - int64(150*time.Millisecond)) // suspect (100ms), not yet dead
		checkNow(m)                                        // the first look: no news yet
		m.mu.Lock()
		m.oooAt -= int64(30 * time.Millisecond) // that look was 30ms ago
		m.mu.Unlock()
		acks.Progress += 10                                     // the peer acknowledged since
		m.writeStart.Store(now() - int64(250*time.Millisecond)) // a write blocked past the Timeout
		checkNow(m)
		if err := s.closeErr(); err != nil {
			t.Fatalf("a write that the peer keeps acknowledging was declared stuck: %v", err)
		}
		m.mu.Lock()
		sign, lastRead := m.lastSign(rd.last.Load()), rd.last.Load()
		ws := m.writeStart.Load()
		m.mu.Unlock()
		if ws == 0 || now()-ws > int64(100*time.Millisecond) {
			t.Errorf("the watchdog did not see the acknowledgements: the write counts as blocked for %v", time.Duration(now()-ws))
		}
		if sign <= lastRead {
			t.Fatal("the acknowledgements that the watchdog saw did not count as a sign of life: the peer would be declared dead at the Timeout")
		}
	})
}

// TestMonitorLooksKeepTheirPace: while the peer is silent, the kernel is
// looked at every lookGap, counted from the last look: a check that comes
// between for something else (a PING due, the write watchdog) is too soon
// to look again, and must not push the next look a whole gap past itself.
// Two looks must fit between the suspect time and the Timeout, or the
// acknowledgements that keep a peer behind a deep queue alive are never
// counted (faults/TestDeepQueue).
func TestMonitorLooksKeepTheirPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		acks := &sock.Acks{Unacked: 4 * bulkInFlight}
		s, m, rd := newHandMonitor(t, Heartbeat{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}, acks)
		now := s.now
		rd.last.Store(now() - int64(150*time.Millisecond)) // suspect (100ms), not yet dead
		checkNow(m)                                        // the first look
		m.mu.Lock()
		m.oooAt -= int64(10 * time.Millisecond) // that look was 10ms ago
		m.mu.Unlock()
		m.lastWrite.Store(now()) // no PING due before the look
		checkNow(m)              // a check between two looks
		m.mu.Lock()
		gap, next := m.lookGap(), time.Duration(m.scheduled-m.oooAt)
		m.mu.Unlock()
		if next > gap+5*time.Millisecond {
			t.Errorf("the next look is due %v after the last, want %v (one look gap)", next, gap)
		}
	})
}

// TestMonitorStallAfterRTT: a blocked write is judged stuck after the
// Timeout, or after two round trips when the path's round trip is longer
// (an acknowledgement cannot come back sooner).
func TestMonitorStallAfterRTT(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		acks := &sock.Acks{Unacked: 100, RTT: 400 * time.Millisecond}
		s, m, rd := newHandMonitor(t, Heartbeat{Interval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}, acks)
		now := s.now
		m.rtt(300 * time.Millisecond)

		rd.last.Store(now()) // the peer's bytes keep coming
		m.writeStart.Store(now() - int64(500*time.Millisecond))
		checkNow(m)
		if err := s.closeErr(); err != nil {
			t.Fatalf("a write blocked for 500ms, less than two TCP round trips (800ms), was declared stuck: %v", err)
		}
		m.mu.Lock()
		after := m.stallAfterLocked()
		m.mu.Unlock()
		if after != 800*time.Millisecond {
			t.Errorf("a write is judged stuck after %v without progress, want 800ms", after)
		}

		m.writeStart.Store(now() - int64(900*time.Millisecond))
		rd.last.Store(now())
		checkNow(m)
		select {
		case <-s.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a write without progress for 900ms was not declared stuck")
		}
		var ce *ConnError
		if err := s.closeErr(); !errors.As(err, &ce) || ce.Reason != ReasonWriteStall || !strings.Contains(ce.Message, "800ms") {
			t.Errorf("close reason = %v, want a write stall after 800ms", err)
		}
	})
}

// TestMonitorLossyPause: on a path that has been losing packets, a lost
// packet's retransmission can be lost too, and the phi detector's pause
// then covers both retransmission timeouts. Losses counted while the peer
// is silent (this side retransmitting to a peer that may have died) do not
// make the path lossy, and a path that stops losing packets is trusted
// again after lossMemory.
func TestMonitorLossyPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ms = time.Millisecond
		s, m, rd := newHandMonitor(t, Heartbeat{Interval: 200 * ms, Timeout: time.Second, Phi: true}, nil)
		now := s.now
		phi, ok := m.det.(*liveness.PhiAccrual)
		if !ok {
			t.Fatalf("detector = %T, want phi", m.det)
		}
		var loss sock.Loss
		m.loss = func() (sock.Loss, bool) { return loss, true }
		pause := func() time.Duration { return phi.Config().Pause }
		look := func(silent time.Duration) {
			m.mu.Lock()
			m.pathLoss.look = 0 // due for a look
			m.mu.Unlock()
			rd.last.Store(now() - int64(silent))
			checkNow(m)
		}

		m.rtt(100 * ms)
		look(0)
		if got, want := pause(), liveness.RetransmitPause+100*ms; got != want {
			t.Fatalf("pause on a clean path = %v, want %v", got, want)
		}

		// Retransmissions found 300 ms into a silence may be this side's
		// heartbeats to a dead peer: they do not count.
		loss.Retrans = 3
		look(300 * ms)
		if got, want := pause(), liveness.RetransmitPause+100*ms; got != want {
			t.Fatalf("pause after losses counted during a silence = %v, want %v", got, want)
		}

		// The same losses, seen while the peer is heard from, make the path
		// lossy.
		look(0)
		lossyPause := 3*liveness.RetransmitPause + 100*ms
		if got := pause(); got != lossyPause {
			t.Fatalf("pause on a lossy path = %v, want %v", got, lossyPause)
		}
		m.rtt(100 * ms) // a new round trip keeps the lossy pause
		if got := pause(); got != lossyPause {
			t.Fatalf("pause after a round trip on a lossy path = %v, want %v", got, lossyPause)
		}

		// What the lossy pause is for: calls every 100 ms, then a packet and
		// its first retransmission lost (200 + 400 ms of TCP backoff). The
		// clean pause convicts a live peer; the lossy one does not.
		d := liveness.Detector(phi)
		at := time.Duration(0)
		for i := range 200 {
			gap := 100*ms + time.Duration(i%7-3)*10*ms
			at += gap
			d.Observe(at, gap)
		}
		silence := at + 764*ms
		if v := d.Check(silence, at); v.Dead {
			t.Fatalf("with the lossy pause, %v of silence convicted the peer: %s", 764*ms, v.Reason)
		}
		phi.SetPause(liveness.RetransmitPause + 100*ms)
		if v := d.Check(silence, at); !v.Dead {
			t.Fatalf("with the clean pause, %v of silence did not convict the peer (else this test shows nothing)", 764*ms)
		}
		phi.SetPause(lossyPause)

		// No new losses for lossMemory: the path is clean again. Then an
		// out-of-order packet is a loss too.
		m.mu.Lock()
		m.pathLoss.at = now() - int64(lossMemory) - 1
		m.mu.Unlock()
		look(0)
		if got, want := pause(), liveness.RetransmitPause+100*ms; got != want {
			t.Fatalf("pause a lossMemory after the last loss = %v, want %v", got, want)
		}
		loss.OOO = 1
		look(0)
		if got := pause(); got != lossyPause {
			t.Fatalf("pause after an out-of-order packet = %v, want %v", got, lossyPause)
		}
		if err := s.closeErr(); err != nil {
			t.Fatalf("the hand-driven checks closed the session: %v", err)
		}
	})
}
