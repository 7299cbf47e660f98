//go:build adversary && linux

package adversary

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// expansion measures, in this process, how many bytes of Go heap decoding
// args (Svc.Hold's arguments, in JSON) into the target's HoldArgs takes per
// byte of args.
func expansion(t *testing.T, args []byte) float64 {
	t.Helper()
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	before := m.HeapAlloc
	var v struct {
		MS   int `json:"ms"`
		Data any `json:"data"`
	}
	if err := json.Unmarshal(args, &v); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m)
	after := m.HeapAlloc
	runtime.KeepAlive(v)
	if after <= before {
		return 1
	}
	return float64(after-before) / float64(len(args))
}

// TestDecodeExpansion (attack 6): three connections each send 12 calls of
// 1 MiB whose arguments decode into any as many small maps
// ([{"a":0},...], about 43 times their size as Go values), to a handler
// that holds them for 4 s. The budgets count a message's bytes until the
// handler that owns them returns, so the decoded values are bounded by the
// budgets times the expansion: peak heap ≤ baseline + 2 × E × held +
// slack, with E measured here for this very payload and held the most the
// budgets admit (three connections' budgets, within the process budget).
func TestDecodeExpansion(t *testing.T) {
	const (
		msgSize    = 1 << 20
		connBudget = msgSize + 4
		procBudget = 4 << 20
		conns      = 3
		perConn    = 12
	)
	tg := startTarget(t, "decode-expansion", "server", "-max-message", fmt.Sprint(msgSize),
		"-conn-budget", fmt.Sprint(connBudget), "-process-budget", fmt.Sprint(procBudget), "-out-queue", fmt.Sprint(outQueue))
	lg := startLegit(t, tg.addr)

	var data bytes.Buffer
	data.WriteString(`{"ms":4000,"data":[`)
	for data.Len() < msgSize-200 {
		data.WriteString(`{"a":0},`)
	}
	data.WriteString(`{"a":0}]}`)
	args := data.Bytes()
	e := expansion(t, args)
	msg := callMessage("Svc.Hold", args)

	base := tg.baseline()
	stop := tg.watch()
	var wg sync.WaitGroup
	var sentMu sync.Mutex
	var sent int
	for range conns {
		c := dialRaw(t, tg.addr, 0)
		p := handshake(t, c)
		drain(c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for i := range perConn {
				buf = appendMessage(buf[:0], wire.TypeCall, uint32(1+2*i), msg, int(p.hello.MaxFrameSize))
				n, err := writeFor(c, buf, time.Now().Add(5*time.Second))
				sentMu.Lock()
				sent += n
				sentMu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(2 * time.Second) // the handlers hold their arguments for 4 s
	stop()
	peak := tg.stats()
	legitSummary := lg.check(t, "decode-expansion", 1)
	held := uint64(e * float64(min(conns*connBudget, procBudget)))
	t.Logf("expansion of the payload: %.1f; sent %s; Hold ran %d times", e, mib(uint64(sent)), peak.Calls["Hold"])
	measure(t, "decode-expansion", base, peak, limits{held: held, factor: 2},
		fmt.Sprintf("expansion=%.1f sent_mib=%d", e, sent>>20), legitSummary)
}

// TestConnectionFlood (attack 7): 600 connections that never complete a
// handshake (half send nothing, half one byte), 50 that complete it and
// then send half a frame, and 50 that complete it and start a 4 MiB
// message of which they send 1 KiB, all held open. The server bounds
// connections and pending handshakes, gives a pending handshake only a
// small buffer, and closes a pending handshake after the handshake
// timeout and a started frame or message after the message timeout.
func TestConnectionFlood(t *testing.T) {
	const (
		maxConns     = 256
		maxPending   = 64
		handshakeTO  = 2 * time.Second
		messageTO    = 2 * time.Second
		closeSlack   = 1500 * time.Millisecond
		pending      = 600
		halfFrames   = 50
		halfMessages = 50
	)
	tg := startTarget(t, "connection-flood", "server", serverArgs(
		"-handshake-timeout", handshakeTO.String(), "-message-timeout", messageTO.String(),
		"-max-conns", fmt.Sprint(maxConns), "-max-pending-handshakes", fmt.Sprint(maxPending))...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()

	type kind struct {
		name  string
		bound time.Duration // closed by the server within this of its start
	}
	kinds := []kind{{"pending handshake", handshakeTO + closeSlack}, {"half frame", messageTO + closeSlack}, {"half message", messageTO + closeSlack}}
	var mu sync.Mutex
	open := make(map[string]int)    // still open at their bound
	refused := make(map[string]int) // could not even connect (a limit reached: fine)
	var wg sync.WaitGroup
	watchClose := func(c net.Conn, k kind, start time.Time) {
		defer wg.Done()
		c.SetReadDeadline(start.Add(k.bound))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if isTimeout(err) {
					mu.Lock()
					open[k.name]++
					mu.Unlock()
				}
				return
			}
		}
	}
	// The started frames and messages first: once the pending
	// handshakes fill their limit, new connections are refused (as they
	// should be) and could not start any.
	for i := range halfFrames + halfMessages {
		c, err := tryDialRaw(tg.addr, 0)
		var p *rawPeer
		if err == nil {
			p, err = tryHandshake(c)
		}
		k := kinds[1]
		if i >= halfFrames {
			k = kinds[2]
		}
		if err != nil {
			refused[k.name]++
			if c != nil {
				c.Close()
			}
			continue
		}
		t.Cleanup(func() { c.Close() })
		var b []byte
		if k == kinds[1] {
			b = wire.AppendHeader(nil, wire.TypeCall, wire.FlagEnd, 1, 1000)
			b = append(b, "0123456789"...)
		} else {
			pl := wire.AppendMessageLen(nil, maxMessage)
			pl = append(wire.AppendCallHead(pl, "Svc.Echo", 0), bytes.Repeat([]byte{'x'}, 1024)...)
			b = wire.AppendFrame(nil, wire.TypeCall, 0, 1, pl)
		}
		c.Write(b)
		wg.Add(1)
		go watchClose(p.c, k, time.Now())
	}
	start := time.Now()
	for i := range pending {
		c, err := tryDialRaw(tg.addr, 0)
		if err != nil {
			refused[kinds[0].name]++
			continue
		}
		t.Cleanup(func() { c.Close() })
		if i%2 == 1 {
			c.Write([]byte{wire.Version})
		}
		wg.Add(1)
		go watchClose(c, kinds[0], start)
	}
	time.Sleep(time.Second)
	stop()
	peak := tg.stats()
	wg.Wait()
	legitSummary := lg.check(t, "connection-flood", 1)
	var still []string
	for _, k := range kinds {
		t.Logf("%s: %d refused at connect or handshake, %d still open %v after they started", k.name, refused[k.name], open[k.name], k.bound)
		if open[k.name] > 0 {
			still = append(still, fmt.Sprintf("%d %ss open after %v", open[k.name], k.name, k.bound))
		}
	}
	if len(still) > 0 {
		t.Errorf("connection-flood: %s", strings.Join(still, ", "))
	}
	if refused[kinds[1].name] == halfFrames || refused[kinds[2].name] == halfMessages {
		t.Errorf("connection-flood: the server refused every connection that would start a frame or message: the attack did not run")
	}
	held := uint64(procBudget + maxPending*wire.MaxHelloSize + maxConns*(16<<10))
	measure(t, "connection-flood", base, peak, limits{held: held, goroutines: 2 * maxConns},
		fmt.Sprintf("conns=%d peak_conns=%d still_open=%d", pending+halfFrames+halfMessages, peak.Conns,
			open[kinds[0].name]+open[kinds[1].name]+open[kinds[2].name]), legitSummary)
}

// TestCallIDAbuse (attack 8): calls whose ids break the rules of
// PROTOCOL.md §5: a reused id, a skipped id sent twice, an id skipped by
// more than the receiver waits for, id 0, the server's parity,
// an id a NOTIFY already used. Each must get a GOAWAY (protocol error)
// that names the id, and nothing may run twice: Svc.Mark counts its runs.
func TestCallIDAbuse(t *testing.T) {
	tg := startTarget(t, "call-id-abuse", "server", serverArgs()...)
	type step struct {
		typ  wire.FrameType
		id   uint32
		wait bool // wait for its REPLY before the next step
	}
	cases := []struct {
		name     string
		steps    []step
		runs     int64  // Svc.Mark runs expected
		mentions string // the GOAWAY message must contain this
	}{
		{"reused", []step{{wire.TypeCall, 1, true}, {wire.TypeCall, 1, false}}, 1, "1"},
		// Ids may arrive out of order (a skipped id arrives later, once),
		// but not twice, nor after more than the receiver's 1024 skipped
		// ids (PROTOCOL.md §5).
		{"skipped-twice", []step{{wire.TypeCall, 5, true}, {wire.TypeCall, 3, true}, {wire.TypeCall, 3, false}}, 2, "3"},
		{"too-late", []step{{wire.TypeCall, 1, true}, {wire.TypeCall, 1 + 2*1100, true}, {wire.TypeCall, 3, false}}, 2, "3"},
		{"zero", []step{{wire.TypeCall, 0, false}}, 0, "reserved"},
		{"parity", []step{{wire.TypeCall, 2, false}}, 0, "2"},
		{"after-notify", []step{{wire.TypeNotify, 7, false}, {wire.TypeCall, 7, false}}, 1, "7"},
	}
	var failed []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tg.stats().Calls["Mark"]
			c := dialRaw(t, tg.addr, 0)
			p := handshake(t, c)
			c.SetDeadline(time.Now().Add(2 * time.Second))
			var g *wire.GoAway
			readUntil := func(replyID uint32, wantReply bool) error {
				for {
					h, pl, err := p.fr.ReadFrame()
					if err != nil {
						return err
					}
					switch {
					case h.Type == wire.TypeGoAway:
						ga, err := wire.ParseGoAway(pl)
						if err != nil {
							return err
						}
						g = &ga
						return nil
					case wantReply && h.Type == wire.TypeReply && h.ID == replyID:
						return nil
					}
				}
			}
			for _, s := range tc.steps {
				if _, err := c.Write(callFrame(nil, s.typ, s.id, "Svc.Mark", []byte("7"))); err != nil {
					t.Fatalf("write: %v", err)
				}
				if s.wait {
					if err := readUntil(s.id, true); err != nil {
						t.Fatalf("waiting for the reply to id %d: %v", s.id, err)
					}
				}
			}
			err := readUntil(0, false) // until GOAWAY or the end
			time.Sleep(200 * time.Millisecond)
			runs := tg.stats().Calls["Mark"] - before
			switch {
			case g == nil:
				t.Errorf("%s: no GOAWAY (connection: %v); Svc.Mark ran %d times, want %d", tc.name, err, runs, tc.runs)
			case g.Code != wire.GoAwayProtocolError || !strings.Contains(g.Message, tc.mentions):
				t.Errorf("%s: GOAWAY %v %q; want a protocol error mentioning %q", tc.name, g.Code, g.Message, tc.mentions)
			default:
				t.Logf("%s: GOAWAY %v %q", tc.name, g.Code, g.Message)
			}
			if runs != tc.runs {
				t.Errorf("%s: Svc.Mark ran %d times, want %d", tc.name, runs, tc.runs)
			}
			if t.Failed() {
				failed = append(failed, tc.name)
			}
		})
	}
	res := "pass"
	if len(failed) > 0 {
		res = "FAIL"
	}
	t.Logf("ADVERSARY attack=call-id-abuse cases=%d failed=%s result=%s", len(cases), strings.Join(failed, ","), res)
}

