//go:build adversary && linux

package adversary

import (
	"bytes"
	"fmt"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/pulse-rpc/pulse/wire"
)

// smallRcvbuf is the receive buffer of attackers that do not read, so that
// the server's writes to them block soon.
const smallRcvbuf = 4096

// replyFlood sends Echo calls with 64 KiB arguments as fast as the server
// takes them, for up to d or 512 MiB, on a connection that reads at most
// readRate bytes per second (0: never). It returns the bytes sent.
func replyFlood(t *testing.T, addr string, readRate int, d time.Duration) (int, error) {
	c := dialRaw(t, addr, smallRcvbuf)
	p := handshake(t, c)
	if readRate > 0 {
		go func() {
			const tick = 125 * time.Millisecond
			buf := make([]byte, readRate/8)
			for {
				time.Sleep(tick)
				c.SetReadDeadline(time.Now().Add(tick))
				_, err := c.Read(buf)
				if err != nil && !isTimeout(err) {
					return
				}
			}
		}()
	}
	args := jsonBytes(bytes.Repeat([]byte("0123456789abcdef"), 4096))
	msg := callMessage("Svc.Echo", args)
	maxFrame := int(p.hello.MaxFrameSize)
	end := time.Now().Add(d)
	var sent int
	var buf []byte
	for id := uint32(1); time.Now().Before(end) && sent < 512<<20; {
		buf = buf[:0]
		for range 16 {
			buf = appendMessage(buf, wire.TypeCall, id, msg, maxFrame)
			id += 2
		}
		n, err := writeFor(c, buf, end)
		sent += n
		if err != nil {
			if isTimeout(err) {
				return sent, nil // the server stopped taking calls: fine
			}
			return sent, err
		}
	}
	return sent, nil
}

func isTimeout(err error) bool {
	ne, ok := err.(interface{ Timeout() bool })
	return ok && ne.Timeout()
}

// TestNeverReads (attack 2a): a client sends calls and never reads the
// replies. A server whose replies cannot drain must stop admitting calls
// from that connection instead of queueing them: it holds no more than its
// inbound budget and one outbound queue, and other clients are served.
func TestNeverReads(t *testing.T) { replyFloodAttack(t, "never-reads", 0, 6*time.Second) }

// TestSlowReader (attack 2b): the same, reading the replies at 64 KiB/s.
func TestSlowReader(t *testing.T) { replyFloodAttack(t, "slow-reader-64k", 64<<10, 8*time.Second) }

