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
	admitted := h.Type == wire.TypeReply || s.admit(h.ID)
	if h.Flags&wire.FlagEnd != 0 {
		if !admitted {
			return nil
		}
		if len(p) > s.maxMsg {
			s.tooLarge(h.Type, h.ID)
		} else if s.dispatch(h.Type, h.ID, p, false) {
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
	pm := &partialMsg{typ: h.Type, total: int(total), discard: !admitted}
	s.startPartial(pm, h, rest, admitted)
	pm.got = len(rest)
	if s.partial == nil {
		s.partial = make(map[uint32]*partialMsg)
	}
	s.partial[h.ID] = pm
	return nil
}

// checkMessageID refuses a message whose id the sender may not use, or
// that is still arriving.
func (s *Session) checkMessageID(h wire.Header) error {
	if h.Type == wire.TypeReply {
		if h.ID == 0 || s.isPeerID(h.ID) {
			return fmt.Errorf("REPLY with id %d, which this side never used", h.ID)
		}
	} else if !s.isPeerID(h.ID) {
		return fmt.Errorf("%v with id %d, which belongs to this side", h.Type, h.ID)
	}
	if _, dup := s.partial[h.ID]; dup {
		return fmt.Errorf("%v id %d while a message with that id is still arriving", h.Type, h.ID)
	}
	return nil
}

// startPartial chooses where the body of pm, whose first frame carries
// rest, is gathered.
func (s *Session) startPartial(pm *partialMsg, h wire.Header, rest []byte, admitted bool) {
	switch {
	case pm.total > s.maxMsg:
		pm.tooBig = true // discarded as it arrives
	case h.Type == wire.TypeReply && s.replyInto(pm, h.ID, rest):
		// The body goes straight into the caller's reply slice.
	case admitted && h.Type != wire.TypeReply && s.codec.Name() == codec.RawName:
		// The argument of a method on the raw codec is the message
		// itself (adoptRaw): a buffer of the message's size, which the
		// argument keeps, rather than one from the pool that would be
		// copied out of.
		pm.buf = append(make([]byte, 0, pm.total), rest...)
	case admitted:
		pm.bp = bufpool.GetLarge(pm.total)
		pm.buf = append((*pm.bp)[:0], rest...)
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
	if h.Flags&wire.FlagAbort != 0 {
		delete(s.partial, h.ID)
		pm.release()
		if pm.typ != wire.TypeReply && !pm.discard {
			s.handlerDone() // the call was counted when admitted
		}
		return nil
	}
	pm.got += len(p)
	if pm.got > pm.total {
		return fmt.Errorf("message id %d: %d bytes received, %d announced", h.ID, pm.got, pm.total)
	}
	switch {
	case pm.into != nil:
		s.appendInto(pm, h.ID, p)
	case !pm.tooBig && !pm.discard:
		pm.buf = append(pm.buf, p...)
	}
	if h.Flags&wire.FlagEnd == 0 {
		return nil
	}
	if pm.got != pm.total {
		return fmt.Errorf("message id %d ended after %d bytes, %d announced", h.ID, pm.got, pm.total)
	}
	delete(s.partial, h.ID)
	switch {
	case pm.discard:
	case pm.tooBig:
		s.tooLarge(pm.typ, h.ID)
	case pm.into != nil:
		s.finishInto(pm, h.ID)
	default:
		// The message is decoded before dispatch returns (codecs keep
		// nothing of it), so its buffer can serve again.
		moved := s.dispatch(pm.typ, h.ID, pm.buf, pm.bp == nil)
		pm.release()
		if moved {
			return errReaderMoved
		}
	}
	return nil
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
	tooBig  bool // exceeded maxMsg: the rest is discarded
	discard bool // nobody waits for it
	// into is the call whose reply slice buf is, when the body of this
	// REPLY goes straight there (replyInto); buf then holds the body only.
	into *Call
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
