package session

import (
	"fmt"
	"slices"

	"github.com/pulse-rpc/pulse/wire"
)

// Call ids from the peer (PROTOCOL.md §5). The peer assigns its ids in
// increasing order and never reuses one, but its messages need not arrive
// in that order: Pulse's sender lets a small message go ahead of large
// ones queued before it (enqueueLocked), so the first frame of a queued
// large message can arrive after calls with higher ids. The receiver
// therefore keeps, besides the highest id it has seen (lastPeerID), the
// ids below it that it has not seen yet, the gaps, up to maxIDGaps of
// them: an id at or below the highest is accepted once if it is a gap,
// and refused otherwise, as reused or as too late. The gaps are kept only
// while some exist, so a peer whose ids arrive in order costs one
// comparison per message and no memory.
//
// A gap that never fills (a call abandoned before it was sent) stays
// until maxIDGaps newer gaps push it out. Pulse's sender lets a small
// message overtake at most maxOvertaken queued messages, so its delayed
// ids are never pushed out unless hundreds of its calls were abandoned
// unsent meanwhile.
const (
	// maxIDGaps bounds the ids below the highest that a receiver waits
	// for: 4 KiB per connection at most.
	maxIDGaps = 1024
	// maxOvertaken bounds the queued messages a small message may go
	// ahead of (enqueueLocked); past it, small messages queue behind.
	maxOvertaken = 256
)

// idGaps is the reader's record of the peer's ids below lastPeerID that
// have not arrived; ascending, at most maxIDGaps. closed is the id below
// which every id is refused: the gaps below it were pushed out.
type idGaps struct {
	ids    []uint32
	closed uint32
}

// checkPeerID checks the id of a CALL or NOTIFY from the peer, whose
// parity is right and which is not 0, against the ids it used before, and
// records it. Called by the reader.
func (s *Session) checkPeerID(typ wire.FrameType, id uint32) error {
	hi := s.lastPeerID     // written by the reader only (admit), under mu for others
	next := uint64(hi) + 2 // past 2³²−1 once the peer used its last id
	if hi == 0 {
		next = 1
		if s.dialer {
			next = 2 // the acceptor's first id
		}
	}
	switch {
	case uint64(id) == next:
		return nil
	case uint64(id) > next:
		s.skipIDs(uint32(next), id)
		return nil
	}
	g := s.gaps
	if g != nil {
		if i, ok := slices.BinarySearch(g.ids, id); ok {
			g.ids = slices.Delete(g.ids, i, i+1)
			if len(g.ids) == 0 {
				s.gaps = nil
			}
			return nil
		}
		if id < g.closed {
			return fmt.Errorf("%v with id %d, below the oldest skipped id this side still waits for (%d): used already, or too late (a receiver waits for at most %d skipped ids)", typ, id, g.closed, maxIDGaps)
		}
	}
	return fmt.Errorf("%v with id %d, which the peer used already (ids are never reused; the highest so far is %d)", typ, id, hi)
}

// skipIDs records the ids from next up to id, not included, as gaps.
func (s *Session) skipIDs(next, id uint32) {
	n := int((id - next) / 2)
	g := s.gaps
	if g == nil {
		g = new(idGaps)
		s.gaps = g
	}
	if n >= maxIDGaps {
		// Only the newest maxIDGaps are kept; the rest close.
		g.ids = g.ids[:0]
		next = id - 2*maxIDGaps
		n = maxIDGaps
	} else if over := len(g.ids) + n - maxIDGaps; over > 0 {
		g.ids = slices.Delete(g.ids, 0, over)
	}
	for v := next; v != id; v += 2 {
		g.ids = append(g.ids, v)
	}
	if len(g.ids) > 0 {
		g.closed = g.ids[0]
	}
}
