package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pulse-rpc/pulse"
)

// startChat serves a Chat room with the given limits on loopback.
func startChat(t *testing.T, chat *Chat) (addr string) {
	t.Helper()
	srv, err := pulse.NewServer(pulse.WithLogger(discardLogger))
	if err != nil {
		t.Fatal(err)
	}
	chat.srv = srv
	if err := registerServices(srv, chat); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		<-errc
	})
	return l.Addr().String()
}

// joinChat dials addr and joins the room as name.
func joinChat(t *testing.T, addr, name string) (*pulse.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pulse.Dial(ctx, addr, pulse.WithLogger(discardLogger))
	if err != nil {
		t.Fatalf("Dial() failed: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.RegisterName("ChatClient", &chatPrinter{out: io.Discard, me: name, own: make(chan struct{}, 64)}); err != nil {
		t.Fatal(err)
	}
	var n int
	return c, c.Call(ctx, "Chat.Join", &ChatJoin{Name: name}, &n)
}

// waitMembers waits until the room has n members.
func waitMembers(t *testing.T, chat *Chat, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for chat.Members() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the room has %d members, want %d", chat.Members(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestChatForgetsMembers: a member is forgotten when its connection
// closes, so that joins by clients that left hold nothing.
func TestChatForgetsMembers(t *testing.T) {
	chat := &Chat{}
	addr := startChat(t, chat)
	for i := range 20 {
		c, err := joinChat(t, addr, "guest")
		if err != nil {
			t.Fatalf("join %d failed: %v", i, err)
		}
		c.Close()
	}
	waitMembers(t, chat, 0)
}

// TestChatLimits: the room refuses a member over MaxMembers (not one that
// joins again), a line over MaxLine and a name over chatMaxName, each with
// an error saying which limit; a member that leaves makes room.
func TestChatLimits(t *testing.T) {
	chat := &Chat{MaxMembers: 2, MaxLine: 10}
	addr := startChat(t, chat)
	a, err := joinChat(t, addr, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := joinChat(t, addr, "b"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.Call(context.Background(), "Chat.Join", &ChatJoin{Name: "a2"}, &n); err != nil {
		t.Errorf("joining again (a rename) in a full room = %v, want nil", err)
	}
	if _, err := joinChat(t, addr, "c"); err == nil || !strings.Contains(err.Error(), "the room is full (2 members") {
		t.Errorf("a third join with MaxMembers 2 = %v, want the room full", err)
	}
	if err := a.Call(context.Background(), "Chat.Say", &ChatLine{Text: strings.Repeat("x", 11)}, &n); err == nil || !strings.Contains(err.Error(), "over the room's limit of 10") {
		t.Errorf("Say() of 11 bytes with MaxLine 10 = %v, want the line limit", err)
	}
	if err := a.Call(context.Background(), "Chat.Say", &ChatLine{Text: "hello"}, &n); err != nil {
		t.Errorf("Say() of 5 bytes = %v", err)
	}
	if _, err := joinChat(t, addr, strings.Repeat("n", chatMaxName+1)); err == nil || !strings.Contains(err.Error(), "name is") {
		t.Errorf("join with a %d-byte name = %v, want the name limit", chatMaxName+1, err)
	}
	a.Close()
	waitMembers(t, chat, 1)
	if _, err := joinChat(t, addr, "d"); err != nil {
		t.Errorf("join after a member left = %v, want nil", err)
	}
}
