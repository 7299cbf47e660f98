//go:build adversary && linux

package adversary

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// maxMessage is the target's MaxMessageSize in these attacks: the default,
// 4 MiB, which a peer may announce for each message.
const maxMessage = 4 << 20

// serverArgs are the flags of a target server with the suite's budgets.
func serverArgs(extra ...string) []string {
	return append([]string{
		"-conn-budget", fmt.Sprint(connBudget),
		"-process-budget", fmt.Sprint(procBudget),
		"-out-queue", fmt.Sprint(outQueue),
	}, extra...)
}

// announceFrames appends n first frames of multi-frame CALLs, each
// announcing a total of total bytes and carrying only the call head.
func announceFrames(dst []byte, firstID uint32, n, total int) []byte {
	for i := range n {
		p := wire.AppendMessageLen(nil, total)
		p = wire.AppendCallHead(p, "Svc.Echo", 0)
		dst = wire.AppendFrame(dst, wire.TypeCall, 0, firstID+2*uint32(i), p)
	}
	return dst
}

// TestAnnounceHuge (attack 1a): one connection announces 256 messages of
// 4 MiB in their first frames (about 7 KB sent) and never sends the rest.
// Memory for a message must grow with the bytes that arrived, never with
// the announced total: the server may hold at most its budgets.
func TestAnnounceHuge(t *testing.T) {
	tg := startTarget(t, "announce-huge", "server", serverArgs()...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()

	const n = 256
	c := dialRaw(t, tg.addr, 0)
	handshake(t, c)
	goaway := drain(c)
	b := announceFrames(nil, 1, n, maxMessage)
	sent, err := writeFor(c, b, time.Now().Add(5*time.Second))
	time.Sleep(time.Second) // let the reader take it all in
	stop()
	peak := tg.stats()
	c.Close()
	g := <-goaway
	legitSummary := lg.check(t, "announce-huge", 1)
	t.Logf("sent %d of %d bytes (%v); announced %s; GOAWAY %v", sent, len(b), err, mib(n*maxMessage), g)
	measure(t, "announce-huge", base, peak, limits{held: procBudget},
		fmt.Sprintf("sent_kib=%d announced_mib=%d", sent>>10, n*maxMessage>>20), legitSummary)
}

// TestAnnounceHugeSent (attack 1a, with the bytes): two connections each
// start 24 messages of 4 MiB and send all their bytes but the last, so
// that no message completes. The server must stop granting credit at its
// budgets; what it holds stays within them, and is given back when the
// connections close.
func TestAnnounceHugeSent(t *testing.T) {
	tg := startTarget(t, "announce-huge-sent", "server", serverArgs()...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()

	const conns, perConn = 2, 24
	peers := make([]*rawPeer, conns)
	for i := range peers {
		peers[i] = handshake(t, dialRaw(t, tg.addr, 0))
	}
	frame := int(peers[0].hello.MaxFrameSize)
	chunk := bytes.Repeat([]byte{'x'}, frame)
	deadline := time.Now().Add(8 * time.Second)
	type outcome struct {
		sent int
		err  error
	}
	done := make(chan outcome, conns)
	for _, p := range peers {
		c := p.c
		go func() {
			drain(c)
			var o outcome
			buf := make([]byte, 0, frame+64)
			for i := range perConn {
				id := uint32(1 + 2*i)
				buf = announceFrames(buf[:0], id, 1, maxMessage)
				left := maxMessage - (len(buf) - wire.HeaderSize - wire.MessageLenSize)
				for left > 1 && o.err == nil {
					k := min(frame, left-1)
					buf = wire.AppendFrame(buf, wire.TypeContinuation, 0, id, chunk[:k])
					left -= k
					if len(buf) >= 256<<10 || left <= 1 {
						var n int
						n, o.err = writeFor(c, buf, deadline)
						o.sent += n
						buf = buf[:0]
					}
				}
				if o.err != nil {
					break
				}
			}
			done <- o
		}()
	}
	var total int
	for range conns {
		o := <-done
		total += o.sent
		if o.err != nil {
			t.Logf("attacker stopped: %v", o.err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	peak := tg.stats()

	// Closed connections give back what they held: the heap returns to
	// the baseline (within the slack) after a collection.
	for _, p := range peers {
		p.c.Close()
	}
	time.Sleep(time.Second)
	tg.command("gc")
	after := tg.stats()
	if after.HeapBytes > base.HeapBytes+heapSlack {
		t.Errorf("announce-huge-sent: heap %s after the connections closed, baseline %s", mib(after.HeapBytes), mib(base.HeapBytes))
	}
	legitSummary := lg.check(t, "announce-huge-sent", 1)
	measure(t, "announce-huge-sent", base, peak, limits{held: procBudget},
		fmt.Sprintf("sent_mib=%d heap_after_close_mib=%.1f rss_after_close_mib=%.1f", total>>20, mibf(after.HeapBytes), mibf(after.RSSBytes)),
		legitSummary)
}
