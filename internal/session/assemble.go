package session

import (
	"fmt"

	"github.com/pulse-rpc/pulse/codec"
	"github.com/pulse-rpc/pulse/internal/bufpool"
	"github.com/pulse-rpc/pulse/wire"
)

// processMessage takes the first frame of a CALL, NOTIFY or REPLY: a whole
// message (FlagEnd) is dispatched at once; the first of several frames
// starts a partial message, which processContinuation completes.
func (s *Session) processMessage(h wire.Header, p []byte) error {
	if err := s.checkMessageID(h); err != nil {
		return err
	}
	whole := h.Flags&wire.FlagEnd != 0
	// A whole REPLY is decoded from the read buffer before the reader goes
	// on, into the caller's own reply value: it holds nothing of the
	// shared budget's, so it does not touch its counter (shared by every
	// connection) on each call.
	charge := !whole || h.Type != wire.TypeReply
	fits, err := s.consume(len(p), charge)
	if err != nil {
		return err
	}
	admitted := h.Type == wire.TypeReply || s.admit(h.ID)
	if whole {
		charged := fits && charge
		switch {
		case !admitted:
			s.letGo(len(p), charged)
		case len(p) > s.maxMsg:
			s.letGo(len(p), charged)
			s.tooLarge(h.Type, h.ID)
		case !fits:
			s.overBudget(h.Type, h.ID)
		case h.Type == wire.TypeReply:
			s.handleReply(h.ID, p)
			s.letGo(len(p), false)
		case s.handleCall(h.Type == wire.TypeNotify, h.ID, p, false, len(p)):
			return errReaderMoved
		}
		return nil
	}
	if len(s.partial) >= s.cfg.MaxConcurrentCalls+maxPartialMessages {
		return tooManyStreamsError{len(s.partial)}
	}
	total, rest, err := wire.ParseMessageLen(p)
	if err != nil {
		return err
	}
	if len(rest) > int(total) {
		return fmt.Errorf("%v id %d: first frame carries %d bytes of a %d-byte message", h.Type, h.ID, len(rest), total)
	}
	pm := &partialMsg{typ: h.Type, total: int(total), discard: !admitted, busy: !fits}
	s.startPartial(pm, h, rest, admitted)
	pm.got = len(rest)
	s.hold(pm, len(p), fits)
	if s.partial == nil {
		s.partial = make(map[uint32]*partialMsg)
	}
	s.partial[h.ID] = pm
	s.messageFrame(len(p), false)
	return nil
}

// hold keeps the n bytes of a frame of pm that consume accepted while pm
// gathers its body, and lets them go at once otherwise.
func (s *Session) hold(pm *partialMsg, n int, fits bool) {
	if fits && pm.keeps() {
		pm.charged += n
		return
	}
	s.letGo(n, fits)
}

// checkMessageID refuses a message whose id the sender may not use, or
// that is still arriving.
func (s *Session) checkMessageID(h wire.Header) error {
	if h.Type == wire.TypeReply {
		if h.ID == 0 || s.isPeerID(h.ID) {
			return fmt.Errorf("REPLY with id %d, which this side never used", h.ID)
		}
	} else {
		switch {
		case h.ID == 0:
			return fmt.Errorf("%v with id 0, which is reserved for connection frames", h.Type)
		case !s.isPeerID(h.ID):
			return fmt.Errorf("%v with id %d, which belongs to this side", h.Type, h.ID)
		}
		if err := s.checkPeerID(h.Type, h.ID); err != nil {
			return err
		}
	}
	if _, dup := s.partial[h.ID]; dup {
		return fmt.Errorf("%v id %d while a message with that id is still arriving", h.Type, h.ID)
	}
	return nil
}

// A message in several frames gets a buffer of its announced size at
// once, so that it is gathered without copies, while the buffers of this
// connection's partial messages so sized add up to no more than the
// connection's window (Session.reserved) and the shared budget has room
// for the bytes still to come, which the reservation charges it in
// advance (partialMsg.prepaid). Otherwise a message's buffer grows with
// the bytes that arrived, by doubling from smallChunk, and each frame is
// charged as it comes: a peer announcing many large messages and sending
// a few bytes of each makes this side hold what its budgets allow and
// twice what arrived, not what it announced.
const smallChunk = 4 << 10

// initialCap returns the capacity of the buffer of pm, whose first frame
// carries n bytes of body, and reserves it when it is the whole message.
func (s *Session) initialCap(pm *partialMsg, n int) int {
	if int(s.reserved)+pm.total <= int(s.cfg.Window) && s.cfg.Budget.charge(pm.total-n) {
		s.reserved += int32(pm.total)
		pm.reserved, pm.prepaid = true, pm.total-n
		return pm.total
	}
	return min(pm.total, max(2*n, smallChunk))
}

