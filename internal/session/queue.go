package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pulse-rpc/pulse/wire"
)

// Back-pressure outward. The bytes of messages a connection has queued
// and not yet written (the data lane and the large queue) are bounded by
// Config.MaxQueued: a call or notification that would take the queue past
// it waits for room within its context, and a handler's reply waits for
// room before the handler's message is let go, so that a peer that does
// not read its replies stops getting credit and so stops sending calls.
// The reader's answers (refusals, replies of methods run on the reader),
// which cannot wait, may go past the bound; past twice the bound the peer
// is a slow consumer and the connection closes with GOAWAY "slow
// consumer". Control frames are small, few (one PONG per permitted PING,
// one WINDOW_UPDATE per quarter window let go) and not counted.

// SlowPolicy says what a notification does when its connection's queue is
// full.
type SlowPolicy uint8

const (
	// SlowWait waits for room within the notification's context.
	SlowWait SlowPolicy = iota
	// SlowDrop fails the notification at once with ErrSlowConsumer.
	SlowDrop
	// SlowClose closes the connection with GOAWAY "slow consumer".
	SlowClose
)

// ErrSlowConsumer is the failure of a notification refused because the
// peer does not read fast enough (SlowDrop, SlowClose, and a Broadcast,
// which never waits).
var ErrSlowConsumer = errors.New("pulse: peer is a slow consumer: its send queue is full")

// outstandingLocked returns the bytes queued and not yet written. Called
// with s.mu held.
func (s *Session) outstandingLocked() int {
	return int(s.queued-s.flushed.Load()) + s.largeBytes
}

// fullLocked reports whether a message of n more bytes must wait: the
// queue holds something, and n would take it past the bound. Called with
// s.mu held.
func (s *Session) fullLocked(n int) bool {
	if s.cfg.MaxQueued <= 0 {
		return false // no bound
	}
	out := s.outstandingLocked()
	return out > 0 && out+n > s.cfg.MaxQueued
}

// waitRoomLocked waits until a message of n bytes fits the queue, the
// session closes, or ctx ends, whose error it then returns. Called with
// s.mu held, which it holds again when it returns.
func (s *Session) waitRoomLocked(ctx context.Context, n int) error {
	for s.fullLocked(n) && !s.closed {
		if s.room == nil {
			s.room = make(chan struct{})
		}
		room, done := s.room, s.lazyChanLocked(&s.done, s.doneClosed)
		s.mu.Unlock()
		select {
		case <-room:
		case <-done:
		case <-ctx.Done():
			s.mu.Lock()
			return ctx.Err()
		}
		s.mu.Lock()
	}
	return nil
}

// roomLocked returns nil when a message of n bytes of kind (send's) may be
// queued now, waiting for room if it must, or why it may not. Called with
// s.mu held, which it holds again when it returns.
func (s *Session) roomLocked(ctx context.Context, n, kind int) error {
	if err := s.refuseLocked(); err != nil {
		return err
	}
	if !s.fullLocked(n) {
		return nil
	}
	policy := SlowWait
	switch kind {
	case sendNotify:
		policy = s.cfg.Slow
	case sendPush:
		policy = max(s.cfg.Slow, SlowDrop)
	}
	switch policy {
	case SlowDrop:
		return ErrSlowConsumer
	case SlowClose:
		s.closeSlowLocked("a notification found")
		return ErrSlowConsumer
	}
	if err := s.waitRoomLocked(ctx, n); err != nil {
		return err
	}
	return s.refuseLocked()
}

// markFullLocked notes, after a message was queued, that the queue
// reached its bound (sendFull). Called with s.mu held.
func (s *Session) markFullLocked() {
	if s.cfg.MaxQueued > 0 && !s.sendFull.Load() && s.outstandingLocked() >= s.cfg.MaxQueued {
		s.sendFull.Store(true)
	}
}

// wakeRoomLocked wakes those waiting for room, once there is some. The
// writer calls it at each round, after the previous round's bytes are
// accounted for. Called with s.mu held.
func (s *Session) wakeRoomLocked() {
	if !s.sendFull.Load() && s.room == nil {
		return
	}
	if s.cfg.MaxQueued <= 0 || s.outstandingLocked() < s.cfg.MaxQueued {
		s.sendFull.Store(false)
		if s.room != nil {
			close(s.room)
			s.room = nil
		}
	}
}

// overflowLocked closes the connection as a slow consumer when what was
// queued without waiting took the queue past twice its bound. Called with
// s.mu held.
func (s *Session) overflowLocked() {
	if s.cfg.MaxQueued > 0 && s.outstandingLocked() > 2*s.cfg.MaxQueued {
		s.closeSlowLocked("the reader's answers took")
	}
}

// closeSlowLocked closes the connection with GOAWAY "slow consumer", once,
// from a goroutine of its own (the caller may be the reader, which must
// not wait on a write). what says what found the queue full. Called with
// s.mu held.
func (s *Session) closeSlowLocked(what string) {
	if s.slowClosing || s.closed {
		return
	}
	s.slowClosing = true
	msg := fmt.Sprintf("%s %d bytes queued for a peer that does not read them (limit %d)", what, s.outstandingLocked(), s.cfg.MaxQueued)
	go func() {
		s.peerLog(logSlowConsumer, "pulse: closing a slow consumer", "why", msg)
		s.goAway(wire.GoAwaySlowConsumer, msg, ReasonWriteStall, nil, time.Second)
	}()
}