// replyFloodAttack plays replyFlood, reading the replies at rate bytes a
// second (0: never) for d, against a fresh server, and measures it.
func replyFloodAttack(t *testing.T, attack string, rate int, d time.Duration) {
	tg := startTarget(t, attack, "server", serverArgs()...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()
	sent, err := replyFlood(t, tg.addr, rate, d)
	stop()
	peak := tg.stats()
	t.Logf("sent %s of calls (%v)", mib(uint64(sent)), err)
	legitSummary := lg.check(t, attack, 1)
	measure(t, attack, base, peak, limits{held: procBudget + outQueue},
		fmt.Sprintf("sent_mib=%d", sent>>20), legitSummary)
}

// TestStalledWriter (attack 2c): a client fills its credit with calls,
// then never reads the replies but keeps sending PINGs, so that the
// server hears from it all the time: only the server's write watchdog can
// tell that its writes make no progress. The server must close the
// connection within two heartbeat Timeouts (plus slack) of the replies'
// first stalled write: the write watchdog looks once per Timeout and
// convicts at a look that finds no progress since the one before
// (docs/liveness.md). Another client is served meanwhile.
func TestStalledWriter(t *testing.T) {
	const (
		interval = 200 * time.Millisecond
		timeout  = 2 * time.Second
		slack    = 2 * time.Second // the fault suite's detection slack
		calls    = 48              // 48 × 64 KiB: within the 4 MiB credit
	)
	tg := startTarget(t, "stalled-writer", "server", serverArgs("-interval", interval.String(), "-timeout", timeout.String())...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()
	c := dialRaw(t, tg.addr, smallRcvbuf)
	p := handshake(t, c)
	args := jsonBytes(bytes.Repeat([]byte("0123456789abcdef"), 4096))
	msg := callMessage("Svc.Echo", args)
	var buf []byte
	for i := range calls {
		buf = appendMessage(buf, wire.TypeCall, uint32(1+2*i), msg, int(p.hello.MaxFrameSize))
	}
	if _, err := writeFor(c, buf, time.Now().Add(5*time.Second)); err != nil {
		t.Fatalf("writing calls within the credit: %v", err)
	}
	stalled := time.Now() // the replies fill the small receive buffer at once
	var closed time.Duration
	inq := func() int {
		raw, _ := c.SyscallConn()
		n := -1
		var v int32
		raw.Control(func(fd uintptr) {
			syscall.Syscall(syscall.SYS_IOCTL, fd, 0x541B /* SIOCINQ */, uintptr(unsafe.Pointer(&v)))
		})
		n = int(v)
		return n
	}
	lastInq, grewAt := inq(), time.Duration(0)
	for i := uint64(0); closed == 0; i++ {
		if q := inq(); q != lastInq {
			lastInq, grewAt = q, time.Since(stalled)
			t.Logf("the attacker's kernel holds %d unread bytes %v after the stall began: the server's writes moved", q, grewAt.Round(time.Millisecond))
		}
		if _, err := writeFor(c, wire.AppendPing(nil, wire.TypePing, i), time.Now().Add(time.Second)); err != nil {
			closed = time.Since(stalled) // the server closed: the PING met a reset
		}
		if st := tg.stats(); st.Conns <= 1 && closed == 0 {
			closed = time.Since(stalled)
		}
		if time.Since(stalled) > 2*timeout+2*slack {
			break
		}
		time.Sleep(interval / 2)
	}
	stop()
	peak := tg.stats()
	legitSummary := lg.check(t, "stalled-writer", 1)
	switch {
	case closed == 0:
		t.Errorf("stalled-writer: the server kept a connection whose replies made no progress for %v (Timeout %v)", time.Since(stalled).Round(time.Millisecond), timeout)
	case closed > 2*timeout+slack:
		t.Errorf("stalled-writer: the server closed the connection %v after its writes stalled, over twice Timeout %v + %v", closed.Round(time.Millisecond), timeout, slack)
	}
	measure(t, "stalled-writer", base, peak, limits{held: procBudget + outQueue},
		fmt.Sprintf("closed_after_ms=%d timeout_ms=%d", closed.Milliseconds(), timeout.Milliseconds()), legitSummary)
}

// TestBroadcastNonReader (attack 3): the server broadcasts 16 KiB every
// 20 ms, each Broadcast with a 200 ms deadline, while two peers never read.
// Broadcast is never held up by its slowest peer and tells the caller
// which peers it could not reach; the legitimate client still gets the
// pushes; what is queued for the stuck peers stays within their queues.
func TestBroadcastNonReader(t *testing.T) {
	const every, timeout = 20 * time.Millisecond, 200 * time.Millisecond
	tg := startTarget(t, "broadcast-non-reader", "server", serverArgs(
		"-broadcast-every", every.String(), "-broadcast-timeout", timeout.String(), "-broadcast-bytes", "16384")...)
	lg := startLegit(t, tg.addr)
	for deadline := time.Now().Add(10 * time.Second); lg.pushes.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the legitimate client got no push in 10 s")
		}
	}
	base := tg.baseline()
	pushes0 := lg.pushes.Load()
	stop := tg.watch()
	for range 2 {
		handshake(t, dialRaw(t, tg.addr, smallRcvbuf)) // and never read
	}
	time.Sleep(6 * time.Second)
	stop()
	peak := tg.stats()
	pushes := lg.pushes.Load() - pushes0
	legitSummary := lg.check(t, "broadcast-non-reader", 1)
	b, b0 := peak.Broadcast, base.Broadcast
	if b == nil || b0 == nil {
		t.Fatal("the target reported no broadcasts")
	}
	count := b.Count - b0.Count
	t.Logf("broadcasts: %d returned (%d pending), longest %v, %d late, %d errors, %d peer-broadcasts unreached; the legitimate client got %d pushes",
		count, b.Pending, time.Duration(b.MaxMicros)*time.Microsecond, b.Late-b0.Late, b.Errors-b0.Errors, b.Unreached-b0.Unreached, pushes)
	if limit := timeout + 100*time.Millisecond; b.Late > b0.Late || time.Duration(b.MaxMicros)*time.Microsecond > limit {
		t.Errorf("broadcast-non-reader: a Broadcast with a %v deadline took %v (%d took over %v): held up by the peers that do not read",
			timeout, time.Duration(b.MaxMicros)*time.Microsecond, b.Late-b0.Late, limit)
	}
	if want := int64(6 * time.Second / every / 4); count < want {
		t.Errorf("broadcast-non-reader: %d Broadcasts in 6 s, every %v: fewer than %d", count, every, want)
	}
	if pushes < count/2 {
		t.Errorf("broadcast-non-reader: the legitimate client got %d of %d pushes", pushes, count)
	}
	if b.Unreached == b0.Unreached {
		t.Errorf("broadcast-non-reader: no Broadcast reported a peer it could not reach, though two never read")
	}
	measure(t, "broadcast-non-reader", base, peak, limits{held: procBudget + 2*outQueue},
		fmt.Sprintf("broadcasts=%d max_broadcast_ms=%d pushes=%d unreached=%d", count, b.MaxMicros/1000, pushes, b.Unreached-b0.Unreached), legitSummary)
}

