package main

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/pulse-rpc/pulse/faults/internal/event"
)

// The relay stands in for netem's delay, which this kernel lacks: it runs
// in the router namespace, accepts the client's connection, dials the
// server, and forwards every chunk it reads in either direction after a
// delay drawn uniformly from delay±jitter, keeping the order (a chunk is
// never delivered before the one read before it). Being a TCP endpoint, it
// adds latency and jitter as the application sees them; the endpoints'
// TCP round trip is to the relay.

type relayConfig struct {
	listen, target string
	delay, jitter  time.Duration
}

func runRelay(ctx context.Context, cfg relayConfig) error {
	l, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	out.Emit(event.Event{Ev: "listening", C: -1, Addr: l.Addr().String(), Info: "relay to " + cfg.target + " delay " + cfg.delay.String() + " ± " + cfg.jitter.String()})
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		<-ctx.Done()
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			var d net.Dialer
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := d.DialContext(dctx, "tcp", cfg.target)
			cancel()
			if err != nil {
				out.Emit(event.Event{Ev: "relay-error", C: -1, Remote: c.RemoteAddr().String(), Err: err.Error()})
				c.Close()
				return
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			out.Emit(event.Event{Ev: "relay-conn", C: -1, Remote: c.RemoteAddr().String(), Local: s.LocalAddr().String()})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); pipe(s, c, cfg) }()
			go func() { defer wg.Done(); pipe(c, s, cfg) }()
			wg.Wait()
			c.Close()
			s.Close()
		}()
	}
}

type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst, delaying each chunk. At end of file it passes
// the half-close on; on an error it closes both.
func pipe(dst, src net.Conn, cfg relayConfig) {
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		var last time.Time
		for {
			b := make([]byte, 16<<10)
			n, err := src.Read(b)
			if n > 0 {
				d := cfg.delay
				if cfg.jitter > 0 {
					d += time.Duration(rand.Int64N(int64(2*cfg.jitter)+1)) - cfg.jitter
				}
				at := time.Now().Add(d)
				if at.Before(last) {
					at = last
				}
				last = at
				q <- chunk{b[:n], at}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			dst.Close()
			for range q {
			}
			return
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
