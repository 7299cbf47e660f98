package pulse

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pulse-rpc/pulse/internal/session"
)

// ServerLimits bound what all the connections of one Server hold together,
// so that no number of peers can make it hold more. The zero value of a
// field means its default (defaults.go); NoLimit turns it off. Per-IP
// limits count by the remote address of a TCP connection (an IPv4 address
// mapped into IPv6 counts as the IPv4 one); connections without an IP
// address (net.Pipe, Unix sockets) count only towards the totals.
//
// What a peer over a limit sees:
//   - MaxConns, MaxConnsPerIP: its handshake is refused with GOAWAY code
//     "handshake refused" and a message naming the limit, which its Dial
//     error shows ("server has too many connections (limit N)").
//   - MaxPendingHandshakes, MaxPendingHandshakesPerIP: its connection is
//     closed at once, before anything is read (its Dial fails with an I/O
//     error or EOF). The server counts these and logs them at most once a
//     second, with the count, so that a flood of connections does not
//     flood the log.
//   - MaxHandlers: the call fails with ErrBusy (status BUSY) and a message
//     naming the server-wide limit; the connection stays up.
type ServerLimits struct {
	// MaxConns bounds the connections open at once, including those in
	// their handshake (default DefaultMaxConns).
	MaxConns int
	// MaxConnsPerIP bounds the connections open at once from one remote
	// IP address (default DefaultMaxConnsPerIP).
	MaxConnsPerIP int
	// MaxPendingHandshakes bounds the connections accepted whose
	// handshake has not finished (default DefaultMaxPendingHandshakes).
	MaxPendingHandshakes int
	// MaxPendingHandshakesPerIP is MaxPendingHandshakes for one remote IP
	// address (default DefaultMaxPendingHandshakesPerIP).
	MaxPendingHandshakesPerIP int
	// MaxHandlers bounds the handlers running at once across all the
	// connections (default DefaultMaxHandlers); each connection is bounded
	// by WithMaxConcurrentCalls as well.
	MaxHandlers int
}

// WithServerLimits sets a server's connection, handshake and handler
// limits. Server only: Dial and NewClient refuse it.
func WithServerLimits(l ServerLimits) Option {
	return serverOption("WithServerLimits", func(o *options) { o.srvLimits = l })
}

// fields returns l's fields with their names and defaults, for checking
// and filling them in one loop.
func (l *ServerLimits) fields() []struct {
	name string
	v    *int
	def  int
} {
	return []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxConns", &l.MaxConns, DefaultMaxConns},
		{"MaxConnsPerIP", &l.MaxConnsPerIP, DefaultMaxConnsPerIP},
		{"MaxPendingHandshakes", &l.MaxPendingHandshakes, DefaultMaxPendingHandshakes},
		{"MaxPendingHandshakesPerIP", &l.MaxPendingHandshakesPerIP, DefaultMaxPendingHandshakesPerIP},
		{"MaxHandlers", &l.MaxHandlers, DefaultMaxHandlers},
	}
}

// validate refuses negative limits other than NoLimit.
func (l ServerLimits) validate() error {
	for _, f := range l.fields() {
		if *f.v < 0 && *f.v != NoLimit {
			return fmt.Errorf("pulse: ServerLimits.%s is %d: it must be positive, zero (the default, %d) or NoLimit", f.name, *f.v, f.def)
		}
	}
	return nil
}

