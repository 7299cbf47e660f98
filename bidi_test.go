package pulse_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pulse-rpc/pulse"
)

// Helper is registered on clients: the server calls it back.
type Helper struct {
	name string
}

func (h *Helper) Double(n int, reply *int) error {
	*reply = 2 * n
	return nil
}

func (h *Helper) Name(_ int, reply *string) error {
	*reply = h.name
	return nil
}

// Relay is registered on the server. Its methods call back into the
// client that called them, while that client's call is still pending.
type Relay struct{}

// Ask returns 2*n+1, asking the caller to double n.
func (Relay) Ask(ctx context.Context, n int, reply *int) error {
	p := pulse.PeerFromContext(ctx)
	if p == nil {
		return errors.New("no peer in the handler's context")
	}
	var d int
	if err := p.Call(ctx, "Helper.Double", n, &d); err != nil {
		return fmt.Errorf("callback failed: %w", err)
	}
	*reply = d + 1
	return nil
}

// AskGo is Ask with Peer.Go.
func (Relay) AskGo(ctx context.Context, n int, reply *int) error {
	var d int
	call := pulse.PeerFromContext(ctx).Go(ctx, "Helper.Double", n, &d, nil)
	select {
	case <-call.Done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if call.Error != nil {
		return fmt.Errorf("callback failed: %w", call.Error)
	}
	*reply = d + 1
	return nil
}

// AskMissing calls a method the client does not have.
func (Relay) AskMissing(ctx context.Context, n int, reply *int) error {
	err := pulse.PeerFromContext(ctx).Call(ctx, "Helper.Missing", n, reply)
	if errors.Is(err, pulse.ErrUnknownMethod) {
		return errors.New("unknown method, as expected")
	}
	return fmt.Errorf("got %v, want ErrUnknownMethod", err)
}

func TestCallback(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, Relay{})
		c := ts.dial(t)
		if err := c.Register(&Helper{name: "client"}); err != nil {
			t.Fatalf("Client.Register() failed: %v", err)
		}
		ctx := testContext(t)

		for _, method := range []string{"Relay.Ask", "Relay.AskGo"} {
			var got int
			if err := c.Call(ctx, method, 20, &got); err != nil || got != 41 {
				t.Errorf("Call(%s, 20) = %d, %v; want 41, nil", method, got, err)
			}
		}
		err := c.Call(ctx, "Relay.AskMissing", 1, new(int))
		var se pulse.ServerError
		if !errors.As(err, &se) || string(se) != "unknown method, as expected" {
			t.Errorf("Call(Relay.AskMissing) = %v, want ServerError %q", err, "unknown method, as expected")
		}
	})
}

// TestCallbackConcurrent runs many nested callbacks at once.
func TestCallbackConcurrent(t *testing.T) {
	const n = 50
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		ts.register(t, Relay{})
		c := ts.dial(t)
		if err := c.Register(&Helper{}); err != nil {
			t.Fatalf("Client.Register() failed: %v", err)
		}
		ctx := testContext(t)
		calls := make([]*pulse.Call, n)
		replies := make([]int, n)
		for i := range calls {
			calls[i] = c.Go(ctx, "Relay.Ask", i, &replies[i], nil)
		}
		for i, call := range calls {
			if err := waitCall(t, call); err != nil || replies[i] != 2*i+1 {
				t.Errorf("Go(Relay.Ask, %d) = %d, %v; want %d, nil", i, replies[i], err, 2*i+1)
			}
		}
	})
}

// TestClientServes checks the server calling the client outside of any
// call of the client's.
func TestClientServes(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		c := ts.dial(t)
		if err := c.RegisterName("H", &Helper{name: "named"}); err != nil {
			t.Fatalf("Client.RegisterName() failed: %v", err)
		}
		waitFor(t, "the server to list the client", func() bool { return len(ts.Peers()) == 1 })
		p := ts.Peers()[0]
		ctx := testContext(t)
		var name string
		if err := p.Call(ctx, "H.Name", 0, &name); err != nil || name != "named" {
			t.Errorf("Peer.Call(H.Name) = %q, %v; want %q, nil", name, err, "named")
		}
		if err := p.Call(ctx, "Helper.Name", 0, &name); !errors.Is(err, pulse.ErrUnknownService) {
			t.Errorf("Peer.Call(Helper.Name) = %v, want %v", err, pulse.ErrUnknownService)
		}
	})
}

