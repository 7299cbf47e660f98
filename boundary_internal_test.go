package pulse

import (
	"context"
	"errors"
	"testing"

	"github.com/pulse-rpc/pulse/internal/session"
	"github.com/pulse-rpc/pulse/wire"
)

// TestPublicCodesMatchTheWire: Status, CloseCode and Reason are converted
// from the session's values by a plain conversion, so each public value
// must equal the one it stands for, with the same name.
func TestPublicCodesMatchTheWire(t *testing.T) {
	statuses := map[Status]wire.Status{
		StatusOK: wire.StatusOK, StatusError: wire.StatusError, StatusUnknownService: wire.StatusUnknownService,
		StatusUnknownMethod: wire.StatusUnknownMethod, StatusBadArgs: wire.StatusBadArgs, StatusPanic: wire.StatusPanic,
		StatusBusy: wire.StatusBusy, StatusCanceled: wire.StatusCanceled, StatusTooLarge: wire.StatusTooLarge,
		StatusInternal: wire.StatusInternal,
	}
	for pub, w := range statuses {
		if uint8(pub) != uint8(w) || pub.String() != w.String() {
			t.Errorf("Status %d (%v) stands for wire status %d (%v)", pub, pub, w, w)
		}
	}
	codes := map[CloseCode]wire.GoAwayCode{
		CloseNormal: wire.GoAwayNormal, CloseShutdown: wire.GoAwayShutdown, CloseTooManyPings: wire.GoAwayTooManyPings,
		CloseProtocolError: wire.GoAwayProtocolError, CloseMaxAge: wire.GoAwayMaxAge, CloseIdle: wire.GoAwayIdle,
		ClosePeerSilent: wire.GoAwayPeerSilent, CloseInternal: wire.GoAwayInternal, CloseHandshake: wire.GoAwayHandshake,
		CloseTooManyStreams: wire.GoAwayTooManyStreams, CloseFlowControl: wire.GoAwayFlowControl, CloseSlowConsumer: wire.GoAwaySlowConsumer,
		CloseStalled: wire.GoAwayStalled,
	}
	for pub, w := range codes {
		if uint32(pub) != uint32(w) || pub.String() != w.String() {
			t.Errorf("CloseCode %d (%v) stands for GOAWAY code %d (%v)", pub, pub, w, w)
		}
	}
	reasons := map[Reason]session.Reason{
		ReasonUnknown: session.ReasonUnknown, ReasonShutdown: session.ReasonShutdown, ReasonPeerClose: session.ReasonPeerClose,
		ReasonGoAway: session.ReasonGoAway, ReasonSilent: session.ReasonSilent, ReasonWriteStall: session.ReasonWriteStall,
		ReasonProtocol: session.ReasonProtocol, ReasonHandshake: session.ReasonHandshake, ReasonIO: session.ReasonIO,
	}
	if len(reasons) != len(session.ReasonNames) {
		t.Errorf("the root has %d reasons, the session %d", len(reasons), len(session.ReasonNames))
	}
	for pub, r := range reasons {
		if uint8(pub) != uint8(r) || pub.String() != r.String() {
			t.Errorf("Reason %d (%v) stands for session reason %d (%v)", pub, pub, r, r)
		}
	}
}

// TestPublicErr: every failure value of the session becomes the public
// type, with each field carried over, and the sentinels still match.
func TestPublicErr(t *testing.T) {
	if publicErr(nil) != nil {
		t.Fatal("publicErr(nil) != nil")
	}
	other := errors.New("other")
	if publicErr(other) != other {
		t.Error("publicErr changed an error that is not the session's")
	}

	se := publicErr(session.ServerError("boom"))
	if got, ok := se.(ServerError); !ok || got != "boom" {
		t.Errorf("publicErr(ServerError) = %#v, want ServerError(boom)", se)
	}

	err := publicErr(&session.CallError{Method: "S.M", Status: wire.StatusTooLarge, Message: "too big", Err: session.ErrMessageTooLarge, Reached: true})
	var ce *CallError
	if !errors.As(err, &ce) {
		t.Fatalf("publicErr(*session.CallError) = %T, want *CallError", err)
	}
	if ce.Method != "S.M" || ce.Status != StatusTooLarge || ce.Message != "too big" || ce.Remote || !ce.Executed() {
		t.Errorf("converted CallError = %+v", ce)
	}
	if !errors.Is(err, ErrMessageTooLarge) || ce.Err != ErrMessageTooLarge {
		t.Errorf("converted CallError does not carry ErrMessageTooLarge: %v (Err %v)", err, ce.Err)
	}
	err = publicErr(&session.CallError{Method: "S.M", Status: wire.StatusCanceled, Err: context.DeadlineExceeded})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a cancelled call does not match context.DeadlineExceeded: %v", err)
	}

	err = publicErr(&session.ConnError{Reason: session.ReasonGoAway, Code: wire.GoAwayShutdown, Message: "bye", Sent: true, Err: other})
	var conn *ConnError
	if !errors.As(err, &conn) {
		t.Fatalf("publicErr(*session.ConnError) = %T, want *ConnError", err)
	}
	if conn.Reason != ReasonGoAway || conn.Code != CloseShutdown || conn.Message != "bye" || !conn.Sent || conn.Err != other {
		t.Errorf("converted ConnError = %+v", conn)
	}
	if !errors.Is(err, ErrGoAway) || !errors.Is(err, other) {
		t.Errorf("converted ConnError does not match ErrGoAway and its cause: %v", err)
	}
	want := (&session.ConnError{Reason: session.ReasonGoAway, Code: wire.GoAwayShutdown, Message: "bye", Sent: true, Err: other}).Error()
	if err.Error() != want {
		t.Errorf("converted ConnError reads %q, the session's %q", err.Error(), want)
	}
}
