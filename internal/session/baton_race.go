//go:build race

package session

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
)

// baton records which goroutine holds a session's reader role, in race
// builds, and panics when the role is used or taken by the wrong one, in
// the spirit of x/net http2's serverConn.serveG.check. The role is held
// by one goroutine at a time; see the ownership notes on Session.
type baton struct{ g atomic.Int64 }

// take makes the calling goroutine the reader. The role must be free.
func (b *baton) take() {
	g := curGoroutine()
	if !b.g.CompareAndSwap(0, g) {
		panic(fmt.Sprintf("pulse: goroutine %d takes the reader role held by goroutine %d", g, b.g.Load()))
	}
}

// release frees the role; the calling goroutine must hold it.
func (b *baton) release() {
	b.check()
	b.g.Store(0)
}

// pass frees the role on behalf of a holder that is busy in a method and
// will not touch reader state again (the on-reader watchdog's hand-off).
func (b *baton) pass() { b.g.Store(0) }

// check panics unless the calling goroutine holds the role.
func (b *baton) check() {
	if g, h := curGoroutine(), b.g.Load(); g != h {
		panic(fmt.Sprintf("pulse: goroutine %d uses reader state held by goroutine %d", g, h))
	}
}

// curGoroutine returns the calling goroutine's id, from its stack trace's
// first line ("goroutine 18 [running]:").
func curGoroutine() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	g, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		panic("pulse: cannot parse goroutine id: " + err.Error())
	}
	return g
}
