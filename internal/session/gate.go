package session

import (
	"fmt"
	"sync/atomic"
)

// Gate bounds the handlers running at once across every session that
// shares it: a Server gives one Gate to all its connections, so that the
// per-connection bound (Config.MaxConcurrentCalls) is not multiplied by
// the number of connections. A call is counted from its admission (when
// its arguments are decoded, in handleCall) until its handler returns; a
// queued notification counts as running, as it does per connection.
//
// A bound shared by everyone can be filled by one peer, and then every
// other peer's calls are refused. So the last quarter of it is kept for
// light connections, those running at most light handlers (max/64, at
// least 1) with the new one: a connection running more is refused once
// three quarters of the gate are taken. A peer needs many connections,
// which the server's connection limits bound, to take the whole gate;
// one with a few connections, however many calls it sends, leaves a
// quarter of the gate to everyone else.
//
// A nil *Gate admits everything. Methods are safe for concurrent use.
type Gate struct {
	max   int64 // handlers at once
	heavy int64 // handlers at once, counting those of heavy connections' calls
	light int32 // the most handlers a light connection runs
	n     atomic.Int64
	busy  string // the refusal, made once
}

// NewGate returns a gate admitting at most limit handlers at once.
func NewGate(limit int) *Gate {
	return &Gate{
		max:   int64(limit),
		heavy: int64(limit - limit/4),
		light: int32(max(limit/64, 1)),
		busy:  fmt.Sprintf("%d handlers already running on this server (its server-wide limit of running handlers)", limit),
	}
}

// acquire counts one more handler for a connection that runs running
// handlers with it, or reports false without counting it when the gate
// is full for that connection. It does not allocate.
func (g *Gate) acquire(running int32) bool {
	if g == nil {
		return true
	}
	limit := g.max
	if running > g.light {
		limit = g.heavy
	}
	if g.n.Add(1) > limit {
		g.n.Add(-1)
		return false
	}
	return true
}

// release ends one handler counted by acquire.
func (g *Gate) release() {
	if g != nil {
		g.n.Add(-1)
	}
}

// Running returns the handlers counted now.
func (g *Gate) Running() int {
	if g == nil {
		return 0
	}
	return int(g.n.Load())
}
