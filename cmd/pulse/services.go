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
type Chat struct {
	srv *pulse.Server

	mu    sync.Mutex
	names map[*pulse.Peer]string
}

// ChatLine is one line said in the room.
type ChatLine struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// ChatJoin is the argument of Chat.Join.
type ChatJoin struct {
	Name string `json:"name"`
}

// Join names the calling client in the room and announces it.
func (c *Chat) Join(ctx context.Context, args *ChatJoin, reply *int) error {
	name := strings.TrimSpace(args.Name)
	if name == "" {
		return errors.New("a name is required")
	}
	c.mu.Lock()
	if c.names == nil {
		c.names = map[*pulse.Peer]string{}
	}
	c.names[pulse.PeerFromContext(ctx)] = name
	c.mu.Unlock()
	n, err := c.broadcast(&ChatLine{From: "room", Text: name + " joined"})
	*reply = n
	return err
}

// Say broadcasts a line from the caller to every client in the room and
// replies with the number of clients it reached.
func (c *Chat) Say(ctx context.Context, args *ChatLine, reply *int) error {
	c.mu.Lock()
	from := c.names[pulse.PeerFromContext(ctx)]
	c.mu.Unlock()
	if from == "" {
		from = args.From
	}
	if from == "" {
		return fmt.Errorf("join the room first (Chat.Join)")
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

// registerDemoServices registers Echo, Arith and Chat on srv.
func registerDemoServices(srv *pulse.Server) error {
	for _, rcvr := range []any{Echo{}, Arith{}, &Chat{srv: srv}} {
		if err := srv.Register(rcvr); err != nil {
			return err
		}
	}
	return nil
}