// startPartial chooses where the body of pm, whose first frame carries
// rest, is gathered.
func (s *Session) startPartial(pm *partialMsg, h wire.Header, rest []byte, admitted bool) {
	switch {
	case pm.total > s.maxMsg:
		pm.tooBig = true // discarded as it arrives
	case pm.busy:
		// Over the shared budget: discarded as it arrives.
	case h.Type == wire.TypeReply && s.replyInto(pm, h.ID, rest):
		// The body goes straight into the caller's reply slice.
	case admitted && h.Type != wire.TypeReply && s.codec.Name() == codec.RawName:
		// The argument of a method on the raw codec is the message
		// itself (adoptRaw): a buffer of its own, which the argument
		// keeps, rather than one from the pool that would be copied out
		// of.
		pm.buf = append(make([]byte, 0, s.initialCap(pm, len(rest))), rest...)
	case admitted:
		if n := s.initialCap(pm, len(rest)); pm.reserved {
			pm.bp = bufpool.GetLarge(n)
			pm.buf = append((*pm.bp)[:0], rest...)
		} else {
			// Grows with what arrives, from a few KiB: smaller than the
			// pool's smallest large class.
			pm.buf = append(make([]byte, 0, n), rest...)
		}
	}
}

// processContinuation takes the next frame of a partial message: it adds
// the frame's bytes, and dispatches the message after its last frame. A
// frame with FlagAbort drops the message.
func (s *Session) processContinuation(h wire.Header, p []byte) error {
	pm := s.partial[h.ID]
	if pm == nil {
		return fmt.Errorf("CONTINUATION for id %d, which has no message arriving", h.ID)
	}
	fits, err := s.consume(len(p), !pm.prepay(len(p)))
	if err != nil {
		return err
	}
	if h.Flags&wire.FlagAbort != 0 {
		delete(s.partial, h.ID)
		s.messageFrame(len(p), true)
		s.letGo(len(p), fits)
		s.dropPartial(pm)
		if pm.typ != wire.TypeReply && !pm.discard {
			s.handlerDone(0) // the call was counted when admitted
		}
		return nil
	}
	pm.got += len(p)
	if pm.got > pm.total {
		return fmt.Errorf("message id %d: %d bytes received, %d announced", h.ID, pm.got, pm.total)
	}
	if !fits && pm.keeps() {
		// The shared budget is full: the message is refused, and what it
		// gathered is let go now.
		s.dropPartial(pm)
		pm.busy = true
	}
	s.hold(pm, len(p), fits)
	switch {
	case pm.into != nil:
		s.appendInto(pm, h.ID, p)
	case pm.keeps():
		pm.append(p)
	}
	if h.Flags&wire.FlagEnd == 0 {
		s.messageFrame(len(p), false)
		return nil
	}
	if pm.got != pm.total {
		return fmt.Errorf("message id %d ended after %d bytes, %d announced", h.ID, pm.got, pm.total)
	}
	delete(s.partial, h.ID)
	s.messageFrame(len(p), true)
	return s.finishPartial(pm, h.ID)
}

// unreserve ends pm's part of Session.reserved, and gives the shared
// budget back what it was charged for bytes that never came.
func (s *Session) unreserve(pm *partialMsg) {
	if pm.reserved {
		s.reserved -= int32(pm.total)
		s.cfg.Budget.give(pm.prepaid)
		pm.reserved, pm.prepaid = false, 0
	}
}

// finishPartial acts on the message pm, whose last frame arrived.
func (s *Session) finishPartial(pm *partialMsg, id uint32) error {
	s.unreserve(pm)
	switch {
	case pm.discard:
	case pm.tooBig:
		s.tooLarge(pm.typ, id)
	case pm.busy:
		s.overBudget(pm.typ, id)
	case pm.into != nil:
		s.finishInto(pm, id)
		s.letGo(pm.charged, true)
	case pm.typ == wire.TypeReply:
		s.handleReply(id, pm.buf)
		s.letGo(pm.charged, true)
		pm.release()
	default:
		// The arguments are decoded before handleCall returns (codecs
		// keep nothing of the message), so its buffer can serve again;
		// a raw argument keeps an unpooled buffer (adoptRaw).
		moved := s.handleCall(pm.typ == wire.TypeNotify, id, pm.buf, pm.bp == nil, pm.charged)
		pm.release()
		if moved {
			return errReaderMoved
		}
	}
	return nil
}

// dropPartial lets go of what pm gathered: its buffer, and the bytes it
// holds.
func (s *Session) dropPartial(pm *partialMsg) {
	s.letGo(pm.charged, true)
	pm.charged = 0
	s.unreserve(pm)
	pm.release()
	pm.into, pm.buf = nil, nil
}

