package session

import (
	"math"
	"strings"
	"testing"

	"github.com/pulse-rpc/pulse/wire"
)

// TestPeerIDs: the ids of a dialer's calls, as an acceptor sees them:
// in order, out of order within the gaps kept, reused, too late, and near
// the end of the id space.
func TestPeerIDs(t *testing.T) {
	type step struct {
		id   uint32
		want string // "" to accept, else part of the error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{1, ""}, {3, ""}, {5, ""}}},
		{"reused", []step{{1, ""}, {3, ""}, {3, "used already"}}},
		{"first reused", []step{{1, ""}, {1, "used already"}}},
		{"out of order once each", []step{{5, ""}, {1, ""}, {3, ""}, {7, ""}, {3, "used already"}, {1, "used already"}}},
		{"skipped then reused", []step{{1, ""}, {9, ""}, {5, ""}, {5, "used already"}, {3, ""}, {7, ""}, {7, "used already"}}},
		{"gaps kept", []step{{1, ""}, {3 + 2*maxIDGaps, ""}, {3, ""}, {3 + 2*maxIDGaps - 2, ""}}},
		{"too late", []step{{1, ""}, {3 + 2*(maxIDGaps+1), ""}, {3, "too late"}, {5, ""}, {5, "used already"}}},
		// 1 is pushed out by the gap 5+2·1023+2, the 1025th.
		{"too late after pushes", []step{{3, ""}, {5 + 2*(maxIDGaps-1), ""}, {5 + 2*(maxIDGaps-1) + 4, ""}, {1, "too late"}, {5, ""}, {7, ""}}},
		{"jump to the end", []step{{1, ""}, {math.MaxUint32, ""}, {math.MaxUint32, "used already"}, {math.MaxUint32 - 2, ""}, {3, "too late"}, {1, "used already"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Session{}
			for i, st := range tt.steps {
				err := s.checkPeerID(wire.TypeCall, st.id)
				switch {
				case st.want == "" && err != nil:
					t.Fatalf("step %d: id %d refused: %v", i, st.id, err)
				case st.want != "" && (err == nil || !strings.Contains(err.Error(), st.want)):
					t.Fatalf("step %d: id %d = %v, want an error saying %q", i, st.id, err, st.want)
				case err == nil:
					s.lastPeerID = max(s.lastPeerID, st.id) // as admit does
				}
				if s.gaps != nil && len(s.gaps.ids) > maxIDGaps {
					t.Fatalf("step %d: %d gaps kept, more than %d", i, len(s.gaps.ids), maxIDGaps)
				}
			}
		})
	}
}

// TestPeerIDsAcceptor: a dialer's view of the acceptor's even ids.
func TestPeerIDsAcceptor(t *testing.T) {
	s := &Session{dialer: true}
	for _, id := range []uint32{2, 4, 8, 6} {
		if err := s.checkPeerID(wire.TypeNotify, id); err != nil {
			t.Fatalf("id %d refused: %v", id, err)
		}
		s.lastPeerID = max(s.lastPeerID, id)
	}
	if s.gaps != nil {
		t.Errorf("%d gaps kept once every id arrived, want none (nil)", len(s.gaps.ids))
	}
	if err := s.checkPeerID(wire.TypeNotify, 4); err == nil {
		t.Errorf("id 4 accepted twice")
	}
}

// TestSmallOvertakesFewQueued: a small message goes ahead of the large
// messages queued (to the data lane) while fewer than maxOvertaken wait,
// and queues behind them once that many do, so that the peer never waits
// for more of this side's ids than it remembers.
func TestSmallOvertakesFewQueued(t *testing.T) {
	s := &Session{cfg: &Config{}, maxFrame: 1 << 10, credit: 1 << 30}
	msg := func(n int) *[]byte {
		b := make([]byte, wire.HeaderSize+n)
		return &b
	}
	s.enqueueLocked(msg(2<<10), 1, wire.TypeCall, nil)
	s.enqueueLocked(msg(100), 3, wire.TypeCall, nil)
	if len(s.large) != 1 || s.data == nil || len(s.data.b) != wire.HeaderSize+100 {
		t.Fatalf("with one large message queued, a small one went to the large queue (%d queued)", len(s.large))
	}
	id := uint32(5)
	for len(s.large) < maxOvertaken {
		s.enqueueLocked(msg(2<<10), id, wire.TypeCall, nil)
		id += 2
	}
	s.enqueueLocked(msg(100), id, wire.TypeCall, nil)
	if last := s.large[len(s.large)-1]; last.id != id || !last.small || s.smallWait != 1 {
		t.Errorf("with %d large messages queued, a small one did not queue behind them", maxOvertaken)
	}
	// A reply carries the peer's id: it may go ahead of any number.
	s.smallWait = 0
	before := len(s.data.b)
	s.enqueueLocked(msg(100), 2, wire.TypeReply, nil)
	if len(s.data.b) != before+wire.HeaderSize+100 {
		t.Errorf("a small reply queued behind %d large messages", len(s.large))
	}
}
