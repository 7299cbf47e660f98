package session

import (
	"context"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// allowPing takes a token for a ping from the peer. Tokens come at one per
// minPingGap; the bucket holds as many as the pings a healthy peer can have
// sent within this side's deadline, since TCP may hold pings back (a lost
// segment, a deep queue, its backoff) and deliver them in one burst, and a
// peer silent for longer than the deadline would have been reaped anyway.
// A flood empties the bucket within that many pings. Reader only.
func (s *Session) allowPing() bool {
	now := s.now()
	burst := 4.0
	if s.mon != nil && s.mon.timeout > 0 {
		burst = max(burst, float64(s.mon.timeout)/float64(s.minPingGap)+2)
	}
	if s.lastPingRecv == 0 {
		s.pingTokens = burst
	} else {
		s.pingTokens = min(burst, s.pingTokens+float64(now-s.lastPingRecv)/float64(s.minPingGap))
	}
	s.lastPingRecv = now
	if s.pingTokens < 1 {
		return false
	}
	s.pingTokens--
	return true
}

// handlePong takes a PONG: it completes a Ping waiting for it, and gives
// a round-trip sample when it answers a heartbeat of this side's.
func (s *Session) handlePong(data uint64) {
	now := s.now()
	s.mu.Lock()
	ch := s.pings[data]
	delete(s.pings, data)
	s.mu.Unlock()
	sent := int64(data)
	rtt := time.Duration(max(now-sent, 0))
	if sent > 0 && sent <= now && s.mon != nil {
		s.mon.rtt(rtt) // else not one of ours, or sent at the clock's epoch
	}
	if ch != nil {
		ch <- rtt
	}
}

// Ping sends a PING and waits for its PONG.
func (s *Session) Ping(ctx context.Context) (time.Duration, error) {
	ch := make(chan time.Duration, 1)
	s.mu.Lock()
	if err := s.refuseLocked(); err != nil {
		s.mu.Unlock()
		return 0, err
	}
	if s.pings == nil {
		s.pings = make(map[uint64]chan time.Duration)
	}
	// The time is the token; Pings made at the same reading (a clock that
	// has not moved: a coarse one, or a synctest bubble's) take the next
	// free value instead of waiting for the clock, under s.mu.
	token := uint64(s.now())
	for s.pings[token] != nil {
		token++
	}
	s.pings[token] = ch
	s.mu.Unlock()
	if s.mon != nil {
		s.mon.lastWrite.Store(s.now())
	}
	s.queueControl(func(b []byte) []byte { return wire.AppendPing(b, wire.TypePing, token) }, background)
	select {
	case rtt, ok := <-ch:
		if !ok {
			return 0, s.closeErr()
		}
		return rtt, nil
	case <-s.Done():
		return 0, s.closeErr()
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.pings, token)
		s.mu.Unlock()
		return 0, ctx.Err()
	}
}