// withDefaults fills in zero fields; NoLimit stays.
func (l ServerLimits) withDefaults() ServerLimits {
	for _, f := range l.fields() {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return l
}

// over reports whether n more would pass limit.
func over(n, limit int) bool { return limit != NoLimit && n >= limit }

// admission counts a Server's connections and pending handshakes, in total
// and per remote IP address, and decides which new ones it takes.
type admission struct {
	limits ServerLimits // with defaults
	log    *slog.Logger

	mu      sync.Mutex // protects following
	conns   int
	pending int
	perIP   map[netip.Addr]*ipCount // entries exist while a count is not zero
	// refused counts the connections closed at once for the pending
	// limits, logged at most once per logEvery (lastLog) with the count
	// since the last line (logged).
	refused, logged uint64
	lastLog         time.Time
}

type ipCount struct{ conns, pending int }

// logEvery is the shortest gap between two log lines about connections
// refused for the pending-handshake limits.
const logEvery = time.Second

func newAdmission(l ServerLimits, log *slog.Logger) *admission {
	return &admission{limits: l, log: log, perIP: make(map[netip.Addr]*ipCount)}
}

// remoteIP is the address the limits per IP count a connection from addr
// under; the zero Addr for a connection without one.
func remoteIP(addr net.Addr) netip.Addr {
	if a, ok := addr.(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// countLocked returns ip's counts, creating them; nil for the zero Addr.
func (a *admission) countLocked(ip netip.Addr) *ipCount {
	if !ip.IsValid() {
		return nil
	}
	c := a.perIP[ip]
	if c == nil {
		c = new(ipCount)
		a.perIP[ip] = c
	}
	return c
}

// forgetLocked drops ip's counts once they are zero.
func (a *admission) forgetLocked(ip netip.Addr, c *ipCount) {
	if c != nil && c.conns == 0 && c.pending == 0 {
		delete(a.perIP, ip)
	}
}

// startHandshake counts a new connection from ip as pending, or reports
// false, counting and (rate-limited) logging the refusal, when a pending
// limit is reached: the caller closes it at once.
func (a *admission) startHandshake(ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.countLocked(ip)
	if over(a.pending, a.limits.MaxPendingHandshakes) || (c != nil && over(c.pending, a.limits.MaxPendingHandshakesPerIP)) {
		a.forgetLocked(ip, c)
		a.refused++
		if now := time.Now(); now.Sub(a.lastLog) >= logEvery {
			a.log.Warn("pulse: closed new connections at once: too many pending handshakes",
				"refused", a.refused-a.logged, "refused_total", a.refused, "last_remote", ip,
				"limit", a.limits.MaxPendingHandshakes, "limit_per_ip", a.limits.MaxPendingHandshakesPerIP)
			a.lastLog, a.logged = now, a.refused
		}
		return false
	}
	a.pending++
	if c != nil {
		c.pending++
	}
	return true
}

// endHandshake ends a pending handshake from ip.
func (a *admission) endHandshake(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending--
	if c := a.perIP[ip]; c != nil {
		c.pending--
		a.forgetLocked(ip, c)
	}
}

// reserveConn counts a connection from ip as open, or returns why not: the
// message its handshake is refused with.
func (a *admission) reserveConn(ip netip.Addr) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.countLocked(ip)
	switch {
	case over(a.conns, a.limits.MaxConns):
		a.forgetLocked(ip, c)
		return fmt.Sprintf("server has too many connections (limit %d, ServerLimits.MaxConns)", a.limits.MaxConns)
	case c != nil && over(c.conns, a.limits.MaxConnsPerIP):
		a.forgetLocked(ip, c)
		return fmt.Sprintf("server has too many connections from %v (limit %d per IP address, ServerLimits.MaxConnsPerIP)", ip, a.limits.MaxConnsPerIP)
	}
	a.conns++
	if c != nil {
		c.conns++
	}
	return ""
}

// releaseConn ends a connection counted by reserveConn.
func (a *admission) releaseConn(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conns--
	if c := a.perIP[ip]; c != nil {
		c.conns--
		a.forgetLocked(ip, c)
	}
}

// counts returns the connections open and the handshakes pending.
func (a *admission) counts() (conns, pending int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conns, a.pending
}

// serverTLS wraps conn with TLS when the server has WithTLS and conn does
// not speak TLS already (a listener made by tls.NewListener accepts
// *tls.Conn values): a Server with WithTLS never serves plaintext.
func (srv *Server) serverTLS(conn net.Conn) net.Conn {
	if cfg := srv.opts.tlsConfig; cfg != nil {
		if _, ok := conn.(*tls.Conn); !ok {
			return tls.Server(conn, cfg)
		}
	}
	return conn
}

// refuseConn answers the handshake of a connection over MaxConns or
// MaxConnsPerIP with GOAWAY "handshake refused" and msg, and closes it.
func (srv *Server) refuseConn(conn net.Conn, msg string) {
	err := session.Refuse(conn, &srv.opts.sess, msg)
	srv.opts.sess.Logger.Debug("pulse: connection refused", "remote", conn.RemoteAddr(), "err", err)
}
