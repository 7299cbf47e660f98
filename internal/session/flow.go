package session

import (
	"fmt"
	"sync/atomic"

	"github.com/pulse-rpc/pulse/wire"
)

// Flow control (PROTOCOL.md §9). Each side grants its peer credit for the
// payload bytes of data frames (CALL, REPLY, NOTIFY, CONTINUATION): the
// window of its HELLO at the start, then WINDOW_UPDATE frames as it lets
// go of the bytes. A byte is let go when nothing holds it any more: a
// call's bytes when its handler returns (so that decoded arguments held by
// a running handler count too), a reply's once it is decoded, a discarded
// message's as it arrives. The credit a peer has plus the bytes this side
// holds is therefore at most the window: one connection can make this side
// hold at most Config.Window bytes of messages, however it sends them.
//
// A Budget, shared by every session of a Server or Client, bounds the sum
// over its connections: a message whose bytes do not fit it is refused
// (a CALL gets BUSY, a REPLY fails its call, a NOTIFY is dropped) and its
// bytes are let go as they arrive. A buffer made at a message's announced
// size is charged for all of it when made (assemble.go). A REPLY in one
// frame is not charged: it is decoded from the read buffer into its
// caller's reply before the reader goes on, so it holds nothing. The
// budget does not hold credit back: a connection whose message is half
// received would then wait for credit that only the end of other
// half-received messages can free, and with enough of them nothing would
// ever end.

// Budget bounds the inbound message bytes held at once by all the
// sessions that share it. Its zero value is unusable; NewBudget makes one.
type Budget struct {
	limit int64
	used  atomic.Int64
	// refused counts the messages refused because they did not fit.
	refused atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// charge takes n bytes from b, if they fit. A charge that does not fit
// is taken and given back, so a concurrent one may fail for it: near the
// limit, the budget errs on the side of refusing.
func (b *Budget) charge(n int) bool {
	if b == nil {
		return true
	}
	if b.used.Add(int64(n)) > b.limit {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// give returns n bytes to b.
func (b *Budget) give(n int) {
	if b != nil && n != 0 {
		b.used.Add(-int64(n))
	}
}

// Used returns the bytes held now.
func (b *Budget) Used() int64 { return b.used.Load() }

// Refused returns how many messages were refused for want of room.
func (b *Budget) Refused() int64 { return b.refused.Load() }

// flowIn is the receiving side's flow-control state. Its counters wrap
// around 2³²: the credit outstanding, granted minus received, is at most
// wire.MaxWindow, so their difference as an int32 is exact.
type flowIn struct {
	// received counts the data-frame payload bytes read (written by the
	// reader only; atomic for the monitor's look at the peer's credit).
	received atomic.Uint32
	// granted counts the credit given to the peer: the window, plus every
	// WINDOW_UPDATE queued (atomic; added before the update is queued, so
	// the reader may accept bytes a little early, never refuse them).
	granted atomic.Uint32
	// unreturned counts bytes let go but not yet granted back (atomic).
	unreturned atomic.Int32
	// grantAt is when this side last granted credit back, a stamp
	// (stall.go; atomic).
	grantAt atomic.Uint32
}

// updateThreshold returns the unreturned bytes from which a side with the
// given window and largest message grants credit back: a quarter of the
// window, so that updates are few, but never so much that the peer's
// credit could stay below one whole message while this side holds
// nothing.
func updateThreshold(window, maxMsg uint32) int32 {
	t := int64(window / 4)
	if room := int64(window) - int64(maxMsg) - wire.MessageLenSize; room < t {
		t = room
	}
	return int32(max(t, 1))
}

// flowError is a peer that sent more than its credit.
type flowError struct{ over, frame int }

func (e flowError) Error() string {
	return fmt.Sprintf("flow control: a data frame of %d bytes exceeds the credit granted by %d bytes", e.frame, e.over)
}

// consume accounts for a data frame of n payload bytes from the peer, by
// the reader. It fails when the peer exceeded its credit; otherwise, when
// charge is set, it reports whether the bytes fit the shared budget (if
// not, they are let go at once and the message they belong to is
// refused).
func (s *Session) consume(n int, charge bool) (fits bool, err error) {
	received := s.in.received.Load() + uint32(n)
	s.in.received.Store(received)
	if over := int32(received - s.in.granted.Load()); over > 0 {
		return false, flowError{int(over), n}
	}
	if n == 0 || !charge {
		return true, nil
	}
	if !s.cfg.Budget.charge(n) {
		s.letGo(n, false)
		return false, nil
	}
	return true, nil
}

// letGo lets go of n bytes that consume accepted: they go back to the
// shared budget (when charged) and are granted back to the peer once
// enough have gathered. Any goroutine.
func (s *Session) letGo(n int, charged bool) {
	if n <= 0 {
		return
	}
	if charged {
		s.cfg.Budget.give(n)
	}
	if s.in.unreturned.Add(int32(n)) < updateThreshold(s.cfg.Window, s.cfg.MaxMessageSize) {
		return
	}
	u := s.in.unreturned.Swap(0) // 0 if another goroutine granted them first
	if u <= 0 {
		return
	}
	s.in.granted.Add(uint32(u))
	s.in.grantAt.Store(stampOf(s.now())) // the peer's stalled message is judged from here (stall.go)
	// Written at once when the socket takes it (noWait), as a PONG is: a
	// writer goroutine for every update of a busy connection would cost
	// its allocation.
	s.queueControl(func(b []byte) []byte { return wire.AppendWindowUpdate(b, uint32(u)) }, noWait)
}

// processWindowUpdate adds the peer's grant to this side's credit and
// wakes the writer if messages wait for it.
func (s *Session) processWindowUpdate(_ wire.Header, p []byte) error {
	inc, err := wire.ParseWindowUpdate(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	c := int64(s.credit) + int64(inc)
	if c > wire.MaxWindow {
		s.mu.Unlock()
		return flowOverflowError(c)
	}
	s.credit = int32(c)
	s.kickUnlock(false) // starts a writer only if messages wait and none runs
	return nil
}

// flowOverflowError is a peer whose grants took this side's credit past
// wire.MaxWindow.
type flowOverflowError int64

func (e flowOverflowError) Error() string {
	return fmt.Sprintf("flow control: the peer's grants add up to %d bytes of credit, over %d", int64(e), wire.MaxWindow)
}

// releaseAll gives the shared budget back what the reader's half-received
// messages hold, when reading ends for good.
func (s *Session) releaseAll() {
	for id, pm := range s.partial {
		s.cfg.Budget.give(pm.charged)
		s.unreserve(pm)
		pm.release()
		delete(s.partial, id)
	}
}