// TestHandlerFlood (attack 9, from limit 4 of the issue): four connections
// each start 1,024 calls of Svc.Slow (4 s), the most one connection may
// run. A server-wide bound on running handlers keeps the goroutines
// bounded; the legitimate client is still served (at least 90 % of its
// calls: a server-wide bound may refuse some with BUSY, a typed error).
func TestHandlerFlood(t *testing.T) {
	const (
		maxHandlers = 256
		conns       = 4
		perConn     = 1024
	)
	tg := startTarget(t, "handler-flood", "server", serverArgs("-max-handlers", fmt.Sprint(maxHandlers))...)
	lg := startLegit(t, tg.addr)
	base := tg.baseline()
	stop := tg.watch()
	for range conns {
		c := dialRaw(t, tg.addr, 0)
		handshake(t, c)
		drain(c)
		var buf []byte
		for i := range perConn {
			buf = callFrame(buf, wire.TypeCall, uint32(1+2*i), "Svc.Slow", []byte("4000"))
		}
		if _, err := writeFor(c, buf, time.Now().Add(5*time.Second)); err != nil {
			t.Logf("attacker: %v", err)
		}
	}
	time.Sleep(2 * time.Second)
	stop()
	peak := tg.stats()
	legitSummary := lg.check(t, "handler-flood", 0.9)
	measure(t, "handler-flood", base, peak, limits{held: procBudget, goroutines: maxHandlers + 4*conns},
		fmt.Sprintf("calls=%d slow_ran=%d", conns*perConn, peak.Calls["Slow"]), legitSummary)
}