func TestServerPush(t *testing.T) {
	const clients = 3
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		inboxes := make([]*Inbox, clients)
		for i := range inboxes {
			inboxes[i] = newInbox()
			c := ts.dial(t)
			if err := c.Register(inboxes[i]); err != nil {
				t.Fatalf("Client.Register() failed: %v", err)
			}
		}
		waitFor(t, "the server to list every client", func() bool { return len(ts.Peers()) == clients })
		ctx := testContext(t)

		// Peer.Notify to each.
		for _, p := range ts.Peers() {
			if err := p.Notify(ctx, "Inbox.Push", "direct"); err != nil {
				t.Fatalf("Peer.Notify() failed: %v", err)
			}
		}
		for i, in := range inboxes {
			if got := recv(t, in.got, fmt.Sprintf("client %d to get the notification", i)); got != "direct" {
				t.Errorf("client %d got %q, want %q", i, got, "direct")
			}
		}

		// Broadcast to all.
		unreached, err := ts.Broadcast(ctx, "Inbox.Push", "to all")
		if err != nil || len(unreached) != 0 {
			t.Fatalf("Broadcast() = %d unreached, %v; want 0, nil", len(unreached), err)
		}
		for i, in := range inboxes {
			if got := recv(t, in.got, fmt.Sprintf("client %d to get the broadcast", i)); got != "to all" {
				t.Errorf("client %d got %q, want %q", i, got, "to all")
			}
		}
	})
}

// TestBroadcastMixedCodecs broadcasts to clients that negotiated different
// codecs: each gets the arguments in its own codec.
func TestBroadcastMixedCodecs(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		jsonIn, defIn := newInbox(), newInbox()
		cj := ts.dial(t, pulse.WithCodec("json"))
		cd := ts.dial(t)
		if err := cj.Register(jsonIn); err != nil {
			t.Fatal(err)
		}
		if err := cd.Register(defIn); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the server to list both clients", func() bool { return len(ts.Peers()) == 2 })
		t.Logf("codecs: %s, %s", cj.Peer().Codec(), cd.Peer().Codec())
		unreached, err := ts.Broadcast(testContext(t), "Inbox.Push", "hi")
		if err != nil || len(unreached) != 0 {
			t.Fatalf("Broadcast() = %d unreached, %v; want 0, nil", len(unreached), err)
		}
		for _, in := range []*Inbox{jsonIn, defIn} {
			if got := recv(t, in.got, "the broadcast"); got != "hi" {
				t.Errorf("client got %q, want %q", got, "hi")
			}
		}
	})
}

func TestPeers(t *testing.T) {
	testConnTypes(t, func(t *testing.T, tr transport) {
		ts := newTestServer(t, tr)
		if n := len(ts.Peers()); n != 0 {
			t.Fatalf("len(Peers()) = %d before any client, want 0", n)
		}
		c1 := ts.dial(t)
		ts.dial(t)
		ts.dial(t)
		waitFor(t, "3 peers", func() bool { return len(ts.Peers()) == 3 })

		// Each peer is one of the clients, with the addresses swapped.
		if tr != transportPipe {
			local := c1.Peer().LocalAddr().String()
			found := false
			for _, p := range ts.Peers() {
				if p.RemoteAddr().String() == local {
					found = true
					if p.LocalAddr().String() != c1.Peer().RemoteAddr().String() {
						t.Errorf("server peer LocalAddr() = %v, want the client's RemoteAddr() %v", p.LocalAddr(), c1.Peer().RemoteAddr())
					}
				}
			}
			if !found {
				t.Errorf("Peers() has no peer with RemoteAddr() %v", local)
			}
		}

		var p1 *pulse.Peer
		for _, p := range ts.Peers() {
			if tr == transportPipe || p.RemoteAddr().String() == c1.Peer().LocalAddr().String() {
				p1 = p
			}
		}
		if err := c1.Close(); err != nil {
			t.Fatalf("Close() = %v, want nil", err)
		}
		waitFor(t, "Peers() to shrink to 2", func() bool { return len(ts.Peers()) == 2 })
		if tr != transportPipe {
			recv(t, p1.Done(), "the closed client's Peer.Done")
			if p1.Err() == nil {
				t.Errorf("Peer.Err() = nil for a closed client, want an error")
			}
			if err := p1.Notify(testContext(t), "Inbox.Push", "x"); err == nil {
				t.Errorf("Peer.Notify() to a closed client = nil, want an error")
			}
		}

		// The server closes one of them itself. That client may reconnect
		// (over TCP and TLS), so the count can go back up: check that the
		// closed connection leaves the list.
		p := ts.Peers()[0]
		if err := p.Close(); err != nil {
			t.Errorf("Peer.Close() = %v, want nil", err)
		}
		recv(t, p.Done(), "the closed Peer's Done")
		if p.Err() == nil {
			t.Errorf("Peer.Err() = nil after Peer.Close, want an error")
		}
		waitFor(t, "the closed peer to leave Peers()", func() bool {
			for _, q := range ts.Peers() {
				if q == p {
					return false
				}
			}
			return true
		})
	})
}