// partialMsg is a message being reassembled from several frames.
//
// A partialMsg belongs to the reader (Session.partial); into's slice is
// written only under Session.mu while its call is pending (replyInto).
type partialMsg struct {
	typ     wire.FrameType
	bp      *[]byte // pooled buffer holding buf
	buf     []byte
	total   int  // announced length of the message
	got     int  // bytes received so far
	charged int  // payload bytes of its frames held (flow control and the shared budget)
	tooBig  bool // exceeded maxMsg: the rest is discarded
	discard bool // nobody waits for it
	busy    bool // did not fit the shared budget: the rest is discarded
	// reserved says that buf was made at the announced size, counted in
	// Session.reserved until the message ends; prepaid is what of the
	// bytes still to come the reservation charged the shared budget for.
	reserved bool
	prepaid  int
	// into is the call whose reply slice buf is, when the body of this
	// REPLY goes straight there (replyInto); buf then holds the body only.
	into *Call
}

// keeps reports whether pm gathers its bytes (rather than discard them).
func (pm *partialMsg) keeps() bool { return !pm.tooBig && !pm.discard && !pm.busy }

// prepay takes n bytes from what pm's reservation charged in advance, and
// reports whether it covered them (then the frame is not charged again).
func (pm *partialMsg) prepay(n int) bool {
	if pm.prepaid < n {
		return false
	}
	pm.prepaid -= n
	return true
}

// append adds p to the body. A buffer made at the announced size
// (reserved, possibly pooled) has room for all of it; another grows by
// doubling up to the announced total.
func (pm *partialMsg) append(p []byte) {
	if n := len(pm.buf) + len(p); n > cap(pm.buf) {
		pm.buf = append(make([]byte, 0, min(pm.total, max(n, 2*cap(pm.buf)))), pm.buf...)
	}
	pm.buf = append(pm.buf, p...)
}

// release gives the message's buffer back to the pool.
func (pm *partialMsg) release() {
	if pm.bp != nil {
		*pm.bp = pm.buf[:0]
		bufpool.PutLarge(pm.bp)
		pm.bp, pm.buf = nil, nil
	}
}

// A large raw reply goes straight into the caller's reply slice when it
// has room, as the raw codec's Unmarshal would refill it, instead of into
// a pooled buffer first and then into the slice: one copy of the body
// fewer. The caller's slice is written only under s.mu and only while the
// call is pending, so that once abandon or fail has taken the call (and
// its caller may use the slice again), nothing more is written to it.

// replyInto starts the REPLY id, whose first frame carries rest, in the
// reply slice of its call, if the codec is raw, the status OK, and the
// caller's *[]byte or *RawMessage has room for the whole body. It reports
// whether it did.
func (s *Session) replyInto(pm *partialMsg, id uint32, rest []byte) bool {
	if s.codec.Name() != codec.RawName || len(rest) < 1 || wire.Status(rest[0]) != wire.StatusOK {
		return false
	}
	n := pm.total - 1
	s.mu.Lock()
	defer s.mu.Unlock()
	call := s.pending[id]
	if call == nil {
		return false
	}
	dst := rawSlice(call.Reply)
	if dst == nil || cap(*dst) < n {
		return false
	}
	pm.into = call
	pm.buf = append((*dst)[:0], rest[1:]...)
	return true
}

// appendInto appends p to the body of a REPLY going into its call's
// slice, while the call is pending; once it is not, the rest is dropped.
func (s *Session) appendInto(pm *partialMsg, id uint32, p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[id] != pm.into {
		pm.into, pm.buf, pm.discard = nil, nil, true
		return
	}
	pm.buf = append(pm.buf, p...) // within the slice's capacity: checked in replyInto
}

// finishInto completes the call of a REPLY that went into its slice.
func (s *Session) finishInto(pm *partialMsg, id uint32) {
	call := pm.into
	s.mu.Lock()
	if s.pending[id] != call {
		s.mu.Unlock()
		return // abandoned by its caller
	}
	delete(s.pending, id)
	s.mu.Unlock()
	*rawSlice(call.Reply) = pm.buf
	call.done(nil)
}

// adoptRaw makes data itself the decoded argument, when c is the raw codec
// and the argument a []byte or a RawMessage, and reports whether it did.
// The caller gives data up.
func adoptRaw(c codec.Codec, data []byte, argp any) bool {
	if c.Name() != codec.RawName {
		return false
	}
	p := rawSlice(argp)
	if p == nil {
		return false
	}
	*p = data[:len(data):len(data)]
	return true
}

// rawSlice returns v as a *[]byte when it is a non-nil *[]byte or
// *codec.RawMessage (what the raw codec decodes into), else nil.
func rawSlice(v any) *[]byte {
	var p *[]byte
	switch r := v.(type) {
	case *[]byte:
		p = r
	case *codec.RawMessage:
		p = (*[]byte)(r)
	}
	return p
}
