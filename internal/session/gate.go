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
// A nil *Gate admits everything. Methods are safe for concurrent use.
type Gate struct {
	max  int64
	n    atomic.Int64
	busy string // the refusal, made once
}

// NewGate returns a gate admitting at most max handlers at once.
func NewGate(max int) *Gate {
	return &Gate{max: int64(max), busy: fmt.Sprintf("%d handlers already running on this server (its server-wide limit of running handlers)", max)}
}

// acquire counts one more handler, or reports false without counting it
// when max are running already. It does not allocate.
func (g *Gate) acquire() bool {
	if g == nil {
		return true
	}
	if g.n.Add(1) > g.max {
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
