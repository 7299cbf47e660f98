package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pulse-rpc/pulse"
)

// The demo services, served by "pulse demo" (and by "pulse serve").

// Echo returns what it is sent.
type Echo struct{}

// EchoArgs is the argument of Echo.Echo.
type EchoArgs struct {
	Msg string `json:"msg"`
}

// EchoReply is the reply of Echo.Echo.
type EchoReply struct {
	Msg string `json:"msg"`
}

// Echo replies with args.Msg.
func (Echo) Echo(args *EchoArgs, reply *EchoReply) error {
	reply.Msg = args.Msg
	return nil
}

// Arith does arithmetic, as in net/rpc's documentation.
type Arith struct{}

// ArithArgs are the operands.
type ArithArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

// Quotient is the result of Arith.Divide.
type Quotient struct {
	Quo int `json:"quo"`
	Rem int `json:"rem"`
}

// Add sets reply to A+B.
func (Arith) Add(args *ArithArgs, reply *int) error {
	*reply = args.A + args.B
	return nil
}

// Multiply sets reply to A*B.
func (Arith) Multiply(args *ArithArgs, reply *int) error {
	*reply = args.A * args.B
	return nil
}

// Divide divides A by B.
func (Arith) Divide(args *ArithArgs, reply *Quotient) error {
	if args.B == 0 {
		return errors.New("divide by zero")
	}
	reply.Quo, reply.Rem = args.A/args.B, args.A%args.B
	return nil
}

// Chat is a chat room: Say broadcasts a line to every connected client,
// which receives it through its ChatClient.Message method.
//
// The room is bounded: at most MaxMembers named members (a connection
// that joins again is renamed, not counted twice), names of at most
// chatMaxName bytes and lines of at most MaxLine bytes. A member is
// forgotten when its connection closes, so that the room holds nothing
// for clients that left.
type Chat struct {
	srv        *pulse.Server
	MaxMembers int // 0: DefaultChatMaxMembers
	MaxLine    int // bytes; 0: DefaultChatMaxLine

	mu    sync.Mutex
	names map[*pulse.Peer]string
}

// The chat room's limits.
const (
	DefaultChatMaxMembers = 1000
	DefaultChatMaxLine    = 4096
	chatMaxName           = 64
)

// ChatLine is one line said in the room.
type ChatLine struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// ChatJoin is the argument of Chat.Join.
type ChatJoin struct {
	Name string `json:"name"`
}

func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// Join names the calling client in the room and announces it.
func (c *Chat) Join(ctx context.Context, args *ChatJoin, reply *int) error {
	name := strings.TrimSpace(args.Name)
	if name == "" {
		return errors.New("a name is required")
	}
	if len(name) > chatMaxName {
		return fmt.Errorf("the name is %d bytes, over the room's limit of %d", len(name), chatMaxName)
	}
	p := pulse.PeerFromContext(ctx)
	if p == nil {
		return errors.New("Chat.Join needs a connection")
	}
	c.mu.Lock()
	if c.names == nil {
		c.names = map[*pulse.Peer]string{}
	}
	_, member := c.names[p]
	if max := orDefault(c.MaxMembers, DefaultChatMaxMembers); !member && len(c.names) >= max {
		c.mu.Unlock()
		return fmt.Errorf("the room is full (%d members, its limit)", max)
	}
	c.names[p] = name
	c.mu.Unlock()
	if !member {
		// Forget the member when its connection closes; one goroutine
		// per member, and the members are bounded.
		go func() {
			<-p.Done()
			c.mu.Lock()
			delete(c.names, p)
			c.mu.Unlock()
		}()
	}
	n, err := c.broadcast(&ChatLine{From: "room", Text: name + " joined"})
	*reply = n
	return err
}

// Members returns how many members the room has.
func (c *Chat) Members() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.names)
}

// Say broadcasts a line from the caller to every client in the room and
// replies with the number of clients it reached.
func (c *Chat) Say(ctx context.Context, args *ChatLine, reply *int) error {
	if max := orDefault(c.MaxLine, DefaultChatMaxLine); len(args.Text) > max {
		return fmt.Errorf("the line is %d bytes, over the room's limit of %d", len(args.Text), max)
	}
	c.mu.Lock()
	from := c.names[pulse.PeerFromContext(ctx)]
	c.mu.Unlock()
	if from == "" {
		from = args.From
	}
	if from == "" {
		return fmt.Errorf("join the room first (Chat.Join)")
	}
	if len(from) > chatMaxName {
		return fmt.Errorf("the name is %d bytes, over the room's limit of %d", len(from), chatMaxName)
	}
	n, err := c.broadcast(&ChatLine{From: from, Text: args.Text})
	*reply = n
	return err
}

// broadcast sends line to the room and returns how many clients it
// reached. A client that does not keep up is closed by the server's
// slow-consumer policy, not waited for.
func (c *Chat) broadcast(line *ChatLine) (int, error) {
	total := len(c.srv.Peers())
	unreached, err := c.srv.Broadcast(context.Background(), "ChatClient.Message", line)
	return max(total-len(unreached), 0), err
}

// registerDemoServices registers Echo, Arith and a Chat room with the
// default limits on srv.
func registerDemoServices(srv *pulse.Server) error {
	return registerServices(srv, &Chat{srv: srv})
}

// registerServices registers Echo, Arith and chat on srv.
func registerServices(srv *pulse.Server, chat *Chat) error {
	for _, rcvr := range []any{Echo{}, Arith{}, chat} {
		if err := srv.Register(rcvr); err != nil {
			return err
		}
	}
	return nil
}