// TestPingFlood (attack 4): a peer that does not read sends PINGs as fast
// as it can, far over the permitted rate, for 3 s (on up to four
// connections in turn, as each is closed). No goroutine per frame,
// no log line per frame: goroutines and log lines stay bounded, and so
// does what is queued for it.
func TestPingFlood(t *testing.T) {
	tg := startTarget(t, "ping-flood", "server", serverArgs()...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()
	var buf []byte
	for i := range 4096 {
		buf = wire.AppendPing(buf, wire.TypePing, uint64(i))
	}
	// Four connections, one after another, each as long as the server
	// keeps it, for 3 s in all.
	end := time.Now().Add(3 * time.Second)
	var pings, conns int
	var err error
	for time.Now().Before(end) && pings < 4_000_000 && conns < 4 {
		conns++
		c := dialRaw(t, tg.addr, smallRcvbuf)
		handshake(t, c)
		for time.Now().Before(end) && pings < 4_000_000 {
			var n int
			n, err = writeFor(c, buf, end)
			pings += n / (wire.HeaderSize + wire.PingSize)
			if err != nil {
				break
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	peak := tg.stats()
	t.Logf("sent %d PINGs on %d connections (last error: %v)", pings, conns, err)
	legitSummary := lg.check(t, "ping-flood", 1)
	measure(t, "ping-flood", base, peak, limits{held: outQueue},
		fmt.Sprintf("pings=%d conns=%d", pings, conns), legitSummary)
}

// TestNotifyFailures (attack 5): 120,000 NOTIFY frames that fail (unknown
// service, unknown method, arguments that do not decode), about 40 MB.
// Peer-caused log lines are rate-limited per connection and reason, with
// counts: at most logBound lines and 64 KiB of log.
func TestNotifyFailures(t *testing.T) {
	tg := startTarget(t, "notify-failures", "server", serverArgs()...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()
	c := dialRaw(t, tg.addr, 0)
	handshake(t, c)
	goaway := drain(c)
	pad := bytes.Repeat([]byte{'p'}, 280)
	kinds := []struct {
		method string
		args   []byte
	}{
		{"Nope.Nope", jsonBytes(pad)},
		{"Svc.Nope", jsonBytes(pad)},
		{"Svc.Mark", append(append([]byte(`"`), pad...), '"')}, // not an int
	}
	end := time.Now().Add(10 * time.Second)
	var sent, frames int
	var err error
	id := uint32(1)
	var buf []byte
	for frames < 120_000 && err == nil {
		buf = buf[:0]
		for i := range 1000 {
			k := kinds[(frames+i)%len(kinds)]
			buf = callFrame(buf, wire.TypeNotify, id, k.method, k.args)
			id += 2
		}
		var n int
		n, err = writeFor(c, buf, end)
		sent += n
		frames += 1000
	}
	time.Sleep(time.Second)
	stop()
	peak := tg.stats()
	c.Close()
	t.Logf("sent %d NOTIFY frames, %s (%v); GOAWAY %v", frames, mib(uint64(sent)), err, <-goaway)
	legitSummary := lg.check(t, "notify-failures", 1)
	if lb := peak.LogBytes - base.LogBytes; lb > 64<<10 {
		t.Errorf("notify-failures: %s of log for %s of frames", mib(uint64(lb)), mib(uint64(sent)))
	}
	measure(t, "notify-failures", base, peak, limits{held: connBudget},
		fmt.Sprintf("notify_frames=%d sent_mib=%d log_kib=%d", frames, sent>>20, (peak.LogBytes-base.LogBytes)>>10), legitSummary)
}
